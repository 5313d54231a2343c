"""A real A2A agent on loopback that records every message it receives.

Built on the ``a2a-sdk`` server side (the same app `maos.pod.a2a_inbound` serves), run
by uvicorn in a thread of its own so a test's kernel, on its own event loop, reaches it
over TCP like any remote agent. It answers each message with ``echo: <text>``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from a2a.helpers import get_message_text, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue

from maos.pod.a2a_inbound import a2a_app, agent_card

__all__ = ["A2aPeer", "loopback_a2a"]


@dataclass
class A2aPeer:
    """What the test reads: the agent's URL and every message that reached it."""

    port: int
    received: list[tuple[str, str]] = field(default_factory=list)
    """(message id, text) in arrival order."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class _Echo(AgentExecutor):
    def __init__(self, peer: A2aPeer) -> None:
        self._peer = peer

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        text = get_message_text(message) if message is not None else ""
        self._peer.received.append((message.message_id if message else "", text))
        await event_queue.enqueue_event(
            new_text_message(f"echo: {text}", context_id=context.context_id)
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Nothing runs long enough to cancel."""


@contextmanager
def loopback_a2a(name: str = "peer", *, card_url: str | None = None) -> Iterator[A2aPeer]:
    """An A2A agent named ``name`` on 127.0.0.1 for the block; ``card_url`` makes its card
    name another endpoint than its own (a card that points elsewhere)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    peer = A2aPeer(sock.getsockname()[1])
    card = agent_card(name, card_url or peer.url, "echoes what it receives")
    app = a2a_app(card, _Echo(peer))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    try:
        yield peer
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
