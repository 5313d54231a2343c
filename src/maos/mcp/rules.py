"""The operator's per-tool rules, compiled once from the policy into closures.

A rule that cannot judge a value refuses it: an argument a rule names but the call
leaves out, a number that is text, a path that is relative or climbs out with ``..``.
Codes (``MCP.RULE.*``): ``ARG`` (an argument rule), ``RATE`` (the tool's token bucket),
``MAX_CALLS`` (the tool's lifetime count of committed calls).

Paths are judged as text (normalised, never resolved on disk): the gateway cannot see
the upstream's filesystem, so a symlink under the allowed directory is the upstream's
to refuse (or the sandbox's, issue 13 item 2).
"""

from __future__ import annotations

import math
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from maos.mcp.policy import ArgRule, ToolPolicy

__all__ = ["Refusal", "ToolRules", "compile_rules"]

Check = Callable[[Any], str | None]
"""A compiled argument rule: None when the value passes, else why not."""


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    reason: str


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return None if not math.isfinite(value) else Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _compile_arg(name: str, rule: ArgRule) -> list[Check]:
    checks: list[Check] = []
    if rule.under is not None:
        base = posixpath.normpath(rule.under)

        def under(value: Any) -> str | None:
            if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
                return f"{name} must be an absolute path under {base}"
            path = posixpath.normpath(value)
            if path != base and not path.startswith(base.rstrip("/") + "/"):
                return f"{name} {value!r} is not under {base}"
            return None

        checks.append(under)
    for bound, limit in (("max", rule.max), ("min", rule.min)):
        if limit is None:
            continue
        edge = Decimal(repr(limit))

        def bounded(value: Any, edge: Decimal = edge, bound: str = bound) -> str | None:
            number = _number(value)
            if number is None:
                return f"{name} must be a number"
            if (number > edge) if bound == "max" else (number < edge):
                return f"{name} {number} is {'above' if bound == 'max' else 'below'} {edge}"
            return None

        checks.append(bounded)
    if rule.one_of is not None:
        allowed = frozenset(rule.one_of)

        def one_of(value: Any) -> str | None:
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value not in allowed:
                return f"{name} must be one of {sorted(map(str, allowed))}"
            return None

        checks.append(one_of)
    if rule.pattern is not None:
        regex = re.compile(rule.pattern)

        def matches(value: Any) -> str | None:
            if not isinstance(value, str) or regex.fullmatch(value) is None:
                return f"{name} does not match {rule.pattern!r}"
            return None

        checks.append(matches)
    return checks


@dataclass(slots=True)
class ToolRules:
    """One tool's rules, ready to run: `check` before a call, `committed` after one."""

    args: Mapping[str, list[Check]]
    per_s: float | None = None
    burst: float = 1.0
    max_calls: int | None = None
    calls: int = 0
    """Committed calls so far, counted from the log at start."""
    clock: Callable[[], float] = time.monotonic
    _tokens: float = 0.0
    _stamp: float = field(default=0.0)

    def check(self, arguments: Mapping[str, Any]) -> Refusal | None:
        for name, checks in self.args.items():
            if name not in arguments:
                return Refusal("MCP.RULE.ARG", f"{name} is required by the operator's rule")
            for check in checks:
                why = check(arguments[name])
                if why is not None:
                    return Refusal("MCP.RULE.ARG", why)
        if self.max_calls is not None and self.calls >= self.max_calls:
            why = f"the operator allows {self.max_calls} calls of this tool and all were made"
            return Refusal("MCP.RULE.MAX_CALLS", why)
        if self.per_s is not None:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_s)
            self._stamp = now
            if self._tokens < 1.0:
                why = f"more than {self.per_s:g} calls/s (burst {self.burst:g}) of this tool"
                return Refusal("MCP.RULE.RATE", why)
            self._tokens -= 1.0
        return None

    def committed(self) -> None:
        self.calls += 1


def compile_rules(tool: ToolPolicy | None, *, calls: int = 0) -> ToolRules:
    """The closures of ``tool``'s rules (none for an undeclared tool), ``calls`` made so far."""
    if tool is None:
        return ToolRules(args={}, calls=calls)
    rules = ToolRules(
        args={name: _compile_arg(name, rule) for name, rule in tool.args.items()},
        max_calls=tool.max_calls,
        calls=calls,
    )
    if tool.rate is not None:
        rules.per_s = tool.rate.per_s
        rules.burst = float(tool.rate.burst)
        rules._tokens = rules.burst
        rules._stamp = rules.clock()
    return rules
