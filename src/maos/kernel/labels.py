"""Information-flow labels and their lattice.

A label is (confidentiality, integrity, sources). Joining takes the higher
confidentiality, the lower integrity and the union of sources, so an agent's context
label only ever rises in confidentiality and falls in integrity as it reads more.
Invariant: ``a.join(b)`` is an upper bound of both ``a`` and ``b`` under ``flows_to``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["BOTTOM", "Conf", "Integrity", "Label"]


class Conf(IntEnum):
    """Confidentiality levels, ordered: data may flow up, never down without declassification."""

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    SECRET = 3


class Integrity(IntEnum):
    """Integrity levels: higher is more trusted. Untrusted content is data, never authority."""

    UNTRUSTED = 0
    TRUSTED = 1


@dataclass(frozen=True, slots=True)
class Label:
    """The label carried by every value the kernel hands to an agent."""

    conf: Conf = Conf.PUBLIC
    """How secret the value is."""
    integrity: Integrity = Integrity.TRUSTED
    """Whether the value came only from trusted principals."""
    sources: frozenset[str] = field(default_factory=frozenset)
    """Where the value came from (URLs, paths, principals), for provenance and approvals."""

    def join(self, other: Label) -> Label:
        """Least upper bound: what a context holding both values is labelled."""
        return Label(
            Conf(max(self.conf, other.conf)),
            Integrity(min(self.integrity, other.integrity)),
            self.sources | other.sources,
        )

    def flows_to(self, other: Label) -> bool:
        """True when a value labelled ``self`` may go where ``other`` is allowed, undeclassified."""
        return self.conf <= other.conf and self.integrity >= other.integrity

    @property
    def trusted(self) -> bool:
        return self.integrity is Integrity.TRUSTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "conf": self.conf.name.lower(),
            "integrity": self.integrity.name.lower(),
            "sources": sorted(self.sources),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Label:
        return cls(
            Conf[str(raw["conf"]).upper()],
            Integrity[str(raw["integrity"]).upper()],
            frozenset(str(s) for s in raw.get("sources", ())),
        )


BOTTOM = Label()
"""Public and trusted with no sources: the label of a fresh agent's empty context."""
