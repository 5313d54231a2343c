"""Calibration of the aggregate thresholds (seed §49.11: monitor a month, then set each
limit at three times its 95th percentile).

`propose` reads the committed effects of the last ``days`` days from the log and, per
agent class (the ring: verified agents and untrusted ones behave differently), samples
each figure once per agent and day - the day's outbound bytes, external API calls and
largest bytes to one agent, and the distinct external destinations of the seven days
ending that day - and proposes ``3 x p95`` (at least 1) for each. Days an agent did
nothing are samples too: an agent that mails once a week has a small daily normal. Run
it after a period in monitoring-only mode (``security.monitor_only``), when breaches
were logged but not acted on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from maos.kernel.aggregate import destination
from maos.kernel.ops import OpSpec
from maos.kernel.wal import WalRecord

__all__ = ["CONFIG_KEYS", "Proposal", "propose"]

_DAY = 24 * 3600.0
CONFIG_KEYS: Mapping[str, str] = {
    "outbound_bytes": "outbound_bytes_per_day",
    "external_destinations": "external_destinations_per_week",
    "external_api_calls": "external_api_calls_per_day",
    "a2a_bytes_to_one_agent": "bytes_to_one_agent_per_day",
}
"""Metric -> its key in ``config.json``'s ``security`` section."""


@dataclass(frozen=True, slots=True)
class Proposal:
    agent_class: str
    """``ring2`` or ``ring3``."""
    metric: str
    samples: int
    p95: float
    limit: int
    """3 x p95, rounded up, at least 1."""


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def propose(
    records: Iterable[WalRecord],
    ops: Mapping[str, OpSpec],
    rings: Mapping[str, int],
    *,
    days: int,
    now: float,
) -> list[Proposal]:
    """Proposals per class and metric from the committed effects in the last ``days``."""
    since = now - days * _DAY
    prepared: dict[str, Mapping[str, object]] = {}
    daily: dict[tuple[str, int, str], float] = defaultdict(float)
    per_one: dict[tuple[str, int, str], float] = defaultdict(float)
    seen_on: dict[tuple[str, int], set[str]] = defaultdict(set)
    for rec in records:
        if rec.kind == "intent.prepared" and rec.idem_key:
            prepared[rec.idem_key] = rec.body
            continue
        if rec.kind != "intent.committed" or rec.ts < since - 7 * _DAY:
            continue
        body = prepared.pop(rec.idem_key or "", None)
        if body is None:
            continue
        agent, op, target = str(body["agent_id"]), str(body["op"]), str(body.get("target", ""))
        day = int((rec.ts - since) // _DAY)
        size = float(len(orjson.dumps(body.get("params") or {})))
        if op == "msg.send":
            per_one[(agent, day, target)] += size
            continue
        spec = ops.get(op)
        if spec is None or not spec.external:
            continue
        seen_on[(agent, day)].add(destination(target))
        if day < 0:
            continue  # only the destinations' week reaches back before the period
        daily[(agent, day, "outbound_bytes")] += size
        if op != "email.send":
            daily[(agent, day, "external_api_calls")] += 1
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for agent, ring in rings.items():
        cls = f"ring{ring}"
        for day in range(days):
            for metric in ("outbound_bytes", "external_api_calls"):
                samples[(cls, metric)].append(daily.get((agent, day, metric), 0.0))
            week: set[str] = set()
            for back in range(7):
                week |= seen_on.get((agent, day - back), set())
            samples[(cls, "external_destinations")].append(float(len(week)))
            to_one = [v for (a, d, _), v in per_one.items() if a == agent and d == day]
            samples[(cls, "a2a_bytes_to_one_agent")].append(max(to_one, default=0.0))
    out = []
    for (cls, metric), values in sorted(samples.items()):
        p95 = _p95(values)
        out.append(Proposal(cls, metric, len(values), p95, max(1, math.ceil(3 * p95))))
    return out
