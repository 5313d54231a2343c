"""Isolation levels of the Agent Execution Pod (seed §41.4), one module per level.

    1  plain process: clean env and fds, rlimits, uid nobody        level1.py
    2  bubblewrap namespaces + seccomp + Landlock, uid nobody        level2.py
    3  gVisor (runsc): a user-space kernel between agent and host    level3.py
    4  MicroVM, 5 Confidential VM: detected, refused                 vm.py

`detect` answers "can this host give level N?" with the reason either way; `sandbox_for`
refuses with ``POD.ISOLATION.UNAVAILABLE`` rather than ever falling back to a weaker
level. This package imports only `maos.pod` and `maos.kernel`.
"""

from __future__ import annotations

from pathlib import Path

from maos.pod.frames import BASE_OPS, OpTable
from maos.pod.isolation import level1, level2, level3, vm
from maos.pod.isolation.base import (
    HardViolation,
    Heartbeat,
    Limits,
    PodProcess,
    PodSpec,
    ProcessSandbox,
    Sandbox,
    Support,
    ViolationSink,
)
from maos.pod.isolation.errors import IsolationUnavailable, SandboxError
from maos.pod.isolation.home import PodDir, PodHome
from maos.pod.isolation.level1 import Level1Sandbox
from maos.pod.isolation.level2 import Level2Sandbox
from maos.pod.isolation.level3 import Level3Sandbox

__all__ = [
    "LEVELS",
    "HardViolation",
    "Heartbeat",
    "IsolationUnavailable",
    "Level1Sandbox",
    "Level2Sandbox",
    "Level3Sandbox",
    "Limits",
    "PodDir",
    "PodHome",
    "PodProcess",
    "PodSpec",
    "Sandbox",
    "SandboxError",
    "Support",
    "ViolationSink",
    "detect",
    "sandbox_for",
]

LEVELS = (1, 2, 3, 4, 5)

_SANDBOXES: dict[int, type[ProcessSandbox]] = {
    1: Level1Sandbox,
    2: Level2Sandbox,
    3: Level3Sandbox,
}


def detect(level: int) -> Support:
    """Whether this host can run pods at ``level``; the reason names what is missing."""
    if level == 1:
        return level1.support()
    if level == 2:
        return level2.support()
    if level == 3:
        return level3.support()
    if level == 4:
        return vm.microvm_support()
    if level == 5:
        return vm.confidential_support()
    return Support(False, f"no isolation level {level}; levels are {LEVELS}")


def sandbox_for(
    level: int,
    home: PodHome | None = None,
    *,
    ops: OpTable = BASE_OPS,
    on_violation: ViolationSink | None = None,
    runtime: Path | None = None,
) -> ProcessSandbox:
    """The sandbox for ``level``, or `IsolationUnavailable` naming the reason; ``runtime``
    is a read-only virtualenv its pods import packages from (levels 1 and 2)."""
    support = detect(level)
    cls = _SANDBOXES.get(level)
    if not support.available or cls is None:
        raise IsolationUnavailable(
            "POD.ISOLATION.UNAVAILABLE",
            f"isolation level {level} is unavailable: {support.reason}",
            level=level,
            reason=support.reason,
        )
    if runtime is not None and level not in (1, 2):
        raise IsolationUnavailable(
            "POD.ISOLATION.UNAVAILABLE",
            f"isolation level {level} cannot mount a package runtime; use level 1 or 2",
            level=level,
            reason="no runtime mounts",
        )
    return cls(home, ops=ops, on_violation=on_violation, runtime=runtime)
