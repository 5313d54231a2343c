"""The Service Manager (Ring 1): starts the Ring 1 services, restarts the ones that fail,
and turns their health into the degradation mode.

Each supervised service runs as its own process (`maos.service_main`), enrolled with the
Watchdog (`maos.kernel.watchdog`) and holding its Ring 1 capability
(`maos.kernel.services`). The manager relays its beats to the Watchdog and its orders to
the kernel's service desk, and watches:

- the process exits (a crash, a SIGKILL, an error its main loop did not survive):
  ``service.exited`` {service, pid, code, reason, stderr};
- the Watchdog finds it silent past ``resilience.missed_beats`` beats (a wedged loop, a
  SIGSTOP): the manager kills it (SIGKILL), and it is restarted like a crash.

A failed service is restarted after a backoff that doubles per restart
(``service.restarted`` {service, attempt, after_s}), by its `RestartPolicy`; more than
``max_restarts`` within ``window_s`` and it is *failed* (``service.failed``): the manager
stops restarting it for ``cooldown_s``, then tries once more. All timing is on the
kernel's clock.

Health becomes a mode demand (source ``health``, `maos.kernel.modes`): one failed
non-critical service -> degraded-1, a failed critical one -> degraded-2, two or more
failed -> degraded-3, none -> normal (demanded only when it changes).

Every record the manager writes goes through the kernel with its own capability, as
``service:manager``; the table of services (`SERVICES`) is in docs/resilience.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.modes import Mode
from maos.kernel.wal import Wal
from maos.services.host import ENV, MAX_LINE
from maos.services.supervised import TaskFactory, task_life

__all__ = [
    "SERVICES",
    "Criticality",
    "RestartPolicy",
    "ServiceManager",
    "ServiceSpec",
    "health_mode",
    "services_from_log",
    "spec",
]


class Criticality(StrEnum):
    CRITICAL = "critical"
    """Down: essential operations only (degraded-2)."""
    NON_CRITICAL = "non-critical"
    """Down: reduced features (degraded-1)."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    restart: bool = True
    """False: a service that ends is recorded and left down."""
    max_restarts: int = 5
    window_s: float = 60.0
    """More than ``max_restarts`` restarts within this window: the service is failed."""
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    cooldown_s: float = 30.0
    """How long a failed service is left down before one more try."""

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    title: str
    criticality: Criticality
    cell: str
    """Its cell type (seed §30.8)."""
    needs_llm: str
    """``yes``, ``no`` or ``partial``: whether it runs in Rule-Based Mode."""
    process: bool
    """Supervised as its own process (True), or inside the kernel's process: as a
    supervised task (`start_task`, `maos.services.supervised`) or as part of the kernel."""
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    task: bool = False
    """Inside the kernel's process, supervised as a task (`ServiceManager.start_task`)."""

    @property
    def runs(self) -> str:
        """``process``, ``task`` (both supervised) or ``kernel`` (part of the kernel's path)."""
        return "process" if self.process else "task" if self.task else "kernel"


_CRIT, _NON = Criticality.CRITICAL, Criticality.NON_CRITICAL
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("security", "Security Agent", _CRIT, "immune", "no", True),
    ServiceSpec("orchestrator", "Orchestrator", _CRIT, "bone", "no", False, task=True),
    ServiceSpec("router", "Message Router", _CRIT, "nerve", "no", False, task=True),
    ServiceSpec("sse", "Semantic Security Evaluator", _CRIT, "immune", "partial", False, task=True),
    ServiceSpec("manager", "Service Manager", _CRIT, "bone", "no", False),
    ServiceSpec("memory", "Memory Manager", _NON, "memory", "no", True),
    ServiceSpec("cron", "Cron Scheduler", _NON, "blood", "no", False, task=True),
    ServiceSpec("observability", "Observability", _NON, "sensory", "no", False, task=True),
    ServiceSpec("dashboard", "Dashboard", _NON, "sensory", "no", False, task=True),
    ServiceSpec("tsca", "TSCA", _CRIT, "immune", "no", False),
    ServiceSpec("beacon", "Beacon (supervision check)", _NON, "sensory", "no", True),
)
"""Every Ring 1 service: its criticality, cell type, LLM need and where it runs."""


def spec(name: str) -> ServiceSpec:
    for s in SERVICES:
        if s.name == name:
            return s
    raise KeyError(name)


def health_mode(failed: Mapping[str, Criticality]) -> Mode:
    """The mode service health demands (the module doc's mapping)."""
    if len(failed) >= 2:
        return Mode.DEGRADED_3
    if Criticality.CRITICAL in failed.values():
        return Mode.DEGRADED_2
    return Mode.DEGRADED_1 if failed else Mode.NORMAL


OnOrder = Callable[[str, str, Mapping[str, Any], int], Awaitable[None]]
"""Called after a service's order was logged: (service, kind, body, seq)."""


@dataclass
class _Run:
    spec: ServiceSpec
    state: str = "starting"
    pid: int | None = None
    attempt: int = 0
    restarts: list[float] = field(default_factory=list)
    last_exit: str = ""
    spawned: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once its first process was started and logged."""
    retry_now: bool = False
    """Asked to try again (the TSCA): a failed service's cool-down is cut short."""
    leaving: bool = False
    """The process said it is ending: wait for its exit, do not kill it for silence."""
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to end a supervised task's life now (restarted as after a failure)."""
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    factory: TaskFactory | None = None
    """A supervised task's coroutine maker (None: a service process)."""
    every_s: float | None = None
    """A task's own pulse period (None: it only has to stay alive)."""


class ServiceManager:
    """Supervises Ring 1 service processes for one kernel."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        on_order: OnOrder | None = None,
        policies: Mapping[str, RestartPolicy] | None = None,
        python: str = sys.executable,
    ) -> None:
        self._kernel = kernel
        self._on_order = on_order
        self._policies = dict(policies or {})
        self._python = python
        self._cap = kernel.services.capability("manager")
        self.runs: dict[str, _Run] = {}
        self.on_failed: Callable[[str], Coroutine[Any, Any, object]] | None = None
        """Called (in its own task) when a service is failed: the TSCA's incident."""
        self._incidents: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._mode = kernel.registry.modes.demands.get("health", Mode.NORMAL)
        """What health last demanded (from the log: a restart picks up where it was)."""

    # -- the Commander's and boot's side ---------------------------------------------

    def start(self, name: str) -> None:
        """Start supervising ``name`` (one of `SERVICES` that runs as a process)."""
        if not spec(name).process:
            raise ValueError(f"{name} runs inside the kernel's process: start_task it")
        self._launch(_Run(self._spec(name)))

    def start_task(self, name: str, factory: TaskFactory, *, every_s: float | None = None) -> None:
        """Supervise ``name`` (one of `SERVICES` inside the kernel's process) as an
        asyncio task made by ``factory``; ``every_s``: the period it pulses at, past
        ``missed_beats`` of which it is wedged (`maos.services.supervised`). Nothing is
        logged while it is healthy."""
        if not spec(name).task:
            raise ValueError(f"{name} is not a supervised task ({spec(name).runs})")
        self._launch(_Run(self._spec(name), factory=factory, every_s=every_s))

    async def stop_task(self, name: str) -> None:
        """Stop supervising the task ``name`` and end it (its owner is shutting down)."""
        run = self.runs.pop(name, None)
        if run is not None and run.task is not None:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task

    def _spec(self, name: str) -> ServiceSpec:
        s = spec(name)
        return replace(s, policy=self._policies[name]) if name in self._policies else s

    def _launch(self, run: _Run) -> None:
        if run.spec.name in self.runs:
            raise ValueError(f"{run.spec.name} is supervised already")
        self.runs[run.spec.name] = run
        run.task = asyncio.get_running_loop().create_task(self._supervise(run))

    async def started(self, name: str, timeout: float = 30.0) -> None:
        """Until ``name``'s first process is spawned and logged (a serving kernel opens
        for business after its services' records, not among them)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runs[name].spawned.wait(), timeout)

    async def stop(self) -> None:
        """Stop every service cleanly (SIGTERM: each takes a last look), then wait. One
        still starting is first given its start grace to beat once: its signal handler
        is in place by then, so a kernel that closes right after it opened (a one-poll
        run) still gets the Security Agent's last look at the log."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self._kernel.watchdog.grace_s
        while loop.time() < end and any(self._starting(r) for r in self.runs.values()):
            await asyncio.sleep(0.02)
        self._stopping = True
        for incident in list(self._incidents):
            incident.cancel()
        for name in [n for n, r in self.runs.items() if r.factory is not None]:
            await self.stop_task(name)
        for run in self.runs.values():
            if run.proc is not None and run.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    run.proc.send_signal(signal.SIGTERM)
        for run in self.runs.values():
            if run.task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(run.task), 10.0)
                except TimeoutError:
                    if run.proc is not None:
                        with contextlib.suppress(ProcessLookupError):
                            run.proc.kill()
                    run.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await run.task

    def restart(self, name: str) -> None:
        """Restart ``name`` now: a running process is killed (and restarted as after a
        crash), a failed one's cool-down is cut short."""
        run = self.runs[name]
        if run.state == "failed":
            run.retry_now = True
        elif run.factory is not None:
            run.kick.set()
        elif run.proc is not None and run.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                run.proc.kill()

    def _starting(self, run: _Run) -> bool:
        if run.factory is not None:
            return False  # a task beats from its first period: nothing to wait for
        beat = self._kernel.watchdog.members.get(f"service:{run.spec.name}")
        alive = run.proc is not None and run.proc.returncode is None
        return (
            run.state in ("starting", "up")
            and (run.proc is None or alive)
            and (beat is None or beat.counter < 0)
        )

    def health(self) -> dict[str, dict[str, Any]]:
        """Each supervised service now: state, restarts, whole seconds since its last beat
        (0 while it beats: the dashboard pushes a snapshot only when this changes)."""
        silent = self._kernel.watchdog.silent_for
        return {
            name: {
                "state": run.state,
                "runs": run.spec.runs,
                "pid": run.pid,
                "criticality": run.spec.criticality.value,
                "restarts": len(run.restarts),
                "last_exit": run.last_exit,
                "last_beat_s": None if (s := silent(f"service:{name}")) is None else int(s),
            }
            for name, run in sorted(self.runs.items())
        }

    # -- supervision -------------------------------------------------------------------

    async def _supervise(self, run: _Run) -> None:
        policy = run.spec.policy
        while not self._stopping:
            run.attempt += 1
            life = self._run_once(run) if run.factory is None else self._task_once(run)
            code, reason, stderr = await life
            if self._stopping:
                run.state = "stopped"
                await self._record(
                    "service.exited",
                    {
                        "service": run.spec.name,
                        "pid": run.pid,
                        "code": code,
                        "reason": STOPPED,
                        "stderr": stderr,
                    },
                )
                break
            run.last_exit = reason
            await self._record(
                "service.exited",
                {
                    "service": run.spec.name,
                    "pid": run.pid,
                    "code": code,
                    "reason": reason,
                    "stderr": stderr,
                },
            )
            now = self._kernel.clock()
            run.restarts = [t for t in run.restarts if now - t <= policy.window_s]
            if not policy.restart or len(run.restarts) >= policy.max_restarts:
                run.state = "failed"
                await self._record(
                    "service.failed",
                    {
                        "service": run.spec.name,
                        "restarts": len(run.restarts),
                        "window_s": policy.window_s,
                        "retry_in_s": policy.cooldown_s,
                    },
                )
                await self._health_changed()
                if self.on_failed is not None:
                    incident = self.on_failed(run.spec.name)
                    task: asyncio.Task[object] = asyncio.get_running_loop().create_task(incident)
                    self._incidents.add(task)
                    task.add_done_callback(self._incidents.discard)
                if not await self._wait(policy.cooldown_s if policy.restart else None, run):
                    break
                run.restarts.clear()
                run.retry_now = False
                continue
            run.state = "restarting"
            after = policy.delay(len(run.restarts) + 1)
            if not await self._wait(after):
                break
            run.restarts.append(self._kernel.clock())
            await self._record(
                "service.restarted",
                {"service": run.spec.name, "attempt": run.attempt + 1, "after_s": after},
            )
        run.state = "stopped" if self._stopping else run.state

    async def _wait(self, seconds: float | None, run: _Run | None = None) -> bool:
        """Wait ``seconds`` of the kernel's clock (None: until asked to retry); False if
        the manager is stopping."""
        due = None if seconds is None else self._kernel.clock() + seconds
        while due is None or self._kernel.clock() < due:
            if self._stopping:
                return False
            if run is not None and run.retry_now:
                break
            await asyncio.sleep(
                0.05 if due is None else min(0.05, max(0.001, due - self._kernel.clock()))
            )
        return not self._stopping

    async def _task_once(self, run: _Run) -> tuple[int | None, str, str]:
        """One life of a supervised task: nothing logged at its start (only health
        that changes, e.g. back to normal after it was failed)."""
        assert run.factory is not None
        run.state = "up"
        run.spawned.set()
        await self._health_changed()
        run.kick.clear()
        return await task_life(
            run.spec.name,
            run.factory,
            self._kernel.watchdog,
            self._kernel.clock,
            run.every_s,
            kick=run.kick,
        )

    async def _run_once(self, run: _Run) -> tuple[int | None, str, str]:
        """One life of the process; (exit code, reason, stderr's tail)."""
        name = run.spec.name
        member = f"service:{name}"
        watchdog = self._kernel.watchdog
        key = watchdog.enrol(member)
        parent, child = socket.socketpair()
        env = {
            **os.environ,
            ENV["name"]: name,
            ENV["fd"]: str(child.fileno()),
            ENV["key"]: key.hex(),
            ENV["cap"]: self._kernel.services.capability(name),
            ENV["period"]: repr(watchdog.period_s),
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                self._python,
                "-m",
                "maos.service_main",
                name,
                "--data-dir",
                str(self._kernel.config.data_dir),
                pass_fds=(child.fileno(),),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            child.close()
        run.proc, run.pid, run.leaving = proc, proc.pid, False
        assert proc.stderr is not None
        errors = asyncio.create_task(proc.stderr.read())
        relay: asyncio.Task[None] | None = None
        writer: asyncio.StreamWriter | None = None
        reason = ""
        try:
            run.state = "up"
            await self._record(
                "service.started", {"service": name, "pid": proc.pid, "attempt": run.attempt}
            )
            run.spawned.set()
            await self._health_changed()
            reader, writer = await asyncio.open_unix_connection(sock=parent, limit=MAX_LINE)
            relay = asyncio.create_task(self._relay(run, member, reader, writer))
            while proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), watchdog.period_s)
                if proc.returncode is None and not run.leaving and await watchdog.lapsed(member):
                    reason = "missed heartbeats: killed"
                    _kill(proc)
                    await proc.wait()
        finally:
            # Whatever ended this life (an exit, a cancelled stop), nothing outlives it:
            # the process is reaped, its pipes read to the end, its link closed.
            if relay is not None:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay
            if writer is not None:
                writer.close()
            else:
                parent.close()
            watchdog.leave(member)
            if proc.returncode is None:
                _kill(proc)
                await proc.wait()
        stderr = (await errors).decode(errors="replace")[-2000:]
        code = proc.returncode
        if not reason:
            reason = (
                f"killed by signal {-code}"
                if code is not None and code < 0
                else (f"exited with status {code}")
            )
        return code, reason, stderr

    async def _relay(
        self, run: _Run, member: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        watchdog, name = self._kernel.watchdog, run.spec.name
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                msg = json.loads(line)
            except ValueError:
                return  # a broken peer: its beats stop counting, the Watchdog sees it
            if not isinstance(msg, dict):
                return
            if msg.get("t") == "beat":
                watchdog.beat(member, msg.get("n"), msg.get("mac"))  # type: ignore[arg-type]
            elif msg.get("t") == "bye":
                run.leaving = True
                if run.proc is not None:
                    asyncio.get_running_loop().call_later(watchdog.grace_s, _kill, run.proc)
            elif msg.get("t") == "order":
                answer = await self._order(name, msg)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()

    async def _order(self, name: str, msg: Mapping[str, Any]) -> dict[str, Any]:
        ident, kind, body = msg.get("id"), str(msg.get("kind")), msg.get("body")
        if not isinstance(body, dict):
            return {"t": "err", "id": ident, "code": "BAD_INPUT.ORDER", "message": "no body"}
        try:
            seq = await self._kernel.services.submit(msg.get("cap"), kind, body)
        except MaosError as exc:
            return {"t": "err", "id": ident, "code": exc.code, "message": exc.message}
        if self._on_order is not None:
            await self._on_order(name, kind, body, seq)
        return {"t": "ack", "id": ident, "seq": seq}

    async def _record(self, kind: str, body: Mapping[str, Any]) -> None:
        await self._kernel.services.submit(self._cap, kind, body)

    async def _health_changed(self) -> None:
        failed = {n: r.spec.criticality for n, r in self.runs.items() if r.state == "failed"}
        mode = health_mode(failed)
        if mode is self._mode:
            return
        self._mode = mode
        cause = (
            "failed: " + ", ".join(f"{n} ({c.value})" for n, c in sorted(failed.items()))
            if failed
            else "every supervised service is up"
        )
        await self._kernel.demand_mode("health", mode, cause=cause, principal="service:manager")


def _kill(proc: asyncio.subprocess.Process) -> None:
    """A process that said goodbye and did not go within the grace: ended by force."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


STOPPED = "stopped by the Service Manager"
SERVICE_KINDS = ("service.started", "service.exited", "service.restarted", "service.failed")
_STATE = {
    "service.started": "up",
    "service.exited": "down",
    "service.restarted": "restarting",
    "service.failed": "failed",
}


def services_from_log(wal: Wal) -> dict[str, dict[str, Any]]:
    """Each supervised service's last logged state (for `maos status`, from any process)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in wal.read(kinds=SERVICE_KINDS):
        name = str(rec.body.get("service"))
        known = out.setdefault(name, {"state": "", "restarts": 0, "last_exit": ""})
        known["state"] = _STATE[rec.kind]
        if rec.kind == "service.restarted":
            known["restarts"] += 1
        elif rec.kind == "service.exited":
            known["last_exit"] = str(rec.body.get("reason", ""))
            if known["last_exit"] == STOPPED:
                known["state"] = "stopped"
    return dict(sorted(out.items()))
