"""The Security Agent (an Immune cell, Ring 1): danger signals in, cascade stages out.

It follows the kernel's log. Every danger signal (`maos.services.danger`) raises its
agent's score; a score past a stage's threshold moves the agent up the quarantine
cascade (`maos.kernel.cascade`) on its own, each move one logged ``agent.stage`` with its
cause, score and evidence:

    normal -> observation     score >= observe_at   (every effect through the SSE)
           -> soft_isolation  score >= soft_at      (nothing outbound)
           -> hard_isolation  score >= hard_at      (gateways closed, pod frozen)
           -> elimination     only when the Commander approves the request it files
                              (an approval with a decision packet; RCA material kept)

A clean observation window (no signal for ``observation_s`` of the kernel's clock) steps
an agent down one stage (soft to observation, observation to normal); hard isolation is
left only by the Commander (``maos agent release ID --to STAGE``).

Aggregate monitoring (seed §49.11) is the kernel's now: its running sums
(`maos.kernel.aggregate`) refuse, before the effect, the intent that would carry a figure
over (``SECURITY.AGGREGATE.<METRIC>``). The Security Agent reads those denials - and the
would-be breaches folded after the fact in monitoring-only mode - logs each as one
``security.breach`` and soft-isolates the agent (in monitoring-only mode it logs and
does not act). What it has acted on is in the log, so a restarted Security Agent acts on
breaches and denials already in the log that no ``security.breach`` answers yet, and a
stopping one reads the log a last time: an agent cannot outrun it by ending its run
within one poll.

It acts as ``service:security`` and writes nothing itself (Ring 1: read yes, write no):
every record it wants in the log is an order through `Kernel.services`, checked against
its charter with its Ring 1 capability (`maos.kernel.services`). It reads the log through
whatever holds one - the kernel in its own process, or the read-only fold of a Security
Agent process the Service Manager supervises (`maos.services.host`). It needs no LLM (it
keeps working in Rule-Based Mode).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from maos.kernel import cascade
from maos.kernel.aggregate import (
    AGGREGATE_CODE,
    DEFAULT_THRESHOLDS,
    AggregateLedger,
    Breach,
    Threshold,
    thresholds,
)
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel
from maos.kernel.registry import AgentRecord, Registry
from maos.kernel.stages import CascadePolicy, Stage
from maos.kernel.wal import Wal, WalRecord
from maos.services import danger
from maos.services.follower import LogFollower
from maos.services.notify import CommanderNotifier

__all__ = [
    "BREACH",
    "DEFAULT_THRESHOLDS",
    "LOG_KINDS",
    "PRINCIPAL",
    "Breach",
    "SecurityAgent",
    "Threshold",
    "danger_from_log",
    "kernel_order",
    "notify_hook",
    "thresholds",
]

BREACH = "security.breach"
PRINCIPAL = cascade.SECURITY_SERVICE
"""Who the Security Agent acts as: a Ring 1 service, never an agent nor the Commander."""
SERVICE = "security"

Order = Callable[[str, Mapping[str, Any]], Awaitable[int]]
"""How a service logs a record: through the kernel, which checks its charter."""


class _Paths(Protocol):
    @property
    def data_dir(self) -> Path: ...


class LogSource(Protocol):
    """What the Security Agent reads: a kernel, or a service process's read-only fold."""

    wal: Wal
    registry: Registry

    @property
    def config(self) -> _Paths: ...

    @property
    def view(self) -> _AggregateView: ...

    def clock(self) -> float: ...


class _AggregateView(Protocol):
    aggregate: AggregateLedger


def kernel_order(kernel: Kernel, service: str = SERVICE) -> Order:
    """Orders through the kernel in this process, with the service's capability."""
    capability = kernel.services.capability(service)

    async def order(kind: str, body: Mapping[str, Any]) -> int:
        return await kernel.services.submit(capability, kind, body)

    return order


LOG_KINDS = (
    *danger.KINDS,
    BREACH,
    "agent.stage",
    "agent.status",
    "approval.pending",
    "approval.denied",
)


class SecurityAgent(LogFollower):
    """Follows a kernel's log, scores agents and moves them through the cascade."""

    def __init__(
        self,
        kernel: Kernel | LogSource,
        limits: Sequence[Threshold] = DEFAULT_THRESHOLDS,
        *,
        policy: CascadePolicy | None = None,
        interval_s: float = 0.2,
        notifier: CommanderNotifier | None = None,
        order: Order | None = None,
        refresh: Callable[[], object] | None = None,
    ) -> None:
        """``order``: how records reach the log (default: this kernel's service desk,
        which needs ``kernel`` to be a `Kernel`); ``refresh``: brings a service process's
        fold up to date before each poll and after each order."""
        self._kernel = kernel
        if order is None:
            if not isinstance(kernel, Kernel):
                raise TypeError("a Security Agent outside the kernel needs its order path")
            order = kernel_order(kernel)
        self._order_path = order
        self._refresh = refresh
        self.policy = policy or CascadePolicy()
        self.aggregate = kernel.view.aggregate
        """The kernel's running sums: read here, never written."""
        self.aggregate.configure(limits, enforce=not self.policy.monitor_only)
        self.danger = danger.DangerBook(self.policy.weights, half_life_s=self.policy.half_life_s)
        self._interval = interval_s
        self._notifier = notifier
        """Tells the Commander outside the page at soft isolation and beyond."""
        self._seen = 0
        self._breaches_seen = 0
        self._answered = {int(r.body.get("seq", 0)) for r in kernel.wal.read(kinds=[BREACH])}
        """Seqs of the denials and breaches a ``security.breach`` already answers."""
        self._history = kernel.wal.tail_seq()
        """Records up to here were logged before this agent started: their signals are
        folded into the scores, but only an unanswered breach is acted on."""
        self._asked: set[tuple[str, float]] = set()
        """(agent, stage_at) of hard isolations an elimination request was filed for."""

    # -- lifecycle ---------------------------------------------------------------------

    async def poll(self) -> list[Breach]:
        """Read what was logged since the last poll and act on it; returns the breaches
        acted on (or logged as would-be in monitoring-only mode)."""
        if self._refresh is not None:
            self._refresh()
        records = list(self._kernel.wal.read(since_seq=self._seen, kinds=LOG_KINDS))
        acted: list[Breach] = []
        for rec in records:
            self._seen = rec.seq
            acted += await self._fold(rec)
        fresh = self.aggregate.breaches[self._breaches_seen :]
        self._breaches_seen = len(self.aggregate.breaches)
        for breach in fresh:
            if breach.seq not in self._answered:
                await self._breach(breach, code="", before_effect=False)
                acted.append(breach)
        await self.tick()
        return acted

    async def tick(self) -> None:
        """The timers, on the kernel's clock: clean windows step agents down, and a
        hard-isolated agent gets its elimination request."""
        now = self._kernel.clock()
        for agent in list(self._kernel.registry.agents.values()):
            if agent.stage in (Stage.OBSERVATION, Stage.SOFT_ISOLATION):
                quiet_since = max(agent.stage_at, self.danger.last_signal(agent.agent_id) or 0.0)
                if agent.status.runs and now - quiet_since >= self.policy.observation_s:
                    lower = Stage.NORMAL if agent.stage is Stage.OBSERVATION else Stage.OBSERVATION
                    minutes = self.policy.observation_s / 60
                    await self._move(agent, lower, f"clean observation window ({minutes:g} min)")
            elif agent.stage is Stage.HARD_ISOLATION:
                await self._ask_elimination(agent)

    def score(self, agent_id: str) -> float:
        return self.danger.score(agent_id, self._kernel.clock())

    # -- folding -----------------------------------------------------------------------

    async def _fold(self, rec: WalRecord) -> list[Breach]:
        kind, body = rec.kind, rec.body
        if kind == BREACH:
            self._answered.add(int(body.get("seq", 0)))
            return []
        if kind in ("agent.stage", "agent.status"):
            if str(body.get("principal")) != PRINCIPAL and _released(body):
                self.danger.forget(str(body["agent_id"]))  # the Commander judged it
            return []
        if kind == "approval.pending" and cascade.is_elimination(body.get("intent", {})):
            at = float(body.get("details", {}).get("stage_at", 0.0))
            self._asked.add((str(body["agent_id"]), at))  # one request per hard isolation
            return []
        if kind == "approval.pending" or kind == "approval.denied":
            return []
        signal = danger.signal_of(rec)
        if signal is None:
            return []
        score = self.danger.add(signal)
        code = signal.code
        if code.startswith(AGGREGATE_CODE) and rec.seq not in self._answered:
            breach = self._breach_of(rec)
            await self._breach(breach, code=code, before_effect=True)
            return [breach]
        if rec.seq > self._history:
            await self._escalate(signal.agent_id, score, f"{signal.kind} ({code})")
        return []

    def _breach_of(self, rec: WalRecord) -> Breach:
        """The breach a pre-effect aggregate deny stands for: the figure as it stands
        (the intent's own share was refused) against its limit."""
        agent, metric = (
            str(rec.body.get("agent_id")),
            str(rec.body["code"])[len(AGGREGATE_CODE) :].lower(),
        )
        figures = self.aggregate.figures(agent, rec.ts)
        value = max((v for k, v in figures.items() if k.split(":")[0] == metric), default=0.0)
        limit = self.aggregate.limits.get(metric)
        window = (0.0, 0.0) if limit is None else (limit.limit, limit.window_s)
        return Breach(agent, metric, value, window[0], window[1], rec.seq)

    async def _breach(self, breach: Breach, *, code: str, before_effect: bool) -> None:
        acting = not self.policy.monitor_only and breach.agent_id is not None
        body = {**breach.record(), "code": code, "before_effect": before_effect}
        await self._order(BREACH, {**body, "acting": acting})
        self._answered.add(breach.seq)
        if not acting or breach.agent_id is None:
            return
        if not before_effect:  # a breach found after the fact is a signal too
            at = self._kernel.clock()
            self.danger.add(danger.Signal(breach.agent_id, "aggregate", code, breach.seq, at))
        how = "refused before the effect" if before_effect else "breached"
        why = f"aggregate {breach.metric} {how}"
        # Soft isolation and no further: the figure is the kernel's, already contained.
        score = self.score(breach.agent_id)
        await self._escalate(breach.agent_id, score, why, to=Stage.SOFT_ISOLATION)

    # -- acting ------------------------------------------------------------------------

    async def _escalate(
        self, agent_id: str, score: float, cause: str, *, to: Stage | None = None
    ) -> None:
        agent = self._kernel.registry.agents.get(agent_id)
        if agent is None or agent.status in (AgentStatus.PAUSED, AgentStatus.KILLED):
            return  # paused by the Commander, or gone: theirs to judge
        target = self.policy.stage_for(score) if to is None else to
        if target.rank > agent.stage.rank and agent.stage.rank < Stage.ELIMINATION.rank:
            await self._move(agent, target, cause, score=score)

    async def _move(
        self, agent: AgentRecord, stage: Stage, cause: str, *, score: float | None = None
    ) -> None:
        score = self.score(agent.agent_id) if score is None else score
        order = cascade.stage_order(
            self._kernel.registry,
            agent.agent_id,
            stage,
            cause=cause,
            principal=PRINCIPAL,
            at=self._kernel.clock(),
            score=score if math.isfinite(score) else 0.0,
            evidence=self.danger.evidence(agent.agent_id),
        )
        await self._order(order.kind, order.body)
        if self._notifier is not None and stage.rank >= Stage.SOFT_ISOLATION.rank:
            await self._notifier.notify(order.body, self._kernel.wal.tail_seq())

    async def _ask_elimination(self, agent: AgentRecord) -> None:
        if (agent.agent_id, agent.stage_at) in self._asked:
            return
        self._asked.add((agent.agent_id, agent.stage_at))
        data_dir = self._kernel.config.data_dir
        where = cascade.rca_dir(data_dir, agent.agent_id)
        _keep_log_excerpt(self._kernel, agent.agent_id, where)
        order = cascade.elimination_request(
            self._kernel.registry,
            agent.agent_id,
            approval_id=f"el-{agent.agent_id}-{int(agent.stage_at * 1000) % 10**9}",
            cause=agent.stage_cause,
            score=agent.danger,
            evidence=agent.evidence,
            rca=str(where),
            principal=PRINCIPAL,
            at=self._kernel.clock(),
        )
        await self._order(order.kind, order.body)

    async def _order(self, kind: str, body: Mapping[str, Any]) -> int:
        seq = await self._order_path(kind, body)
        if self._refresh is not None:
            self._refresh()
        return seq


def notify_hook(
    notifier: CommanderNotifier | None,
) -> Callable[[str, str, Mapping[str, Any], int], Awaitable[None]] | None:
    """For the Service Manager: tell the Commander of the stages a Security Agent
    process logged (the notifier uses the kernel's adapters, so it stays beside it)."""
    if notifier is None:
        return None

    async def hook(service: str, kind: str, body: Mapping[str, Any], seq: int) -> None:
        if service != SERVICE or kind != "agent.stage":
            return
        if Stage(str(body.get("stage"))).rank >= Stage.SOFT_ISOLATION.rank:
            await notifier.notify(body, seq)

    return hook


def danger_from_log(records: Iterable[WalRecord], policy: CascadePolicy) -> danger.DangerBook:
    """The scores the Security Agent holds, folded from the log by any process (the
    console's ``maos agent list``): the same signals, the same releases."""
    book = danger.DangerBook(policy.weights, half_life_s=policy.half_life_s)
    for rec in records:
        if rec.kind in ("agent.stage", "agent.status"):
            if str(rec.body.get("principal")) != PRINCIPAL and _released(rec.body):
                book.forget(str(rec.body["agent_id"]))
            continue
        signal = danger.signal_of(rec)
        if signal is not None:
            book.add(signal)
    return book


def _released(body: Mapping[str, object]) -> bool:
    """A release: an agent resumed, or moved down the cascade."""
    if "stage" not in body:
        return body.get("status") == "active"
    stage, before = str(body["stage"]), str(body.get("from", Stage.NORMAL.value))
    ranked = {s.value: s.rank for s in Stage}
    return ranked.get(stage, 99) < ranked.get(before, 0)


def _keep_log_excerpt(kernel: Kernel | LogSource, agent_id: str, path: Path) -> None:
    """The agent's records and its conversation (LLM prompts and answers), written
    beside what the pod runtime keeps of its pod, for root-cause analysis."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    excerpt, conversation = [], []
    for rec in kernel.wal.read():
        body = rec.body
        if body.get("agent_id") != agent_id:
            continue
        line = {"seq": rec.seq, "ts": rec.ts, "kind": rec.kind, "body": dict(body)}
        excerpt.append(line)
        if str(body.get("op", "")).startswith("llm."):
            conversation.append(line)
    _write_lines(path / "log.jsonl", excerpt)
    _write_lines(path / "conversation.jsonl", conversation)


def _write_lines(path: Path, lines: Iterable[Mapping[str, object]]) -> None:
    text = "".join(json.dumps(line, default=str, sort_keys=True) + "\n" for line in lines)
    path.write_text(text)
