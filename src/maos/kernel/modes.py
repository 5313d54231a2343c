"""The degradation modes (seed §38): how much of MAOS keeps running while parts of it fail.

    normal      everything
    degraded-1  a non-critical service is down: Ring 3 agents paused (their intents
                refused), no new agents, no promotions (never allowed without onboarding)
    degraded-2  a critical service is down: essential operations only - the ops in
                ``resilience.critical_ops`` - and Ring 3 still paused
    degraded-3  several failures: of those, only read-class effects (and liveness);
                the Commander's orders, which are not intents, are untouched
    mss         Minimal Safe State: every intent refused but apoptosis (R9)

Each mode includes the restrictions of the ones below it. A mode is demanded by a
*source* (``health``: the Service Manager from service health; ``federation``: the
progressive restriction of a node cut off from its parent; ``tsca``; ``commander``) as
one ``kernel.mode`` record, body ``{source, mode, cause, principal}``; the registry keeps
the latest demand per source, and the effective mode is the most severe demand - MSS
whenever the Commander's ``kernel.safe_state`` is on. A source leaves its mode by
demanding ``normal``. Demands are records, so a restart and the CLI see the same mode.

The DSC enforces the effective mode as check 5b (`ModeCheck`, after the rules, so an R8
refusal keeps its own code): a refusal is ``MODE.<MODE>`` (``MODE.DEGRADED_2``). R8
always holds: the Commander's pause, kill, quarantine and MSS are orders, never intents,
and apoptosis runs before every check, so no mode can stand in their way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from maos.kernel.errors import InputError, StateError
from maos.kernel.ops import OpSpec, effect_classes_of
from maos.kernel.resilience import DEFAULT_CRITICAL_OPS
from maos.kernel.types import Deny, EffectClass

if TYPE_CHECKING:
    from maos.kernel.dsc.base import CheckInput

__all__ = [
    "ALLOWS",
    "KIND",
    "SOURCES",
    "Mode",
    "ModeCheck",
    "ModeDemands",
    "admit_agent",
    "check_demand",
    "mode_report",
]

KIND = "kernel.mode"
SOURCES = ("health", "federation", "tsca", "commander")
"""Who demands modes; a demand from any other source is refused (and one in the log
from an unknown source still counts: the fold never drops a restriction)."""
MAX_CAUSE = 500


class Mode(StrEnum):
    """Ordered by severity: ``NORMAL < DEGRADED_1 < DEGRADED_2 < DEGRADED_3 < MSS``."""

    NORMAL = "normal"
    DEGRADED_1 = "degraded-1"
    DEGRADED_2 = "degraded-2"
    DEGRADED_3 = "degraded-3"
    MSS = "mss"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def code(self) -> str:
        """The deny code of an intent this mode refuses: ``MODE.DEGRADED_2``."""
        return "MODE." + self.name

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _RANK[self] < _RANK[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _RANK[self] <= _RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _RANK[self] > _RANK[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return _RANK[self] >= _RANK[other]


_RANK = {mode: n for n, mode in enumerate(Mode)}

ALLOWS: Mapping[Mode, str] = {
    Mode.NORMAL: "everything the checks allow",
    Mode.DEGRADED_1: "Ring 2 agents as normal; Ring 3 paused; no new agents",
    Mode.DEGRADED_2: "Ring 2 agents: only resilience.critical_ops; Ring 3 paused",
    Mode.DEGRADED_3: "Ring 2 agents: only read-class critical ops; Ring 3 paused",
    Mode.MSS: "no intent but apoptosis; pods stopped",
}
"""What each mode allows, for status reports and docs/resilience.md."""


class ModeDemands:
    """The latest demand of each source, folded from ``kernel.mode`` records."""

    __slots__ = ("causes", "demands", "effective")

    def __init__(self) -> None:
        self.demands: dict[str, Mode] = {}
        self.causes: dict[str, Mapping[str, Any]] = {}
        self.effective = Mode.NORMAL
        """The most severe demand (the Commander's MSS is the registry's to add)."""

    def apply(self, body: Mapping[str, Any]) -> None:
        source = str(body.get("source", "?"))
        try:
            mode = Mode(str(body.get("mode")))
        except ValueError:  # a mode this version does not know: the most severe one
            mode = Mode.MSS
        if mode is Mode.NORMAL:
            self.demands.pop(source, None)
            self.causes.pop(source, None)
        else:
            self.demands[source] = mode
            self.causes[source] = dict(body)
        self.effective = max(self.demands.values(), default=Mode.NORMAL)


def check_demand(
    source: str, mode: object, cause: str, principal: str, agents: Collection[str]
) -> dict[str, Any]:
    """The body of a ``kernel.mode`` record, or the reason there is none. An agent never
    demands a mode (nor lifts one); the Commander's source is checked by the caller
    (`maos.kernel.orders.mode`) like any Commander order."""
    if source not in SOURCES:
        raise InputError(
            "BAD_INPUT.MODE_SOURCE", f"mode source must be one of {', '.join(SOURCES)}"
        )
    try:
        chosen = Mode(mode if isinstance(mode, str) else "")
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise InputError("BAD_INPUT.MODE", f"mode must be one of {names}") from None
    if not isinstance(cause, str) or not cause.strip() or len(cause) > MAX_CAUSE:
        raise InputError("BAD_INPUT.MODE_CAUSE", f"a mode needs a cause of 1-{MAX_CAUSE} chars")
    if principal in agents or principal.startswith("agent:"):
        raise StateError("STATE.NOT_COMMANDER", f"{principal!r} is an agent; it demands no mode")
    commander = principal == "commander" or principal.startswith("commander:")
    if not (principal == "kernel" or principal.startswith("service:") or commander):
        raise StateError(
            "STATE.MODE.PRINCIPAL",
            f"{principal!r} may not demand a mode (kernel, service:<name> or the Commander)",
        )
    return {"source": source, "mode": chosen.value, "cause": cause, "principal": principal}


def admit_agent(mode: Mode, agent_id: str, known: bool) -> None:
    """Degraded-1 and beyond admit no new agent (the seed: "no new agents/promotions");
    an agent already known may still have its limits changed (only ever down)."""
    if mode is not Mode.NORMAL and not known:
        raise StateError(
            "STATE.MODE.NO_NEW_AGENTS",
            f"the system is in {mode.value}: no new agent ({agent_id}) until it is normal",
            mode=mode.value,
        )


_READ_OK = frozenset({EffectClass.READ})
_LIVENESS = "admin.heartbeat"


class ModeCheck:
    """Check 5b: refuses what the effective mode does not allow (see the module doc)."""

    __slots__ = ("_critical", "_ops", "name")

    def __init__(
        self, ops: Mapping[str, OpSpec], critical_ops: Collection[str] = DEFAULT_CRITICAL_OPS
    ) -> None:
        self.name = "mode"
        self._ops = ops
        self._critical = frozenset(critical_ops)

    def __call__(self, inp: CheckInput) -> Deny | None:
        mode = inp.mode
        if mode is Mode.NORMAL:
            return None
        if mode is Mode.MSS:
            return self._deny(mode, "Minimal Safe State: only apoptosis runs")
        if inp.agent.ring >= 3:
            return self._deny(mode, "Ring 3 agents are paused until the system is normal")
        if mode is Mode.DEGRADED_1:
            return None
        op = inp.intent.op
        if op not in self._critical:
            return self._deny(mode, f"{op} is not a critical op (resilience.critical_ops)")
        if mode is Mode.DEGRADED_3 and op != _LIVENESS:
            spec = self._ops.get(op)
            if spec is None or not _READ_OK.issuperset(effect_classes_of(spec, inp.intent.params)):
                return self._deny(mode, f"{op} is not a read; only reads run")
        return None

    def _deny(self, mode: Mode, why: str) -> Deny:
        return Deny(mode.code, f"the system is in {mode.value}: {why}", check=self.name)


def mode_report(demands: ModeDemands, effective: Mode) -> dict[str, Any]:
    """The mode as status reports show it: effective, what it allows, and each demand."""
    return {
        "mode": effective.value,
        "allows": ALLOWS[effective],
        "demands": {
            source: {
                "mode": mode.value,
                "cause": str(demands.causes[source].get("cause", "")),
                "principal": str(demands.causes[source].get("principal", "")),
            }
            for source, mode in sorted(demands.demands.items())
        },
    }
