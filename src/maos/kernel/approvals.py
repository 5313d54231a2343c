"""Pending approvals: intents parked until the Commander decides (R7, R10).

An approval is kernel state, not a conversation: the request, the decision and the
execution are three WAL records, so a decision survives a restart and an approved
intent runs exactly once (its idempotency key dedups at the Commit Layer). Only a
Commander principal can decide; the agent that asked is never one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from maos.kernel.errors import ApprovalError
from maos.kernel.walcheck import LOSS_ACCEPTED

__all__ = ["Approval", "ApprovalBook", "ApprovalStatus"]


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Approval:
    approval_id: str
    agent_id: str
    task_id: str
    rule: str
    """``R7`` or ``R10``: which rule asked for a human."""
    code: str
    reason: str
    intent: Mapping[str, Any]
    """The intent exactly as checked, in wire form, so it can be re-checked and run."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """What the decision packet shows: flagged targets and where they came from."""
    created_at: float = 0.0
    status: ApprovalStatus = ApprovalStatus.PENDING
    decided_by: str | None = None
    note: str = ""
    outcome: Mapping[str, Any] | None = None
    """What the approved intent came to, once run: logged, so a restart does not run it again."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "agent_id": self.agent_id,
            "task_id": self.task_id,
            "rule": self.rule,
            "code": self.code,
            "reason": self.reason,
            "intent": dict(self.intent),
            "details": dict(self.details),
            "created_at": self.created_at,
            "status": self.status.value,
            "decided_by": self.decided_by,
            "note": self.note,
            "outcome": dict(self.outcome) if self.outcome is not None else None,
        }


class ApprovalBook:
    """Approvals folded from the log; `apply` is idempotent so replays are harmless."""

    KINDS = frozenset(
        {
            "approval.pending",
            "approval.approved",
            "approval.denied",
            "approval.executed",
            LOSS_ACCEPTED,
        }
    )

    def __init__(self) -> None:
        self._items: dict[str, Approval] = {}

    def apply(self, kind: str, body: Mapping[str, Any]) -> Approval | None:
        """Fold one record; returns the approval it changed, if any."""
        if kind == "approval.pending":
            item = Approval(
                approval_id=body["approval_id"],
                agent_id=body["agent_id"],
                task_id=body["task_id"],
                rule=body["rule"],
                code=body["code"],
                reason=body["reason"],
                intent=body["intent"],
                details=body.get("details", {}),
                created_at=float(body.get("created_at", 0.0)),
            )
            self._items.setdefault(item.approval_id, item)
            return self._items[item.approval_id]
        if kind in ("approval.approved", "approval.denied"):
            known = self._items.get(body["approval_id"])
            if known is None or known.status is not ApprovalStatus.PENDING:
                return None
            status = (
                ApprovalStatus.APPROVED if kind == "approval.approved" else ApprovalStatus.DENIED
            )
            item = replace(
                known, status=status, decided_by=body["principal"], note=body.get("note", "")
            )
            self._items[item.approval_id] = item
            return item
        if kind == "approval.executed":
            ran = self._items.get(body["approval_id"])
            if ran is not None and ran.outcome is None:
                self._items[ran.approval_id] = replace(ran, outcome=body["outcome"])
            return None
        if kind == LOSS_ACCEPTED:
            self._lost(body)
        return None

    def _lost(self, body: Mapping[str, Any]) -> None:
        """The Commander accepted that the log lost records (``maos wal accept-loss``):
        an approval not yet carried out may have been decided and run in what was lost, so
        it is never run again. Approved ones keep their decision with an in-doubt outcome;
        pending ones are closed, and an agent that still needs the effect must ask anew."""
        why = (
            f"the log lost records after seq {body['seq']} (accepted by "
            f"{body['principal']}); this approval may have been carried out there"
        )
        for item in list(self._items.values()):
            if item.outcome is not None or item.status is ApprovalStatus.DENIED:
                continue
            outcome = {
                "intent_id": str(item.intent.get("intent_id", "")),
                "status": "in_doubt",
                "code": "WAL.RECORDS_LOST",
                "reason": why,
                "approval_id": item.approval_id,
            }
            status: ApprovalStatus = item.status
            if status is ApprovalStatus.PENDING:
                status, decided = ApprovalStatus.DENIED, str(body["principal"])
            else:
                decided = item.decided_by or str(body["principal"])
            self._items[item.approval_id] = replace(
                item, status=status, decided_by=decided, outcome=outcome
            )

    def get(self, approval_id: str) -> Approval:
        try:
            return self._items[approval_id]
        except KeyError:
            raise ApprovalError(
                "APPROVAL.NOT_FOUND", f"no approval {approval_id!r}", approval_id=approval_id
            ) from None

    def require_pending(self, approval_id: str, principal: str) -> Approval:
        """The approval a decision may still change; an agent can never decide its own."""
        item = self.get(approval_id)
        if principal in (item.agent_id, f"agent:{item.agent_id}"):
            raise ApprovalError(
                "APPROVAL.SELF_APPROVAL",
                "an agent cannot approve its own request",
                approval_id=approval_id,
            )
        if item.status is not ApprovalStatus.PENDING:
            raise ApprovalError(
                "APPROVAL.ALREADY_DECIDED",
                f"approval {approval_id} was already {item.status.value} by {item.decided_by}",
                approval_id=approval_id,
            )
        return item

    def all(self) -> list[Approval]:
        return sorted(self._items.values(), key=lambda a: a.created_at)

    def pending(self) -> list[Approval]:
        return [a for a in self.all() if a.status is ApprovalStatus.PENDING]

    def awaiting_execution(self) -> list[Approval]:
        """Approved, but no execution logged yet: what a booting kernel must still run."""
        return [a for a in self.all() if a.status is ApprovalStatus.APPROVED and a.outcome is None]
