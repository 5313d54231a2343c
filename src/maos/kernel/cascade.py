"""The quarantine cascade's stages (seed §37.8) as kernel state: each one a logged order.

    stage            status       what it means
    normal           active       nothing known against the agent
    observation      active       more monitoring, no restriction: every effect goes to
                                  the SSE (or the heuristic evaluator), for a window
    soft_isolation   isolated     nothing outbound; the pod keeps running
    hard_isolation   quarantined  every gateway closed and the pod FROZEN, not killed
    elimination      killed       only after the Commander approved (an approval with a
                                  decision packet); its state kept for root-cause analysis
    healing          killed       the eliminated agent, replaced by a clean copy with a new
                                  identity and token (``replaced_by``)

A stage is a refinement of the agent's status: an ``agent.stage`` record sets both, and
the Commander's ``agent.status`` orders (isolate, quarantine, kill, resume) move the stage
with them, so the two can never disagree. Escalation is the Security Agent's (Ring 1,
``service:security``) on confirmed danger signals; de-escalation needs a clean
observation window or the Commander (``maos agent release ID --to STAGE``,
`release_order`).

Elimination asks the Commander through the approvals mechanism: `elimination_request`
builds an ``approval.pending`` whose intent is the order itself (op `ELIMINATE_OP`,
rule R8, its decision packet in ``details``). The kernel never runs it as an agent's
intent: an approved one becomes `elimination_order` (status killed, stage elimination,
principal the approver), and a denied one leaves the agent in hard isolation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from maos.kernel.approvals import Approval
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import StateError
from maos.kernel.orders import Order
from maos.kernel.registry import Registry, check_principal
from maos.kernel.stages import RELEASE_TO, STAGE_STATUS, Stage
from maos.kernel.types import Outcome, OutcomeStatus

__all__ = [
    "ELIMINATE_OP",
    "ELIMINATION_RULE",
    "eliminated",
    "elimination_order",
    "elimination_request",
    "is_elimination",
    "rca_dir",
    "release_order",
    "stage_order",
]

ELIMINATE_OP = "admin.eliminate"
ELIMINATION_RULE = "R8"
SECURITY_SERVICE = "service:security"
"""The Security Agent's principal: the one Ring 1 service that moves agents itself (its
records reach the log through `Kernel.services`, checked against its charter)."""


def _check_actor(principal: str, registry: Registry) -> None:
    """The Commander, or the Security Agent (a release stays the Commander's alone)."""
    if principal != SECURITY_SERVICE:
        check_principal(principal, registry)


def stage_order(
    registry: Registry,
    agent_id: str,
    stage: Stage,
    *,
    cause: str,
    principal: str,
    at: float,
    score: float = 0.0,
    evidence: Sequence[Mapping[str, Any]] = (),
    replaced_by: str | None = None,
) -> Order:
    """Move a registered agent to ``stage`` with its cause; only a Commander principal
    (the Commander, or the Security Agent as ``service:security``) may. Elimination
    goes through `elimination_request`, never straight here."""
    _check_actor(principal, registry)
    agent = registry.agent(agent_id)
    if stage is Stage.ELIMINATION:
        raise StateError(
            "STATE.CASCADE.NEEDS_APPROVAL",
            f"{agent_id}: elimination needs the Commander's approval (elimination_request)",
        )
    if stage is Stage.HEALING and agent.stage is not Stage.ELIMINATION:
        raise StateError(
            "STATE.CASCADE.NOT_ELIMINATED", f"{agent_id} is {agent.stage.value}, not eliminated"
        )
    ended = agent.stage.rank >= Stage.ELIMINATION.rank or agent.status is AgentStatus.KILLED
    if ended and stage is not Stage.HEALING:
        raise StateError(
            "STATE.CASCADE.ENDED", f"{agent_id} was {agent.stage.value}; it runs no more"
        )
    body: dict[str, Any] = {
        "agent_id": agent_id,
        "stage": stage.value,
        "status": STAGE_STATUS[stage].value,
        "from": agent.stage.value,
        "cause": cause,
        "score": round(score, 3),
        "evidence": [dict(e) for e in evidence],
        "principal": principal,
        "at": at,
    }
    if replaced_by is not None:
        body["replaced_by"] = replaced_by
    return Order("agent.stage", body)


def release_order(
    registry: Registry,
    agent_id: str,
    to: Stage,
    *,
    principal: str,
    at: float,
    override: str | None = None,
) -> Order:
    """The Commander lets an agent down the cascade (``maos agent release ID --to``):
    only to a lower stage, and never into one that ends it; under a confirmed override
    once the Commander enrolled a second factor (`maos.kernel.overrides`)."""
    check_principal(principal, registry)
    agent = registry.agent(agent_id)
    if to not in RELEASE_TO or to.rank >= agent.stage.rank:
        allowed = ", ".join(s.value for s in RELEASE_TO if s.rank < agent.stage.rank)
        raise StateError(
            "STATE.CASCADE.NOT_A_RELEASE",
            f"{agent_id} is {agent.stage.value}; it can be released to: {allowed or 'nothing'}",
        )
    marker = registry.overrides.require("release", agent_id, to.value, override)
    cause = f"released by {principal} from {agent.stage.value}"
    order = stage_order(registry, agent_id, to, cause=cause, principal=principal, at=at)
    return Order(order.kind, {**order.body, **marker})


def elimination_request(
    registry: Registry,
    agent_id: str,
    *,
    approval_id: str,
    cause: str,
    score: float,
    evidence: Sequence[Mapping[str, Any]],
    rca: str,
    principal: str,
    at: float,
) -> Order:
    """Ask the Commander to eliminate a hard-isolated agent: an approval whose decision
    packet holds the cause, the score, the evidence and where the RCA material is."""
    _check_actor(principal, registry)
    agent = registry.agent(agent_id)
    if agent.stage is not Stage.HARD_ISOLATION:
        raise StateError(
            "STATE.CASCADE.NOT_HARD", f"{agent_id} is {agent.stage.value}, not hard-isolated"
        )
    intent = {
        "intent_id": approval_id,
        "task_id": "",
        "op": ELIMINATE_OP,
        "target": agent_id,
        "idempotency_key": approval_id,
        "params": {},
    }
    details = {
        "op": ELIMINATE_OP,
        "targets": [agent_id],
        "cause": cause,
        "danger_score": round(score, 3),
        "evidence": [dict(e) for e in evidence],
        "rca": rca,
        "asked_by": principal,
        "stage_at": agent.stage_at,
    }
    body = {
        "approval_id": approval_id,
        "agent_id": agent_id,
        "task_id": "",
        "rule": ELIMINATION_RULE,
        "code": "SECURITY.ELIMINATION",
        "reason": f"eliminate {agent_id} (hard-isolated: {cause})",
        "intent": intent,
        "details": details,
        "created_at": at,
    }
    return Order("approval.pending", body)


def rca_dir(data_dir: Path, agent_id: str) -> Path:
    """Where an agent's root-cause material is kept (workspace, pod log, log excerpt)."""
    return data_dir / "rca" / agent_id


def is_elimination(intent: Mapping[str, Any]) -> bool:
    """Whether an approval's intent is an elimination order rather than an agent's intent."""
    return intent.get("op") == ELIMINATE_OP


def elimination_order(registry: Registry, item: Approval, at: float) -> Order:
    """What an approved elimination comes to: the agent killed, as the approver."""
    agent = registry.agent(item.agent_id)
    body = {
        "agent_id": agent.agent_id,
        "stage": Stage.ELIMINATION.value,
        "status": AgentStatus.KILLED.value,
        "from": agent.stage.value,
        "cause": f"{item.decided_by} approved the elimination ({item.approval_id})",
        "score": agent.danger,
        "evidence": [dict(e) for e in agent.evidence],
        "principal": str(item.decided_by),
        "at": at,
    }
    return Order("agent.stage", body)


def eliminated(item: Approval) -> Outcome:
    """The outcome an approved elimination is logged with (``approval.executed``)."""
    return Outcome(
        item.approval_id,
        OutcomeStatus.COMMITTED,
        value={"eliminated": item.agent_id},
        approval_id=item.approval_id,
    )
