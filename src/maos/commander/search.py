"""Searching the log for the dashboard, on the server and bounded: the records one agent,
task, op or code left in a time range, and the decisions over time its chart draws.

It reads the log through its own read-only SQLite connection (`walcheck.connect_readonly`,
as the TDP does): a search can never write, and the kernel's reader is not held while a
filter scans. Bodies are matched with SQLite's JSON functions where they are stored and
sent on as the bytes the chain hashed (no parse, no re-encode); at most `MAX_RESULTS`
come back per request, newest first, with a cursor (``before``) for the next page.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from maos.kernel import walcheck

__all__ = [
    "DECISION_KINDS",
    "HIDDEN",
    "MAX_RESULTS",
    "QUIET_KINDS",
    "ChartRange",
    "LogFilter",
    "LogSearch",
    "hide_token",
]

MAX_RESULTS = 200
"""The most records one search returns."""
QUIET_KINDS = frozenset({"lock.acquired", "lock.released", "intent.prepared", "provenance.seen"})
"""Bookkeeping a person does not need to watch unless they ask for it by kind."""
DECISION_KINDS = {
    "intent.prepared": "allowed",
    "intent.denied": "denied",
    "approval.pending": "parked",
}
"""The record each kernel decision leaves: an allowed effect is prepared before it runs
(an approved one too), a refusal is logged with its code, a parked one waits for you."""
MAX_BUCKETS = 120
_ID = r"^[A-Za-z0-9_.:@/+\-]*$"
_BODY = "CAST(body AS TEXT)"


class LogFilter(BaseModel):
    """What to look for; every field narrows, none given is the latest records.

    From query parameters, so numbers come as text and are converted; an unknown
    parameter is refused (a typo must not silently widen the search)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    agent: str = Field(default="", max_length=128, pattern=_ID)
    task: str = Field(default="", max_length=128, pattern=_ID)
    op: str = Field(default="", max_length=128, pattern=_ID)
    code: str = Field(default="", max_length=128, pattern=_ID)
    """A code or its prefix: ``RULE.R10`` finds every R10 code."""
    kind: str = Field(default="", max_length=64, pattern=_ID)
    """A record kind or its prefix (``approval.``); shows the quiet kinds too."""
    since: float | None = Field(default=None, ge=0)
    until: float | None = Field(default=None, ge=0)
    before: int | None = Field(default=None, ge=1)
    """Only records older than this seq: the next page."""
    limit: int = Field(default=100, ge=1, le=MAX_RESULTS)


class ChartRange(BaseModel):
    """The chart's window (epoch seconds; by default the last hour) cut into buckets."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    since: float | None = Field(default=None, ge=0)
    until: float | None = Field(default=None, ge=0)
    buckets: int = Field(default=30, ge=1, le=MAX_BUCKETS)

    @model_validator(mode="after")
    def _ordered(self) -> ChartRange:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


def _prefix(value: str) -> str:
    """A LIKE pattern matching ``value`` and what starts with it, wildcards escaped."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _shown(body: bytes) -> Any:
    """A body as the page gets it: the stored bytes as they are, except that a parked
    intent's capability token is left out - the Commander needs to see what it allows
    (the packet says), never to hold an agent's credential in a browser."""
    if b'"token"' not in body:
        return orjson.Fragment(body)
    return hide_token(orjson.loads(body))


def hide_token(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the token of the intent it carries (or is)."""
    intent = body.get("intent")
    if isinstance(intent, dict) and "token" in intent:
        body = {**body, "intent": {**intent, "token": HIDDEN}}
    return {**body, "token": HIDDEN} if "token" in body else body


HIDDEN = "(hidden: the kernel holds it)"


class LogSearch:
    """Read-only queries over one log file."""

    def __init__(self, wal_path: Path) -> None:
        self._path = wal_path
        self._conn: sqlite3.Connection | None = None

    def _query(self, sql: str, params: Collection[Any]) -> list[tuple[Any, ...]]:
        if self._conn is None:
            self._conn = walcheck.connect_readonly(self._path)
        return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def records(self, f: LogFilter, kinds: Collection[str] = ()) -> list[dict[str, Any]]:
        """Matching records (of ``kinds`` only, when given), newest first, at most
        ``f.limit``."""
        where: list[str] = []
        params: list[Any] = []
        for value, paths in (
            (f.agent, ("$.agent_id", "$.intent.agent_id")),
            (f.task, ("$.task_id", "$.intent.task_id")),
            (f.op, ("$.op", "$.intent.op")),
        ):
            if value:
                where.append(" OR ".join(f"json_extract({_BODY}, '{p}') = ?" for p in paths))
                params += [value] * len(paths)
        if f.code:
            where.append(
                f"json_extract({_BODY}, '$.code') LIKE ? ESCAPE '\\'"
                f" OR json_extract({_BODY}, '$.outcome.code') LIKE ? ESCAPE '\\'"
            )
            params += [_prefix(f.code)] * 2
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params += list(kinds)
        if f.kind:
            where.append("kind LIKE ? ESCAPE '\\'")
            params.append(_prefix(f.kind))
        elif not kinds:
            where.append(f"kind NOT IN ({','.join('?' * len(QUIET_KINDS))})")
            params += sorted(QUIET_KINDS)
        bounds: tuple[tuple[str, float | None], ...] = (
            ("ts >= ?", f.since),
            ("ts <= ?", f.until),
            ("seq < ?", f.before),
        )
        for clause, bound in bounds:
            if bound is not None:
                where.append(clause)
                params.append(bound)
        sql = (
            "SELECT seq, ts, kind, body FROM records WHERE "
            + " AND ".join(f"({w})" for w in where)
            + " ORDER BY seq DESC LIMIT ?"
        )
        rows = self._query(sql, [*params, f.limit])
        return [
            {"seq": seq, "ts": ts, "kind": kind, "body": _shown(body)}
            for seq, ts, kind, body in rows
        ]

    def decisions(self, r: ChartRange) -> dict[str, Any]:
        """Allowed, denied and parked decisions per bucket of the range, and by code."""
        until = time.time() if r.until is None else r.until
        since = until - 3600 if r.since is None else r.since
        width = (until - since) / r.buckets
        kinds = list(DECISION_KINDS)
        rows = self._query(
            f"SELECT CAST((ts - ?) / ? AS INTEGER), kind, json_extract({_BODY}, '$.code'),"
            f" count(*) FROM records WHERE kind IN ({','.join('?' * len(kinds))})"
            " AND ts >= ? AND ts < ? GROUP BY 1, 2, 3",
            [since, width, *kinds, since, until],
        )
        buckets = [
            {"start": since + i * width, "allowed": 0, "denied": 0, "parked": 0}
            for i in range(r.buckets)
        ]
        codes: dict[str, dict[str, int]] = {"allowed": {}, "denied": {}, "parked": {}}
        for index, kind, code, count in rows:
            outcome = DECISION_KINDS[kind]
            buckets[min(int(index), r.buckets - 1)][outcome] += count
            key = "allowed" if outcome == "allowed" else str(code or "?")
            codes[outcome][key] = codes[outcome].get(key, 0) + count
        totals = {k: sum(b[k] for b in buckets) for k in ("allowed", "denied", "parked")}
        return {
            "since": since,
            "until": until,
            "bucket_s": width,
            "buckets": buckets,
            "totals": totals,
            "codes": codes,
        }
