"""Inbound A2A: another organisation's agent sends a message; it lands in one agent's InMsg.

An A2A request is content from outside, from a principal MAOS did not authenticate, so
it is data, never authority (R10): `A2aInbound` serves an A2A endpoint (the official
``a2a-sdk`` server side: the agent card at ``/.well-known/agent-card.json``, JSON-RPC at
``/``) and turns each message into an ordinary ``msg.send`` to the agent it serves,
carried out by the kernel's Commit Layer through the Message Router - written ahead,
replayed after a restart, read through the InMsg gateway like any message - with the
label ``public, untrusted, sources {a2a:inbound}``. The reader's context rises to
untrusted when it reads it, so whatever the text asks for (a recipient, a URL) is a
target no trusted principal named and parks under R10.

The remote's answer says only whether the message was queued, never what the agent
later does with it. The remote's message id makes the idempotency key, so a retried
request is delivered once.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import TYPE_CHECKING, Any

import uvicorn
from a2a.helpers import get_message_text, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette

from maos.kernel.errors import StateError
from maos.kernel.labels import Conf, Integrity, Label
from maos.kernel.types import Intent, OutcomeStatus
from maos.pod.router import attach

if TYPE_CHECKING:
    from maos.kernel.kernel import Kernel

__all__ = ["INBOUND_LABEL", "A2aInbound", "a2a_app", "agent_card"]

INBOUND_LABEL = Label(Conf.PUBLIC, Integrity.UNTRUSTED, frozenset({"a2a:inbound"}))
"""What an inbound A2A message carries into its reader's context."""
SENDER = "a2a:inbound"
MAX_TEXT = 200_000
"""As long as an agent's own message may be (the OutMsg gateway's bound)."""


def agent_card(name: str, url: str, description: str) -> AgentCard:
    """A card for a JSON-RPC A2A endpoint at ``url`` that takes and gives text."""
    return AgentCard(
        name=name,
        description=description,
        version="1",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="message", name="message", description=description, tags=["text"])],
    )


def a2a_app(card: AgentCard, executor: AgentExecutor) -> Starlette:
    """The ASGI app of one A2A agent: its card and its JSON-RPC endpoint at ``/``."""
    handler = DefaultRequestHandler(
        agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
    )
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


class _Deliver(AgentExecutor):
    def __init__(self, kernel: Kernel, agent_id: str) -> None:
        self._kernel = kernel
        self._agent_id = agent_id

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        text = get_message_text(message) if message is not None else ""
        answer = "not delivered: the message has no text or is too long"
        if message is not None and 0 < len(text) <= MAX_TEXT:
            answer = await self._deliver(message.message_id or uuid.uuid4().hex, text)
        await event_queue.enqueue_event(
            new_text_message(answer, context_id=context.context_id, task_id=context.task_id)
        )

    async def _deliver(self, remote_id: str, text: str) -> str:
        kernel = self._kernel
        attach(kernel)  # the Message Router serves msg.*: installed on first use
        intent = Intent(
            intent_id=f"a2a-{uuid.uuid4().hex[:16]}",
            agent_id=SENDER,
            task_id="",
            op="msg.send",
            target=self._agent_id,
            idempotency_key=f"a2a-in/{self._agent_id}/{remote_id[:96]}",
            params={"body": text, "sender": SENDER, "label": INBOUND_LABEL.to_dict()},
        )
        outcome = await kernel.commit.run(intent)
        if outcome.status is OutcomeStatus.COMMITTED:
            return "delivered"
        return "not delivered"  # the code stays in the log; the remote learns nothing more

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """A delivered message cannot be taken back; nothing runs long enough to cancel."""


class A2aInbound:
    """An A2A endpoint on the kernel's event loop delivering to ``agent_id``'s inbox.

    `start` binds and returns once it listens (``port`` 0 picks a free one, read back
    from `url`); `run` serves until `stop` and raises if the server fails, so a
    supervisor sees a failure rather than a silent end.
    """

    def __init__(
        self, kernel: Kernel, agent_id: str, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._kernel = kernel
        self.agent_id = agent_id
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    def app(self, url: str) -> Starlette:
        card = agent_card(f"maos:{self.agent_id}", url, f"Messages for MAOS agent {self.agent_id}")
        return a2a_app(card, _Deliver(self._kernel, self.agent_id))

    async def start(self) -> None:
        # Bound here, before the app is built, so port 0 can name the card's URL.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise StateError(
                "STATE.PORT_UNAVAILABLE",
                f"the A2A endpoint for {self.agent_id} cannot listen on "
                f"{self._host}:{self._port}: {exc.strerror or exc}",
                hint="change its port in config.json's a2a section, or stop what listens there",
            ) from None
        port = sock.getsockname()[1]
        self.url = f"http://{self._host}:{port}/"
        config = uvicorn.Config(
            self.app(self.url), log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        if self._task is None:
            await self.start()
        if self._task is not None:
            await self._task
        server = self._server
        if server is not None and not server.should_exit:
            raise RuntimeError(f"the A2A endpoint at {self.url} stopped by itself")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "agent_id": self.agent_id, "running": self._task is not None}
