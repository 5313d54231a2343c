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

import itertools
import os
import secrets
import subprocess
from functools import cache

from maos.pod.isolation.base import Launch, Popen, ProcessSandbox, Support
from maos.pod.isolation.home import PodDir

__all__ = ["PYTHON", "Level1Sandbox", "support"]

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

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> tuple[Popen, Launch]:
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
        return proc, Launch(cwd=str(pod_dir.workspace), sys_path=(str(self.home.pylib),))
