"""``config.json``'s ``resilience`` section: what the degradation modes allow, and the
Watchdog's heartbeat timing (docs/resilience.md has the reason for every default).

Kernel-level: the DSC enforces the modes and the Watchdog is Ring 0, so the section is
validated by `maos.kernel.config` on the one reading of the file, strictly (unknown keys,
wrong types and unknown ops are refused with ``BAD_INPUT.CONFIG`` and the field's path).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from maos.kernel.ops import OPS, TOOL_PREFIX

__all__ = ["DEFAULT_CRITICAL_OPS", "ResilienceSettings"]

DEFAULT_CRITICAL_OPS = (
    "admin.heartbeat",
    "fs.list",
    "fs.read",
    "fs.write",
    "lock.acquire",
    "lock.release",
    "msg.receive",
)
"""What Degraded-2 keeps (essential operations only): reading and writing the task's own
workspace, locks and liveness. Nothing leaves the machine and nothing is destroyed, so an
effect made while a critical service (the Security Agent, the SSE) is down is one that
stays inside MAOS and can be looked at once the service is back."""


class ResilienceSettings(BaseModel):
    """The section, validated; every field has a default, so ``{}`` is the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    critical_ops: tuple[str, ...] = Field(default=DEFAULT_CRITICAL_OPS, max_length=64)
    """Ops agents may still use in Degraded-2 (and, of those, the read-class ones in
    Degraded-3): built-in op names or ``tool.<name>``."""
    heartbeat_s: float = Field(default=0.1, gt=0.0, le=60.0)
    """The nominal heartbeat period of services and pods (seed: 100 ms)."""
    missed_beats: int = Field(default=5, ge=1, le=1000)
    """Beats in a row without one arriving before the Watchdog records a miss: one late
    beat on a loaded machine is not a failure, five (half a second) is."""

    pod_missed_beats: int = Field(default=100, ge=1, le=100_000)
    """The same for a pod: ten seconds at 100 ms. Restarting a pod repeats its effects
    from its clean image, so it must be wedged or stopped, not merely slow: on this
    loaded two-core machine a pod importing an agent framework, or the kernel's own loop
    busy with a burst of checks, is late by seconds without anything being wrong."""

    start_grace_s: float = Field(default=30.0, gt=0.0, le=600.0)
    """How long a member just enrolled has for its first beat: a service process imports
    MAOS before it beats, which takes seconds on a loaded machine."""

    tsca_budget: int = Field(default=3, ge=1, le=100)
    """Recovery actions the TSCA may take per incident before it hands over to the
    Commander in Minimal Safe State (seed §38.7: it cannot take unlimited actions)."""

    @field_validator("critical_ops")
    @classmethod
    def _known_ops(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for op in value:
            if op not in OPS and not (op.startswith(TOOL_PREFIX) and len(op) > len(TOOL_PREFIX)):
                raise ValueError(f"{op!r} is not an op (built-in names or tool.<name>)")
        return tuple(sorted(set(value)))
