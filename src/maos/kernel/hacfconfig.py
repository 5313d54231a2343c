"""The ``commander`` section of ``config.json``: how much a human is involved, per class.

HACF (the seed's Human-Agent Collaboration Framework) has four levels; the section names
one per effect class of agents' intents, and a plan may raise (never lower) them for its
own task (services/hacf.py, `level_of`):

    inform      act, then tell the Commander (an inbox of what was done)
    recommend   the agent proposes, the Commander approves or denies (the approvals)
    deliberate  a recorded back-and-forth (questions, an edited proposal) ending in one
                recorded decision; a plain one-click approval is refused
    override    reserved for what widens authority or weakens protection (lifting a
                quarantine, a release down the cascade, a declassification): a cooling-off
                period, a diff and a TOTP code - never configurable lower, never for R8

Kernel-level because `maos.kernel.config.ConfigFile` validates it on the one reading of
the file; the levels are read above the kernel (services/hacf.py).

    "commander": {"levels": {"pay": "deliberate", "read": "inform"},
                  "cooling_off_s": 300, "notify_decisions": true}
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from maos.kernel.types import EffectClass

__all__ = ["DEFAULT_COOLING_OFF_S", "CommanderSection", "Level"]

DEFAULT_COOLING_OFF_S = 300.0
"""Five minutes between asking for an override and confirming it: long enough for a
person to notice the mail about it, short enough for an incident."""


class Level(StrEnum):
    """Ordered by how much a human is involved: `rank` compares them."""

    INFORM = "inform"
    RECOMMEND = "recommend"
    DELIBERATE = "deliberate"
    OVERRIDE = "override"

    @property
    def rank(self) -> int:
        return list(Level).index(self)


class CommanderSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    levels: dict[str, Level] = Field(default_factory=dict)
    """Effect class -> level; a class not named is ``recommend`` (what approvals were)."""
    cooling_off_s: float = Field(default=DEFAULT_COOLING_OFF_S, ge=0.0, le=7 * 24 * 3600.0)
    notify_decisions: bool = True
    """Mail/webhook the Commander (``security.notify_mail`` / ``notify_webhook``) when a
    decision waits and when an inform-level effect was carried out."""

    @field_validator("levels", mode="before")
    @classmethod
    def _levels(cls, value: object) -> object:
        if isinstance(value, dict):
            classes = {c.value for c in EffectClass if c is not EffectClass.KERNEL}
            for name, level in value.items():
                if name not in classes:
                    raise ValueError(
                        f"{name!r} is not an effect class ({', '.join(sorted(classes))})"
                    )
                if level == Level.OVERRIDE.value:
                    raise ValueError(
                        f"{name}: override is for the Commander's own widening actions,"
                        " not agents' effects"
                    )
            return {
                k: Level(v) if isinstance(v, str) and v in set(Level) else v
                for k, v in value.items()
            }
        return value

    def level(self, effect_class: str) -> Level:
        return self.levels.get(effect_class, Level.RECOMMEND)
