"""HACF: the four levels of human involvement, and the Commander's second factor.

The levels (``config.json`` ``commander.levels``, per effect class; a plan's ``hacf``
mapping may raise them for its task, never lower them - `level_of`):

- **Inform**: the effect runs, then the Commander is told: `HacfService` logs an
  ``hacf.informed`` record for each committed effect of an inform-level class (the inbox,
  ``maos commander inbox``) and sends a mail or webhook.
- **Recommend**: the agent proposes, the Commander approves or denies: the approvals
  (`maos.kernel.approvals`), each with its signed decision packet.
- **Deliberate**: `Deliberation`: the Commander asks (``hacf.asked``) or edits the
  proposal (``hacf.edited``), the agent answers with its own capability, which must still
  cover the proposal (``hacf.answered``: within its grants), and the exchange ends in one
  ``hacf.decided`` record carrying the packet digest, then the kernel's approval or
  denial. A plain approval of a deliberate-level intent is refused (`check_plain_approval`).
- **Override**: `Overrides`: what widens authority or weakens protection (lifting a
  quarantine or isolation, a release down the cascade, a declassification, more effect
  classes, another source's mode lowered, a threshold raised, a refused intent run once -
  `maos.kernel.refusals` - and a promotion, `maos.kernel.promotion`) is requested
  with the exact diff (``hacf.override.requested``), waits a cooling-off period, and runs
  only after a TOTP code from the enrolled second factor (``hacf.override.confirmed``,
  each code's time step used once). The kernel refuses those orders without a confirmed
  override once a factor is enrolled (`maos.kernel.overrides`). Never for R8.

Every step is a log record with its principal; only a Commander principal
(`maos.kernel.registry.check_principal`) can ask, edit, decide, request or confirm, so an
agent can do none of it, for itself or anyone. The TOTP secret lives outside the log
(``<data-dir>/keys/commander.totp``, mode 0600): a hijacked dashboard session holds the
bearer token, not the authenticator.
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp

from maos.kernel import cascade, orders, packets, promotion, refusals
from maos.kernel.aggregate import limit_text
from maos.kernel.approvals import Approval, ApprovalBook
from maos.kernel.deliberation import ANSWERED, ASKED, DECIDED, EDITED, answer_body, pending, thread
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import ApprovalError, InputError, MaosError, StateError
from maos.kernel.hacfconfig import CommanderSection, Level
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Conf
from maos.kernel.modes import Mode
from maos.kernel.overrides import CONFIRMED, ENROLLED, FIELD, REQUESTED, Override
from maos.kernel.packets import effect_class_of
from maos.kernel.registry import Registry, check_principal
from maos.kernel.stages import RELEASE_TO, Stage
from maos.kernel.tokens import TokenAuthority
from maos.kernel.types import EffectClass, Outcome
from maos.kernel.view import LogView
from maos.kernel.wal import Wal, WalRecord
from maos.services.follower import LogFollower

__all__ = [
    "ACTIONS",
    "ASKED",
    "DECIDED",
    "INFORMED",
    "TOTP_FILE",
    "Deliberation",
    "HacfService",
    "Overrides",
    "SecondFactor",
    "check_plain_approval",
    "conclude",
    "is_deliberate",
    "kernel_log",
    "level_of",
    "plan_levels",
    "thread",
]

TOTP_FILE = "commander.totp"
INFORMED = "hacf.informed"
ACTIONS = ("release", "resume", "declassify", "grants", "mode", "threshold", "execute", "promote")
"""What an override can carry out (`Overrides.request`)."""

Log = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
"""Appends one record and folds it (the kernel's log in `maos up`, the WAL from the CLI)."""


def kernel_log(kernel: Kernel) -> Log:
    """Records logged through the serving kernel: folded at once, carried out by it."""

    async def log(kind: str, body: Mapping[str, Any]) -> None:
        await kernel.cascade(orders.Order(kind, body))

    return log


def level_of(
    section: CommanderSection, effect_class: str, plan: Mapping[str, str] | None = None
) -> Level:
    """The effective level: the config's, raised (never lowered) by the plan's."""
    level = section.level(effect_class)
    if plan and effect_class in plan:
        asked = Level(plan[effect_class])
        if asked.rank > level.rank and asked is not Level.OVERRIDE:
            level = asked
    return level


def plan_levels(wal: Wal, task_id: str) -> Mapping[str, str]:
    """The ``hacf`` levels of the plan that started ``task_id`` (its ``plan.started``)."""
    levels: Mapping[str, str] = {}
    for rec in wal.read(kinds=["plan.started"]):
        if rec.body.get("task_id") == task_id:
            levels = (rec.body.get("plan") or {}).get("hacf") or {}
    return levels


def is_deliberate(
    section: CommanderSection, approval: Approval, registry: Registry, wal: Wal
) -> bool:
    """Whether the approval's effect class is at the deliberate level for its task."""
    kind = effect_class_of(approval, registry)
    return level_of(section, kind, plan_levels(wal, approval.task_id)) is Level.DELIBERATE


def check_plain_approval(
    section: CommanderSection, approval: Approval, registry: Registry, wal: Wal
) -> None:
    """A one-click approval of a deliberate-level intent is refused: it ends only in a
    recorded deliberation (`Deliberation.decide`)."""
    if is_deliberate(section, approval, registry, wal):
        kind = effect_class_of(approval, registry)
        raise ApprovalError(
            "HACF.DELIBERATE",
            f"{approval.approval_id} is {kind}, a deliberate-level class:"
            " it is decided in a deliberation, not with one click",
            approval_id=approval.approval_id,
            hint=f"maos commander deliberate decide {approval.approval_id} approve|deny",
        )


# -- the second factor ---------------------------------------------------------------------


class SecondFactor:
    """The Commander's TOTP secret (RFC 6238 via `pyotp`), enrolled once, explicitly."""

    def __init__(self, data_dir: Path, clock: Callable[[], float]) -> None:
        self.path = data_dir / "keys" / TOTP_FILE
        self._clock = clock

    def enroll(self) -> str:
        """A fresh secret, written 0600 before anything is logged; refuses a second one."""
        if self.path.exists():
            raise StateError(
                "HACF.ALREADY_ENROLLED",
                f"a second factor is enrolled ({self.path}); remove it deliberately to re-enrol",
            )
        secret = pyotp.random_base32()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        return secret

    def _totp(self) -> pyotp.TOTP:
        try:
            secret = self.path.read_text().strip()
        except FileNotFoundError:
            raise StateError(
                "HACF.NOT_ENROLLED", "no second factor is enrolled", hint="maos commander enroll"
            ) from None
        return pyotp.TOTP(secret)

    def uri(self, secret: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name="commander", issuer_name="MAOS")

    def verify(self, code: str, last_step: int) -> int:
        """The time step ``code`` belongs to (this one or its neighbours, for clock drift);
        a wrong code, or one of a step already used (a replay), is refused."""
        totp = self._totp()
        step = int(self._clock()) // totp.interval
        for at in (step, step - 1, step + 1):
            if hmac.compare_digest(totp.generate_otp(at), code.strip()):
                if at <= last_step:
                    raise StateError(
                        "HACF.CODE_REPLAYED", "that code was used already; wait for the next one"
                    )
                return at
        raise StateError("HACF.BAD_CODE", "the code does not match the enrolled second factor")


# -- overrides ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overrides:
    """Request and confirm overrides against a folded log (the kernel's or the CLI's)."""

    registry: Registry
    log: Log
    clock: Callable[[], float]
    section: CommanderSection
    factor: SecondFactor
    view: LogView | None = None
    """The folded log the aggregate limits are read from (``threshold``), configured
    with config.json's ``security`` section as the kernel is."""

    async def enroll(self, principal: str) -> str:
        check_principal(principal, self.registry)
        secret = self.factor.enroll()
        await self.log(ENROLLED, {"principal": principal, "at": self.clock(), "kind": "totp"})
        return secret

    def _diff(self, action: str, subject: str, to: str) -> dict[str, list[Any]]:
        if action == "release":
            agent = self.registry.agent(subject)
            stage = Stage(to)
            if stage not in RELEASE_TO or stage.rank >= agent.stage.rank:
                raise StateError(
                    "STATE.CASCADE.NOT_A_RELEASE",
                    f"{subject} is {agent.stage.value}; {to} is not a release from there",
                )
            return {"stage": [agent.stage.value, to]}
        if action == "resume":
            agent = self.registry.agent(subject)
            status = AgentStatus(to)
            if agent.status not in (AgentStatus.QUARANTINED, AgentStatus.ISOLATED):
                raise StateError(
                    "HACF.NOTHING_TO_LIFT", f"{subject} is {agent.status.value}: nothing to lift"
                )
            return {"status": [agent.status.value, status.value]}
        if action == "declassify":
            task = self.registry.task(subject)
            before = task.declassified_to.name.lower() if task.declassified_to else None
            if Conf[to.upper()] is Conf.SECRET:
                raise KeyError(to)
            return {"declassified_to": [before, to]}
        if action == "grants":
            held = self.registry.task(subject).effect_classes
            before = None if held is None else ",".join(sorted(c.value for c in held))
            return {"effect_classes": [before, to]}
        if action == "mode":  # another source's demand, lowered (not MSS: never gated)
            demand = self.registry.modes.demands.get(subject, Mode.NORMAL)
            if subject == "commander" or not Mode(to) < demand < Mode.MSS:
                raise StateError(
                    "HACF.NOTHING_TO_LIFT",
                    f"{subject} demands {demand.value}: {to} needs no override",
                )
            return {"mode": [demand.value, to]}
        if action == "threshold":  # loosening only: tightening is one step
            metric, _, agent_class = subject.partition("@")
            limit = self._view().aggregate.limit_of(metric, agent_class or None)
            if limit is None:
                raise StateError("BAD_INPUT.METRIC", f"{subject!r} is not a threshold")
            if not float(to) > limit.limit:
                raise StateError(
                    "HACF.NOTHING_TO_LIFT",
                    f"{subject} is {limit_text(limit.limit)}; {to} tightens it: no override",
                    hint=f"maos security threshold set {subject} {to}",
                )
            return {f"threshold.{subject}": [limit_text(limit.limit), to]}
        if action == "promote":  # inward, as a fresh identity (kernel/promotion.py)
            return promotion.diff(self.registry, subject, int(to))
        if action == "execute":  # run a refused intent once: bound to its digest
            code, wire = refusals.refusal(self._view().wal, subject)
            if refusals.digest(wire) != to:
                raise StateError("HACF.OVERRIDE_STALE", f"{subject} is not the intent {to}")
            if any(
                o.action == "execute" and o.subject == subject and o.status == "done"
                for o in self.registry.overrides.items.values()
            ):
                raise StateError("HACF.ALREADY_EXECUTED", f"{subject} ran under an override")
            shown = f"{wire['op']} -> {wire['target']} as {wire['agent_id']}"
            return {
                "refused": [code, "waived once"],
                "runs": [None, shown],
                "intent_sha256": [None, to],
            }
        raise InputError("BAD_INPUT.ACTION", f"an override is one of {', '.join(ACTIONS)}")

    def _view(self) -> LogView:
        if self.view is None:
            raise StateError("HACF.NO_VIEW", "this override needs the folded log")
        return self.view

    async def request(
        self, action: str, subject: str, to: str, *, reason: str, principal: str
    ) -> Override:
        check_principal(principal, self.registry)
        try:
            to = to.lower()
            if action == "grants":  # one spelling, so the order finds its override
                to = ",".join(sorted({EffectClass(c.strip()).value for c in to.split(",")}))
            if action == "threshold":
                to = limit_text(float(to))
            if action == "promote":
                to = str(int(to))
            if action == "execute" and not to:  # the intent as recorded now
                to = refusals.digest(refusals.refusal(self._view().wal, subject)[1])
            diff = self._diff(action, subject, to)
        except (KeyError, ValueError):
            raise InputError(
                "BAD_INPUT.TO", f"{to!r} is not something {action} can move to"
            ) from None
        now = self.clock()
        oid = "ov-" + uuid.uuid4().hex[:12]
        body = {
            "override_id": oid,
            "action": action,
            "subject": subject,
            "to": to,
            "diff": diff,
            "principal": principal,
            "reason": reason,
            "requested_at": now,
            "not_before": now + self.section.cooling_off_s,
        }
        await self.log(REQUESTED, body)
        return self.registry.overrides.get(oid)

    async def confirm(self, override_id: str, code: str, *, principal: str) -> Override:
        """After the cooling-off, with a fresh code: logs the confirmation, then the order
        itself under it. The diff is checked again: a state that moved is refused."""
        check_principal(principal, self.registry)
        book = self.registry.overrides
        item = book.get(override_id)
        if item.status != "requested":
            raise StateError("HACF.OVERRIDE_DECIDED", f"override {override_id} is {item.status}")
        now = self.clock()
        if now < item.not_before:
            raise StateError(
                "HACF.COOLING_OFF",
                f"override {override_id} can be confirmed in {item.not_before - now:.0f} s"
                " (the cooling-off period)",
            )
        if self._diff(item.action, item.subject, item.to) != dict(item.diff):
            raise StateError(
                "HACF.OVERRIDE_STALE",
                f"{item.subject} changed since override {override_id} was asked; ask again",
            )
        step = self.factor.verify(code, book.last_step)
        await self.log(
            CONFIRMED, {"override_id": override_id, "principal": principal, "totp_step": step}
        )
        order = self._order(item, principal, now)
        await self.log(order.kind, order.body)
        return book.get(override_id)

    def _order(self, item: Override, principal: str, now: float) -> orders.Order:
        oid = item.override_id
        if item.action == "release":
            return cascade.release_order(
                self.registry,
                item.subject,
                Stage(item.to),
                principal=principal,
                at=now,
                override=oid,
            )
        if item.action == "resume":
            return orders.agent_status(
                self.registry, item.subject, AgentStatus(item.to), principal, override=oid
            )
        if item.action == "grants":
            classes = item.to.split(",")
            return orders.grants(
                self.registry, item.subject, classes, item.reason, principal, override=oid
            )
        if item.action == "promote":
            first = promotion.first_stage(self.registry, item.subject, int(item.to), oid, principal)
            return orders.Order(promotion.ONBOARDING, first)
        if item.action == "execute":
            body = {"intent_id": item.subject, "intent_sha256": item.to, "principal": principal}
            return orders.Order(refusals.EXECUTE, {**body, FIELD: oid})
        if item.action == "threshold":
            metric, _, agent_class = item.subject.partition("@")
            ledger = self._view().aggregate
            return orders.threshold(
                self.registry, ledger, metric, item.to, principal, oid, agent_class or None
            )
        if item.action == "mode":
            cause = item.reason or f"override {oid}"
            return orders.mode(self.registry, item.subject, item.to, cause, principal, override=oid)
        level = Conf[item.to.upper()]
        return orders.declassify(
            self.registry, item.subject, level, item.reason, principal, override=oid
        )


async def carry_out(kernel: Kernel, override_id: str, principal: str) -> dict[str, Any]:
    """What a confirmed override leaves to the kernel of the deciding process: running a
    refused intent (``outcome``) or onboarding a promoted agent (``promoted``: its new
    identity); nothing for the orders the confirmation itself logged."""
    action = kernel.registry.overrides.get(override_id).action
    if action == "execute":
        return {"outcome": (await execute_override(kernel, override_id)).to_dict()}
    if action == "promote":
        return {"promoted": await promotion.onboard(kernel, override_id, principal=principal)}
    return {}


NEEDS_THE_KERNEL = frozenset({"execute", "promote"})
"""Override actions the deciding process's kernel carries out after the confirmation."""


def unfinished(kernel: Kernel) -> list[Override]:
    """Confirmed ``execute``/``promote`` overrides whose carrying-out was never logged:
    the deciding process ended between the confirmation and the run."""
    ended = {
        r.body.get(FIELD) for r in kernel.wal.read(kinds=[refusals.EXECUTED, promotion.PROMOTED])
    }
    return [
        item
        for item in kernel.registry.overrides.items.values()
        if item.action in NEEDS_THE_KERNEL
        and item.status == "done"
        and item.override_id not in ended
    ]


async def finish(kernel: Kernel) -> dict[str, str]:
    """Carry out what `unfinished` finds, as a booting kernel runs the intents approved
    before a crash: a confirmation is never lost with the process that made it. A refused
    intent runs under its idempotency key, so one that ran before the crash is answered
    from the log, not sent again. Returns the code of each that cannot be carried out now
    (it stays waiting, and is tried at the next boot)."""
    left = {}
    for item in unfinished(kernel):
        try:
            await carry_out(kernel, item.override_id, item.principal)
        except MaosError as exc:
            left[item.override_id] = exc.code
    return left


async def execute_override(kernel: Kernel, override_id: str) -> Outcome:
    """Carry out a confirmed ``execute`` override on the kernel this process serves: the
    recorded intent, checked again with its refused code waived, once; what came of it
    is logged (``hacf.override.executed``) and a second run is refused."""
    item = kernel.registry.overrides.get(override_id)
    if item.action != "execute" or item.status != "done":
        raise StateError(
            "HACF.OVERRIDE_UNCONFIRMED", f"override {override_id} is no confirmed execute"
        )
    if any(r.body.get(FIELD) == override_id for r in kernel.wal.read(kinds=[refusals.EXECUTED])):
        raise StateError("HACF.ALREADY_EXECUTED", f"override {override_id} was carried out")
    code, wire = refusals.refusal(kernel.wal, item.subject)
    if refusals.digest(wire) != item.to:  # the log is append-only: never, but never assume
        raise StateError("HACF.OVERRIDE_STALE", f"{item.subject} is not the intent confirmed")
    outcome = await kernel.execute_refused(wire, code)
    body = {FIELD: override_id, "intent_id": item.subject, "outcome": outcome.to_dict()}
    await kernel.cascade(orders.Order(refusals.EXECUTED, body))
    return outcome


# -- deliberation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliberation:
    """The back-and-forth about one parked intent; every turn a record."""

    registry: Registry
    approvals: ApprovalBook
    log: Log

    def _pending(self, approval_id: str) -> Approval:
        return pending(self.approvals, approval_id)

    async def ask(self, approval_id: str, question: str, *, principal: str) -> None:
        check_principal(principal, self.registry)
        self._pending(approval_id)
        await self.log(
            ASKED, {"approval_id": approval_id, "question": question, "principal": principal}
        )

    async def edit(self, approval_id: str, params: Mapping[str, Any], *, principal: str) -> None:
        """The Commander's edited proposal: decided ``approve``, it runs instead of the
        agent's, re-checked by every check like any intent."""
        check_principal(principal, self.registry)
        self._pending(approval_id)
        body = {"approval_id": approval_id, "params": dict(params), "principal": principal}
        await self.log(EDITED, body)

    async def answer(
        self,
        approval_id: str,
        text: str,
        *,
        agent_id: str,
        token: str,
        tokens: TokenAuthority,
        now: float,
    ) -> None:
        """The agent's answer, with its own capability, as a service call (a pod answers
        with ``admin.answer``, kernel/deliberation.py, which checks it the same way)."""
        body = answer_body(
            self.approvals,
            tokens,
            approval_id=approval_id,
            agent_id=agent_id,
            token=token,
            text=text,
            now=now,
        )
        await self.log(ANSWERED, body)

    async def decide(
        self, approval_id: str, approve: bool, *, packet: str | None, principal: str, note: str = ""
    ) -> dict[str, Any]:
        """The one recorded decision that ends it; the caller then has the kernel carry
        it out (approve with ``packet``, or deny)."""
        check_principal(principal, self.registry)
        self._pending(approval_id)
        body = {
            "approval_id": approval_id,
            "decision": "approve" if approve else "deny",
            "packet_digest": packet,
            "principal": principal,
            "note": note,
        }
        await self.log(DECIDED, body)
        return body


def edited_params(wal: Wal, approval_id: str) -> Mapping[str, Any] | None:
    edits = [r.body["params"] for r in thread(wal, approval_id) if r.kind == EDITED]
    return edits[-1] if edits else None


async def conclude(
    kernel: Kernel,
    approval_id: str,
    approve: bool,
    *,
    packet: str | None,
    principal: str,
    note: str = "",
) -> Outcome:
    """End a deliberation on a kernel this process serves: the recorded decision, then
    the kernel's approval (with the packet digest) or denial. With an edited proposal the
    agent's intent is denied and the edit is submitted in its place - as the agent's own
    intent, with its capability, through every check again."""
    talk = Deliberation(kernel.registry, kernel.approvals, kernel_log(kernel))
    item = talk._pending(approval_id)
    edit = edited_params(kernel.wal, approval_id) if approve else None
    if edit is not None:
        packets.check(item, kernel.registry, packet)  # what the Commander saw still holds
    await talk.decide(approval_id, approve, packet=packet, principal=principal, note=note)
    if not approve:
        return await kernel.deny(approval_id, principal=principal, note=note)
    if edit is None:
        return await kernel.approve(approval_id, packet, principal=principal)
    await kernel.deny(approval_id, principal=principal, note="replaced by the Commander's edit")
    key = f"{item.intent.get('idempotency_key')}-edited"
    wire = {**dict(item.intent), "params": dict(edit), "idempotency_key": key}
    del wire["intent_id"]  # a new intent: the kernel assigns its id
    return await kernel.submit(wire, agent_id=item.agent_id)


# -- inform, and telling the Commander outside the page -------------------------------------


Notify = Callable[[str, str, str, int], Awaitable[None]]
"""(subject, text, agent id, seq): `maos.services.notify.CommanderNotifier.tell`."""


class HacfService(LogFollower):
    """Follows the log in `maos up`: the inform inbox, and a message to the Commander
    when a decision waits (an approval, an override, an agent's answer)."""

    KINDS = ("intent.prepared", "intent.committed", "approval.pending", REQUESTED, ANSWERED)

    def __init__(
        self,
        wal: Wal,
        registry: Registry,
        section: CommanderSection,
        *,
        notify: Notify | None = None,
        interval_s: float = 0.2,
    ) -> None:
        self._wal = wal
        self._registry = registry
        self._section = section
        self._notify = notify if section.notify_decisions else None
        self._interval = interval_s
        self._seen = wal.tail_seq()
        """Records before the service started were told about by the one before it."""
        self._ops: dict[str, tuple[str, str, str]] = {}

    async def poll(self) -> None:
        for rec in list(self._wal.read(since_seq=self._seen, kinds=self.KINDS)):
            self._seen = rec.seq
            await self._one(rec)

    async def _one(self, rec: WalRecord) -> None:
        body = rec.body
        if rec.kind == "intent.prepared":
            self._ops[rec.idem_key or ""] = (
                str(body["op"]),
                str(body["target"]),
                str(body["agent_id"]),
            )
        elif rec.kind == "intent.committed":
            op, target, agent = self._ops.pop(
                rec.idem_key or "", (str(body.get("op")), "", str(body.get("agent_id")))
            )
            spec = self._registry.ops.get(op)
            if spec is None:
                return
            plan = plan_levels(self._wal, str(body.get("task_id", "")))
            if level_of(self._section, spec.effect_class.value, plan) is not Level.INFORM:
                return
            informed = {
                "seq": rec.seq,
                "intent_id": rec.intent_id,
                "agent_id": agent,
                "op": op,
                "target": target,
                "effect_class": spec.effect_class.value,
            }
            await self._wal.append(INFORMED, informed)
            await self._tell(
                f"MAOS: {agent} did {op}",
                f"{agent} did {op} -> {target} (seq {rec.seq});"
                " `maos commander inbox` lists what was done.",
                agent,
                rec.seq,
            )
        elif rec.kind == "approval.pending":
            aid = body["approval_id"]
            intent = body.get("intent") or {}
            if cascade.is_elimination(intent):  # the Security Agent's notifier says so
                return
            await self._tell(
                f"MAOS: a decision waits ({aid})",
                f"{body['agent_id']} asks to {intent.get('op')} -> {intent.get('target')}:"
                f" {body['reason']}\n"
                f"`maos approvals show {aid}` has the signed decision packet.",
                str(body["agent_id"]),
                rec.seq,
            )
        elif rec.kind == REQUESTED:
            await self._tell(
                f"MAOS: override {body['override_id']} was requested",
                f"{body['principal']} asks to {body['action']} {body['subject']} ->"
                f" {body['to']}: {body['diff']}.\n"
                "If this was not you, do not confirm it; the code is on your authenticator only.",
                str(body["subject"]),
                rec.seq,
            )
        elif rec.kind == ANSWERED:
            await self._tell(
                f"MAOS: {body['agent_id']} answered about {body['approval_id']}",
                str(body["answer"]),
                str(body["agent_id"]),
                rec.seq,
            )

    async def _tell(self, subject: str, text: str, agent: str, seq: int) -> None:
        if self._notify is not None:
            await self._notify(subject, text, agent, seq)


def inbox(wal: Wal) -> list[WalRecord]:
    return list(wal.read(kinds=[INFORMED]))


def status_report(registry: Registry, section: CommanderSection, wal: Wal) -> dict[str, Any]:
    """The ``commander`` entry of ``maos status``."""
    book = registry.overrides
    return {
        "enrolled": book.enrolled,
        "overrides_waiting": [o.to_dict() for o in book.waiting()],
        "levels": {k: v.value for k, v in sorted(section.levels.items())},
        "cooling_off_s": section.cooling_off_s,
        "informed": sum(1 for _ in wal.read(kinds=[INFORMED])),
    }
