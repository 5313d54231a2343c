"""The SDK for asyncio agents: the same calls as `maos.sdk`, awaitable.

    from maos.sdk.aio import AsyncClient

    async def main() -> None:
        kernel = AsyncClient()
        page, notes = await asyncio.gather(kernel.http.get(url), kernel.fs.read("notes.md"))

The pod's channel carries one request at a time (frame ids must follow each other), so
calls are serialised with a lock and run in a worker thread: the event loop stays free
for the agent's own work while a request is in flight. A `PendingApproval` raised here
is waited on with ``await client.admin.wait(err.approval_id)``, not with its blocking
``wait()``.
"""

from __future__ import annotations

import asyncio

from maos.sdk import default_client
from maos.sdk.client import Client, Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

__all__ = ["AsyncClient"]


class AsyncClient:
    """Awaitable twin of `maos.sdk.Client`; wraps one (the pod's default when omitted)."""

    def __init__(self, client: Client | None = None) -> None:
        self.sync = default_client() if client is None else client
        self._lock = asyncio.Lock()
        self.fs = _Fs(self)
        self.http = _Http(self)
        self.email = _Email(self)
        self.a2a = _A2a(self)
        self.llm = _Llm(self)
        self.msg = _Msg(self)
        self.tools = _Tools(self)
        self.admin = _Admin(self)

    async def run(self, fn: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        """Run one blocking SDK call off the event loop, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(fn, *args, **kwargs)


class _Ns:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._s = client.sync


class _Fs(_Ns):
    async def read(self, path: str, *, key: str | None = None) -> Result:
        return await self._c.run(self._s.fs.read, path, key=key)

    async def write(self, path: str, content: str, *, key: str | None = None) -> Result:
        return await self._c.run(self._s.fs.write, path, content, key=key)

    async def list(self, path: str = ".", *, key: str | None = None) -> Result:
        return await self._c.run(self._s.fs.list, path, key=key)

    async def delete(self, path: str, *, key: str | None = None) -> Result:
        return await self._c.run(self._s.fs.delete, path, key=key)


class _Http(_Ns):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        key: str | None = None,
    ) -> Result:
        return await self._c.run(
            self._s.http.request, method, url, headers=headers, body=body, key=key
        )

    async def get(self, url: str, *, key: str | None = None) -> Result:
        return await self._c.run(self._s.http.get, url, key=key)


class _Email(_Ns):
    async def send(
        self, to: str, subject: str, body: str, *, cc: Sequence[str] = (), key: str | None = None
    ) -> Result:
        return await self._c.run(self._s.email.send, to, subject, body, cc=cc, key=key)


class _A2a(_Ns):
    async def send(self, url: str, text: str, *, key: str | None = None) -> Result:
        return await self._c.run(self._s.a2a.send, url, text, key=key)


class _Llm(_Ns):
    async def complete(
        self,
        prompt: str | list[dict[str, Any]],
        *,
        max_tokens: int = 1024,
        tools: Sequence[dict[str, Any]] = (),
        key: str | None = None,
    ) -> Result:
        return await self._c.run(
            self._s.llm.complete, prompt, max_tokens=max_tokens, tools=tools, key=key
        )


class _Tools(_Ns):
    async def list(self) -> Result:
        return await self._c.run(self._s.tools.list)

    async def call(self, name: str, /, _idempotency_key: str | None = None, **args: Any) -> Result:
        return await self._c.run(self._s.tools.call, name, _idempotency_key, **args)


class _Msg(_Ns):
    async def send(self, to: str, body: str, *, key: str | None = None) -> Result:
        return await self._c.run(self._s.msg.send, to, body, key=key)

    async def receive(
        self, *, max_items: int = 1, timeout: float = 0.0, key: str | None = None
    ) -> Result:
        return await self._c.run(self._s.msg.receive, max_items=max_items, timeout=timeout, key=key)


class _Admin(_Ns):
    async def heartbeat(self) -> Result:
        return await self._c.run(self._s.admin.heartbeat)

    async def status(self) -> Result:
        return await self._c.run(self._s.admin.status)

    async def wait(self, approval_id: str, timeout: float | None = None) -> Result:
        return await self._c.run(self._s.admin.wait, approval_id, timeout)

    async def questions(self) -> Result:
        return await self._c.run(self._s.admin.questions)

    async def answer(
        self,
        approval_id: str,
        text: str,
        *,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Result:
        return await self._c.run(
            self._s.admin.answer, approval_id, text, target=target, params=params, key=key
        )

    async def apoptosis(self, reason: str = "") -> NoReturn:
        await self._c.run(self._s.call, "admin", "apoptosis", {"reason": reason})
        raise SystemExit(0)
