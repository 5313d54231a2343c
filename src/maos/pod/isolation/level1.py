"""Level 1: a plain process - clean environment, no inherited fds, rlimits, a uid of its own.

This is the weakest level and says so: the pod shares the host's filesystem view,
network, pid namespace and system-call surface. It holds what Unix permissions and
rlimits hold (another uid's files, signals and memory; fork and memory bombs) and
nothing else: a level-1 pod can open TCP sockets, write world-writable host paths and
read world-readable ones. `docs/sandbox.md` lists what the escape suite sees it miss.

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
import signal
import subprocess
import time
from functools import cache

from maos.pod.isolation.base import Launch, ProcessSandbox, Started, Support
from maos.pod.isolation.home import PodDir

__all__ = ["PYTHON", "Level1Sandbox", "kill_uid", "support"]

PYTHON = "/usr/bin/python3"
"""Debian's interpreter: world-readable, unlike a pyenv build in root's home."""
BASE_ENV = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
"""The environment the interpreter starts with; the agent's own arrives in the launch frame."""


@cache
def support() -> Support:
    if not os.access(PYTHON, os.X_OK):
        return Support(False, f"{PYTHON} is missing (apt-get install python3)")
    who = "as a uid of its own" if os.geteuid() == 0 else f"as the kernel's own uid {os.geteuid()}"
    return Support(True, f"plain process {who}, rlimits, clean environment and fds")


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

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        argv = [PYTHON, "-I", "-S", "-B", str(self.home.bootstrap), str(channel_fd)]
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
        launch = Launch(cwd=str(pod_dir.workspace), sys_path=(str(self.home.pylib),))
        own_uid = os.geteuid() == 0
        return Started(
            proc, launch, sweep=functools.partial(kill_uid, pod_dir.uid) if own_uid else None
        )
