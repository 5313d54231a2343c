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
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Label
from maos.kernel.wal import WalRecord

__all__ = ["MessageRouter", "attach"]


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
            message_id=hashlib.sha256(call.idempotency_key.encode()).hexdigest()[:24],
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
        prepared: dict[str, Mapping[str, Any]] = {}
        for rec in records:
            key = rec.idem_key or ""
            if rec.kind == "intent.prepared" and rec.body.get("op") in self.ops:
                prepared[key] = rec.body
                continue
            intent = prepared.pop(key, None)
            if rec.kind != "intent.committed" or intent is None:
                continue
            if intent["op"] == "msg.send":
                params = intent["params"]
                self._enqueue(
                    str(intent["target"]),
                    _Message(
                        message_id=str(rec.body["value"]["message_id"]),
                        sender=str(params["sender"]),
                        body=str(params["body"]),
                        label=_sent_label(params),
                        sent_at=rec.ts,
                    ),
                )
            else:
                taken = {m["message_id"] for m in rec.body["value"].get("messages", ())}
                inbox = self._inboxes.get(str(intent["target"]), deque())
                self._inboxes[str(intent["target"])] = deque(
                    m for m in inbox if m.message_id not in taken
                )

    def _take(self, agent_id: str, max_items: int) -> EffectResult:
        inbox = self._inboxes.get(agent_id, deque())
        taken = [inbox.popleft().to_wire() for _ in range(min(max_items, len(inbox)))]
        return EffectResult({"messages": taken})


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
