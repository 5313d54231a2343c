"""Pending approvals: intents parked until the Commander decides (R7, R10).

An approval is kernel state, not a conversation: the request, the decision and the
execution are three WAL records, so a decision survives a restart and an approved
intent runs exactly once (its idempotency key dedups at the Commit Layer). Only a
Commander principal can decide; the agent that asked is never one.

An approval belongs to its task (issue 9): when the task's plan ends, fails or is
stopped, and when Minimal Safe State engages, each pending one is either expired
(``approval.expired``: its outcome is the denial ``APPROVAL.EXPIRED`` and it can never
run) or explicitly kept until a time (``approval.kept``). A decision logged after that
time folds as expired too, so a late approval never executes, whoever wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from maos.kernel.errors import ApprovalError
from maos.kernel.types import Outcome, OutcomeStatus
from maos.kernel.walcheck import LOSS_ACCEPTED

__all__ = ["EXPIRED", "Approval", "ApprovalBook", "ApprovalStatus"]

EXPIRED = "APPROVAL.EXPIRED"
"""The outcome of an approval nobody decided while its task could still use it."""


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


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
    expires_at: float | None = None
    """Kept past its plan's end until then (``approval.kept``); None: until its plan ends."""
    packet_digest: str | None = None
    """The decision packet the approval named (`maos.kernel.packets`): it runs only while
    the intent and its label context still give that packet."""

    def expired_by(self, now: float) -> bool:
        """Whether a decision made at ``now`` comes too late."""
        return self.expires_at is not None and now > self.expires_at

    def refusal(self) -> Outcome:
        """The outcome of a decided approval that will not run: what its agent gets."""
        if self.status is ApprovalStatus.EXPIRED:
            code, reason = EXPIRED, f"the approval expired: {self.note}"
        else:
            code = "APPROVAL.DENIED"
            reason = f"the Commander ({self.decided_by}) refused: {self.note or self.reason}"
        intent_id = str(self.intent.get("intent_id", ""))
        return Outcome(
            intent_id, OutcomeStatus.DENIED, code=code, reason=reason, approval_id=self.approval_id
        )

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
            "expires_at": self.expires_at,
            "packet_digest": self.packet_digest,
        }


class ApprovalBook:
    """Approvals folded from the log; `apply` is idempotent so replays are harmless."""

    KINDS = frozenset(
        {
            "approval.pending",
            "approval.approved",
            "approval.denied",
            "approval.executed",
            "approval.expired",
            "approval.kept",
            LOSS_ACCEPTED,
        }
    )

    def __init__(self) -> None:
        self._items: dict[str, Approval] = {}

    def apply(self, kind: str, body: Mapping[str, Any]) -> list[Approval]:
        """Fold one record; returns the approvals whose decision it made (none for a
        request, an execution or a keep)."""
        if kind == "approval.expired":
            return [
                self._decide(known, ApprovalStatus.EXPIRED, body["principal"], body["reason"])
                for aid in body["approval_ids"]
                if (known := self._items.get(aid)) is not None
                and known.status is ApprovalStatus.PENDING
            ]
        if kind == "approval.kept":
            for aid in body["approval_ids"]:
                known = self._items.get(aid)
                if known is not None and known.status is ApprovalStatus.PENDING:
                    self._items[aid] = replace(known, expires_at=float(body["expires_at"]))
            return []
        one = self._apply_one(kind, body)
        return [] if one is None or kind == "approval.pending" else [one]

    def _decide(
        self, known: Approval, status: ApprovalStatus, principal: str, note: str
    ) -> Approval:
        item = replace(known, status=status, decided_by=principal, note=note)
        self._items[item.approval_id] = item
        return item

    def _apply_one(self, kind: str, body: Mapping[str, Any]) -> Approval | None:
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
            note = str(body.get("note", ""))
            if status is ApprovalStatus.APPROVED and known.expired_by(
                float(body.get("decided_at", 0.0))
            ):
                status, note = ApprovalStatus.EXPIRED, "approved after it expired"
            known = replace(known, packet_digest=body.get("packet_digest"))
            return self._decide(known, status, body["principal"], note)
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
            if item.outcome is not None or item.status in (
                ApprovalStatus.DENIED,
                ApprovalStatus.EXPIRED,  # settled: it never runs, lost records or not
            ):
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

    def require_pending(self, approval_id: str, principal: str, now: float) -> Approval:
        """The approval a decision may still change; an agent can never decide its own."""
        item = self.get(approval_id)
        if item.status is ApprovalStatus.EXPIRED or (
            item.status is ApprovalStatus.PENDING and item.expired_by(now)
        ):
            raise ApprovalError(
                EXPIRED,
                f"approval {approval_id} expired ({item.note or 'its time ran out'});"
                " it will never run - the agent may ask again in a new task",
                approval_id=approval_id,
            )
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

    def pending(self, task_id: str | None = None) -> list[Approval]:
        """Undecided approvals (of ``task_id`` only, when given)."""
        return [
            a
            for a in self.all()
            if a.status is ApprovalStatus.PENDING and task_id in (None, a.task_id)
        ]

    def due(self, now: float) -> list[Approval]:
        """Kept approvals whose time ran out: what a serving kernel expires (logged)."""
        return [a for a in self.pending() if a.expired_by(now)]

    def awaiting_execution(self) -> list[Approval]:
        """Approved, but no execution logged yet: what a booting kernel must still run."""
        return [a for a in self.all() if a.status is ApprovalStatus.APPROVED and a.outcome is None]
