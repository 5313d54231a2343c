"""The quarantine cascade's stages (seed §37.8), in order; `maos.kernel.cascade` moves
agents between them. Here, below the registry, so an agent's record can hold its stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from maos.kernel.dsc.base import AgentStatus

__all__ = [
    "DEFAULT_WEIGHTS",
    "RELEASE_TO",
    "STAGE_STATUS",
    "CascadePolicy",
    "Stage",
    "stage_for_status",
    "stage_report",
]


class Stage(StrEnum):
    NORMAL = "normal"
    OBSERVATION = "observation"
    SOFT_ISOLATION = "soft_isolation"
    HARD_ISOLATION = "hard_isolation"
    ELIMINATION = "elimination"
    HEALING = "healing"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {stage: n for n, stage in enumerate(Stage)}
STAGE_STATUS: Mapping[Stage, AgentStatus] = {
    Stage.NORMAL: AgentStatus.ACTIVE,
    Stage.OBSERVATION: AgentStatus.ACTIVE,
    Stage.SOFT_ISOLATION: AgentStatus.ISOLATED,
    Stage.HARD_ISOLATION: AgentStatus.QUARANTINED,
    Stage.ELIMINATION: AgentStatus.KILLED,
    Stage.HEALING: AgentStatus.KILLED,
}
"""The status each stage imposes (what the DSC and the pod runtime act on)."""

RELEASE_TO = (Stage.NORMAL, Stage.OBSERVATION, Stage.SOFT_ISOLATION)
"""Where the Commander may release an agent to: never into a stage that ends it."""


def stage_for_status(status: AgentStatus, current: Stage) -> Stage:
    """The stage a Commander's status order implies. A kill is not an elimination: it
    keeps the stage (the status says killed), and only an approved elimination heals."""
    if status is AgentStatus.ACTIVE:
        return Stage.NORMAL
    if status is AgentStatus.ISOLATED:
        return Stage.SOFT_ISOLATION
    if status is AgentStatus.QUARANTINED:
        return Stage.HARD_ISOLATION
    return current  # a pause keeps it; so does a kill (R8's, not the cascade's elimination)


def stage_report(agent: Any) -> dict[str, Any]:
    """An agent's place in the cascade as status reports show it (kernel, CLI, dashboard)."""
    return {
        "stage": agent.stage.value,
        "stage_cause": agent.stage_cause,
        "stage_at": agent.stage_at,
        "danger": agent.danger,
        "evidence": [dict(e) for e in agent.evidence],
        "replaced_by": agent.replaced_by,
    }


DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "sentry_anomaly": 2.0,
        "prefilter": 3.0,
        "rule_violation": 3.0,
        "capability": 1.0,
        "rate": 0.5,
        "isolated_attempt": 2.0,
        "sse_deny": 3.0,
        "aggregate": 6.0,
        "pod_violation": 4.0,
        "memory_match": 3.0,
    }
)
"""What one danger signal adds to an agent's score by default. ``config.json``'s
``security.weights`` takes its defaults from here, and documents why each is what it is;
here, in Ring 0 below both the Security Agent and the config schema, it is written once."""


@dataclass(frozen=True, slots=True)
class CascadePolicy:
    """The cascade's thresholds and timers; ``config.json``'s ``security`` section takes
    its defaults from these (the reason for each is given with that section)."""

    observe_at: float = 3.0
    soft_at: float = 6.0
    hard_at: float = 10.0
    half_life_s: float = 600.0
    observation_s: float = 1800.0
    """The seed's 30 minutes."""
    monitor_only: bool = False
    weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_WEIGHTS)

    def stage_for(self, score: float) -> Stage:
        if score >= self.hard_at:
            return Stage.HARD_ISOLATION
        if score >= self.soft_at:
            return Stage.SOFT_ISOLATION
        if score >= self.observe_at:
            return Stage.OBSERVATION
        return Stage.NORMAL
