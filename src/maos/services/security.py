"""The Security Agent's aggregate monitoring (seed §49.11, HACF): figures no single check
sees.

Each effect may pass the DSC on its own while together they form an exfiltration: a
thousand small mails, a new recipient every minute. The monitor sums, per agent and over
a sliding window, what the log says each agent's committed effects sent out, and when a
figure passes its threshold the Security Agent isolates the agent (as
``commander:security``; soft isolation, the cascade's stage 2: nothing outbound, the
rest of its work goes on) and logs why (``security.breach``). The Commander sees it and
quarantines, kills or resumes the agent; on resume its count starts again from zero.

    metric                      default     window   counted from
    outbound_bytes              100 MB      24 h     params of committed external effects
    external_destinations       50 unique   7 days   targets of committed external effects
    external_api_calls          500         24 h     committed external effects other than mail
    a2a_bytes_to_one_agent      50 MB       24 h     params of committed msg.send, per recipient
    declassifications           10          24 h     task.declassified (any task; alert only)

Time is the log's own (each record's ``ts``), so a replay of the same log finds the same
breaches. The monitor is deterministic and needs no LLM (an Immune cell that keeps
working in Rule-Based Mode). What it cannot see: data transformed so that it no longer
looks like volume (seed: residual risk).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.ops import OpSpec
from maos.kernel.wal import WalRecord

__all__ = [
    "BREACH",
    "DEFAULT_THRESHOLDS",
    "PRINCIPAL",
    "AggregateMonitor",
    "Breach",
    "SecurityAgent",
    "Threshold",
    "thresholds",
]

BREACH = "security.breach"
PRINCIPAL = "commander:security"
"""Who the Security Agent acts as: a Ring 1 service of the Commander, never an agent."""
_DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    limit: float
    window_s: float


def thresholds(
    *,
    outbound_bytes_per_day: float = 100 * 1024 * 1024,
    external_destinations_per_week: float = 50,
    external_api_calls_per_day: float = 500,
    bytes_to_one_agent_per_day: float = 50 * 1024 * 1024,
    declassifications_per_day: float = 10,
) -> tuple[Threshold, ...]:
    """The seed's table with its windows; the limits default to its figures (the
    ``security`` section of ``config.json`` sets them)."""
    return (
        Threshold("outbound_bytes", outbound_bytes_per_day, _DAY),
        Threshold("external_destinations", external_destinations_per_week, 7 * _DAY),
        Threshold("external_api_calls", external_api_calls_per_day, _DAY),
        Threshold("a2a_bytes_to_one_agent", bytes_to_one_agent_per_day, _DAY),
        Threshold("declassifications", declassifications_per_day, _DAY),
    )


DEFAULT_THRESHOLDS = thresholds()


@dataclass(frozen=True, slots=True)
class Breach:
    """A figure past its threshold; ``agent_id`` is None for a system-wide one."""

    agent_id: str | None
    metric: str
    value: float
    limit: float
    window_s: float
    seq: int
    """The record that carried the figure over."""

    def record(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "metric": self.metric,
            "value": self.value,
            "limit": self.limit,
            "window_s": self.window_s,
            "seq": self.seq,
        }


@dataclass
class _Window:
    """Amounts (or distinct keys) seen in the last ``window_s`` seconds."""

    window_s: float
    entries: deque[tuple[float, float, str]] = field(default_factory=deque)
    total: float = 0.0
    keys: Counter[str] = field(default_factory=Counter)

    def add(self, ts: float, amount: float, key: str = "") -> None:
        self.entries.append((ts, amount, key))
        self.total += amount
        if key:
            self.keys[key] += 1
        while self.entries and self.entries[0][0] <= ts - self.window_s:
            _, old, old_key = self.entries.popleft()
            self.total -= old
            if old_key:
                self.keys[old_key] -= 1
                if self.keys[old_key] == 0:
                    del self.keys[old_key]


class AggregateMonitor:
    """Folds log records into per-agent windows; `observe` returns what a record breached.

    ``ops`` is the kernel's op catalogue (built-in ops and registered tools), which says
    which ops leave the machine.
    """

    def __init__(
        self, ops: Mapping[str, OpSpec], thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS
    ) -> None:
        self._ops = ops
        self._thresholds = {t.metric: t for t in thresholds}
        self._windows: dict[tuple[str | None, str], _Window] = {}
        self._prepared: dict[str, Mapping[str, object]] = {}

    KINDS = (
        "intent.prepared",
        "intent.committed",
        "intent.failed",
        "intent.resolved",
        "task.declassified",
    )
    """The only records `observe` reads: the log is asked for these alone."""

    def observe(self, rec: WalRecord) -> list[Breach]:
        if rec.kind == "intent.prepared" and rec.idem_key is not None:
            self._prepared[rec.idem_key] = rec.body
            return []
        if rec.kind == "task.declassified":
            return self._add(None, "declassifications", rec, 1)
        if rec.kind not in ("intent.committed", "intent.failed", "intent.resolved"):
            return []
        prepared = self._prepared.pop(rec.idem_key or "", None)
        happened = rec.kind == "intent.committed" or (
            rec.kind == "intent.resolved" and bool(rec.body.get("happened"))
        )
        if prepared is None or not happened:
            return []
        return self._effect(prepared, rec)

    def forget(self, agent_id: str, metric: str) -> None:
        """Start a figure again from zero (the agent was quarantined for it)."""
        for key in [k for k in self._windows if k[0] == agent_id and k[1].startswith(metric)]:
            del self._windows[key]

    def _effect(self, prepared: Mapping[str, object], rec: WalRecord) -> list[Breach]:
        op, agent = str(prepared["op"]), str(prepared["agent_id"])
        size = len(orjson.dumps(prepared.get("params") or {}))
        target = str(prepared.get("target", ""))
        if op == "msg.send":
            return self._add(agent, "a2a_bytes_to_one_agent", rec, size, per=target)
        spec = self._ops.get(op)
        if spec is None or not spec.external:
            return []
        breaches = self._add(agent, "outbound_bytes", rec, size)
        breaches += self._add(agent, "external_destinations", rec, 0, key=_destination(target))
        if op != "email.send":
            breaches += self._add(agent, "external_api_calls", rec, 1)
        return breaches

    def _add(
        self,
        agent_id: str | None,
        metric: str,
        rec: WalRecord,
        amount: float,
        *,
        key: str = "",
        per: str = "",
    ) -> list[Breach]:
        threshold = self._thresholds.get(metric)
        if threshold is None:
            return []
        slot = (agent_id, f"{metric}:{per}" if per else metric)
        window = self._windows.setdefault(slot, _Window(threshold.window_s))
        window.add(rec.ts, amount, key)
        value = float(len(window.keys)) if metric == "external_destinations" else window.total
        if value <= threshold.limit:
            return []
        return [Breach(agent_id, metric, value, threshold.limit, threshold.window_s, rec.seq)]


def _destination(target: str) -> str:
    """A URL counts by its host (a thousand paths on one API are one destination)."""
    if "://" in target:
        return urlsplit(target).hostname or target
    return target.lower()


class SecurityAgent:
    """Follows a kernel's log with an `AggregateMonitor` and isolates on a breach.

    History is folded at `start` (the windows need the last days) but only records that
    arrive after it are acted on: an old breach was the Commander's to see then.
    """

    def __init__(
        self,
        kernel: Kernel,
        thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS,
        *,
        interval_s: float = 0.2,
    ) -> None:
        self._kernel = kernel
        self.monitor = AggregateMonitor(kernel.registry.ops, thresholds)
        self._interval = interval_s
        self._seen = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for rec in self._kernel.wal.read(kinds=AggregateMonitor.KINDS):
            self.monitor.observe(rec)
            self._seen = rec.seq
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll(self) -> list[Breach]:
        """Fold the records written since the last poll and act on what they breached."""
        acted = []
        records = self._kernel.wal.read(since_seq=self._seen, kinds=AggregateMonitor.KINDS)
        for breach in self._breaches(records):
            await self._act(breach)
            acted.append(breach)
        return acted

    def _breaches(self, records: Iterable[WalRecord]) -> list[Breach]:
        found = []
        for rec in records:
            self._seen = rec.seq
            found += self.monitor.observe(rec)
        return found

    async def _act(self, breach: Breach) -> None:
        await self._kernel.wal.append(BREACH, breach.record())
        agent = self._kernel.registry.agents.get(breach.agent_id or "")
        if agent is None or agent.status is not AgentStatus.ACTIVE:
            return  # already contained, or paused by the Commander: theirs to judge
        self.monitor.forget(agent.agent_id, breach.metric)
        await self._kernel.set_agent_status(
            agent.agent_id, AgentStatus.ISOLATED, principal=PRINCIPAL
        )

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except MaosError:  # the log is closing or failing: the kernel reports that
                return
