"""Agents in pods: start one, pump its frames to the kernel, restart it on a hard violation.

    pod ── channel.recv ──► Sentry.admit ──► Gateways ──► Kernel.submit ──► reply ──► pod
                              │ deny: error reply           (DSC, WAL, adapters)   Sentry.record
                              └ violation ──► Fast Apoptosis

Fast Apoptosis (seed v5.8): a violation that is certain - a frame the channel refuses (an
empty one too), a request outside the Sentry's whitelists, a system call the seccomp
filter kills, a channel closed by a pod that keeps running - ends
the pod at once, is logged as ``pod.violation`` {agent_id, code, detail, level}, and the
agent starts again from its clean image (a fresh pod, the same script) with
``pod.restarted``. After `max_restarts` restarts the next violation quarantines the agent
instead: an agent that keeps breaking out is not an agent to keep restarting.

Each pod the runtime starts for an agent is logged ``pod.started`` {agent_id, level,
attempt}, and its end ``pod.exited``: what ``/metrics`` counts pods by level and status from.

The runtime acts on the kernel's state as the principal `RUNTIME_PRINCIPAL`
(``commander:kernel``): the kernel admits only Commander principals to change an
agent's status, and this is the kernel's own process deciding by a fixed rule, so the
log says so by name rather than impersonating the human.

Heartbeats (issue 12): every pod is enrolled with the kernel's Watchdog as
``pod:<agent_id>`` for its life and beats over its own channel (`maos.pod.bootstrap`),
read all the time by the channel, so a long request (an LLM call, an approval wait) does
not silence it. Beats are never logged. A pod the Watchdog records missing
(``pod.missed``, after ``resilience.pod_missed_beats`` periods) is killed and started
again like after a violation, with ``pod.restarted`` {after: ``POD.HEARTBEAT.MISSED``}
but no ``pod.violation``: a stopped or starved process is not a danger signal, and it
never leads to quarantine (after `max_restarts` of them the run just ends, ``missed
heartbeats``). A frozen pod (hard isolation) is silent by design and never restarted
for it.

The Commander always wins (R8): a status other than active for a running agent - from
this process or logged by another (the CLI) and folded by the kernel - kills its pod,
and it is not restarted. An agent that ends itself (R9, ``admin.apoptosis``) gets its
answer, then its pod is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import MaosError, StateError
from maos.kernel.kernel import Kernel
from maos.kernel.modes import Mode
from maos.kernel.stages import Stage
from maos.kernel.tokens import Grant
from maos.kernel.types import Outcome, OutcomeStatus
from maos.pod import containment
from maos.pod.beats import enrol, until_missed
from maos.pod.channel import ChannelClosed, ChannelViolation
from maos.pod.gateways import GATEWAY_OPS, Answer, Gateways, describe, reply_for
from maos.pod.isolation import (
    HardViolation,
    Limits,
    PodHome,
    PodProcess,
    PodSpec,
    sandbox_for,
)
from maos.pod.isolation.base import ProcessSandbox
from maos.pod.isolation.pool import WarmPool
from maos.pod.lifecycle import AgentExit, AgentRun, PodEvent
from maos.pod.router import attach
from maos.pod.sentry import Sentry, SentryDeny, SentryProfile, SentryViolation, sentry_log

__all__ = [
    "LEVEL_FOR_RING",
    "RUNTIME_PRINCIPAL",
    "AgentExit",
    "AgentRun",
    "PodEvent",
    "PodRuntime",
    "profile_for",
]

RUNTIME_PRINCIPAL = "commander:kernel"
LEVEL_FOR_RING: Mapping[int, int] = {2: 1, 3: 2}
"""Verified agents (ring 2) run as plain processes; untrusted ones (ring 3) in bubblewrap."""
APOPTOSIS_GRACE = 2.0
"""Seconds an agent that ended itself has to exit before its pod is killed."""
CLOSE_GRACE = 2.0
"""Seconds a pod whose channel closed has to exit before it is killed as a violation."""
CHANNEL_ABANDONED = "POD.CHANNEL.ABANDONED"
"""A pod closed its channel (its supervision) but kept running."""
HEARTBEAT_MISSED = "POD.HEARTBEAT.MISSED"
"""The Watchdog recorded the pod silent (``pod.missed``): killed and restarted, which is
not a violation - a stopped or starved process is not a hostile agent."""


def profile_for(ring: int, grants: Sequence[Grant]) -> SentryProfile:
    """The Sentry profile for an agent: hardened in ring 3, and a network whitelist of
    exactly the hosts its capability names for HTTP (MAC backs the token up)."""
    profile = SentryProfile.hardened() if ring >= 3 else SentryProfile.standard()
    hosts: list[str] = []
    for grant in grants:
        if grant.op in ("http.request", "http.*", "*") and "://" in grant.resource:
            candidate = [*hosts, urlsplit(grant.resource.rstrip("*")).netloc]
            try:
                profile.with_net_hosts(*candidate)
            except ValueError:
                continue  # not a host the Sentry can whitelist: left out (fail closed)
            hosts = candidate
    return profile.with_net_hosts(*hosts)


def _shell_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class PodRuntime:
    """Runs agents in pods against one kernel. Use in a running event loop; ``close()`` it.

    ``level`` overrides the ring's level for every agent; ``profile`` replaces the Sentry
    profile `profile_for` would derive; ``pool_size`` keeps that many warm pods per
    level; ``on_event`` sees every `PodEvent` (it must not block); ``runtime`` is a
    read-only virtualenv (`maos.pod.upstream_runtime`) whose packages its pods import,
    an agent framework's say (docs/frameworks.md).
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        level: int | None = None,
        profile: SentryProfile | None = None,
        home: PodHome | None = None,
        max_restarts: int = 3,
        pool_size: int = 0,
        limits: Limits | None = None,
        on_event: Callable[[PodEvent], None] | None = None,
        poll_interval: float = 0.05,
        heal: bool = True,
        runtime: Path | None = None,
    ) -> None:
        self.kernel = kernel
        self.runtime = runtime
        self.level = level
        self.profile = profile
        self.max_restarts = max_restarts
        self.limits = limits or Limits()
        self._own_home = home is None
        self.home = PodHome() if home is None else home
        self._pool_size = pool_size
        self._on_event = on_event
        self._poll = poll_interval
        self._heal = heal
        """Replace an eliminated agent with a clean copy (`maos.pod.containment`)."""
        self._router = attach(kernel)
        self._sandboxes: dict[int, ProcessSandbox] = {}
        self._pools: dict[int, WarmPool] = {}
        self._runs: set[AgentRun] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def level_for(self, ring: int) -> int:
        return self.level if self.level is not None else LEVEL_FOR_RING.get(ring, 2)

    def sandbox(self, level: int) -> ProcessSandbox:
        """The level's sandbox; `IsolationUnavailable` (``POD.ISOLATION.UNAVAILABLE``) naming
        the reason when this host cannot give it - never a weaker level instead."""
        if level not in self._sandboxes:
            self._sandboxes[level] = sandbox_for(
                level, self.home, ops=GATEWAY_OPS, runtime=self.runtime
            )
        return self._sandboxes[level]

    async def start(
        self,
        agent_id: str,
        script: Path,
        *,
        task_id: str,
        token: str,
        env: Mapping[str, str] | None = None,
    ) -> AgentRun:
        """Start ``script`` for a registered, active agent; the token reaches the pod only
        through its environment (``MAOS_TOKEN``), never through a file."""
        agent = self.kernel.registry.agent(agent_id)
        if self.kernel.registry.mode is Mode.MSS:  # the Commander's, or a source's (TSCA)
            raise StateError(
                "STATE.SAFE_STATE", f"the system is in Minimal Safe State; {agent_id} not started"
            )
        if not agent.status.runs:
            raise StateError(
                "STATE.AGENT_NOT_ACTIVE", f"agent {agent_id} is {agent.status.value}; not started"
            )
        self.kernel.registry.task(task_id)
        if not script.is_file():
            raise StateError("POD.SPAWN.NO_SCRIPT", f"agent {agent_id}: no script at {script}")
        level = self.level_for(agent.ring)
        self.sandbox(level)  # refuse now, before anything runs
        if self.profile is not None:
            profile = self.profile
        else:
            try:
                grants: Sequence[Grant] = self.kernel.tokens.inspect(token).grants
            except MaosError:
                grants = ()  # the kernel will refuse this token; no host earns a whitelist
            profile = profile_for(agent.ring, grants)
        pod_env = {
            **(env or {}),
            "MAOS_TOKEN": token,
            "MAOS_TASK_ID": task_id,
            "MAOS_AGENT_ID": agent_id,
        }
        run = AgentRun(
            agent_id=agent_id,
            task_id=task_id,
            ring=agent.ring,
            level=level,
            spec=PodSpec(agent_id, script, limits=self.limits, env=pod_env),
            sentry=Sentry(
                agent_id,
                profile,
                log=sentry_log(self.kernel),
                clock=self.kernel.clock,
                trace=self.kernel.trace,
            ),
        )
        self._runs.add(run)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_status())
        run.task = asyncio.create_task(self._supervise(run))
        return run

    async def run(
        self,
        agent_id: str,
        script: Path,
        *,
        task_id: str,
        token: str,
        env: Mapping[str, str] | None = None,
    ) -> AgentExit:
        """`start`, then wait for the agent's end."""
        run = await self.start(agent_id, script, task_id=task_id, token=token, env=env)
        return await run.wait()

    async def close(self) -> None:
        """Kill every pod this runtime runs, wait for the supervisors, reap warm pods."""
        for run in list(self._runs):
            run.stop("stopped:runtime closed")
        for run in list(self._runs):
            if run.task is not None:
                with contextlib.suppress(Exception):
                    await run.task
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for pool in self._pools.values():
            await pool.close()
        if self._own_home:
            self.home.close()

    # -- one agent's life ------------------------------------------------------------------

    async def _supervise(self, run: AgentRun) -> AgentExit:
        try:
            while True:
                code, violation, missed = await self._attempt(run)
                if run.freezer is not None:
                    await asyncio.to_thread(run.freezer.remove)
                if run.heal:
                    await self._ended(run, code, run.stop_reason or "eliminated")
                    await containment.heal(self.kernel, run, RUNTIME_PRINCIPAL)
                    self._emit(PodEvent(run.agent_id, "healed", detail=run.healed_from[-1]))
                    continue
                if run.stop_reason is not None or (violation is None and not missed):
                    return await self._ended(run, code, run.stop_reason or "exited")
                if violation is not None:
                    if await self._violated(run, violation):
                        return await self._ended(run, code, "quarantined")
                    cause = violation.code
                elif run.restarts >= self.max_restarts:  # silent, not hostile: no quarantine
                    return await self._ended(run, code, "missed heartbeats")
                else:
                    cause = HEARTBEAT_MISSED
                run.restarts += 1
                await self.kernel.wal.append(
                    "pod.restarted",
                    {
                        "agent_id": run.agent_id,
                        "attempt": run.restarts + 1,
                        "level": run.level,
                        "after": cause,
                    },
                )
                self._emit(
                    PodEvent(
                        run.agent_id,
                        "restart",
                        code=cause,
                        detail=f"attempt {run.restarts + 1}",
                    )
                )
        finally:
            self._runs.discard(run)

    async def _violated(self, run: AgentRun, violation: HardViolation) -> bool:
        """Log a hard violation (a danger signal); True when it quarantined the agent."""
        run.violations.append(violation)
        await self.kernel.wal.append(
            "pod.violation",
            {
                "agent_id": run.agent_id,
                "code": violation.code,
                "detail": violation.detail,
                "level": run.level,
                "pid": violation.pid,
            },
        )
        self._emit(
            PodEvent(run.agent_id, "violation", code=violation.code, detail=violation.detail)
        )
        if run.restarts < self.max_restarts:
            return False
        run.stop_reason = "quarantined"
        await self.kernel.set_agent_status(
            run.agent_id, AgentStatus.QUARANTINED, principal=RUNTIME_PRINCIPAL
        )
        return True

    async def _attempt(self, run: AgentRun) -> tuple[int, HardViolation | None, bool]:
        """One pod for ``run``, enrolled with the Watchdog for its life: its exit code,
        the violation that ended it if any, and whether it was killed for its silence."""
        attempt = run.restarts + 1
        spec = run.spec
        env = {**spec.env, "MAOS_ATTEMPT": str(attempt)}
        watchdog = self.kernel.watchdog
        member = f"pod:{run.agent_id}"
        beats = enrol(watchdog, member)
        try:
            pod = await self._acquire(
                run.level,
                PodSpec(spec.agent_id, spec.script, spec.workspace, spec.limits, env, beats),
            )
            run.pod = pod
            started = {"agent_id": run.agent_id, "level": run.level, "attempt": attempt}
            await self.kernel.wal.append("pod.started", started)  # for /metrics' pods
            if run.stop_reason is not None:  # stopped while the pod was starting
                pod.kill()
            return await self._serve(run, pod, member)
        finally:
            watchdog.leave(member)

    async def _acquire(self, level: int, spec: PodSpec) -> PodProcess:
        if self._pool_size <= 0:
            return await self.sandbox(level).spawn(spec)
        pool = self._pools.get(level)
        if pool is None:
            pool = self._pools[level] = WarmPool(self.sandbox(level), self._pool_size)
            pool.start()
        return await pool.acquire(spec)

    async def _ended(self, run: AgentRun, code: int, reason: str) -> AgentExit:
        await self.kernel.wal.append(
            "pod.exited",
            {
                "agent_id": run.agent_id,
                "exit_code": code,
                "reason": reason,
                "restarts": run.restarts,
            },
        )
        self._emit(PodEvent(run.agent_id, "exit", code=str(code), detail=reason))
        return AgentExit(
            run.agent_id,
            code,
            reason,
            run.restarts,
            tuple(run.violations),
            tuple(run.healed_from),
        )

    async def _serve(
        self, run: AgentRun, pod: PodProcess, member: str
    ) -> tuple[int, HardViolation | None, bool]:
        """Pump ``pod`` until it exits: its exit code, the violation that ended it if any,
        and whether it was killed because the Watchdog recorded it missing."""
        gateways = Gateways(
            self.kernel,
            self._router,
            agent_id=run.agent_id,
            task_id=run.task_id,
            epoch="p" + secrets.token_hex(6),
        )
        pump = asyncio.create_task(self._pump(run, pod, gateways))
        silence = asyncio.create_task(self._kill_if_missed(run, pod, member))
        returncode = await pod.wait()
        missed = silence.done() and silence.result()
        silence.cancel()
        gateways.abort()  # a pod that is gone waits for no approval and no message
        sentry_violation = await pump
        violation = sentry_violation or pod.violation
        return _shell_code(returncode), violation, missed and violation is None

    async def _kill_if_missed(self, run: AgentRun, pod: PodProcess, member: str) -> bool:
        """Kill the pod once the Watchdog has recorded it missing (``pod.missed``, its
        sweep on the kernel's clock). A frozen pod is silent by design: never for it."""
        await until_missed(
            self.kernel.watchdog, member, spare=lambda: run.frozen or run.stop_reason is not None
        )
        pod.kill()
        return True

    async def _pump(
        self, run: AgentRun, pod: PodProcess, gateways: Gateways
    ) -> HardViolation | None:
        channel = pod.channel
        assert channel is not None
        try:
            while True:
                try:
                    frame = await channel.recv()
                except ChannelViolation:
                    return None  # a violation is the pod's own record (pod.violation)
                except ChannelClosed:
                    return await self._closed(run, pod)
                decision = await run.sentry.admit(frame)
                if isinstance(decision, SentryViolation):
                    pod.kill()
                    return HardViolation(decision.code, decision.detail, run.agent_id, pod.pid)
                if isinstance(decision, SentryDeny):
                    refused = Outcome(
                        "", OutcomeStatus.DENIED, code=decision.code, reason=decision.reason
                    )
                    answer = Answer(refused, *describe(frame))
                else:
                    await self._hold_while_quarantined(run)
                    answer = await gateways.handle(frame)
                outcome = answer.outcome
                ended = answer.op == "admin.apoptosis" and outcome.status is OutcomeStatus.COMMITTED
                if ended:
                    run.stop_reason = "apoptosis"
                try:
                    await channel.send(reply_for(frame.id, outcome))
                except ChannelClosed:
                    return None
                await run.sentry.record(frame, status=outcome.status.value, code=outcome.code)
                self._emit(
                    PodEvent(
                        run.agent_id,
                        "intent",
                        op=answer.op,
                        target=answer.target,
                        status=outcome.status.value,
                        code=outcome.code,
                        detail=outcome.reason,
                        approval_id=outcome.approval_id,
                    )
                )
                if ended:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(pod.wait(), APOPTOSIS_GRACE)
                    pod.kill()
                    return None
        except BaseException:
            pod.kill()  # whatever broke the pump, the pod must not wait on it forever
            raise

    async def _hold_while_quarantined(self, run: AgentRun) -> None:
        """Hard isolation closes every gateway: a request that arrives meanwhile is held,
        unanswered, while the pod is frozen, and goes on if the agent is released - so a
        released agent resumes exactly where it stopped (a kill closes the channel)."""
        while run.stop_reason is None:
            try:
                status = self.kernel.registry.agent(run.agent_id).status
            except StateError:
                return
            if status is not AgentStatus.QUARANTINED:
                return
            await asyncio.sleep(self._poll)

    async def _closed(self, run: AgentRun, pod: PodProcess) -> HardViolation | None:
        """The pod's end of the channel is gone. A pod that is exiting is reaped as usual;
        one still running after `CLOSE_GRACE` has cut itself off from its Sentry and is
        never left running unsupervised: killed, as a violation (Fast Apoptosis)."""
        try:
            await asyncio.wait_for(pod.wait(), CLOSE_GRACE)
        except TimeoutError:
            pod.kill()
            detail = f"the pod closed its channel and was still running {CLOSE_GRACE:.0f} s later"
            return HardViolation(CHANNEL_ABANDONED, detail, run.agent_id, pod.pid)
        return None

    async def _watch_status(self) -> None:
        """R8: the Commander's pause or kill ends the agent's pod; a quarantine (hard
        isolation) freezes it and a release thaws it; an approved elimination ends it and
        a clean copy takes over (`maos.pod.containment`). Minimal Safe State ends them all."""
        while True:
            await asyncio.sleep(self._poll)
            safe = self.kernel.registry.mode is Mode.MSS
            for run in list(self._runs):
                if run.stop_reason is not None:
                    continue
                if safe:
                    run.stop("stopped:minimal safe state")
                    continue
                try:
                    agent = self.kernel.registry.agent(run.agent_id)
                except StateError:
                    continue
                status = agent.status
                if status is AgentStatus.QUARANTINED:  # hard isolation: frozen, not killed
                    if not run.frozen:
                        try:
                            await containment.freeze(self.kernel, run, RUNTIME_PRINCIPAL)
                        except MaosError as exc:  # cannot freeze: contain it the hard way
                            run.stop(f"stopped:quarantined ({exc.code})")
                            continue
                        self._emit(PodEvent(run.agent_id, "frozen", status=status.value))
                    continue
                if status.runs:
                    if run.frozen:
                        await containment.thaw(self.kernel, run, RUNTIME_PRINCIPAL)
                        self._emit(PodEvent(run.agent_id, "thawed", status=status.value))
                    continue
                run.heal = self._heal and agent.stage is Stage.ELIMINATION
                run.stop(f"stopped:{status.value}")
                self._emit(PodEvent(run.agent_id, "stopped", status=status.value))

    def _emit(self, event: PodEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
