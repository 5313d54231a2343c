"""Cell types (seed §30.8): every component of MAOS is a cell of one type, and the type
says whether it needs an LLM - which is what Rule-Based Mode (no provider answers) goes
by to decide what keeps running: cells that need none run on; partial ones run without
their LLM part (the SSE's heuristics and embeddings stay, its judge denies); cognitive
and stem cells wait for a provider (an agent's cell pauses and retries,
`maos.agents.cell`). 7 of the 9 types need no LLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from maos.services.manager import SERVICES

__all__ = ["COMPONENTS", "Cell", "Component", "cells_report", "in_rule_based"]


class Cell(StrEnum):
    COGNITIVE = "cognitive"
    IMMUNE = "immune"
    NERVE = "nerve"
    BLOOD = "blood"
    STEM = "stem"
    SKIN = "skin"
    BONE = "bone"
    MEMORY = "memory"
    SENSORY = "sensory"


NEEDS_LLM: Mapping[Cell, str] = {
    Cell.COGNITIVE: "yes",
    Cell.IMMUNE: "partial",
    Cell.NERVE: "no",
    Cell.BLOOD: "no",
    Cell.STEM: "yes",
    Cell.SKIN: "no",
    Cell.BONE: "no",
    Cell.MEMORY: "no",
    Cell.SENSORY: "no",
}
"""The seed's table: whether a cell of each type needs an LLM."""


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    cell: Cell
    ring: str
    needs_llm: str

    def __post_init__(self) -> None:
        # A component may need less than its type (the Security Agent is rule-based),
        # never more: what Rule-Based Mode keeps must not depend on a model.
        order = ("no", "partial", "yes")
        if order.index(self.needs_llm) > order.index(NEEDS_LLM[self.cell]):
            raise ValueError(
                f"{self.name}: a {self.cell} cell needs at most {NEEDS_LLM[self.cell]}"
            )


COMPONENTS: tuple[Component, ...] = (
    Component("kernel (DSC, Dispatcher, Commit Layer, WAL)", Cell.BONE, "0", "no"),
    Component("Watchdog", Cell.BONE, "0", "no"),
    Component("Sentry (per pod)", Cell.SKIN, "1", "no"),
    *(Component(s.title, Cell(s.cell), "1", s.needs_llm) for s in SERVICES if s.name != "beacon"),
    Component("Healing (clean replacement of an agent)", Cell.STEM, "1", "no"),
    Component("agents (cognitive cells)", Cell.COGNITIVE, "2/3", "yes"),
)
"""Every component with its cell type, ring and LLM need (docs/resilience.md)."""


def in_rule_based(component: Component) -> str:
    """What the component does while no LLM provider answers."""
    return {
        "no": "runs",
        "partial": "runs without its LLM part",
        "yes": "waits for a provider",
    }[component.needs_llm]


def cells_report(llm_mode: str) -> list[dict[str, Any]]:
    """The components as `maos status` lists them, with what runs in the current LLM
    mode (``rule_based`` or anything else)."""
    rule_based = llm_mode == "rule_based"
    return [
        {
            "component": c.name,
            "cell": c.cell.value,
            "ring": c.ring,
            "needs_llm": c.needs_llm,
            "now": in_rule_based(c) if rule_based else "runs",
        }
        for c in COMPONENTS
    ]
