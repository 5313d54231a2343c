"""Freezing a pod (hard isolation, the cascade's stage 3): stopped where it is, not killed.

A frozen pod keeps its memory, its open files and its place in every computation, so
the Commander can look at it and either release it - it resumes exactly where it was -
or approve its elimination, after which it is killed with its state already kept.

Two mechanisms, the first this host offers:

- **cgroup v1 freezer** (``/sys/fs/cgroup/freezer``; this machine has it, and not v2's
  ``cgroup.freeze``): every process of the pod moves into the pod's own freezer cgroup,
  which is set ``FROZEN``; the kernel stops the tasks without a signal any of them could
  see or catch. Processes forked while moving are caught by moving again until the set
  is stable (a frozen task forks nothing).
- **SIGSTOP** of every process of the pod otherwise (no freezer mounted, not root):
  uncatchable too, but a parent in the pod can see its children stop.

The pod's processes are the descendants of its first process (bwrap, runsc, or the
interpreter at level 1), found through ``/proc``. A SIGKILL reaches a frozen task only
once it is thawed, so `Freezer.kill` signals and then thaws. Blocking calls: the pod
runtime runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from maos.pod.isolation.errors import SandboxError

__all__ = ["FREEZER_ROOT", "Freezer", "descendants"]

FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")
_SETTLE_S = 5.0
"""How long a freeze or thaw may take to settle before it counts as failed."""


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from ``/proc`` (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name is in parentheses and may hold spaces: ppid follows the last ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


class Freezer:
    """Freezes and thaws one pod, given its first process's pid."""

    def __init__(self, name: str, root_pid: int) -> None:
        self._root = root_pid
        self._cgroup = FREEZER_ROOT / "maos" / name
        self.mechanism = "cgroup-freezer" if self.cgroup_available() else "sigstop"
        self.frozen = False
        """Whether the pod is frozen now: what a watchdog asks before counting missed
        heartbeats (a frozen pod sends none, and must not be restarted for it)."""
        self._stopped: list[int] = []

    @staticmethod
    def cgroup_available() -> bool:
        return os.geteuid() == 0 and (FREEZER_ROOT / "cgroup.procs").exists()

    def freeze(self) -> None:
        if self.frozen:
            return
        try:
            if self.mechanism == "cgroup-freezer":
                self._freeze_cgroup()
            else:
                self._stop_all()
        except OSError as exc:
            raise SandboxError("POD.FREEZE.FAILED", f"cannot freeze the pod: {exc}") from exc
        self.frozen = True

    def thaw(self) -> None:
        if not self.frozen:
            return
        try:
            if self.mechanism == "cgroup-freezer":
                self._write_state("THAWED")
            else:
                for pid in self._stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                self._stopped = []
        except OSError as exc:
            raise SandboxError("POD.FREEZE.FAILED", f"cannot thaw the pod: {exc}") from exc
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL every process of the pod, then thaw so the kill is delivered."""
        for pid in reversed(descendants(self._root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(SandboxError):
            self.thaw()

    def remove(self) -> None:
        """Drop the pod's cgroup once its processes are gone: the pod's first process is
        reaped before the last of the others has left the cgroup, so wait for it a little
        (blocking; best effort after that)."""
        if self.mechanism != "cgroup-freezer" or not self._cgroup.exists():
            return
        deadline = time.monotonic() + _SETTLE_S
        while True:
            try:
                self._cgroup.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)

    def _freeze_cgroup(self) -> None:
        self._cgroup.mkdir(parents=True, exist_ok=True)
        procs = self._cgroup / "cgroup.procs"
        moved: set[int] = set()
        while True:
            pids = set(descendants(self._root)) - moved
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    procs.write_text(f"{pid}\n")
            moved |= pids
            self._write_state("FROZEN")

    def _write_state(self, state: str) -> None:
        path = self._cgroup / "freezer.state"
        path.write_text(state + "\n")
        deadline = time.monotonic() + _SETTLE_S
        while path.read_text().strip() != state:  # FREEZING until every task stopped
            if time.monotonic() > deadline:
                raise OSError(f"freezer stuck at {path.read_text().strip()}, wanted {state}")
            time.sleep(0.0005)

    def _stop_all(self) -> None:
        stopped: list[int] = []
        while True:
            pids = [p for p in descendants(self._root) if p not in stopped]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        self._stopped = stopped
