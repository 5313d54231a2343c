"""Level 1: a host process in its own network - clean environment, no inherited fds,
rlimits, a uid of its own, a network namespace with only a loopback, private /tmp and
/dev/shm.

This is the weakest level and says so: the pod shares the host's filesystem view (but
/tmp and /dev/shm), pid namespace and system-call surface. It holds what Unix
permissions and rlimits hold (another uid's files, signals and memory; fork and memory
bombs), and, since issue 9, the Commit Layer's monopoly on the network (R1): a minimal
bubblewrap started as the pod's uid (`--dev-bind / / --unshare-net --tmpfs /tmp --tmpfs
/dev/shm`) gives it a network namespace of its own whose loopback reaches nothing on the
host, and a /tmp and /dev/shm nobody else sees (no covert channel between pods, no
planting files for the host). The user namespace bwrap needs maps the pod's uid to
itself and holds no capability over the host; the mounts it inherited are locked
together, so the pod cannot unmount its /tmp to find the host's. `docs/sandbox.md`
lists what the escape suite sees it miss and what this costs at start.

Since level-1 pods share one pid namespace, each runs as a uid of its own when the
kernel is root (from `UID_BASE`, no account behind it): one pod can neither signal nor
ptrace another, read its scratch dir, nor use up its process limit (RLIMIT_NPROC counts
per uid).
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import time
from functools import cache

from maos.pod.isolation.base import Launch, ProcessSandbox, Started, Support
from maos.pod.isolation.home import PodDir

__all__ = ["PYTHON", "Level1Sandbox", "bwrap_exit_signal", "kill_uid", "support"]

PYTHON = "/usr/bin/python3"
"""Debian's interpreter: world-readable, unlike a pyenv build in root's home."""
BASE_ENV = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
"""The environment the interpreter starts with; the agent's own arrives in the launch frame."""


def _own_network_args() -> list[str]:
    """What level 1 takes from the host: its network, /tmp and /dev/shm; no more."""
    return [
        "--dev-bind",
        "/",
        "/",
        "--unshare-net",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/dev/shm",
        "--die-with-parent",
    ]


@cache
def support() -> Support:
    if not os.access(PYTHON, os.X_OK):
        return Support(False, f"{PYTHON} is missing (apt-get install python3)")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Support(False, "bubblewrap is not installed (apt-get install bubblewrap)")
    uid = UID_BASE if os.geteuid() == 0 else None
    probe = subprocess.run(
        [bwrap, *_own_network_args(), "--", PYTHON, "-I", "-S", "-c", "pass"],
        capture_output=True,
        text=True,
        check=False,
        user=uid,
        group=uid,
        extra_groups=[] if uid is not None else None,
    )
    if probe.returncode != 0:
        why = probe.stderr.strip()[:300]
        return Support(False, f"bwrap cannot give a pod its own network here: {why}")
    who = "as a uid of its own" if os.geteuid() == 0 else f"as the kernel's own uid {os.geteuid()}"
    return Support(
        True,
        f"host process {who}, own network namespace (loopback only), private /tmp and"
        " /dev/shm, rlimits, clean environment and fds",
    )


def bwrap_exit_signal(returncode: int) -> int | None:
    """bwrap reports a child killed by signal N as exit status 128 + N."""
    if returncode < 0:
        return -returncode
    return returncode - 128 if returncode > 128 else None


def kill_uid(uid: int) -> None:
    """SIGKILL every live process whose real, effective or saved uid is ``uid``.

    A pod's processes may leave its process group (``setsid``), but not its uid. This
    runs in the kernel's process, which holds CAP_KILL, rather than in a helper that
    switches to ``uid``: such a helper could be killed first by the very processes it
    hunts (they may signal anything running as their uid), and one that kept root as its
    real uid would reach every root process with ``kill(-1)``. Rounds repeat until a scan
    finds nobody alive, because a process may fork between the scan and its kill; killed
    processes cannot fork, so the rounds end (bounded all the same).
    """
    if uid in (0, os.geteuid()):
        raise ValueError(f"refusing to kill every process of uid {uid}")
    deadline = time.monotonic() + SWEEP_SECONDS
    while _kill_round(uid) and time.monotonic() < deadline:
        time.sleep(0.001)


SWEEP_SECONDS = 5.0
"""How long `kill_uid` keeps sweeping when processes keep appearing (a safety net)."""


def _kill_round(uid: int) -> bool:
    """One scan of /proc; whether it found a live process of ``uid``."""
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not _alive_as(entry, uid):
            continue
        found = True
        try:
            pidfd = os.pidfd_open(int(entry))
        except OSError:
            continue
        try:
            if _alive_as(entry, uid):  # the pid still names a process of uid's
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return found


def _alive_as(pid: str, uid: int) -> bool:
    """From ``status``, not the owner of ``/proc/<pid>``: a process that makes itself
    non-dumpable shows that directory as root's."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return False
    uids = state = b""
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            uids = line
        elif line.startswith(b"State:"):
            state = line
    return state.split()[1:2] not in ([b"Z"], [b"X"]) and str(uid).encode() in uids.split()[1:4]


UID_BASE = 3_000_000
"""Level-1 pods run as UID_BASE + n: far above any account a distribution allocates."""
UID_SPAN = 1_000_000


class Level1Sandbox(ProcessSandbox):
    level = 1
    _next = itertools.count(secrets.randbelow(UID_SPAN))
    """Shared by every level-1 sandbox of this process, so two pods never share a uid."""

    def support(self) -> Support:
        return support()

    def _uid_for_pod(self) -> int:
        if os.geteuid() != 0:
            return os.geteuid()  # not root: every pod is the kernel's own uid (said in support)
        return UID_BASE + next(self._next) % UID_SPAN

    _exit_signal = staticmethod(bwrap_exit_signal)

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        interpreter = [PYTHON, "-I", "-S", "-B", str(self.home.bootstrap), str(channel_fd)]
        argv = [*self._wrapper(pod_dir), *interpreter]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd=pod_dir.workspace,
            env=BASE_ENV,
            close_fds=True,
            pass_fds=(channel_fd,),
            start_new_session=True,
            **self._drop_privileges(pod_dir.uid),
        )
        launch = Launch(
            cwd=str(pod_dir.workspace), sys_path=(str(self.home.pylib), *self.runtime_sys_path())
        )
        own_uid = os.geteuid() == 0
        return Started(
            proc, launch, sweep=functools.partial(kill_uid, pod_dir.uid) if own_uid else None
        )

    def _wrapper(self, pod_dir: PodDir) -> list[str]:
        """bwrap, as the pod's uid: the host's tree but its own network, /tmp, /dev/shm.

        The pod home usually lives under the host's /tmp, so the bootstrap, the SDK and
        the pod's workspace are bound back into the private /tmp (nothing else of it)."""
        ws, boot, lib = str(pod_dir.workspace), str(self.home.bootstrap), str(self.home.pylib)
        return [
            "bwrap",
            *_own_network_args(),
            *("--ro-bind", boot, boot, "--ro-bind", lib, lib, "--bind", ws, ws),
            *("--chdir", ws, "--"),
        ]
