"""Check 4: information-flow control, rules R6 (no down-flow) and R10 (untrusted data
never chooses a target).

R6 compares the agent's context confidentiality with the op's sink clearance. A logged
declassification on the task to level L releases data of *any* level to sinks at L or
above, so it is allowed iff ``declassified_to <= sink``.

R10 asks, when the context is untrusted, whether each target was named by a trusted
principal (``TaskView.trusted_targets`` or, for paths, the task's workspace). The target
helpers here are shared with R7 in `rules`. They refuse to *match* anything two parsers
could read differently (userinfo, backslashes, dot segments, display names): an
ambiguous target is never trusted, it goes to the Commander instead.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from urllib.parse import urlsplit

from maos.kernel.dsc.base import CheckInput, TaskView
from maos.kernel.identifiers import normalise, tagged
from maos.kernel.labels import Integrity
from maos.kernel.ops import OPS, OpSpec
from maos.kernel.types import Allow, Decision, Deny, Intent, Pending, frozen_mapping

__all__ = ["IfcCheck", "is_trusted_target", "money", "target_kinds"]

_TARGET_KINDS = frozenset({"recipient", "url", "path", "account", "phone", "mixed"})
"""Op target kinds R10 checks (``mixed``: a tool, each target with its manifest's kind)."""
_UNTRUSTED = Integrity.UNTRUSTED
"""Bound once: reading an enum member off its class costs ~0.2 µs in CPython 3.11."""
_AMBIGUOUS_PATH = ("/./", "/../", "%2e", "%2f", "%5c")


def money(cents: int) -> str:
    """Cents as a sum for people, exactly (``1250`` -> ``12.50``): no float on the way."""
    return f"{Decimal(cents).scaleb(-2):.2f}"


def target_kinds(intent: Intent, spec: OpSpec) -> tuple[str, ...]:
    """One kind per target of ``intent``. A tool's kinds come with the intent (from its
    manifest); a tool intent whose kinds do not line up with its targets gets ``unknown``,
    which only an exact match of a named target can satisfy."""
    targets = intent.targets
    if spec.target_kind != "mixed":
        return (spec.target_kind,) * len(targets)
    kinds = intent.target_kinds
    return kinds if len(kinds) == len(targets) else ("unknown",) * len(targets)


def is_trusted_target(kind: str, target: str, task: TaskView) -> bool:
    """True when a trusted principal of ``task`` named ``target`` (exactly or by scope).

    Both sides go through `normalise`, the one spelling per kind that extraction from
    the Commander's words also uses: ``Boss@Example.com`` is ``boss@example.com``,
    ``#General`` is the channel ``general``, ``www.example.com/x`` a URL."""
    if kind == "none":
        return True  # a tool with no target parameter: nothing to name
    trusted = task.trusted_targets
    if target in trusted and not tagged(target):
        return True
    if kind == "path":
        return _path_trusted(target, task.workspace, trusted)
    if kind == "url":
        return _url_trusted(target, trusted)
    if kind in _NORMALISED:
        value = normalise(kind, target)
        return value is not None and value in _named(kind, trusted)
    return False


_NORMALISED = frozenset({"recipient", "account", "phone", "name", "channel", "user"})


@lru_cache(maxsize=256)
def _named(kind: str, trusted: frozenset[str]) -> frozenset[str]:
    """The trusted targets as spelled for ``kind`` (a task's set is hashed once). A tagged
    entry (``channel:general``) counts for its own kind only; an untagged one - which a
    person typed as a target - is read as ``kind``."""
    tag = f"{kind}:"
    values = (
        t[len(tag) :] if t.startswith(tag) else None if tagged(t) else normalise(kind, t)
        for t in trusted
    )
    return frozenset(v for v in values if v is not None)


def _path_trusted(target: str, workspace: str, trusted: frozenset[str]) -> bool:
    path = _path(target, workspace)
    if path is None:
        return False
    if not path.startswith("/"):
        return True  # relative and not escaping: inside the workspace by construction
    return any(
        (t.endswith("/") and path.startswith(posixpath.normpath(t) + "/")) or _path(t, "") == path
        for t in trusted
        if t.startswith("/")
    )


@lru_cache(maxsize=4096)
def _path(target: str, workspace: str) -> str | None:
    """Normalized path; relative ones stay relative unless they escape the workspace.

    Absolute paths inside ``workspace`` come back relative; ``.`` is the workspace root.
    ``None``: unusable (backslashes, ``~``, drive letters, or ``..`` out of the workspace).
    """
    if "\\" in target or target.startswith("~") or target[1:2] == ":":
        return None
    norm = posixpath.normpath(target)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm.startswith("/"):
        root = posixpath.normpath(workspace) if workspace.startswith("/") else ""
        if root and root != "/" and (norm == root or norm.startswith(root + "/")):
            return norm[len(root) + 1 :] or "."
        return norm
    return None if norm == ".." or norm.startswith("../") else norm


def _url_trusted(target: str, trusted: frozenset[str]) -> bool:
    """A URL is named by its own normalised spelling, by its host (an entry with no
    ``/`` and no ``@``: that host on its default port), or by a named prefix ending in
    ``/`` when its path has no dot segments or encoded separators."""
    parts = _url(target)
    if parts is None:
        return False
    netloc, canonical, plain_path = parts
    for entry in trusted:
        if tagged(entry):
            continue  # a name is never a host
        if "/" not in entry and "@" not in entry:
            if entry.lower().rstrip(".") == netloc:
                return True
        elif normalise("url", entry) == canonical:
            return True
        elif plain_path and entry.endswith("/"):
            prefix = _url(entry)
            if prefix is not None and canonical.startswith(prefix[1]):
                return True
    return False


@lru_cache(maxsize=4096)
def _url(url: str) -> tuple[str, str, bool] | None:
    """(host[:port], normalised URL, path free of dot segments) of an unambiguous URL.

    The port is kept only when it is not the scheme's default, so a trusted host entry
    covers its default port alone; other ports must be named (``host:8443``). ``None``
    for anything `normalise` refuses: userinfo (``https://trusted.com@evil.com/`` goes
    to evil.com), backslashes, spaces, schemes other than http(s).
    """
    canonical = normalise("url", url)
    if canonical is None:
        return None
    parts = urlsplit(canonical)
    lowered = parts.path.lower()
    plain = not any(p in lowered for p in _AMBIGUOUS_PATH) and not lowered.endswith(("/.", "/.."))
    return parts.netloc, canonical, plain


class IfcCheck:
    """Check 4. Stateless; the op catalogue is injectable for tests of future ops."""

    __slots__ = ("_allow", "_ops", "name")

    def __init__(self, ops: Mapping[str, OpSpec] = OPS) -> None:
        self.name = "ifc"
        self._ops = ops
        self._allow = Allow(check=self.name)

    def __call__(self, inp: CheckInput) -> Decision:
        spec = self._ops.get(inp.intent.op)
        if spec is None:
            return self._allow  # an unknown op is R1's to refuse, in check 5
        context = inp.context
        sink = spec.sink
        if sink is not None and context.conf > sink:
            declassified = inp.task.declassified_to
            if declassified is None or declassified > sink:
                granted = "nothing" if declassified is None else f"only to {declassified.name}"
                return Deny(
                    "RULE.R6.IFC_DOWNFLOW",
                    f"{spec.name} may carry at most {sink.name} data, but the agent's context "
                    f"is {context.conf.name} and the task declassifies {granted}",
                    check=self.name,
                )
        if context.integrity is _UNTRUSTED and not inp.approved:
            if spec.target_kind in _TARGET_KINDS:
                decision = self._untrusted_targets(inp, spec)
                if decision is not self._allow:
                    return decision
            return self._untrusted_amount(inp)
        return self._allow

    def _untrusted_amount(self, inp: CheckInput) -> Decision:
        """Untrusted content may not choose a sum either: with amounts named, a payment
        must be one of them (an invoice that "now" asks for 3,900 EUR goes to a human), and
        a named sum is paid to a target once (a "please pay again" goes to a human too)."""
        amount, named = inp.intent.cost.money_cents, inp.task.trusted_amounts
        if not amount or not named:
            return self._allow
        if amount in named and not self._paid_before(inp, amount):
            return self._allow
        shown = ", ".join(money(c) for c in sorted(named))
        why = (
            "already paid to this target once"
            if amount in named
            else f"not a sum the task named ({shown})"
        )
        return Pending(
            "RULE.R10.UNTRUSTED_AMOUNT",
            f"the agent read untrusted content and {inp.intent.op} moves {money(amount)}, {why}",
            rule="R10",
            check=self.name,
            details=frozen_mapping(
                {
                    "amount_cents": amount,
                    "named_amounts": sorted(named),
                    "context_sources": sorted(inp.context.sources),
                }
            ),
        )

    def _paid_before(self, inp: CheckInput, amount: int) -> bool:
        """Whether the task paid ``amount`` to this target already, however the target
        was spelled then (``DE89 3704 ...`` and ``DE893704...`` are one account)."""
        target, paid = inp.intent.target, inp.task.paid
        if (target, amount) in paid:
            return True
        spec = self._ops.get(inp.intent.op)
        kind = target_kinds(inp.intent, spec)[0] if spec is not None else "unknown"
        mine = normalise(kind, target) if kind in _NORMALISED else None
        return mine is not None and any(
            cents == amount and normalise(kind, t) == mine for t, cents in paid
        )

    def _untrusted_targets(self, inp: CheckInput, spec: OpSpec) -> Decision:
        kinds = target_kinds(inp.intent, spec)
        flagged = [
            t
            for t, kind in zip(inp.intent.targets, kinds, strict=True)
            if not is_trusted_target(kind, t, inp.task)
        ]
        if not flagged:
            return self._allow
        return Pending(
            "RULE.R10.UNTRUSTED_TARGET",
            f"the agent read untrusted content and {spec.name} targets "
            f"{', '.join(repr(t) for t in flagged)}, which no trusted principal named",
            rule="R10",
            check=self.name,
            details=frozen_mapping(
                {"targets": flagged, "context_sources": sorted(inp.context.sources)}
            ),
        )
