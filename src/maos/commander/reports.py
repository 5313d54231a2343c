"""What the dashboard shows beyond the kernel's own status report: each task's status and
spend, the approvals already decided, and one agent's page.

Everything here is read from the kernel's folds (registry, approvals, budget ledger,
token cache) or from the log through `maos.commander.search`; nothing writes.
"""

from __future__ import annotations

from typing import Any

from maos.commander.search import LogFilter, LogSearch
from maos.kernel.approvals import Approval, ApprovalStatus
from maos.kernel.dsc.budget import Usage
from maos.kernel.kernel import Kernel
from maos.kernel.stages import Stage

__all__ = ["DECIDED", "PlanStatus", "agent_page", "decided", "tasks"]

DECIDED = 20
"""Decided approvals the page lists, newest first."""
RECENT_INTENTS = 25
_PLAN_KINDS = ("plan.started", "plan.resumed", "plan.done")
_INTENT_KINDS = ("intent.committed", "intent.denied", "intent.failed", "approval.pending")


class PlanStatus:
    """Each task's plan status, folded from the log's ``plan.*`` records as they come
    (a plan run by `maos run` in another process shows too); reads only what is new."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._seq = 0
        self._status: dict[str, str] = {}

    def __call__(self) -> dict[str, str]:
        for rec in self._kernel.wal.read(since_seq=self._seq, kinds=_PLAN_KINDS):
            task = str(rec.body.get("task_id", ""))
            done = str(rec.body.get("status", "done"))
            self._status[task] = done if rec.kind == "plan.done" else "running"
            self._seq = rec.seq
        return self._status


def _cost(tokens: int, api_calls: int, money_cents: int) -> dict[str, int]:
    return {"tokens": tokens, "api_calls": api_calls, "money_cents": money_cents}


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    """An account as the page shows it: spent, reserved by intents in flight, limit."""
    if usage is None:
        return None
    spent, held, limit = usage.spent, usage.reserved, usage.limit
    return {
        "spent": _cost(spent.tokens, spent.api_calls, spent.money_cents),
        "reserved": _cost(held.tokens, held.api_calls, held.money_cents),
        "limit": None if limit is None else _cost(limit.tokens, limit.api_calls, limit.money_cents),
    }


def tasks(kernel: Kernel, plans: PlanStatus) -> list[dict[str, Any]]:
    """Every open task: its plan's status (``open`` when no plan runs it), what it spent
    against its budget, and how far down its data may flow."""
    status = plans()
    rows = []
    for task_id in sorted(kernel.registry.tasks):
        task = kernel.registry.tasks[task_id]
        rows.append(
            {
                "task_id": task_id,
                "status": status.get(task_id, "open"),
                "budget": _usage(kernel.ledger.usage(task_id=task_id)),
                "declassified_to": None
                if task.declassified_to is None
                else task.declassified_to.name.lower(),
            }
        )
    return rows


def decided(kernel: Kernel) -> list[dict[str, Any]]:
    """The latest decided approvals with who decided and what the intent came to."""
    done = [a for a in kernel.approvals.all() if a.status is not ApprovalStatus.PENDING]
    return [
        {
            "approval_id": a.approval_id,
            "agent_id": a.agent_id,
            "task_id": a.task_id,
            "op": str(a.intent.get("op", "")),
            "target": str(a.intent.get("target", "")),
            "rule": a.rule,
            "created_at": a.created_at,
            "status": a.status.value,
            "decided_by": a.decided_by,
            "note": a.note,
            "outcome": _outcome(a),
        }
        for a in done[::-1][:DECIDED]
    ]


def _outcome(a: Approval) -> dict[str, Any] | None:
    """What the intent came to: logged once it ran; a denied or expired one never runs,
    and its agent got the refusal."""
    if a.outcome is not None:
        return dict(a.outcome)
    if a.status is ApprovalStatus.APPROVED:
        return None  # approved, not carried out yet
    return a.refusal().to_dict()


def agent_page(kernel: Kernel, search: LogSearch, agent_id: str) -> dict[str, Any]:
    """One agent: its report (ring, status, context label, cascade stage, danger score
    and evidence), its budget spent, the tokens this kernel saw it present, and its
    latest intents. `StateError` ``STATE.UNKNOWN_AGENT`` for an agent never registered."""
    kernel.registry.agent(agent_id)
    report = kernel.registry.agents_report()[agent_id]
    revoked = kernel.tokens.revocations.ids()
    seen = [
        {
            "task_id": t.task_id,
            "expires_at": t.expires_at,
            "grants": [f"{g.op} {g.resource}" for g in t.grants],
            "blocks": t.blocks,
            "revocation_id": t.revocation_ids[0],
            "revoked": not revoked.isdisjoint(t.revocation_ids),
        }
        for t in kernel.tokens.seen_for(agent_id)
    ]
    intents = search.records(LogFilter(agent=agent_id, limit=RECENT_INTENTS), _INTENT_KINDS)
    return {
        "agent_id": agent_id,
        **report,
        "stages": [s.value for s in Stage],
        "budget": _usage(kernel.ledger.usage(agent_id=agent_id)),
        "tokens": seen,
        "intents": intents,
    }
