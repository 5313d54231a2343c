"""What every DSC check receives and how it answers.

One frozen `CheckInput` per decision: adding a field changes no check's signature.
Checks are callables returning a `Decision`; the pipeline turns any exception into a
deny with code ``DSC.INTERNAL`` (R11: a check that cannot be evaluated denies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from maos.kernel.labels import BOTTOM, Conf, Label
from maos.kernel.modes import Mode
from maos.kernel.types import Decision, EffectClass, Intent

__all__ = ["AgentStatus", "AgentView", "Check", "CheckInput", "TaskView"]


class AgentStatus(StrEnum):
    """Set only by the Commander or the kernel (R8); an agent cannot change its own."""

    ACTIVE = "active"
    ISOLATED = "isolated"
    """Soft isolation (stage 2 of the seed's quarantine cascade): every outbound effect -
    anything that leaves the machine, and messages to other agents - is refused; reads,
    workspace writes, the LLM and internal tools stay open, and its pod keeps running."""
    PAUSED = "paused"
    QUARANTINED = "quarantined"
    """Hard isolation (stage 3): every gateway closed, the pod stopped."""
    KILLED = "killed"

    @property
    def runs(self) -> bool:
        """Whether the agent's pod may run (its requests are still checked)."""
        return self in (AgentStatus.ACTIVE, AgentStatus.ISOLATED)


@dataclass(frozen=True, slots=True)
class AgentView:
    """The kernel's record of the asking agent, as of this decision."""

    agent_id: str
    ring: int
    """2 for verified agents, 3 for untrusted ones; 0 and 1 never submit intents."""
    status: AgentStatus = AgentStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class TaskView:
    """What the trusted principals (plan, Commander) said about the task."""

    task_id: str
    workspace: str = ""
    """Workspace root (relative paths in intents live under it)."""
    trusted_targets: frozenset[str] = field(default_factory=frozenset)
    """Recipients, hosts, URLs and paths a trusted principal named for this task (R10)."""
    declassified_to: Conf | None = None
    """Lowest confidentiality the task may release data to (a logged declassification, R6)."""
    trusted_amounts: frozenset[int] = field(default_factory=frozenset)
    """Sums in cents the Commander named; with untrusted content in the agent's context a
    payment must be one of them, when there are any (R10)."""
    paid: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    """(target, cents) of the payments the task made: a named sum is paid once per target
    on untrusted say; a second time needs the Commander."""
    effect_classes: frozenset[EffectClass] | None = None
    """The kinds of change the plan asked for (grants by effect class); None: the plan
    named none, so the capability alone decides and high-impact classes always ask (R7)."""


@dataclass(frozen=True, slots=True)
class CheckInput:
    """The single input of every check."""

    intent: Intent
    agent: AgentView
    task: TaskView
    now: float
    """Seconds since the epoch, from the kernel's clock (a fake clock in tests)."""
    node_id: str
    """This kernel's node id: the audience tokens must name."""
    context: Label = BOTTOM
    """Join of every label the agent has received so far."""
    approved: bool = False
    """A Commander approved this very intent; satisfies R7 and R10, nothing else."""
    safe_state: bool = False
    """The Commander put the system in Minimal Safe State (R8): nothing runs but the
    kernel and its log, and agents may only end themselves."""
    mode: Mode = Mode.NORMAL
    """The effective degradation mode (`maos.kernel.modes`), enforced by check 5b."""
    fever: bool = False
    """Security Fever: two or more agents are quarantined, so every rate limit is halved
    (check 2) and Ring 3 agents' effects all go to the SSE."""
    waived: str = ""
    """The one deny code a confirmed override waives for this intent (kernel/refusals.py);
    every other check still decides."""


class Check(Protocol):
    """One of the seven checks; ``name`` appears in every decision it makes."""

    name: str

    def __call__(self, inp: CheckInput) -> Decision: ...
