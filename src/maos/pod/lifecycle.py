"""What the pod runtime tells about an agent's life: events, the running agent, its end.

Values for consoles, tests and the demo's table; the runtime (`maos.pod.runtime`) is the
only writer of an `AgentRun`, everyone else reads it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from maos.pod.isolation import HardViolation, PodProcess, PodSpec
from maos.pod.sentry import Sentry

__all__ = ["AgentExit", "AgentRun", "PodEvent"]


@dataclass(frozen=True, slots=True)
class PodEvent:
    """One thing that happened to an agent, for a console or a log (see `PodRuntime`)."""

    agent_id: str
    kind: str
    """``intent`` (a frame answered), ``violation``, ``restart``, ``stopped``, ``exit``."""
    op: str = ""
    target: str = ""
    status: str = ""
    """For intents: the outcome status (committed, denied, pending, failed, in_doubt)."""
    code: str = ""
    detail: str = ""
    approval_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentExit:
    agent_id: str
    exit_code: int
    """The last pod's exit status, shell-style (128 + N for signal N)."""
    reason: str
    """``exited``, ``apoptosis``, ``quarantined`` or ``stopped:<status>`` (the Commander)."""
    restarts: int
    violations: tuple[HardViolation, ...] = ()


@dataclass(eq=False)
class AgentRun:
    """One agent under the runtime. Read-only for callers; ``wait()`` for its end."""

    agent_id: str
    task_id: str
    ring: int
    level: int
    spec: PodSpec
    sentry: Sentry
    pod: PodProcess | None = None
    restarts: int = 0
    violations: list[HardViolation] = field(default_factory=list)
    stop_reason: str | None = None
    """Set when the run must end without a restart (Commander, apoptosis, quarantine)."""
    task: asyncio.Task[AgentExit] | None = None

    async def wait(self) -> AgentExit:
        assert self.task is not None
        return await asyncio.shield(self.task)

    def log(self) -> str:
        """The current (or last) pod's stdout and stderr tail."""
        return "" if self.pod is None else self.pod.log()

    def stop(self, reason: str) -> None:
        """End the run for good: kill the pod, start no other."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.pod is not None:
            self.pod.kill()
