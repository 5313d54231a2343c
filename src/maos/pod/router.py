"""A minimal Message Router: agent-to-agent messages as effects the kernel mediates.

``msg.send`` and ``msg.receive`` are intents like any other: capability-checked, run
through the DSC (the injection pre-filter reads every body), written ahead to the WAL
and carried out by this adapter under the Commit Layer, once per idempotency key. A
message carries its sender's context label (the Gateways put it in the logged params,
where the agent cannot reach), and reading it raises the reader's context to that label:
a secret cannot be laundered by handing it to another agent.

Inboxes live in the kernel's memory and are rebuilt from the WAL when the router is
attached: every committed send, minus every message a committed receive took, so a
message sent before a restart is still there after it. Delivery is not idempotent (a
receive takes messages out), so an interrupted send or receive is left in doubt for the
Commander rather than redone.

Messages go to agents (rings 2 and 3) only. Ring 1 services - the Orchestrator, the LLM
gateway, the tool host, the SSE - have no inbox and no agent id: an agent reaches them
only through its gateways (``llm.complete``, ``api.tool``, ``admin.*``), and a message
addressed to one fails like one to any unknown agent (``EFFECT.MSG.UNKNOWN_RECIPIENT``).

`attach` registers the router as the kernel's ``msg`` adapter, and the gateways raise a
reader's context through `Kernel.raise_context`: both are the kernel's own paths (its
WAL, its Commit Layer, its ``agent.context`` records), so no decision is taken here.
Messages open at a crash are found by recovery before the router is attached: with no
adapter to ask they go in doubt, which a non-idempotent delivery needs anyway.

A serving kernel attaches it at boot and the Service Manager probes it (`RouterCheck`):
its inboxes against the log, and a restart rebuilds them from it (docs/resilience.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Label
from maos.kernel.wal import WalRecord

__all__ = ["MessageRouter", "RouterCheck", "attach"]


@dataclass(frozen=True, slots=True)
class _Message:
    message_id: str
    sender: str
    body: str
    label: Label
    sent_at: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sender": self.sender,
            "body": self.body,
            "label": self.label.to_dict(),
            "sent_at": self.sent_at,
        }


class MessageRouter:
    """The ``msg`` adapter: one inbox per agent id. Use `attach` to get the kernel's one."""

    ops = frozenset({"msg.send", "msg.receive"})

    def __init__(self, known: Callable[[str], bool], clock: Callable[[], float]) -> None:
        self._known = known
        self._clock = clock
        self._inboxes: dict[str, deque[_Message]] = {}
        self._mail: dict[str, asyncio.Event] = {}

    def idempotent(self, call: EffectCall) -> bool:
        return False

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        return None

    async def execute(self, call: EffectCall) -> EffectResult:
        if call.op == "msg.send":
            return self._deliver(call)
        if call.op == "msg.receive":
            return self._take(call.target, int(call.params.get("max_items", 1)))
        raise EffectError("EFFECT.MSG.UNKNOWN_OP", f"{call.op!r} is not a message operation")

    def pending(self, agent_id: str) -> int:
        """Messages waiting in ``agent_id``'s inbox."""
        return len(self._inboxes.get(agent_id, ()))

    async def wait_for_mail(self, agent_id: str) -> None:
        """Return once ``agent_id``'s inbox holds a message."""
        while not self.pending(agent_id):
            event = self._mail.setdefault(agent_id, asyncio.Event())
            event.clear()
            await event.wait()

    def _deliver(self, call: EffectCall) -> EffectResult:
        to = call.target
        if not self._known(to):
            raise EffectError("EFFECT.MSG.UNKNOWN_RECIPIENT", f"no agent {to!r} is registered")
        params = call.params
        message = _Message(
            message_id=_message_id(call.idempotency_key),
            sender=str(params["sender"]),
            body=str(params["body"]),
            label=_sent_label(params),
            sent_at=self._clock(),
        )
        self._enqueue(to, message)
        return EffectResult({"message_id": message.message_id, "to": to})

    def _enqueue(self, to: str, message: _Message) -> None:
        self._inboxes.setdefault(to, deque()).append(message)
        event = self._mail.get(to)
        if event is not None:
            event.set()

    def replay(self, records: Iterable[WalRecord]) -> None:
        """Rebuild the inboxes from the log: committed sends, less what receives took."""
        fold = _Fold()
        for rec in records:
            fold.add(rec)
        for to, messages in fold.inboxes.items():
            for message in messages:
                self._enqueue(to, message)

    def _take(self, agent_id: str, max_items: int) -> EffectResult:
        inbox = self._inboxes.get(agent_id, deque())
        taken = [inbox.popleft().to_wire() for _ in range(min(max_items, len(inbox)))]
        return EffectResult({"messages": taken})


def _message_id(idem_key: str) -> str:
    return hashlib.sha256(idem_key.encode()).hexdigest()[:24]


FOLD_KINDS = ("intent.prepared", "intent.committed", "intent.failed", "intent.resolved")
"""What the inboxes are folded from: a send or receive prepared, and its outcome."""


class _Fold:
    """The inboxes the log says are unread, folded record by record: committed sends,
    less what committed receives took. A message intent prepared with no outcome yet is
    *in flight*: its effect may already have happened in the router's memory."""

    def __init__(self) -> None:
        self.inboxes: dict[str, deque[_Message]] = {}
        self.prepared: dict[str, Mapping[str, Any]] = {}
        """Message intents in flight, by idempotency key."""
        self.seq = 0
        """The last record folded."""

    def add(self, rec: WalRecord) -> None:
        self.seq = max(self.seq, rec.seq)
        key = rec.idem_key or ""
        if rec.kind == "intent.prepared":
            if rec.body.get("op") in MessageRouter.ops:
                self.prepared[key] = rec.body
            return
        intent = self.prepared.pop(key, None)
        if rec.kind != "intent.committed" or intent is None:
            return
        to = str(intent["target"])
        if intent["op"] == "msg.send":
            params = intent["params"]
            message = _Message(
                message_id=str(rec.body["value"]["message_id"]),
                sender=str(params["sender"]),
                body=str(params["body"]),
                label=_sent_label(params),
                sent_at=rec.ts,
            )
            self.inboxes.setdefault(to, deque()).append(message)
        else:
            taken = {m["message_id"] for m in rec.body["value"].get("messages", ())}
            inbox = self.inboxes.get(to, deque())
            self.inboxes[to] = deque(m for m in inbox if m.message_id not in taken)

    def in_flight(self) -> tuple[set[str], set[str]]:
        """The ids of messages being sent, and the agents whose receive is in flight."""
        sends = {_message_id(k) for k, b in self.prepared.items() if b["op"] == "msg.send"}
        receiving = {str(b["target"]) for b in self.prepared.values() if b["op"] != "msg.send"}
        return sends, receiving


class RouterCheck:
    """The Message Router's liveness probe (docs/resilience.md), run by the Service
    Manager: the kernel's ``msg`` adapter is this router, and every inbox holds what the
    log says is unread - no committed message lost, none the log never committed - up
    to the intents in flight. It folds the log as it grows: `catch_up` (thread-safe; the
    first reads the whole log, so the supervisor runs it in a thread) and then `look`
    on the kernel's loop, which folds the few records since and compares in one step, so
    no effect can land between the two. `rebuild` is the router's restart: its inboxes
    made again from the fold, in place (the gateways hold this router)."""

    def __init__(self, kernel: Kernel, router: MessageRouter) -> None:
        self._kernel = kernel
        self._router = router
        self._fold = _Fold()
        self._reading = threading.Lock()

    def catch_up(self) -> None:
        with self._reading:
            self._fold_new()

    def _fold_new(self) -> None:
        """Fold the records logged since the last one folded (the lock held)."""
        for rec in self._kernel.wal.read(self._fold.seq, kinds=FOLD_KINDS):
            self._fold.add(rec)

    def look(self) -> str | None:
        """Why the router is down, or None (on the kernel's loop)."""
        if self._kernel.commit.adapter("msg") is not self._router:
            return "the kernel's msg adapter is not the router"
        if not self._reading.acquire(blocking=False):
            return "the log is still being read from the last look"
        try:
            self._fold_new()
            return self._disagreement()
        finally:
            self._reading.release()

    def _disagreement(self) -> str | None:
        sends, receiving = self._fold.in_flight()
        live, logged = self._router._inboxes, self._fold.inboxes
        for agent in sorted(set(live) | set(logged)):
            have = {m.message_id for m in live.get(agent, ())}
            want = {m.message_id for m in logged.get(agent, ())}
            lost = set() if agent in receiving else want - have
            extra = have - want - sends
            if lost or extra:
                return (
                    f"the inbox of {agent!r} disagrees with the log: {len(lost)} unread "
                    f"message(s) missing, {len(extra)} never committed"
                )
        return None

    def rebuild(self) -> bool:
        """The inboxes as the log has them, keeping the messages of sends in flight; an
        inbox a receive is taking from is left as it is (rebuilding it could hand a
        message out twice). On the kernel's loop, after a `catch_up`; False (nothing
        done) while a thread still reads the log."""
        if not self._reading.acquire(blocking=False):
            return False
        try:
            self._fold_new()
            sends, receiving = self._fold.in_flight()
            live = self._router._inboxes
            for agent in set(live) | set(self._fold.inboxes):
                if agent in receiving:
                    continue
                sending = [m for m in live.get(agent, ()) if m.message_id in sends]
                live[agent] = deque([*self._fold.inboxes.get(agent, ()), *sending])
                event = self._router._mail.get(agent)
                if event is not None and live[agent]:
                    event.set()
            return True
        finally:
            self._reading.release()


def _sent_label(params: Mapping[str, Any]) -> Label:
    """The sender's context label, as the gateway logged it, naming the sender too."""
    raw = params["label"]
    label = Label.from_dict(dict(raw) if isinstance(raw, Mapping) else {})
    sender = str(params["sender"])
    return Label(label.conf, label.integrity, label.sources | {f"agent:{sender}"})


def attach(kernel: Kernel) -> MessageRouter:
    """The router serving ``kernel``, installed as its ``msg`` adapter on first use, with
    the inboxes the log says are still unread."""
    existing = kernel.commit.adapter("msg")
    if isinstance(existing, MessageRouter):
        return existing
    router = MessageRouter(lambda agent_id: agent_id in kernel.registry.agents, kernel.clock)
    router.replay(kernel.wal.read(kinds=("intent.prepared", "intent.committed")))
    kernel.add_adapter("msg", router)
    return router
