"""Rule-Based Mode (seed §30.8): whether any provider answers, and what to do when none does.

    normal ──(the whole chain failed)──> rule_based ──(a probe answered)──> normal

In rule_based mode a completion is refused at once with ``LLM.RULE_BASED_MODE`` and no
network, so LLM-dependent cells pause cheaply while the kernel and the deterministic
cells run on. Once ``probe_interval`` has passed since the outage was seen, the next
completion is let through as the probe: if any provider answers, the mode is normal again.

The owner learns of each flip through ``on_change`` (the CLI logs it as an ``llm.mode``
record), so an outage is visible to the Commander and not only to the agent it stalls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

__all__ = ["Mode", "ProviderHealth"]


class Mode(StrEnum):
    NORMAL = "normal"
    RULE_BASED = "rule_based"


class ProviderHealth:
    """The mode, and when the next probe may run. Single event loop; not thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        probe_interval: float = 30.0,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if probe_interval < 0:
            raise ValueError("probe_interval must be >= 0")
        self._clock = clock
        self.probe_interval = probe_interval
        self.on_change = on_change
        """Called with `to_dict` after each flip, inside the completion that flipped it:
        it must return at once and not raise (schedule slow work on the loop)."""
        self.mode = Mode.NORMAL
        self.since: float = clock()
        """When the current mode began (the health clock's time)."""
        self.last_provider: str | None = None
        """Who answered last."""
        self.last_error: str | None = None
        """Why the chain last failed as a whole."""
        self.outages = 0
        self._next_probe = 0.0

    def may_call(self) -> bool:
        """True in normal mode, and in rule_based mode once a probe is due."""
        return self.mode is Mode.NORMAL or self._clock() >= self._next_probe

    def answered(self, provider: str) -> None:
        """A provider gave a usable completion: normal mode."""
        self.last_provider = provider
        if self.mode is not Mode.NORMAL:
            self.mode = Mode.NORMAL
            self.since = self._clock()
            self._changed()

    def all_failed(self, reason: str) -> None:
        """Every provider failed: rule_based until a probe, ``probe_interval`` from now."""
        now = self._clock()
        self.last_error = reason
        self._next_probe = now + self.probe_interval
        if self.mode is not Mode.RULE_BASED:
            self.mode = Mode.RULE_BASED
            self.since = now
            self.outages += 1
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """For ``maos status``: stable keys."""
        return {
            "mode": self.mode.value,
            "since": self.since,
            "last_provider": self.last_provider,
            "last_error": self.last_error,
            "outages": self.outages,
            "next_probe": self._next_probe if self.mode is Mode.RULE_BASED else None,
        }
