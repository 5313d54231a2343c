"""The kernel: one object that boots from a data directory and mediates every intent.

    submit(raw frame, agent id)
      -> Input Sanitizer (`intents.parse_intent`)      bad input: a deny, never a crash
      -> DSC pipeline (seven checks, first deny wins)  exception: DSC.INTERNAL deny
      -> Pending? park it in the log for the Commander (R7, R10)
      -> Commit Layer: prepared (durable) -> adapter -> committed | failed
      -> label the result, raise the agent's context label, answer

Every decision and every change of state is a WAL record first; the in-memory state is
a fold of the log (`Registry`, `ApprovalBook`, the revocation list, the budget ledger),
so a restart or a second process (the CLI) sees exactly what this one decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from maos.effects.a2a import A2aAdapter
from maos.effects.base import Adapter
from maos.effects.email import SmtpAdapter
from maos.effects.fs import FsAdapter
from maos.effects.http import HttpAdapter
from maos.kernel import cascade, deliberation, immune, orders, packets, refusals, trace
from maos.kernel.approvals import Approval, ApprovalStatus
from maos.kernel.commit import RESOLVED, CommitLayer
from maos.kernel.config import KernelConfig, SmtpConfig
from maos.kernel.dsc.base import AgentStatus, CheckInput
from maos.kernel.dsc.budget import Budget, BudgetLedger
from maos.kernel.dsc.capability import CapabilityCheck
from maos.kernel.dsc.locks import LockTable
from maos.kernel.dsc.pipeline import Pipeline, standard_pipeline
from maos.kernel.dsc.ratelimit import AgentRates, RateLimit, RateLimitCheck
from maos.kernel.errors import InputError, StateError
from maos.kernel.grants import derive, grants_body
from maos.kernel.intents import intent_to_wire, parse_intent
from maos.kernel.labels import Conf, Label
from maos.kernel.manifest import ToolManifest, parse_manifest
from maos.kernel.modes import Mode, ModeCheck, admit_agent
from maos.kernel.ops import OpSpec
from maos.kernel.provenance import ProvenanceRecorder
from maos.kernel.registry import COMMANDER, TaskRecord, check_id, check_principal
from maos.kernel.results import result_label
from maos.kernel.scope import Scope
from maos.kernel.services import ServiceDesk
from maos.kernel.sse import SSE_TIMEOUT, SemanticEvaluator, SseDeny, veto
from maos.kernel.tokens import Grant, TokenAuthority, check_grant_ops
from maos.kernel.types import Allow, Deny, EffectClass, Intent, Outcome, OutcomeStatus, Pending
from maos.kernel.view import KernelLock, LogView
from maos.kernel.walconfig import anchored_wal
from maos.kernel.watchdog import Watchdog

__all__ = ["DEFAULT_BUDGET", "Kernel", "KernelConfig", "SmtpConfig"]

"""Tool names become op names (``tool.<name>``), which the sanitizer keeps to [a-z_]."""

_SSE_EXEMPT = frozenset({EffectClass.READ, EffectClass.KERNEL})
"""Effect classes the SSE is not asked about: they change nothing outside the kernel."""

DEFAULT_BUDGET = Budget(tokens=200_000, api_calls=1_000, money_cents=0)
"""What an agent or task may spend when its principal names no budget: no money at all."""


class Kernel:
    """Ring 0. Construct with `Kernel.boot`; always `close()` (or use ``async with``)."""

    def __init__(
        self,
        config: KernelConfig,
        *,
        sse: SemanticEvaluator | None = None,
        fever_sse: SemanticEvaluator | None = None,
    ) -> None:
        self.config = config
        self.sse = sse
        """The Semantic Security Evaluator: may deny what the DSC let through, never more."""
        self.fever_sse = fever_sse
        """Asked about Ring 3 agents' effects during Security Fever when ``sse`` is not set
        (the seed: in fever "all Ring 3 agents receive SSE evaluation")."""
        self.sse_timeout = SSE_TIMEOUT
        self.clock = config.clock
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.workspaces.mkdir(parents=True, exist_ok=True)
        self.lock = KernelLock(config.data_dir)
        self.lock.acquire()
        self.trace = trace.Tracing.start(config.telemetry, node_id=config.node_id)
        self.wal = anchored_wal(config)
        self.tokens = TokenAuthority(config.data_dir / "keys", config.node_id, config.node_type)
        self.packets = packets.PacketSigner(config.data_dir / "keys")
        self.view = LogView(self.wal)
        self.registry = self.view.registry
        self.approvals = self.view.approvals
        self.provenance = ProvenanceRecorder(self.view.provenance, self.registry, self._log)
        self.ledger = BudgetLedger()
        self.locks = LockTable()
        self.rates = RateLimitCheck()
        self.pipeline: Pipeline = standard_pipeline(
            CapabilityCheck(self.tokens),
            ratelimit=self.rates,
            ledger=self.ledger,
            locks=self.locks,
            protected=(str(config.data_dir), config.wal_path.name),
            ops=self.registry.ops,
            aggregate=self.view.aggregate,
            memory=self.view.memory,
            modes=ModeCheck(self.registry.ops, config.resilience.critical_ops),
        )
        self.scope = Scope(self.view.scope, self.registry, self._log, self.pipeline, self.ledger)
        adapters: dict[str, Adapter] = {
            "fs": FsAdapter(config.workspaces),
            "http": HttpAdapter(),
            "a2a": A2aAdapter(),
        }
        if config.smtp is not None:
            adapters["email"] = SmtpAdapter(config.smtp.host, config.smtp.port, config.smtp.sender)
        self.commit = CommitLayer(self.wal, adapters)
        self.watchdog = Watchdog(self.registry, self.clock, self._log, config.resilience)
        self.services = ServiceDesk(self._log)
        """Ring 1 writes: each record a service logs is checked here (`kernel.services`)."""
        self._workspaces = str(config.workspaces)
        self._executed: dict[str, Outcome] = {}
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}
        self._running: dict[str, asyncio.Task[Outcome]] = {}
        self._follower: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def boot(
        cls,
        config: KernelConfig,
        *,
        follow: bool = True,
        sse: SemanticEvaluator | None = None,
        fever_sse: SemanticEvaluator | None = None,
        adapters: Mapping[str, Adapter] | None = None,
        prepare: Callable[[Kernel], Awaitable[None]] | None = None,
    ) -> Kernel:
        """Replay the log, recover interrupted effects, run approved intents, then serve.

        ``adapters`` (the LLM gateway, the tool host) are installed before recovery and
        before approved intents run, so an approved completion or tool call made before
        a restart finds who performs it. ``prepare`` runs at the same point with the log
        folded, for adapters that depend on what it holds (the hosts of parked tools)."""
        kernel = cls(config, sse=sse, fever_sse=fever_sse)
        try:
            checked = kernel.wal.check_head()  # refuses a truncated or rewritten log
        except BaseException:
            await kernel.close()
            raise
        for family, adapter in (adapters or {}).items():
            kernel.add_adapter(family, adapter)
        kernel._catch_up()
        if prepare is not None:
            try:
                await prepare(kernel)
            except BaseException:
                await kernel.close()
                raise
        await kernel.commit.recover()
        await kernel.wal.append(
            "kernel.boot", {"node_id": config.node_id, "wal": checked.summary()}
        )
        for item in kernel.approvals.awaiting_execution():
            await kernel._execute_approved(item)
        if follow:
            kernel._follower = asyncio.create_task(kernel._follow())
        return kernel

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        self.wal.close()
        self.trace.shutdown()  # flushes the spans batched for the collector
        self.lock.release()

    async def __aenter__(self) -> Kernel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _catch_up(self) -> list[Approval]:
        """Fold records written since the last look, by this process or another."""
        folded = self.view.catch_up()
        for rec in folded.records:
            if rec.kind == "agent.registered":
                rate = RateLimit(float(rec.body["rate_per_s"]), float(rec.body["burst"]))
                self.rates.configure(rec.body["agent_id"], AgentRates(overall=rate))
                budget = _budget(rec.body["budgets"])
                self.ledger.set_limits(budget, agent_id=rec.body["agent_id"])
            elif rec.kind == "task.opened":
                self.ledger.set_limits(_budget(rec.body["budgets"]), task_id=rec.body["task_id"])
        self.tokens.revocations.add(folded.revoked)
        for charge in folded.charges:
            self.ledger.charge(charge.agent_id, charge.task_id, charge.cost)
        approved = []
        for item in folded.decided:
            if item.status is ApprovalStatus.APPROVED:
                approved.append(item)
            else:
                self._finish(item.approval_id, item.refusal())
        return approved

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.config.follow_interval)
            due = [a.approval_id for a in self.approvals.due(self.clock())]
            await self.settle_approvals(due, reason="time ran out", principal="kernel")
            await self.watchdog.sweep()
            self._catch_up()  # whatever logged last may have folded a decision: ask the book
            for item in self.approvals.awaiting_execution():
                await self._execute_approved(item)

    async def _log(self, kind: str, body: Mapping[str, Any], **keys: str | None) -> int:
        rec = await self.wal.append(kind, body, **keys)
        self._catch_up()
        return rec.seq

    async def _order(self, order: orders.Order) -> None:
        await self._log(order.kind, order.body)

    # -- the Commander's operations (each one a log record first) ------------------------

    async def register_agent(
        self,
        agent_id: str,
        *,
        ring: int,
        rate_per_s: float = 50.0,
        burst: int = 100,
        budgets: Mapping[str, int] | None = None,
        principal: str = COMMANDER,
    ) -> None:
        """Admit an agent at a ring with its rate limits and budgets (R11: none means deny).

        Registering a known agent again changes its limits and may demote it, never more:
        its status (a quarantine) and its context label stay, and promotion needs the
        onboarding this method is not (R5).
        """
        check_principal(principal, self.registry)
        check_id("agent", agent_id)
        if ring not in (2, 3):
            raise InputError("BAD_INPUT.RING", "agents run in ring 2 (verified) or 3 (untrusted)")
        known = self.registry.agents.get(agent_id)
        admit_agent(self.registry.mode, agent_id, known is not None)
        if known is not None and ring < known.ring:
            raise StateError(
                "STATE.PROMOTION_NEEDS_ONBOARDING",
                f"{agent_id} runs in ring {known.ring}; moving inward needs onboarding (R5)",
            )
        await self._log(
            "agent.registered",
            {
                "agent_id": agent_id,
                "ring": ring,
                "rate_per_s": rate_per_s,
                "burst": burst,
                "budgets": dict(budgets or {}),
                "principal": principal,
            },
        )

    async def open_task(
        self,
        task_id: str,
        *,
        trusted_targets: Sequence[str] = (),
        budgets: Mapping[str, int] | None = None,
        label_rules: Sequence[Mapping[str, str]] = (),
        effect_classes: Sequence[EffectClass] | None = None,
        trusted_amounts: Sequence[int] = (),
        request: str | None = None,
        principal: str = COMMANDER,
    ) -> TaskRecord:
        """Open a task with its workspace, the targets its principal names, and budgets.

        ``effect_classes`` are the kinds of change the task may make at all (grants by
        effect class): an injected "delete that file" is refused in a task that never
        asked for deletion, whatever a token says. None leaves it to the tokens, and
        high-impact classes then always ask the Commander (R7). ``trusted_amounts`` are
        the sums (cents) the principal named: an agent that read untrusted content may
        pay only those, when there are any (R10). ``request``: the Commander's words; what
        they ask for within ``effect_classes`` is the grant (`maos.kernel.grants`)."""
        check_principal(principal, self.registry)
        check_id("task", task_id)
        derived = None if request is None else derive(request)
        ceiling = effect_classes
        if derived is not None:
            trusted_targets = [*trusted_targets, *(t.value for t in derived.targets)]
            trusted_amounts = [*trusted_amounts, *derived.amounts]
            effect_classes = sorted(derived.within(ceiling))
        workspace = self.config.workspaces / task_id
        workspace.mkdir(parents=True, exist_ok=True)
        await self._log(
            "task.opened",
            {
                "task_id": task_id,
                "workspace": task_id,
                "trusted_targets": sorted(trusted_targets),
                "budgets": dict(budgets or {}),
                "label_rules": [dict(r) for r in label_rules],
                "effect_classes": None
                if effect_classes is None
                else sorted(EffectClass(c).value for c in effect_classes),
                "trusted_amounts": sorted({int(c) for c in trusted_amounts}),
                "principal": principal,
            },
        )
        if derived is not None and request is not None:
            await self._log(
                "task.grants", grants_body(task_id, request, derived, ceiling, principal)
            )
        return self.registry.task(task_id)

    async def register_tool(
        self,
        name: str,
        *,
        effect_classes: Sequence[EffectClass | str] | str,
        targets: Mapping[str, Any],
        result_label: Label,
        accepts: Conf | None = None,
        external: bool | None = None,
        amount: str | Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
        timeout_s: float = 30.0,
        module: str | None = None,
        module_sha256: str | None = None,
        principal: str = COMMANDER,
    ) -> ToolManifest:
        """Catalogue a user-declared tool as op ``tool.<name>`` (its host runs it, never
        this process). The manifest is validated by `parse_manifest` - the one validator,
        ``TOOL.BAD_MANIFEST`` naming the field - and logged in its normalised form; the
        Commander registers it, the tool's own code has no say once it is registered."""
        check_principal(principal, self.registry)
        manifest = parse_manifest(
            {
                "name": name,
                "description": description,
                "parameters": dict(parameters or {"type": "object", "properties": {}}),
                "effect_classes": [str(c) for c in effect_classes]
                if not isinstance(effect_classes, str)
                else effect_classes,
                "targets": dict(targets),
                "amount": amount,
                "result_label": {
                    "conf": result_label.conf.name.lower(),
                    "integrity": result_label.integrity.name.lower(),
                },
                "accepts": None if accepts is None else accepts.name.lower(),
                "external": external,
                "timeout_s": timeout_s,
            }
        )
        extras = {"module": module, "module_sha256": module_sha256, "principal": principal}
        digest = {"manifest_sha256": manifest.manifest_sha256}
        await self._log("tool.registered", {**manifest.record(), **extras, **digest})
        return manifest

    async def hand_over(
        self, agent_id: str, task_id: str, value: object, label: Label, *, source: str
    ) -> None:
        """A Ring 1 service gives an agent a value the kernel did not produce (a plan
        step's input): the agent's context takes its label, and identifiers in it are
        recorded with that label, as for any result (provenance)."""
        task = self.registry.task(task_id)
        await self.provenance.note(
            task, agent_id, label, value, own=(), intent_id=None, source=source
        )
        await self.raise_context(agent_id, label)
        await self._log(
            "agent.handed",
            {"agent_id": agent_id, "task_id": task_id, "source": source, "label": label.to_dict()},
        )

    def mint(
        self, agent_id: str, task_id: str, grants: Sequence[Grant], *, ttl: float | None = None
    ) -> str:
        """A token for one agent on one task (known ops only); least privilege is the caller's."""
        self.registry.agent(agent_id)
        self.registry.task(task_id)
        check_grant_ops(grants, self.registry.ops)
        return self.tokens.mint(
            agent_id=agent_id, task_id=task_id, grants=grants, now=self.clock(), ttl=ttl
        )

    async def revoke(self, token: str, *, principal: str = COMMANDER) -> tuple[str, ...]:
        check_principal(principal, self.registry)
        ids = self.tokens.revoke(token)
        await self._order(orders.revocation(self.registry, ids, principal))
        return ids

    async def revoke_ids(self, ids: Sequence[str], *, principal: str = COMMANDER) -> int:
        """Revoke by revocation ids: a revocation from another node, whose tokens this one
        may be unable to verify (docs/federation.md). Returns the revocation epoch."""
        check_principal(principal, self.registry)
        epoch = self.tokens.revocations.add(ids)
        await self._order(orders.revocation(self.registry, ids, principal))
        return epoch

    async def set_agent_status(
        self, agent_id: str, status: AgentStatus, *, principal: str = COMMANDER
    ) -> None:
        """Pause, quarantine or kill an agent (R8); nothing an agent does can prevent it."""
        await self._order(orders.agent_status(self.registry, agent_id, status, principal))

    async def cascade(self, order: orders.Order) -> None:
        """Log an order built and checked elsewhere (`maos.kernel.cascade`, `immune`, HACF)."""
        await self._order(order)

    async def set_safe_state(self, on: bool, *, reason: str, principal: str = COMMANDER) -> None:
        """Enter or leave Minimal Safe State (R8, seed: "all agents paused, kernel + WAL
        only"): every intent but apoptosis is refused and pod runtimes stop their pods;
        leaving it restores what each agent was, since no agent's own status changed."""
        await self._order(orders.safe_state(self.registry, on, reason, principal))
        if on:  # nothing parked before an incident may run after it (issue 9)
            waiting = [a.approval_id for a in self.approvals.pending()]
            await self.settle_approvals(
                waiting, reason=f"Minimal Safe State: {reason}", principal=principal
            )

    async def demand_mode(self, source: str, mode: Mode, *, cause: str, principal: str) -> None:
        """Log ``source``'s demand for a degradation mode (`maos.kernel.modes`)."""
        await self._order(orders.mode(self.registry, source, mode, cause, principal))

    def mode(self) -> Mode:
        return self.registry.mode

    async def settle_approvals(
        self, ids: Sequence[str], *, reason: str, principal: str, keep_until: float | None = None
    ) -> list[Approval]:
        """Expire the approvals ``ids`` that still wait, or keep them until ``keep_until``."""
        if order := orders.settlement(self.approvals, ids, keep_until, reason, principal):
            await self._order(order)
        return [self.approvals.get(aid) for aid in ids]

    async def declassify(
        self, task_id: str, to: Conf, *, reason: str, principal: str = COMMANDER
    ) -> None:
        """Let the task release its data down to ``to``; logged with who and why (R6)."""
        await self._order(orders.declassify(self.registry, task_id, to, reason, principal))

    async def resolve_in_doubt(
        self, idem_key: str, *, happened: bool, principal: str = COMMANDER
    ) -> None:
        """The Commander's verdict on an effect recovery could not settle (a mail whose
        server never answered): it happened, or it did not; its key answers so from now."""
        check_principal(principal, self.registry)
        body, intent_id = self.commit.verdict(idem_key, happened=happened, principal=principal)
        await self.wal.append(RESOLVED, body, intent_id=intent_id, idem_key=idem_key)
        self._catch_up()

    def packet(self, approval_id: str) -> packets.DecisionPacket:
        """The signed decision packet of an approval, built from the kernel's state now."""
        return self.packets.build(self.approvals.get(approval_id), self.registry)

    async def approve(
        self, approval_id: str, packet: str | None, *, principal: str = COMMANDER
    ) -> Outcome:
        """Approve the parked intent whose decision packet has digest ``packet``; it is
        re-checked and runs once (R7/R10 satisfied) while that packet still holds."""
        await self._decide(approval_id, principal, approve=True, packet=packet)
        return await self._execute_approved(self.approvals.get(approval_id))

    async def deny(
        self, approval_id: str, *, principal: str = COMMANDER, note: str = ""
    ) -> Outcome:
        await self._decide(approval_id, principal, approve=False, note=note)
        return self._executed[approval_id]

    async def _decide(self, aid: str, who: str, **choice: Any) -> None:
        now = self.clock()  # logged with the decision: one made after an expiry never runs
        book = (self.registry, self.approvals, aid)
        await self._order(orders.decision(*book, principal=who, now=now, **choice))

    async def wait(self, approval_id: str) -> Outcome:
        """What an agent awaits after a pending answer: the outcome once a human decided."""
        item = self.approvals.get(approval_id)
        if approval_id in self._executed:
            return self._executed[approval_id]
        if item.outcome is not None:  # carried out before this kernel booted
            return Outcome.from_dict(item.outcome)
        fut = self._waiters.setdefault(approval_id, asyncio.get_running_loop().create_future())
        return await asyncio.shield(fut)

    def _finish(self, approval_id: str, outcome: Outcome) -> Outcome:
        self._executed.setdefault(approval_id, outcome)
        fut = self._waiters.pop(approval_id, None)
        if fut is not None and not fut.done():
            fut.set_result(self._executed[approval_id])
        return self._executed[approval_id]

    async def _execute_approved(self, item: Approval) -> Outcome:
        """Run an approved intent once, however many paths (its caller, the follower) ask."""
        if item.approval_id in self._executed:
            return self._executed[item.approval_id]
        if (running := self._running.get(item.approval_id)) is None:
            running = self._running[item.approval_id] = asyncio.ensure_future(self._carry_out(item))
            running.add_done_callback(lambda _: self._running.pop(item.approval_id, None))
        return await running

    async def _carry_out(self, item: Approval) -> Outcome:
        if item.status is not ApprovalStatus.APPROVED:  # expired on the way: never runs
            return self._finish(item.approval_id, item.refusal())
        if (stale := packets.stale(item, self.registry)) is not None:
            outcome = stale  # its packet no longer holds: logged as what came of it, never run
        elif cascade.is_elimination(item.intent):  # an order the Commander approved (R8)
            outcome = self._finish(item.approval_id, cascade.eliminated(item))  # once: no await yet
            await self._order(cascade.elimination_order(self.registry, item, self.clock()))
        else:
            wire = dict(item.intent)
            intent = parse_intent(wire, agent_id=item.agent_id, intent_id=wire["intent_id"])
            outcome = await self._decide_and_run(intent, approved=True)
            outcome = replace(outcome, approval_id=item.approval_id)
        await self._log(
            "approval.executed", {"approval_id": item.approval_id, "outcome": outcome.to_dict()}
        )
        return self._finish(item.approval_id, outcome)

    async def execute_refused(self, wire: Mapping[str, Any], code: str) -> Outcome:
        """Run a refused intent once with ``code`` waived, under a confirmed override."""
        return await refusals.execute(self, wire, code, self._decide_and_run)

    # -- the path of every intent ----------------------------------------------------------

    async def submit(self, raw: object, *, agent_id: str) -> Outcome:
        """Mediate one intent from an authenticated agent; never raises for bad input."""
        intent_id = os.urandom(16).hex()
        try:
            intent = parse_intent(raw, agent_id=agent_id, intent_id=intent_id)
        except InputError as exc:
            refused = self._refuse(intent_id, agent_id, exc.code, exc.message, op="?")
            return await self.trace.intent(refused, None, agent_id=agent_id, approved=False)
        return await self._decide_and_run(intent, approved=False)

    async def _decide_and_run(self, intent: Intent, *, approved: bool) -> Outcome:
        run = self._decide_run(intent, approved)  # traced and observed (kernel/trace.py)
        return await self.trace.intent(run, intent, agent_id=intent.agent_id, approved=approved)

    async def _decide_run(self, intent: Intent, approved: bool) -> Outcome:
        try:
            agent = self.registry.agent(intent.agent_id)
            task = self.registry.task(intent.task_id)
        except StateError as exc:
            return await self._deny(intent, exc.code, exc.message)
        inp = CheckInput(
            intent=intent,
            agent=agent.view(),
            task=task.view(self._workspaces),
            now=self.clock(),
            node_id=self.config.node_id,
            context=agent.context,
            approved=approved,
            safe_state=self.registry.safe_state is not None,
            mode=self.registry.mode,
            fever=self.registry.fever,
        )
        decision = await self.scope.review(inp, self.pipeline.decide(inp))
        try:
            if isinstance(decision, Deny) or (isinstance(decision, Pending) and approved):
                return await self._deny(intent, decision.code, decision.reason, waivable=True)
            sse = self.sse
            if sse is None and (agent.observed or (agent.ring == 3 and inp.fever)):
                sse = self.fever_sse
            veto = await self._sse_veto(sse, intent, agent.context)  # after Allow or Pending
            if veto is not None:
                return await self._deny(intent, veto.code, veto.reason)
            if isinstance(decision, Pending):
                return await self._park(intent, decision)
            assert isinstance(decision, Allow)
            return await self._run(intent, task)
        finally:
            # Spending is booked when the committed record is folded from the log, so
            # the check's reservation is only ever released here, never spent twice.
            self.ledger.settle(intent.intent_id, committed=False)

    async def _sse_veto(
        self, sse: SemanticEvaluator | None, intent: Intent, context: Label
    ) -> SseDeny | None:
        """Ask ``sse`` about an effect the DSC let through; any failure of it is a deny."""
        spec = self._spec(intent.op)
        if sse is None or spec is None or spec.effect_class in _SSE_EXEMPT:
            return None
        return await veto(sse, intent, context, self.sse_timeout)

    async def _deny(
        self, intent: Intent, code: str, reason: str, waivable: bool = False
    ) -> Outcome:
        """Refuse a parsed intent with its task (so `--task` finds it) and, for a check's
        refusal an override may waive, the intent itself (`kernel.refusals`)."""
        kept = refusals.recorded(intent, code) if waivable else {}
        extra = {"task_id": intent.task_id, **kept}
        return await self._refuse(intent.intent_id, intent.agent_id, code, reason, intent.op, extra)

    async def _refuse(
        self,
        intent_id: str,
        agent_id: str,
        code: str,
        reason: str,
        op: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        body = {"intent_id": intent_id, "agent_id": agent_id, "op": op, **(extra or {})}
        seq = await self._log(
            "intent.denied", body | {"code": code, "reason": reason}, intent_id=intent_id
        )
        return Outcome(intent_id, OutcomeStatus.DENIED, code=code, reason=reason, wal_seq=seq)

    async def _park(self, intent: Intent, decision: Pending) -> Outcome:
        approval_id = "ap-" + uuid.uuid4().hex[:12]
        details = {**decision.details, "op": intent.op, "targets": list(intent.targets)}
        details["history"] = packets.history(self.wal, intent.agent_id)
        flagged = decision.details.get("targets")
        if flagged:
            details["first_seen"] = self.provenance.first_seen(
                intent, self._spec(intent.op), [str(t) for t in flagged]
            )
        seq = await self._log(
            "approval.pending",
            {
                "approval_id": approval_id,
                "agent_id": intent.agent_id,
                "task_id": intent.task_id,
                "rule": decision.rule,
                "code": decision.code,
                "reason": decision.reason,
                "intent": intent_to_wire(intent),
                "details": details,
                "created_at": self.clock(),
            },
            intent_id=intent.intent_id,
        )
        return Outcome(
            intent.intent_id,
            OutcomeStatus.PENDING,
            code=decision.code,
            reason=decision.reason,
            approval_id=approval_id,
            wal_seq=seq,
        )

    async def _run(self, intent: Intent, task: TaskRecord) -> Outcome:
        spec = self._spec(intent.op)
        key = f"{intent.agent_id}/{intent.idempotency_key}"  # one agent cannot replay another's
        if intent.op == "admin.apoptosis":
            await self._log(
                "agent.status",
                {
                    "agent_id": intent.agent_id,
                    "status": AgentStatus.KILLED.value,
                    "principal": f"agent:{intent.agent_id}",
                    "reason": "apoptosis (R9)",
                },
            )
            return Outcome(intent.intent_id, OutcomeStatus.COMMITTED, value={"terminated": True})
        if intent.op in deliberation.OPS:  # the agent's side of Deliberate (docs/hacf.md)
            return await deliberation.serve(self, intent, self._log, self._refuse)
        if intent.op == "admin.heartbeat":
            return Outcome(intent.intent_id, OutcomeStatus.COMMITTED, value={"now": self.clock()})
        if intent.op in ("lock.acquire", "lock.release"):
            return await self._lock(intent)
        target = intent.target
        if spec is not None and spec.target_kind == "path" and not target.startswith("/"):
            target = f"{task.workspace}/{target}"  # absolute paths reach the adapter and fail
        routed = replace(intent, target=target, idempotency_key=key)
        outcome = await self.commit.run(routed, constraints=self._constraints(intent))
        self._catch_up()
        if outcome.status is not OutcomeStatus.COMMITTED:
            return outcome
        if spec is not None and spec.effect_class.value in ("write", "delete"):
            self.locks.bump(intent.target)
        if intent.op == "fs.write":
            await self._label_file(intent, task)
        if intent.cost.money_cents:
            paid = {"task_id": task.task_id, "target": intent.target}
            await self._log("task.paid", {**paid, "amount_cents": intent.cost.money_cents})
        label = result_label(self.registry, intent, task)
        threat = self.view.memory.in_result(outcome.value)
        if threat is not None:  # a learned injection: the agent never sees it (issue 12)
            match = immune.match_body(threat, intent, where="result")
            return immune.withheld(intent, threat, await self._log("memory.match", match))
        await self.provenance.record(intent, task, label, outcome.value, (target,))
        await self.scope.note_result(intent, task, label, outcome.value)
        await self.raise_context(intent.agent_id, label)
        return replace(outcome, label=label)

    async def _lock(self, intent: Intent) -> Outcome:
        lease = float(intent.params.get("lease_s", 30.0))
        if intent.op == "lock.acquire":
            ok = self.locks.acquire(intent.target, intent.agent_id, lease, self.clock())
        else:
            self.locks.release(intent.target, intent.agent_id)
            ok = True
        if not ok:
            return await self._deny(
                intent, "DSC.LOCK.HELD", f"{intent.target} is locked by another agent"
            )
        seq = await self._log(
            "lock.acquired" if intent.op == "lock.acquire" else "lock.released",
            {"resource": intent.target, "owner": intent.agent_id, "lease_s": lease},
            intent_id=intent.intent_id,
        )
        return Outcome(
            intent.intent_id,
            OutcomeStatus.COMMITTED,
            value={"locked": intent.op == "lock.acquire"},
            wal_seq=seq,
        )

    def _constraints(self, intent: Intent) -> dict[str, Any]:
        """Adapter limits derived from the capability: HTTP (and A2A) may reach only the
        hosts its grants of that family name."""
        family = intent.op.split(".")[0]
        if family not in ("http", "a2a"):
            return {}
        info = self.tokens.inspect(intent.token)
        hosts = sorted(
            {
                urlsplit(g.resource.rstrip("*")).netloc
                for g in info.grants
                if g.op in (intent.op, f"{family}.*") and "://" in g.resource
            }
        )
        return {"allowed_hosts": hosts}

    async def _label_file(self, intent: Intent, task: TaskRecord) -> None:
        """Remember what the writer held: the file reads back at least that (IFC)."""
        context = self.registry.agent(intent.agent_id).context
        current = task.label_for_path(intent.target)
        if current.join(context) != current:
            await self._log(
                "fs.labelled",
                {"task_id": task.task_id, "path": intent.target, "label": context.to_dict()},
                intent_id=intent.intent_id,
            )

    def _spec(self, op: str) -> OpSpec | None:
        return self.registry.ops.get(op)

    def add_adapter(self, family: str, adapter: Adapter) -> None:
        """Serve ``<family>.*`` ops with ``adapter`` (a Ring 1 service: the message router)."""
        self.commit.add_adapter(family, adapter)

    async def raise_context(self, agent_id: str, label: Label) -> None:
        """Join ``label`` into what the agent has seen; logged only when the label moves.

        The kernel does this for every result it hands out; a service that hands an agent
        a value the kernel did not produce (a message from another agent) must do it too.
        """
        current = self.registry.agent(agent_id).context
        joined = current.join(label)
        if joined != current:
            await self._log("agent.context", {"agent_id": agent_id, "label": joined.to_dict()})

    # -- what the Commander looks at ------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.config.node_id,
            "data_dir": str(self.config.data_dir),
            "wal_records": self.wal.tail_seq(),
            "agents": self.registry.agents_report(),
            "tasks": sorted(self.registry.tasks),
            "pending_approvals": [a.to_dict() for a in self.approvals.pending()],
            "in_doubt": [d.to_dict() for d in self.commit.in_doubt()],
            "revocation_epoch": self.tokens.revocations.epoch,
            "safe_state": self.registry.safe_state,
            "mode": self.registry.mode.value,
            "fever": self.registry.fever_report(),
        }


def _budget(raw: Mapping[str, int]) -> Budget:
    """Limits as logged; what a plan leaves out falls back to a modest default, never to none."""
    return Budget(
        tokens=int(raw.get("tokens", DEFAULT_BUDGET.tokens)),
        api_calls=int(raw.get("api_calls", DEFAULT_BUDGET.api_calls)),
        money_cents=int(raw.get("money_cents", DEFAULT_BUDGET.money_cents)),
    )
