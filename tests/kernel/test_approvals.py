"""The approval fold decides expiry (issue 9): every process folding the same log agrees
that a decision made after an approval's time ran out never runs."""

from __future__ import annotations

from typing import Any

import pytest

from maos.kernel.approvals import EXPIRED, ApprovalBook, ApprovalStatus
from maos.kernel.errors import ApprovalError

PENDING: dict[str, Any] = {
    "approval_id": "ap-1",
    "agent_id": "a1",
    "task_id": "t1",
    "rule": "R10",
    "code": "RULE.R10.UNTRUSTED_TARGET",
    "reason": "a target nobody named",
    "intent": {"intent_id": "i1", "op": "email.send", "target": "x@evil.example"},
    "created_at": 10.0,
}


def kept_until(when: float) -> ApprovalBook:
    book = ApprovalBook()
    book.apply("approval.pending", PENDING)
    book.apply(
        "approval.kept",
        {"approval_ids": ["ap-1"], "expires_at": when, "reason": "plan done", "principal": "c"},
    )
    return book


@pytest.mark.parametrize(("decided_at", "status"), [(99.0, "approved"), (101.0, "expired")])
def test_an_approval_logged_after_the_expiry_folds_as_expired(
    decided_at: float, status: str
) -> None:
    book = kept_until(100.0)
    changed = book.apply(
        "approval.approved",
        {"approval_id": "ap-1", "principal": "commander", "decided_at": decided_at},
    )
    assert [a.status.value for a in changed] == [status]
    assert book.awaiting_execution() == ([] if status == "expired" else changed)


def test_deciding_an_expired_approval_is_refused_with_its_code() -> None:
    book = kept_until(100.0)
    assert book.due(99.0) == [] and [a.approval_id for a in book.due(101.0)] == ["ap-1"]
    with pytest.raises(ApprovalError) as late:
        book.require_pending("ap-1", "commander", now=101.0)
    assert late.value.code == EXPIRED
    book.apply(
        "approval.expired",
        {"approval_ids": ["ap-1"], "code": EXPIRED, "reason": "plan failed", "principal": "c"},
    )
    assert book.get("ap-1").status is ApprovalStatus.EXPIRED
    with pytest.raises(ApprovalError) as again:
        book.require_pending("ap-1", "commander", now=0.0)
    assert again.value.code == EXPIRED
    # A decision that arrives after the expiry record changes nothing.
    assert book.apply("approval.approved", {"approval_id": "ap-1", "principal": "c"}) == []
