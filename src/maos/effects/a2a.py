"""A2A sends: one message to an agent the capability names, over the A2A protocol.

``a2a.send`` speaks the Agent2Agent protocol through the official ``a2a-sdk`` client:
the agent's card is fetched from the target (an agent's base URL, whose card lives at
``/.well-known/agent-card.json``, or the card's own URL), a client is built from it and
one non-streaming ``SendMessage`` carries the text. What the other agent answers (its
message, or its task's state, status text and artifacts) is the result.

The card is the remote agent's word, not the Commander's: it names the URL the message
goes to, and could name any host. So every request the SDK makes - the card, the call,
anything a card's interface sends it to - passes through `_Guard`, an httpx transport
that refuses a host the capability does not allowlist before a connection opens and caps
the size of every answer. Redirects are never followed (the SDK's card fetch would
follow them otherwise). Each call gets a fresh client: no connection or cookie of one
agent's call rides along with another's.

A send is not idempotent (the receiver may act on each copy); the message id is derived
from the idempotency key, so a receiver that dedups on it sees one message, but after a
crash the effect is in doubt for the Commander, never resent. The SDK is imported when
the first send runs, so every CLI command that builds a kernel does not pay for it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.effects.http import allowed, host_port, parse_url

__all__ = ["CARD_PATH", "A2aAdapter"]

CARD_PATH = "/.well-known/agent-card.json"
"""Where an A2A agent publishes its card (the A2A specification's well-known path)."""
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_TEXT = 200_000


def _fail(code: str, message: str) -> EffectError:
    return EffectError(f"EFFECT.A2A.{code}", message)


class _Guard(httpx.AsyncBaseTransport):
    """The allowlist and the size cap, applied to each request the SDK sends."""

    def __init__(self, allowlist: object, limit: int) -> None:
        self._inner = httpx.AsyncHTTPTransport(retries=0)
        self._allowlist = allowlist
        self._limit = limit
        self.refused: EffectError | None = None
        """Set when a request was stopped here; the SDK may wrap the exception, so
        `A2aAdapter.execute` reports this rather than whatever reached it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not allowed(request.url, self._allowlist):
            host, port = host_port(request.url)
            self.refused = _fail(
                "HOST_NOT_ALLOWED", f"{host}:{port} is not on the capability's allowlist."
            )
            raise self.refused
        response = await self._inner.handle_async_request(request)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._limit:
                self.refused = _fail("TOO_LARGE", f"an answer declares {declared} bytes.")
                raise self.refused
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.aiter_raw():
                total += len(chunk)
                if total > self._limit:
                    self.refused = _fail("TOO_LARGE", f"an answer exceeds {self._limit} bytes.")
                    raise self.refused
                chunks.append(chunk)
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code, headers=response.headers, content=b"".join(chunks)
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _card_location(target: str) -> tuple[str, str]:
    """(base URL, card path): a target ending in ``.json`` is the card itself."""
    parts = urlsplit(target)
    base = f"{parts.scheme}://{parts.netloc}"
    if parts.path.endswith(".json"):
        return base, parts.path
    return base + parts.path.rstrip("/"), CARD_PATH


def _texts(parts: Iterable[Any]) -> list[str]:
    return [p.text for p in parts if p.text]


def _answer(responses: list[Any]) -> dict[str, Any]:
    """The other agent's reply as JSON: its message's text, or its task's state and the
    text of its status message and artifacts."""
    out: dict[str, Any] = {"task_id": None, "state": None, "reply": ""}
    texts: list[str] = []
    for event in responses:
        if event.HasField("message"):
            texts.extend(_texts(event.message.parts))
        elif event.HasField("task"):
            task = event.task
            out["task_id"] = task.id
            out["state"] = _state_name(task.status.state)
            texts.extend(_texts(task.status.message.parts))
            for artifact in task.artifacts:
                texts.extend(_texts(artifact.parts))
    out["reply"] = "\n".join(texts)
    return out


def _state_name(state: int) -> str:
    from a2a.types import TaskState  # imported late: see the module docstring

    return str(TaskState.Name(state)).removeprefix("TASK_STATE_").lower()


class A2aAdapter:
    """``a2a.send``: a text message to an allowlisted A2A agent, its answer size-capped.

    ``timeout`` bounds each network phase, ``deadline`` the whole call (card and send).
    """

    ops = frozenset({"a2a.send"})

    def __init__(self, *, timeout: float = 10.0, deadline: float = 60.0) -> None:
        self.timeout = timeout
        self.deadline = deadline

    def idempotent(self, call: EffectCall) -> bool:
        """Never: another agent may act on every copy it receives."""
        return False

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        raise _fail("NOT_CONFIRMABLE", "an A2A send cannot be confirmed; it is in doubt.")

    async def execute(self, call: EffectCall) -> EffectResult:
        if call.op not in self.ops:
            raise _fail("UNKNOWN_OP", f"{call.op!r} is not an A2A operation.")
        try:
            url = parse_url(call.target)
        except EffectError as exc:
            raise _fail("BAD_URL", exc.message) from exc
        allowlist = call.constraints.get("allowed_hosts")
        if not allowed(url, allowlist):
            host, port = host_port(url)
            raise _fail("HOST_NOT_ALLOWED", f"{host}:{port} is not on the capability's allowlist.")
        text = call.params.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise _fail("BAD_REQUEST", f"'text' must be a string of 1 to {MAX_TEXT} characters.")
        guard = _Guard(allowlist, int(call.constraints.get("max_bytes", DEFAULT_MAX_BYTES)))
        try:
            async with asyncio.timeout(self.deadline):
                return await self._send(call, text, guard)
        except EffectError:
            raise
        except TimeoutError as exc:
            raise _fail("TIMEOUT", f"{call.target} did not answer within the deadline.") from exc
        except Exception as exc:  # the SDK's errors, httpx's, protobuf's: all one boundary
            if guard.refused is not None:
                raise guard.refused from exc
            raise _fail("TRANSPORT", f"the exchange with {call.target} failed: {exc}.") from exc

    async def _send(self, call: EffectCall, text: str, guard: _Guard) -> EffectResult:
        from a2a.client import A2ACardResolver, ClientConfig, ClientFactory  # late: see above
        from a2a.types import Message, Part, Role, SendMessageRequest

        base, card_path = _card_location(call.target)
        async with httpx.AsyncClient(
            transport=guard,
            timeout=httpx.Timeout(self.timeout),
            trust_env=False,
            follow_redirects=False,
            headers={"Accept-Encoding": "identity"},
        ) as http:
            card = await A2ACardResolver(http, base, card_path).get_agent_card()
            client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
            message_id = hashlib.sha256(call.idempotency_key.encode()).hexdigest()[:32]
            request = SendMessageRequest(
                message=Message(message_id=message_id, role=Role.ROLE_USER, parts=[Part(text=text)])
            )
            try:
                responses = [event async for event in client.send_message(request)]
            finally:
                await client.close()
        return EffectResult({"agent": card.name, "message_id": message_id, **_answer(responses)})
