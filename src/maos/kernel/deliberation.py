"""The agent's side of Deliberate: reading the Commander's questions, answering them.

A deliberation is about one parked intent (an approval at the deliberate level, or any
approval the Commander chose to ask about). The Commander asks (``hacf.asked``) or edits
the proposal (``hacf.edited``) from the console or the dashboard (services/hacf.py);
the agent reads them and answers from inside its pod with two of its own ops, which go
through the whole DSC like any intent (a capability for ``admin.questions`` /
``admin.answer``, rate limits, modes, the pre-filter over the answer's text):

- ``admin.questions``: the Commander's turns on the agent's **own** pending approvals,
  never another agent's (the filter is the agent id the channel authenticated);
- ``admin.answer`` (target: the approval id; params ``text`` and, optionally,
  ``proposal`` - a ``target`` and/or ``params`` the agent suggests instead): logged as
  ``hacf.answered`` with ``author: agent, trusted: false``.

An answer never changes anything by itself: the parked intent, its decision packet and
what runs if the Commander approves stay as they were; a proposal is only text for the
Commander, who may adopt it with an edit of their own (``deliberate edit``). The agent
answers within its grants: its capability must still cover the parked intent, and the
intent its proposal describes (``HACF.OUTSIDE_GRANTS``). Only the Commander decides
(`maos.kernel.registry.check_principal`), never an agent, for itself or anyone.

Codes: ``HACF.NOT_THE_PROPOSER`` (another agent's approval), ``APPROVAL.ALREADY_DECIDED``,
``HACF.OUTSIDE_GRANTS``, ``HACF.BAD_ANSWER`` (a malformed answer or proposal).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from maos.kernel.approvals import Approval, ApprovalBook, ApprovalStatus
from maos.kernel.errors import ApprovalError, InputError, MaosError, StateError
from maos.kernel.intents import parse_intent, thaw
from maos.kernel.tokens import TokenAuthority
from maos.kernel.types import Allow, Intent, Outcome, OutcomeStatus
from maos.kernel.wal import Wal, WalRecord

if TYPE_CHECKING:
    from maos.kernel.kernel import Kernel

__all__ = [
    "ANSWERED",
    "ASKED",
    "DECIDED",
    "EDITED",
    "KINDS",
    "MAX_ANSWER",
    "OPS",
    "answer_body",
    "pending",
    "questions",
    "serve",
    "thread",
]

ASKED = "hacf.asked"
ANSWERED = "hacf.answered"
EDITED = "hacf.edited"
DECIDED = "hacf.decided"
KINDS = (ASKED, ANSWERED, EDITED, DECIDED)
OPS = frozenset({"admin.questions", "admin.answer"})
"""The agent's two deliberation ops; the kernel answers them itself (`serve`)."""
MAX_ANSWER = 4000
"""Characters of an answer: a paragraph for a human, not a document."""
_PROPOSAL_FIELDS = frozenset({"target", "params"})
_COMMANDER_TURNS = frozenset({ASKED, EDITED})

Log = Callable[..., Awaitable[int]]
Refuse = Callable[[str, str, str, str, str], Awaitable[Outcome]]
"""The kernel's refusal: (intent id, agent id, code, reason, op) -> a logged denial."""


def thread(wal: Wal, approval_id: str) -> list[WalRecord]:
    """The deliberation of one approval, in order."""
    return [r for r in wal.read(kinds=KINDS) if r.body.get("approval_id") == approval_id]


def pending(approvals: ApprovalBook, approval_id: str) -> Approval:
    """The approval, still undecided: a deliberation about a decided one is refused."""
    item = approvals.get(approval_id)
    if item.status is not ApprovalStatus.PENDING:
        raise ApprovalError(
            "APPROVAL.ALREADY_DECIDED",
            f"{approval_id} is {item.status.value}",
            approval_id=approval_id,
        )
    return item


def _bad(why: str) -> StateError:
    return StateError(
        "HACF.BAD_ANSWER",
        why,
        hint="answer with text (1-4000 characters) and, optionally, a proposal"
        " {target, params} for the same op",
    )


def _proposal(raw: object) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw or not set(raw) <= _PROPOSAL_FIELDS:
        raise _bad("a proposal is an object with a target and/or params, nothing else")
    if "target" in raw and not (isinstance(raw["target"], str) and raw["target"]):
        raise _bad("a proposal's target is a non-empty string")
    if "params" in raw and not isinstance(raw["params"], Mapping):
        raise _bad("a proposal's params are an object")
    return dict(raw)


def answer_body(
    approvals: ApprovalBook,
    tokens: TokenAuthority,
    *,
    approval_id: str,
    agent_id: str,
    token: str,
    text: object,
    proposal: object = None,
    now: float,
) -> dict[str, Any]:
    """The ``hacf.answered`` record of a valid answer, or the refusal. The agent must be
    the one that proposed; its capability must cover the parked intent and the intent
    its proposal describes - it answers within its grants."""
    item = approvals.get(approval_id)
    if agent_id != item.agent_id:
        raise StateError("HACF.NOT_THE_PROPOSER", f"{agent_id} did not propose {approval_id}")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_ANSWER:
        raise _bad(f"an answer is text of 1-{MAX_ANSWER} characters")
    offered = _proposal(proposal)
    pending(approvals, approval_id)
    asked = {**dict(item.intent), "token": token}
    wires = [asked] if offered is None else [asked, {**asked, **offered}]
    for wire in wires:
        try:
            intent = parse_intent(wire, agent_id=agent_id, intent_id=str(wire["intent_id"]))
        except InputError as exc:
            raise _bad(f"the proposal is not a valid intent: {exc.message}") from None
        verdict = tokens.authorize_intent(intent, now)
        if not isinstance(verdict, Allow):
            what = "the proposal" if wire is not asked else approval_id
            raise StateError(
                "HACF.OUTSIDE_GRANTS",
                f"{agent_id}'s capability does not cover {what}: {verdict.reason}",
            )
    return {
        "approval_id": approval_id,
        "answer": text,
        "agent_id": agent_id,
        "author": "agent",
        "trusted": False,
        "proposal": offered,
    }


def questions(approvals: ApprovalBook, wal: Wal, agent_id: str) -> list[dict[str, Any]]:
    """The agent's own pending approvals the Commander asked about or edited, each with
    its thread; ``open`` while the Commander spoke last."""
    mine = {a.approval_id: a for a in approvals.pending() if a.agent_id == agent_id}
    turns: dict[str, list[dict[str, Any]]] = {}
    for rec in wal.read(kinds=KINDS):
        aid = str(rec.body.get("approval_id"))
        if aid in mine:
            turns.setdefault(aid, []).append(_turn(rec))
    listed = []
    for aid, said in turns.items():
        if not any(t["by"] == "commander" for t in said):
            continue
        item = mine[aid]
        listed.append(
            {
                "approval_id": aid,
                "op": item.intent.get("op"),
                "target": item.intent.get("target"),
                "reason": item.reason,
                "open": said[-1]["by"] == "commander",
                "thread": said,
            }
        )
    return listed


def _turn(rec: WalRecord) -> dict[str, Any]:
    body = rec.body
    turn: dict[str, Any] = {"seq": rec.seq, "kind": rec.kind.removeprefix("hacf.")}
    turn["by"] = "commander" if rec.kind in _COMMANDER_TURNS else "agent"
    for field in ("question", "params", "answer", "proposal"):
        if field in body:
            turn[field] = body[field]
    return turn


async def serve(kernel: Kernel, intent: Intent, log: Log, refuse: Refuse) -> Outcome:
    """Carry out ``admin.questions`` or ``admin.answer`` for an intent the DSC allowed;
    a refusal is a logged denial with its code, as for any intent."""
    try:
        if intent.op == "admin.questions":
            listed = questions(kernel.approvals, kernel.wal, intent.agent_id)
            return Outcome(intent.intent_id, OutcomeStatus.COMMITTED, value={"questions": listed})
        params = thaw(intent.params)
        extra = set(params) - {"text", "proposal"}
        if extra:
            raise _bad(f"an answer has text and a proposal, not {', '.join(sorted(extra))}")
        body = answer_body(
            kernel.approvals,
            kernel.tokens,
            approval_id=intent.target,
            agent_id=intent.agent_id,
            token=intent.token,
            text=params.get("text"),
            proposal=params.get("proposal"),
            now=kernel.clock(),
        )
    except MaosError as exc:
        return await refuse(intent.intent_id, intent.agent_id, exc.code, exc.message, intent.op)
    seq = await log(ANSWERED, {**body, "intent_id": intent.intent_id}, intent_id=intent.intent_id)
    value = {"approval_id": intent.target, "answered": seq}
    return Outcome(intent.intent_id, OutcomeStatus.COMMITTED, value=value, wal_seq=seq)
