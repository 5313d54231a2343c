"""Which log records a reader wants: by agent, task, op, kind, code and since when.

What `maos wal show` (and ``--follow``) filters with; pure, so any reader of the log can
use it. A value a filter cannot understand is refused (``BAD_INPUT.FILTER``, naming the
option), never read as some other filter: an operator watching ``--code DSC.*`` must
not see a quiet stream only because a typo matched nothing.

Patterns: an exact value, or a prefix ending in ``*`` (``--op fs.*``, ``--code DSC.*``,
``--kind intent.*``). Where a record keeps the field: ``agent_id`` (``owner`` for locks),
``task_id``, ``op`` (or the parked intent's ``op``), ``code``; a record without the
field does not match a filter on it.

``since``: a sequence number (records after it), an age (``90s``, ``10m``, ``2h``,
``1d``: records committed within it) or an ISO 8601 time (``2026-12-02T06:00:00Z``; a
time without a zone is UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maos.kernel.errors import InputError
from maos.kernel.wal import WalRecord

__all__ = ["FILTER_CODE", "RecordFilter"]

FILTER_CODE = "BAD_INPUT.FILTER"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_OP = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.?\*)?)$")
_CODE = re.compile(r"^(\*|[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*(\.?\*)?)$")
_AGE = re.compile(r"^(\d{1,9})(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _patterns(
    option: str, values: Iterable[str], shape: re.Pattern[str], like: str
) -> tuple[str, ...]:
    out = []
    for value in values:
        if not isinstance(value, str) or len(value) > 128 or not shape.match(value):
            raise InputError(
                FILTER_CODE,
                f"{option} {str(value)[:80]!r} is not {like}",
                hint=f"give an exact value or a prefix ending in '*' ({option} {_EXAMPLE[option]})",
            )
        out.append(value)
    return tuple(out)


_EXAMPLE = {"--op": "fs.*", "--kind": "intent.*", "--code": "DSC.*"}


def _matches(patterns: tuple[str, ...], value: object) -> bool:
    if not isinstance(value, str):
        return False
    return any(value.startswith(p[:-1]) if p.endswith("*") else value == p for p in patterns)


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """A parsed filter; `parse` is the only way to build one from what a user typed."""

    agent: str | None = None
    task: str | None = None
    ops: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    after_seq: int = 0
    """Records with a greater seq only."""
    after_ts: float | None = None
    """Records committed at or after this time only (the log's clock, epoch seconds)."""

    @classmethod
    def parse(
        cls,
        *,
        now: float,
        agent: str | None = None,
        task: str | None = None,
        ops: Iterable[str] = (),
        kinds: Iterable[str] = (),
        codes: Iterable[str] = (),
        since: str | None = None,
    ) -> RecordFilter:
        """`InputError` ``BAD_INPUT.FILTER`` naming the option for a value it cannot read."""
        for option, value in (("--agent", agent), ("--task", task)):
            if value is not None and not _ID.match(value):
                raise InputError(
                    FILTER_CODE,
                    f"{option} {value[:80]!r} is not an id",
                    hint="ids are 1-64 letters, digits, '.', '_', ':' or '-'",
                )
        seq, ts = _since(since, now)
        return cls(
            agent=agent,
            task=task,
            ops=_patterns("--op", ops, _OP, "an op name like fs.read"),
            kinds=_patterns("--kind", kinds, _OP, "a record kind like intent.denied"),
            codes=_patterns("--code", codes, _CODE, "a decision code like DSC.CAPABILITY.EXPIRED"),
            after_seq=seq,
            after_ts=ts,
        )

    def sql_kinds(self) -> tuple[str, ...] | None:
        """The kinds the log can select itself (exact ones), or None for all."""
        if not self.kinds or any(k.endswith("*") for k in self.kinds):
            return None
        return self.kinds

    def matches(self, rec: WalRecord) -> bool:
        if rec.seq <= self.after_seq or (self.after_ts is not None and rec.ts < self.after_ts):
            return False
        body: Mapping[str, Any] = rec.body
        if self.kinds and not _matches(self.kinds, rec.kind):
            return False
        if self.agent is not None and body.get("agent_id", body.get("owner")) != self.agent:
            return False
        if self.task is not None and body.get("task_id") != self.task:
            return False
        if self.ops:
            parked = body.get("intent")
            op = body.get("op", parked.get("op") if isinstance(parked, Mapping) else None)
            if not _matches(self.ops, op):
                return False
        return not self.codes or _matches(self.codes, body.get("code"))


def _since(raw: str | None, now: float) -> tuple[int, float | None]:
    if raw is None or raw == "":
        return 0, None
    if raw.isdigit():
        return int(raw), None
    age = _AGE.match(raw)
    if age is not None:
        return 0, now - int(age.group(1)) * _UNIT[age.group(2)]
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(
            FILTER_CODE,
            f"--since {raw[:80]!r} is not a seq number, an age or an ISO 8601 time",
            hint="give e.g. --since 1200, --since 10m, --since 2026-12-02T06:00:00Z",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return 0, when.timestamp()
