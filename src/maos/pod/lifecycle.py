"""What the pod runtime tells about an agent's life: events, the running agent, its end.

Values for consoles, tests and the demo's table; the runtime (`maos.pod.runtime`) is the
only writer of an `AgentRun`, everyone else reads it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from maos.kernel.wal import Wal
from maos.pod.isolation import HardViolation, PodProcess, PodSpec
from maos.pod.isolation.freeze import Freezer
from maos.pod.sentry import Sentry

__all__ = ["AgentExit", "AgentRun", "PodEvent", "pods_from_log"]

_POD_STATE = {
    "pod.started": "running",
    "pod.thawed": "running",
    "pod.frozen": "frozen",
    "pod.exited": "exited",
}
_UNLOGGED = {"tool": "tool host", "mcp": "mcp server"}
"""Pods that are no agent's (``pod:<kind>/<name>``, `maos.pod.beats`): their lifecycle
is not logged, only their misses, so their state is what they are."""


@dataclass(frozen=True, slots=True)
class PodEvent:
    """One thing that happened to an agent, for a console or a log (see `PodRuntime`)."""

    agent_id: str
    kind: str
    """``intent`` (a frame answered), ``violation``, ``restart``, ``stopped``, ``frozen``,
    ``thawed``, ``healed``, ``exit``."""
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
    healed_from: tuple[str, ...] = ()
    """Eliminated agents this one replaced, oldest first (``agent_id`` is the last copy)."""


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
    freezer: Freezer | None = None
    """Set while the pod is (or was) frozen by hard isolation."""
    heal: bool = False
    """The agent was eliminated: replace it with a clean copy once its pod is gone."""
    healed_from: list[str] = field(default_factory=list)

    @property
    def frozen(self) -> bool:
        """Whether the pod is frozen now (hard isolation): it sends nothing, heartbeats
        included, and must not be restarted for that."""
        return self.freezer is not None and self.freezer.frozen

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
        if self.freezer is not None:
            self.freezer.thaw()  # a frozen task takes its SIGKILL only once thawed


def pods_from_log(wal: Wal) -> dict[str, dict[str, Any]]:
    """Each agent's pod as last logged, with the heartbeat misses the Watchdog recorded
    for it (for `maos status`, from any process: beats are not logged, misses are), and
    each tool host or MCP server that missed beats (``tool/<stem>-<hex>``, ``mcp/<name>``)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in wal.read(kinds=[*_POD_STATE, "pod.missed"]):
        if rec.kind == "pod.missed":
            agent = str(rec.body.get("member", "")).removeprefix("pod:")
        else:
            agent = str(rec.body.get("agent_id", ""))
        kind = agent.partition("/")[0] if "/" in agent else ""
        known = out.setdefault(agent, {"state": _UNLOGGED.get(kind, ""), "missed": 0})
        if rec.kind == "pod.missed":
            known["missed"] += 1
        else:
            known["state"] = _POD_STATE[rec.kind]
    return dict(sorted(out.items()))
