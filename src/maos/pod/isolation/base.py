"""What every isolation level shares: the spec of a pod and the running pod.

A level only decides *how* the interpreter is started (the argv, the uid, the fds it
inherits); everything after the start - the READY handshake, the launch frame, limits,
the channel, violation reporting and reaping - is the same code for every level, so a
fix here reaches them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from maos.kernel.errors import InputError
from maos.kernel.textfile import read_text
from maos.pod import bootstrap
from maos.pod.channel import (
    MAX_KERNEL_FRAME,
    BeatSink,
    ChannelViolation,
    PodChannel,
    channel_pair,
)
from maos.pod.frames import BASE_OPS, OpTable
from maos.pod.isolation.errors import IsolationUnavailable, SandboxError
from maos.pod.isolation.home import POD_UID, PodDir, PodHome

__all__ = [
    "ENV_NAME",
    "HardViolation",
    "Heartbeat",
    "Launch",
    "Limits",
    "PodProcess",
    "PodSpec",
    "ProcessSandbox",
    "Sandbox",
    "Started",
    "Support",
    "ViolationSink",
]

Popen = subprocess.Popen[bytes]
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
"""What a pod's environment variable may be called (the gateway's policy checks the same)."""
LOG_TAIL = 16 * 1024
MAX_SCRIPT_BYTES = 1024 * 1024
"""An agent's code travels in its launch frame: a megabyte is far beyond any script."""
BAD_SCRIPT = "POD.SPAWN.BAD_SCRIPT"
START_TIMEOUT = 30.0
"""Seconds a pod may take to say READY before it counts as failed (a safety net, not a SLA)."""


def read_script(path: Path) -> str:
    """An agent's code, as its launch frame carries it: UTF-8 text of a regular file of at
    most `MAX_SCRIPT_BYTES`; `SandboxError` ``POD.SPAWN.BAD_SCRIPT`` naming what it is not."""
    what = f"the agent's script {path}"
    try:
        return read_text(path, limit=MAX_SCRIPT_BYTES, what=what, code=BAD_SCRIPT)
    except InputError as exc:
        raise SandboxError(BAD_SCRIPT, exc.message, script=str(path)) from None


@dataclass(frozen=True, slots=True)
class Support:
    """Whether this host can provide a level, and the precise reason either way."""

    available: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource ceilings the bootstrap applies to itself before any agent code runs."""

    cpu_seconds: int = 30
    """CPU time; SIGXCPU at the limit, SIGKILL one second later."""
    memory_bytes: int = 512 * 1024 * 1024
    """Address space (RLIMIT_AS)."""
    max_processes: int = 32
    """RLIMIT_NPROC: per pod at level 2 (own user namespace), per shared uid at level 1."""
    max_file_bytes: int = 64 * 1024 * 1024
    """Largest file the pod may write."""
    max_open_files: int = 64

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A pod that beats: as whom, with which key, how often, and where its beats go.

    The key reaches the pod in its launch frame only - never its environment or a file,
    which another process of the pod's uid could read - and the beats come back over the
    pod's own channel, so only that pod's process can have sent them."""

    member: str
    """The Watchdog member (``pod:<agent>``)."""
    key: bytes = field(repr=False)
    period_s: float
    sink: BeatSink
    """Takes each well-formed beat (`maos.kernel.watchdog.Watchdog.beat`, bound)."""


@dataclass(frozen=True, slots=True)
class PodSpec:
    """Everything needed to run one agent in one pod."""

    agent_id: str
    """Bound to the channel at launch; the pod can never claim another."""
    script: Path
    """The agent's code, read by the kernel and sent in the launch frame."""
    workspace: Path | None = None
    """The agent's own scratch dir (not the task's files); None: a fresh one per pod."""
    limits: Limits = Limits()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The pod's entire environment: nothing is inherited from the kernel."""
    heartbeat: Heartbeat | None = None
    """None: the pod sends no beats (a tool host's, a benchmark's), and a beat from it is
    a malformed frame."""


@dataclass(frozen=True, slots=True)
class HardViolation:
    """An unambiguous violation; the pod is dead or being killed when this is reported."""

    code: str
    detail: str
    agent_id: str | None
    pid: int


ViolationSink = Callable[[HardViolation], None]
"""Called once per violating pod, from the event loop; the kernel logs and restarts."""


class Sandbox(Protocol):
    """One isolation level."""

    level: int

    async def start(self, workspace: Path | None = None) -> PodProcess:
        """A pod with a started interpreter and no agent yet (what the warm pool holds)."""
        ...

    async def spawn(self, spec: PodSpec) -> PodProcess:
        """Start a pod and launch ``spec`` in it (the cold path)."""
        ...


@dataclass(frozen=True, slots=True)
class Launch:
    """How a level's filesystem view maps onto the launch frame."""

    cwd: str
    landlock: Mapping[str, list[str]] | None = None
    uid: int | None = None
    """A uid the bootstrap switches to itself (level 3: gVisor starts it as root)."""
    sys_path: tuple[str, ...] = ()
    """Where the pod finds `maos.sdk` (the home's ``pylib`` as the pod sees it)."""


@dataclass(frozen=True, slots=True)
class Started:
    """What a level's `_popen` started."""

    proc: Popen
    launch: Launch
    reaper: int | None = None
    """A pidfd of the init of the pod's own pid namespace, where the level has one.

    Killing the launcher (bwrap) only orphans that init, which dies later and takes the
    namespace's processes with it after the launcher was already reaped. Killing the init
    instead makes the kernel kill and reap every process of the namespace before the init
    exits, and the launcher exits only after its init: so a reaped launcher means nothing
    of the pod runs any more.
    """
    sweep: Callable[[], None] | None = None
    """Kills what outlived the pod's first process where no namespace does (level 1 as
    root: every process of the pod's own uid, daemons that left its session included).
    Blocking; it runs in a worker thread before `PodProcess.wait` returns."""


def _beats(heartbeat: Heartbeat | None) -> dict[str, Any] | None:
    """The launch frame's ``heartbeat``: what the bootstrap's beat thread needs."""
    if heartbeat is None:
        return None
    return {"member": heartbeat.member, "key": heartbeat.key.hex(), "period_s": heartbeat.period_s}


class PodProcess:
    """The kernel's handle on one running pod. Needs a running event loop."""

    def __init__(
        self,
        *,
        level: int,
        started: Started,
        sock: socket.socket,
        pod_dir: PodDir,
        ops: OpTable,
        sink: ViolationSink | None,
        exit_signal: Callable[[int], int | None],
        filtered: bool,
    ) -> None:
        self.level = level
        self.workspace = pod_dir.workspace
        """Host path of the pod's scratch dir."""
        self.log_path = pod_dir.log_path
        """The pod's stdout and stderr; only the kernel can read it."""
        self.channel: PodChannel | None = None
        """Set by `launch`; before that the pod runs no agent code."""
        self.violation: HardViolation | None = None
        self._proc = started.proc
        self._reaper = started.reaper
        self._sweep = started.sweep
        self._sock = sock
        self._launch = started.launch
        self._ops = ops
        self._sink = sink
        self._exit_signal = exit_signal
        self._filtered = filtered
        """Whether our seccomp filter is loaded, so that SIGSYS means a forbidden call."""
        self._pod_dir = pod_dir
        self._agent_id: str | None = None
        self._ready = False
        self._log_tail: str | None = None
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        self._pidfd = os.pidfd_open(self._proc.pid)
        loop.add_reader(self._pidfd, self._on_exit)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def signal(self) -> int | None:
        """The signal that ended the agent's process, if one did."""
        rc = self._proc.returncode
        return None if rc is None else self._exit_signal(rc)

    async def ready(self) -> None:
        """Wait for the interpreter's READY; anything else before launch is a broken pod."""
        if self._ready:
            return
        loop = asyncio.get_running_loop()
        try:
            msg = await asyncio.wait_for(loop.sock_recv(self._sock, 64), START_TIMEOUT)
        except (TimeoutError, OSError) as exc:
            self.kill()
            raise SandboxError("POD.SPAWN.NO_READY", "pod did not start", log=self.log()) from exc
        if msg != bootstrap.READY:
            self.kill()
            raise SandboxError("POD.SPAWN.NO_READY", "pod did not start", log=self.log())
        self._ready = True

    async def launch(self, spec: PodSpec) -> None:
        """Bind the pod to ``spec.agent_id`` and hand it the agent's code."""
        if self._agent_id is not None:
            raise SandboxError("POD.SPAWN.REUSED", "a pod runs one agent, once")
        for name in spec.env:
            if not ENV_NAME.match(name):
                raise SandboxError("POD.SPAWN.BAD_ENV", "invalid environment name", name=name)
        code = read_script(spec.script)
        frame = orjson.dumps(
            {
                "v": 1,
                "launch": {
                    "name": spec.script.name,
                    "code": code,
                    "limits": asdict(spec.limits),
                    "env": dict(spec.env),
                    "cwd": self._launch.cwd,
                    "landlock": self._launch.landlock,
                    "uid": self._launch.uid,
                    "sys_path": list(self._launch.sys_path),
                    "heartbeat": _beats(spec.heartbeat),
                },
            }
        )
        if len(frame) > MAX_KERNEL_FRAME:
            raise SandboxError("POD.SPAWN.TOO_LARGE", "agent code exceeds the launch frame cap")
        await self.ready()
        self._agent_id = spec.agent_id
        self.channel = PodChannel(
            self._sock,
            spec.agent_id,
            ops=self._ops,
            on_violation=self._on_channel_violation,
            on_beat=None if spec.heartbeat is None else spec.heartbeat.sink,
            beat_period_s=0.1 if spec.heartbeat is None else spec.heartbeat.period_s,
        )
        await asyncio.get_running_loop().sock_sendall(self._sock, frame)

    def kill(self) -> None:
        """SIGKILL the pod: its pid namespace's init where it has one, else its whole
        process group."""
        if self._proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self._reaper is not None:
                signal.pidfd_send_signal(self._reaper, signal.SIGKILL)
            else:
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def log(self) -> str:
        """The tail of the pod's stdout and stderr (kept after the pod dir is removed)."""
        if self._log_tail is not None:
            return self._log_tail
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _on_channel_violation(self, violation: ChannelViolation) -> None:
        detail = violation.message
        if violation.fields:
            detail += " " + orjson.dumps(dict(violation.fields), default=str).decode()
        self._report(violation.code, detail)
        self.kill()

    def _report(self, code: str, detail: str) -> None:
        if self.violation is not None:
            return
        self.violation = HardViolation(code, detail, self._agent_id, self._proc.pid)
        if self._sink is not None:
            self._sink(self.violation)

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if self._reaper is not None:
            os.close(self._reaper)
        # Stragglers left in the pod's process group (level 1 has no pid namespace). The
        # leader is a zombie until reaped below, so its pid - the group id - is not reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self._sweep is None:
            self._reaped()
        else:
            swept = loop.run_in_executor(None, self._sweep)
            swept.add_done_callback(lambda _: self._reaped())

    def _reaped(self) -> None:
        rc = self._proc.wait()
        if self._filtered and self._exit_signal(rc) == signal.SIGSYS:
            self._report("POD.SECCOMP.KILLED", "the pod made a forbidden system call")
        if self.channel is not None:
            self.channel.close()
        else:
            self._sock.close()
        self._log_tail = self.log()
        self._pod_dir.remove()
        self._exited.set_result(rc)


_Started = tuple[PodDir, Started, socket.socket]


def _abandon(future: asyncio.Future[_Started]) -> None:
    """Undo a start whose caller was cancelled while the worker thread ran."""
    if future.cancelled() or future.exception() is not None:
        return
    pod_dir, started, kernel_end = future.result()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(started.proc.pid, signal.SIGKILL)
    started.proc.wait()
    if started.reaper is not None:
        os.close(started.reaper)
    if started.sweep is not None:
        started.sweep()
    kernel_end.close()
    pod_dir.remove()


class ProcessSandbox:
    """Shared start/spawn logic; a level supplies `support` and `_popen`."""

    level = 0
    uid = POD_UID
    """The pod's uid on the host whenever the kernel runs as root."""
    filtered = False
    """Whether pods run under `maos.pod.isolation.seccomp`'s filter."""

    def __init__(
        self,
        home: PodHome | None = None,
        *,
        ops: OpTable = BASE_OPS,
        on_violation: ViolationSink | None = None,
        runtime: Path | None = None,
    ) -> None:
        self.home = PodHome() if home is None else home
        self._ops = ops
        self._sink = on_violation
        self.runtime = runtime
        """A read-only virtualenv on Debian's python3 whose packages pods may import (an
        agent framework: docs/frameworks.md); bound read-only at its own path."""

    def runtime_sys_path(self) -> tuple[str, ...]:
        """The runtime's site-packages, appended to the pod's ``sys.path`` (the pod runs
        ``-I -S``: no site module, so the path is named, not discovered)."""
        if self.runtime is None:
            return ()
        return tuple(str(p) for p in sorted(self.runtime.glob("lib/python3*/site-packages")))

    def support(self) -> Support:
        raise NotImplementedError

    async def start(self, workspace: Path | None = None) -> PodProcess:
        """Start a pod without blocking the event loop.

        Popen cannot use vfork when it changes uid, so it copies the kernel's page tables
        (about 12 ms measured): that, the pod dir and the filter run in a worker thread.
        """
        support = self.support()
        if not support.available:
            raise IsolationUnavailable(
                "POD.ISOLATION.UNAVAILABLE",
                f"isolation level {self.level} is unavailable: {support.reason}",
                level=self.level,
                reason=support.reason,
            )
        future = asyncio.get_running_loop().run_in_executor(None, self._start_process, workspace)
        try:
            pod_dir, started, kernel_end = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_abandon)
            raise
        return PodProcess(
            level=self.level,
            started=started,
            sock=kernel_end,
            pod_dir=pod_dir,
            ops=self._ops,
            sink=self._sink,
            exit_signal=self._exit_signal,
            filtered=self.filtered,
        )

    def _start_process(self, workspace: Path | None) -> _Started:
        pod_dir = self.home.make_pod_dir(workspace, self._uid_for_pod())
        kernel_end, pod_end = channel_pair()
        try:
            with pod_dir.log_path.open("ab") as out:
                started = self._popen(pod_dir, out.fileno(), pod_end.fileno())
        except BaseException as exc:
            kernel_end.close()
            pod_dir.remove()
            if isinstance(exc, OSError):
                raise SandboxError("POD.SPAWN.FAILED", f"cannot start the pod: {exc}") from exc
            raise
        finally:
            pod_end.close()
        return pod_dir, started, kernel_end

    async def spawn(self, spec: PodSpec) -> PodProcess:
        pod = await self.start(spec.workspace)
        try:
            await pod.launch(spec)
        except BaseException:
            pod.kill()
            raise
        return pod

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        raise NotImplementedError

    @staticmethod
    def _exit_signal(returncode: int) -> int | None:
        return -returncode if returncode < 0 else None

    def _uid_for_pod(self) -> int:
        """The host uid of the next pod; every pod of this level shares `uid` unless the
        level needs more (a level without its own pid namespace: level 1)."""
        return self.uid

    def _drop_privileges(self, uid: int | None = None) -> dict[str, Any]:
        """Popen arguments that make the child ``uid`` (``nobody`` by default) when we are
        root."""
        if os.geteuid() != 0:
            return {}
        uid = self.uid if uid is None else uid
        return {"user": uid, "group": uid, "extra_groups": []}
