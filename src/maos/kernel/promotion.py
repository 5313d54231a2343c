"""Promotion: an agent moves inward (ring 3 to ring 2) only through re-onboarding (R5).

The seed: "Inward promotion requires full 5-stage re-onboarding. Outward demotion is
instant at any time." Demotion is `Kernel.register_agent` with a higher ring, one step.
Moving inward widens authority, so it is an Override (docs/hacf.md) - and only that:
before a second factor is enrolled there is no promotion at all (``HACF.NOT_ENROLLED``),
since nothing ever allowed one in one step. It does not change the agent's ring in
place: the agent is onboarded again as a **fresh identity** at the new ring, and the old
identity ends, so nothing it held - its tokens (bound to their holder), its context
label, its pod's memory - carries over; the new identity gets its tokens from the task
that starts it, like any agent. Five stages, each one ``agent.onboarding`` record:

    1 override   the Commander's override confirmed (cooling-off, diff, TOTP): logged
                 by the confirmation itself, naming the new identity
    2 checked    still eligible: the agent active and at the cascade's normal stage, the
                 system in normal mode (degraded modes admit no promotion, and a node
                 cut off from the Sovereign demands one), the node not cut off
    3 identity   the new identity registered at the new ring (``agent.registered``), with
                 the old one's rate limits and budgets
    4 retired    the old identity killed (R8: its pods stop, its tokens are refused)
    5 admitted   ``agent.promoted`` {agent_id, new_id, from_ring, to_ring, override_id}

Nothing here can be done by an agent: every stage checks a Commander principal, and an
agent's intents naming promotion are refused by R5 before they reach anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import InputError, StateError
from maos.kernel.modes import Mode
from maos.kernel.orders import Order
from maos.kernel.overrides import FIELD
from maos.kernel.registry import Registry, check_principal
from maos.kernel.stages import Stage

if TYPE_CHECKING:
    from maos.kernel.kernel import Kernel

__all__ = [
    "ONBOARDING",
    "PROMOTED",
    "STAGES",
    "diff",
    "eligible",
    "first_stage",
    "new_identity",
    "onboard",
]

ONBOARDING = "agent.onboarding"
PROMOTED = "agent.promoted"
STAGES = ("override", "checked", "identity", "retired", "admitted")


def new_identity(agent_id: str, ring: int, registry: Registry) -> str:
    """``<base>-r<ring>``, then ``-2``, ``-3`` ...: the first id not registered yet."""
    base = f"{agent_id[:56]}-r{ring}"
    candidate, n = base, 2
    while candidate in registry.agents:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def eligible(registry: Registry, agent_id: str, ring: int, *, cut_off: bool = False) -> None:
    """Refuse a promotion that cannot be onboarded now (stage 2, and at the request)."""
    agent = registry.agent(agent_id)
    if ring not in (2, 3) or ring >= agent.ring:
        raise InputError(
            "BAD_INPUT.RING",
            f"{agent_id} runs in ring {agent.ring}; a promotion moves it inward to ring 2"
            " (moving outward is instant: Kernel.register_agent at ring 3)",
        )
    if not registry.overrides.enrolled:
        raise StateError(
            "HACF.NOT_ENROLLED",
            "a promotion is an override: it needs the Commander's second factor",
            hint="maos commander enroll",
        )
    if agent.status is not AgentStatus.ACTIVE or agent.stage is not Stage.NORMAL:
        raise StateError(
            "STATE.PROMOTION.NOT_ELIGIBLE",
            f"{agent_id} is {agent.status.value} at the cascade's {agent.stage.value} stage:"
            " only an active agent in good standing is onboarded again",
        )
    if registry.mode is not Mode.NORMAL:
        raise StateError(
            "STATE.MODE.NO_PROMOTIONS",
            f"the system is in {registry.mode.value}: no promotion until it is normal",
            mode=registry.mode.value,
        )
    if cut_off:
        _cut_off()


def _cut_off() -> None:
    raise StateError(
        "FED.CUT_OFF", "this node has lost the Sovereign: no promotion until the link heals"
    )


def diff(registry: Registry, agent_id: str, ring: int) -> dict[str, list[Any]]:
    """What a promotion changes, for its override: the ring, and the identity it gets."""
    eligible(registry, agent_id, ring)
    agent = registry.agent(agent_id)
    return {
        "ring": [agent.ring, ring],
        "identity": [agent_id, new_identity(agent_id, ring, registry)],
    }


def first_stage(
    registry: Registry, agent_id: str, ring: int, override_id: str, principal: str
) -> dict[str, Any]:
    """The body of stage 1, logged under the confirmed override (it marks it used)."""
    check_principal(principal, registry)
    held = registry.overrides.require("promote", agent_id, str(ring), override_id)
    changes = diff(registry, agent_id, ring)
    return {
        "agent_id": agent_id,
        "new_id": changes["identity"][1],
        "ring": ring,
        "stage": STAGES[0],
        "principal": principal,
        **held,
    }


async def onboard(
    kernel: Kernel, override_id: str, *, principal: str, cut_off: bool = False
) -> str:
    """Stages 2 to 5 of a promotion whose override was confirmed; the new identity."""
    registry = kernel.registry
    check_principal(principal, registry)
    if cut_off:  # said first: nothing about the override is looked at on cached policy
        _cut_off()
    item = registry.overrides.get(override_id)
    started = _stage_one(kernel, override_id)
    if item.action != "promote" or item.status != "done" or started is None:
        raise StateError("HACF.OVERRIDE_UNCONFIRMED", f"override {override_id} is no promotion")
    if any(r.body.get(FIELD) == override_id for r in kernel.wal.read(kinds=[PROMOTED])):
        raise StateError("HACF.ALREADY_EXECUTED", f"promotion {override_id} was onboarded")
    old_id, new_id, ring = item.subject, str(started["new_id"]), int(item.to)
    old = registry.agent(old_id)
    logged = _stages(kernel, old_id, new_id)  # an onboarding a crash cut short resumes
    retired = STAGES[3] in logged or (STAGES[2] in logged and old.status is AgentStatus.KILLED)
    if not retired:  # past retiring the old identity there is no way back: only forward
        eligible(registry, old_id, ring, cut_off=cut_off)
    base = {"agent_id": old_id, "new_id": new_id, "ring": ring, "principal": principal}

    async def stage(name: str) -> None:
        if name not in logged:
            await kernel.cascade(Order(ONBOARDING, {**base, "stage": name}))

    await stage(STAGES[1])
    if STAGES[2] not in logged:
        await kernel.register_agent(
            new_id,
            ring=ring,
            rate_per_s=old.rate_per_s,
            burst=old.burst,
            budgets=kernel.ledger.limits_of(old_id),
            principal=principal,
        )
    await stage(STAGES[2])
    if not retired:
        await kernel.set_agent_status(old_id, AgentStatus.KILLED, principal=principal)
    await stage(STAGES[3])
    done = {**base, "stage": STAGES[4], "from_ring": old.ring, FIELD: override_id}
    await kernel.cascade(Order(PROMOTED, done))
    return new_id


def _stages(kernel: Kernel, old_id: str, new_id: str) -> set[str]:
    """The stages after the first already logged for this onboarding."""
    return {
        str(rec.body.get("stage"))
        for rec in kernel.wal.read(kinds=[ONBOARDING])
        if rec.body.get("agent_id") == old_id and rec.body.get("new_id") == new_id
    } - {STAGES[0]}


def _stage_one(kernel: Kernel, override_id: str) -> Mapping[str, Any] | None:
    for rec in kernel.wal.read(kinds=[ONBOARDING]):
        if rec.body.get(FIELD) == override_id and rec.body.get("stage") == STAGES[0]:
            return rec.body
    return None
