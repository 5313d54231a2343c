"""The Task Orchestrator (Ring 1, a Bone cell: no LLM): runs a plan's steps as agents in pods.

    run(plan)
      open the task   trusted targets = the plan's list + identifiers in the prompt,
                      trusted amounts = the sums the prompt names,
                      effect classes = the plan's ``effects`` (grants by effect class),
                      and its ``declassify``, if any (logged, R6)
      register agents with the plan's budgets (known agents keep their ring: no
                      promotion without onboarding, R5)
      plan.started    {task_id, plan, trusted_targets}
      DAG order, independent steps concurrently; per step and attempt:
        hand the agent its inputs (kernel.hand_over: context label and provenance)
        mint a token with ONLY the step's grants (least privilege; plus the registered
          tools the step names, and llm.complete for the Cognitive Cell), start the pod
          with MAOS_MISSION, MAOS_PROMPT, MAOS_STEP, MAOS_TOOLS,
          MAOS_INPUTS {step: {value, label}}
        wait (timeout_s), revoke the token (once the calls it parked are decided)
        plan.step.done {status, value, label} | plan.step.failed {code, final, ...}
      plan.done       {status, code?, step?}
      approvals still waiting in the task: a done plan keeps them for the Commander
                      until ``keep_approvals_s`` from now (approval.kept, the time shown
                      by `maos run`, `maos approvals list` and the dashboard); a failed
                      or stopped plan expires them (approval.expired: the denial
                      APPROVAL.EXPIRED, they never run)

Progress lives only in those WAL records: `resume(task_id)` folds them and runs the steps
not done, after a kernel restart or in another process. A step's value is what its
agent printed last as ``MAOS_RESULT <json>``; its label is never the agent's say but the
agent's context label once the step ended (the join of all the kernel handed it), so a
value cannot shed the label of what it was made from.

Codes (as `StepFailure.code` / `PlanResult.code`, and errors raised before anything runs):
    PLAN.STEP.EXIT       the agent exited non-zero (``cause``: its last denial's code, if any)
    PLAN.STEP.TIMEOUT    an attempt outlived ``timeout_s``; its pod was killed
    PLAN.STEP.STOPPED    the pod ended for the runtime (quarantine, the Commander, R8)
    PLAN.STEP.NO_MODEL   the step's agent is the Cognitive Cell and no model is configured or
                         reachable (said before the step starts, with what to set)
    PLAN.STEP.START      the pod could not start (``cause``: the runtime's code, or
                         TOKEN.UNKNOWN_OP for a grant of an op that does not exist)
    PLAN.ALREADY_STARTED `run` on a task that has a plan (use `resume`)
    PLAN.NOT_STARTED     `resume` of a task without a plan
    STATE.TASK_OPEN / STATE.RING_MISMATCH   the kernel already knows the task / the agent

The runtime comes in as a factory (`PodFactory`) from above: services do not import the
pod package (an import contract); `maos.pod.runtime.PodRuntime` fits `PodStarter`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from maos.agents import script
from maos.kernel.approvals import Approval
from maos.kernel.errors import MaosError, StateError
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Conf, Label
from maos.kernel.registry import COMMANDER
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass
from maos.services.plan import Plan
from maos.services.targets import extract_amounts, target_values

__all__ = [
    "RESULT_PREFIX",
    "Orchestrator",
    "PlanResult",
    "PodFactory",
    "PodStarter",
    "StepEvent",
    "StepFailure",
    "StepValue",
]

COGNITIVE_CELL = script("cell")
"""The built-in tool-calling LLM agent (``script: cell`` in a plan)."""
RESULT_PREFIX = "MAOS_RESULT "
"""An agent reports its step's value as one output line: this prefix, then JSON."""
MAX_VALUE_BYTES = 64 * 1024
"""A value larger than this (as JSON) fails its step: values travel in the environment."""
KEEP_APPROVALS_S = 24 * 3600.0
"""How long a done plan's undecided approvals wait for the Commander before they expire."""


class PodExit(Protocol):
    @property
    def exit_code(self) -> int: ...
    @property
    def reason(self) -> str: ...


class PodRun(Protocol):
    async def wait(self) -> PodExit: ...
    def log(self) -> str: ...
    def stop(self, reason: str) -> None: ...


class PodStarter(Protocol):
    """What the Orchestrator needs of a pod runtime (`PodRuntime.start` fits)."""

    async def start(
        self,
        agent_id: str,
        script: Path,
        *,
        task_id: str,
        token: str,
        env: Mapping[str, str] | None = None,
    ) -> PodRun: ...


PodFactory = Callable[[int | None], PodStarter]
"""The runtime for a pod isolation level (None: the ring's default)."""
ModelCheck = Callable[[], Awaitable[str | None]]
"""Why no model can serve a step now (what to configure), or None when one can."""


@dataclass(frozen=True, slots=True)
class StepValue:
    """A done step: what its agent reported and the label the kernel gives it."""

    step: str
    value: Any
    label: Label


@dataclass(frozen=True, slots=True)
class StepFailure:
    step: str
    code: str
    reason: str
    cause: str = ""
    """The code behind the failure when known: the agent's last denial, the runtime's error."""


@dataclass(frozen=True, slots=True)
class StepEvent:
    """For consoles: ``started``, ``done``, ``retry``, ``failed`` of one step."""

    step: str
    kind: str
    agent_id: str = ""
    attempt: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PlanResult:
    task_id: str
    status: str
    """``done`` or ``failed``."""
    done: Mapping[str, StepValue] = field(default_factory=dict)
    failure: StepFailure | None = None
    approvals: tuple[Approval, ...] = ()
    """The approvals still undecided when the plan ended, as settled then: kept until
    their ``expires_at`` (a done plan) or expired (a failed one)."""

    @property
    def waiting(self) -> tuple[Approval, ...]:
        """The kept ones: decisions the Commander still has to make."""
        return tuple(a for a in self.approvals if a.status.value == "pending")

    @property
    def code(self) -> str | None:
        return None if self.failure is None else self.failure.code


@dataclass
class _Progress:
    """A task's plan progress folded from ``plan.*`` records."""

    plan: Plan | None = None
    done: dict[str, StepValue] = field(default_factory=dict)
    finished: PlanResult | None = None


class Orchestrator:
    """Runs plans on one kernel. ``principal`` is the Commander the plan is authored by."""

    def __init__(
        self,
        kernel: Kernel,
        pods: PodFactory,
        *,
        principal: str = COMMANDER,
        on_event: Callable[[StepEvent], None] | None = None,
        keep_approvals_s: float = KEEP_APPROVALS_S,
        model_check: ModelCheck | None = None,
    ) -> None:
        self.kernel = kernel
        self.model_check = model_check
        """Asked before each attempt of a Cognitive Cell step: a cell without a model
        would only wait out its pauses and exit (LLM_DOWN), saying nothing for minutes."""
        self.keep_approvals_s = keep_approvals_s
        self.pods = pods
        self.principal = principal
        self._on_event = on_event
        self._deferred: set[asyncio.Task[None]] = set()
        """Revocations waiting for the Commander's decisions (`_retire`)."""

    async def run(self, plan: Plan) -> PlanResult:
        """Open the plan's task, admit its agents and run every step to the plan's end."""
        if self._fold(plan.task).plan is not None:
            raise StateError(
                "PLAN.ALREADY_STARTED",
                f"task {plan.task} already has a plan; resume it instead",
                task_id=plan.task,
            )
        if plan.task in self.kernel.registry.tasks:
            raise StateError("STATE.TASK_OPEN", f"task {plan.task} is already open")
        for agent_id, spec in plan.agents.items():
            known = self.kernel.registry.agents.get(agent_id)
            if known is not None and known.ring != spec.ring:
                raise StateError(
                    "STATE.RING_MISMATCH",
                    f"{agent_id} is registered at ring {known.ring}; rings change only "
                    "through onboarding (R5)",
                )
        extracted = target_values(plan.prompt)
        trusted = sorted({*plan.trusted_targets, *extracted})
        budgets = plan.budgets.as_limits()
        for agent_id, spec in plan.agents.items():
            known = self.kernel.registry.agents.get(agent_id)
            if known is None or budgets:
                # The plan's budgets bound each of its agents too (a plan that may pay
                # gives its agents the means); registering again keeps status and context.
                await self.kernel.register_agent(
                    agent_id, ring=spec.ring, budgets=budgets, principal=self.principal
                )
        classes = plan.effect_classes()
        await self.kernel.open_task(
            plan.task,
            trusted_targets=trusted,
            budgets=budgets,
            label_rules=[r.model_dump() for r in plan.label_rules],
            effect_classes=None if classes is None else [EffectClass(c) for c in classes],
            trusted_amounts=extract_amounts(plan.prompt),
            principal=self.principal,
        )
        if plan.declassify is not None:
            await self.kernel.declassify(
                plan.task,
                Conf[plan.declassify.to.upper()],
                reason=plan.declassify.reason,
                principal=self.principal,
            )
        await self.kernel.wal.append(
            "plan.started",
            {
                "task_id": plan.task,
                "plan": plan.model_dump(mode="json"),
                "trusted_targets": trusted,
                "from_prompt": extracted,
                "principal": self.principal,
            },
        )
        return await self._execute(plan, {})

    async def resume(self, task_id: str) -> PlanResult:
        """Run the steps of ``task_id``'s plan that are not done; a finished plan's result
        is returned as logged, nothing runs again."""
        progress = self._fold(task_id)
        if progress.plan is None:
            raise StateError("PLAN.NOT_STARTED", f"task {task_id} has no plan to resume")
        if progress.finished is not None:
            return progress.finished
        await self.kernel.wal.append(
            "plan.resumed", {"task_id": task_id, "done": sorted(progress.done)}
        )
        return await self._execute(progress.plan, dict(progress.done))

    # -- the DAG ----------------------------------------------------------------------------

    async def _execute(self, plan: Plan, done: dict[str, StepValue]) -> PlanResult:
        pending = [sid for sid in plan.order() if sid not in done]
        running: dict[asyncio.Task[StepValue | StepFailure], str] = {}
        try:
            failure = await self._schedule(plan, done, pending, running)
        finally:
            # Cancelled (a shutdown): the steps in flight stop too; their records stay
            # "started" without "done", so `resume` runs them again.
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        status = "done" if failure is None else "failed"
        body: dict[str, Any] = {"task_id": plan.task, "status": status}
        if failure is not None:
            body |= {"step": failure.step, "code": failure.code, "reason": failure.reason}
            body["cause"] = failure.cause
        await self.kernel.wal.append("plan.done", body)
        return PlanResult(plan.task, status, dict(done), failure, await self._settle(plan, failure))

    async def _settle(self, plan: Plan, failure: StepFailure | None) -> tuple[Approval, ...]:
        """An approval belongs to its task: kept for a while once the plan is done, so the
        Commander can still let a flagged effect through; expired when the plan failed or
        was stopped (nothing of that run may still act)."""
        if failure is None:
            keep_until = self.kernel.clock() + self.keep_approvals_s
            reason = f"plan {plan.task} is done; kept for the Commander"
        else:
            keep_until = None
            reason = f"plan {plan.task} failed ({failure.code})"
        waiting = [a.approval_id for a in self.kernel.approvals.pending(plan.task)]
        settled = await self.kernel.settle_approvals(
            waiting, keep_until=keep_until, reason=reason, principal=self.principal
        )
        return tuple(settled)

    async def _schedule(
        self,
        plan: Plan,
        done: dict[str, StepValue],
        pending: list[str],
        running: dict[asyncio.Task[StepValue | StepFailure], str],
    ) -> StepFailure | None:
        """Start every step whose dependencies are done; after a failure, start no more."""
        failure: StepFailure | None = None
        while pending or running:
            if failure is None:
                for sid in list(pending):
                    if all(dep in done for dep in plan.steps[sid].depends_on()):
                        pending.remove(sid)
                        inputs = {d: done[d] for d in plan.steps[sid].input_from}
                        running[asyncio.create_task(self._step(plan, sid, inputs))] = sid
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in sorted(finished, key=lambda t: running[t]):
                running.pop(t)
                result = t.result()
                if isinstance(result, StepValue):
                    done[result.step] = result
                elif failure is None:
                    failure = result
        return failure

    async def _step(
        self, plan: Plan, sid: str, inputs: Mapping[str, StepValue]
    ) -> StepValue | StepFailure:
        step = plan.steps[sid]
        attempts = step.retries + 1
        failure = StepFailure(sid, "PLAN.STEP.EXIT", "never ran")
        for attempt in range(1, attempts + 1):
            result = await self._attempt(plan, sid, inputs, attempt)
            if isinstance(result, StepValue):
                await self.kernel.wal.append(
                    "plan.step.done",
                    {
                        "task_id": plan.task,
                        "step": sid,
                        "status": "done",
                        "attempt": attempt,
                        "value": result.value,
                        "label": result.label.to_dict(),
                    },
                )
                self._emit(StepEvent(sid, "done", step.agent, attempt, _label_text(result.label)))
                return result
            failure = result
            final = attempt == attempts
            await self.kernel.wal.append(
                "plan.step.failed",
                {
                    "task_id": plan.task,
                    "step": sid,
                    "attempt": attempt,
                    "final": final,
                    "code": result.code,
                    "reason": result.reason,
                    "cause": result.cause,
                },
            )
            kind = "failed" if final else "retry"
            self._emit(StepEvent(sid, kind, step.agent, attempt, f"{result.code} {result.cause}"))
        return failure

    async def _attempt(
        self, plan: Plan, sid: str, inputs: Mapping[str, StepValue], attempt: int
    ) -> StepValue | StepFailure:
        step = plan.steps[sid]
        agent_id = step.agent
        spec = plan.agents[agent_id]
        if self.model_check is not None and Path(spec.script) == COGNITIVE_CELL:
            missing = await self.model_check()
            if missing is not None:
                return StepFailure(sid, "PLAN.STEP.NO_MODEL", missing)
        await self.kernel.wal.append(
            "plan.step.started",
            {"task_id": plan.task, "step": sid, "agent_id": agent_id, "attempt": attempt},
        )
        self._emit(StepEvent(sid, "started", agent_id, attempt))
        # The agent is about to hold these values: its context carries their labels, and
        # identifiers in them are recorded with those labels (IFC, provenance).
        for dep, value in inputs.items():
            await self.kernel.hand_over(
                agent_id, plan.task, value.value, value.label, source=f"step:{dep}"
            )
        env = {
            "MAOS_MISSION": plan.mission_statement,
            "MAOS_PROMPT": plan.prompt,
            "MAOS_STEP": sid,
            "MAOS_INPUTS": json.dumps(
                {d: {"value": v.value, "label": v.label.to_dict()} for d, v in inputs.items()},
                sort_keys=True,
            ),
            "MAOS_TOOLS": ",".join(step.tools),
            **step.cell.env(),
        }
        since = self.kernel.wal.tail_seq()
        try:
            token = self.kernel.mint(agent_id, plan.task, self._grants(plan, sid))
        except MaosError as exc:  # a grant for an op that does not exist
            return StepFailure(sid, "PLAN.STEP.START", exc.message, exc.code)
        try:
            try:
                run = await self.pods(spec.level).start(
                    agent_id, Path(spec.script), task_id=plan.task, token=token, env=env
                )
            except MaosError as exc:
                return StepFailure(sid, "PLAN.STEP.START", exc.message, exc.code)
            try:
                ended = await asyncio.wait_for(run.wait(), step.timeout_s)
            except asyncio.CancelledError:
                run.stop("stopped:plan cancelled")  # no pod outlives its step
                raise
            except TimeoutError:
                run.stop("stopped:timeout")
                await run.wait()
                return StepFailure(
                    sid, "PLAN.STEP.TIMEOUT", f"attempt {attempt} outlived {step.timeout_s}s"
                )
        finally:
            await self._retire(plan, sid, token)
        if ended.reason != "exited" and ended.reason != "apoptosis":
            return StepFailure(
                sid,
                "PLAN.STEP.STOPPED",
                f"the pod ended: {ended.reason}",
                self._cause(agent_id, since),
            )
        if ended.exit_code != 0:
            return StepFailure(
                sid,
                "PLAN.STEP.EXIT",
                f"{agent_id} exited with status {ended.exit_code}",
                self._cause(agent_id, since),
            )
        try:
            value = _result_value(run.log())
        except ValueError as exc:
            return StepFailure(sid, "PLAN.STEP.EXIT", str(exc))
        return StepValue(sid, value, self.kernel.registry.agent(agent_id).context)

    async def _retire(self, plan: Plan, sid: str, token: str) -> None:
        """Revoke the attempt's token - unless calls made with it wait for the Commander.

        An approved call is checked again with its own token, so revoking now would turn
        every later approval into ``DSC.CAPABILITY.REVOKED``. The pod that held the token
        is gone; only those logged calls can still use it. It is revoked once they are
        decided (while this process runs), and expires with its TTL in any case."""
        waiting = [
            a.approval_id
            for a in self.kernel.approvals.pending()
            if a.task_id == plan.task and a.intent.get("token") == token
        ]
        if not waiting:
            await self.kernel.revoke(token, principal=self.principal)
            return
        await self.kernel.wal.append(
            "plan.token.kept", {"task_id": plan.task, "step": sid, "approvals": waiting}
        )
        task = asyncio.create_task(self._revoke_when_decided(token, waiting))
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

    async def _revoke_when_decided(self, token: str, approvals: list[str]) -> None:
        for approval_id in approvals:
            await self.kernel.wait(approval_id)
        await self.kernel.revoke(token, principal=self.principal)

    def _grants(self, plan: Plan, sid: str) -> list[Grant]:
        """The step's grants, plus each registered tool it names (grants by tool name),
        plus the LLM gateway for the Cognitive Cell, which cannot think without it."""
        step = plan.steps[sid]
        grants = step.parsed_grants()
        registered = self.kernel.registry.tools
        grants += [Grant(f"tool.{name}", "*") for name in step.tools if name in registered]
        if Path(plan.agents[step.agent].script) == COGNITIVE_CELL:
            grants.append(Grant("llm.complete", "*"))
        return grants

    def _cause(self, agent_id: str, since: int) -> str:
        """The agent's last denial during the attempt: why it most likely gave up."""
        code = ""
        for rec in self.kernel.wal.read(since_seq=since, kinds=("intent.denied",)):
            if rec.body.get("agent_id") == agent_id:
                code = str(rec.body.get("code", ""))
        return code

    # -- progress from the log ------------------------------------------------------------------

    def _fold(self, task_id: str) -> _Progress:
        progress = _Progress()
        kinds = ("plan.started", "plan.step.done", "plan.done")
        for rec in self.kernel.wal.read(kinds=kinds):
            body = rec.body
            if body.get("task_id") != task_id:
                continue
            if rec.kind == "plan.started":
                progress.plan = Plan.model_validate_json(json.dumps(body["plan"]))
            elif rec.kind == "plan.step.done":
                label = Label.from_dict(body["label"])
                progress.done[body["step"]] = StepValue(body["step"], body["value"], label)
            elif rec.kind == "plan.done":
                failure = None
                if body["status"] != "done":
                    failure = StepFailure(
                        body["step"], body["code"], body["reason"], body.get("cause", "")
                    )
                progress.finished = PlanResult(
                    task_id, body["status"], dict(progress.done), failure
                )
        return progress

    def _emit(self, event: StepEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)


def _result_value(log: str) -> Any:
    """The last ``MAOS_RESULT`` line's JSON; None when the agent reported nothing."""
    value: Any = None
    for line in log.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw = line[len(RESULT_PREFIX) :]
            if len(raw.encode()) > MAX_VALUE_BYTES:
                raise ValueError(f"the step's value is over {MAX_VALUE_BYTES} bytes")
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"the step's MAOS_RESULT line is not JSON: {exc}") from exc
    return value


def _label_text(label: Label) -> str:
    return f"{label.conf.name.lower()}/{label.integrity.name.lower()}"
