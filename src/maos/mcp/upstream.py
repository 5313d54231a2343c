"""The gateway's connections to its upstream MCP servers, through the SDK's real client.

`launch` is the one place a stdio upstream's command line and environment are decided:
the server gets the environment its policy names and nothing the gateway inherited
(the SDK's client adds HOME, LOGNAME, PATH, SHELL, TERM and USER from the parent; each
is overridden here with a neutral value unless the policy names it). The sandbox of
issue 13 item 2 wraps the command line here.

Each connection is owned by one task (anyio's scopes must be left by the task that
entered them); calls come from any task. A connection that dies is reopened by the
next call, and what the server then announces is compared with what was registered
(`digest`): a changed description or schema is the rug-pull the gateway refuses.

Errors are `UpstreamError` with ``MCP.UPSTREAM.*`` codes: ``START`` (cannot launch or
connect), ``TIMEOUT`` (no answer in time: the connection is dropped), ``DIED`` (the
server went away mid-call), ``ERROR`` (the server answered a JSON-RPC error),
``TOO_LARGE`` (a result over the policy's ``max_result_bytes``), ``BAD_RESULT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

import anyio
import httpx2
import mcp_types as types
import orjson
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from maos.kernel.errors import MaosError
from maos.mcp.policy import Upstream

__all__ = ["Announced", "Connection", "UpstreamError", "digest", "launch"]

_log = logging.getLogger(__name__)

_NEUTRAL_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "SHELL": "/bin/sh",
    "TERM": "dumb",
    "USER": "nobody",
    "LOGNAME": "nobody",
}
"""What the SDK's inherited variables are set to when the policy does not name them."""

_MAX_PAGES = 50
"""A paginator that never ends cannot hang the gateway's start."""


_CHANGED = frozenset(
    f"notifications/{what}/list_changed" for what in ("tools", "prompts", "resources")
)


class UpstreamError(MaosError):
    """An upstream server failed to start, answer or behave (codes ``MCP.UPSTREAM.*``)."""


def launch(name: str, spec: Upstream, home: str) -> StdioServerParameters:
    """How the stdio upstream ``name`` is started: its command, arguments, and exactly the
    environment its policy names over neutral values (HOME is ``home``, a fresh
    directory). Wrap the command here to sandbox it."""
    assert spec.command is not None
    env = {**_NEUTRAL_ENV, "HOME": home, **spec.env}
    # A bare name is found on the gateway's PATH (the operator's choice of program), not
    # the neutral one the server runs with: ``python3`` is the active virtualenv's.
    command = shutil.which(spec.command) or spec.command
    return StdioServerParameters(command=command, args=list(spec.args), env=env, cwd=spec.cwd)


def digest(item: types.Tool | types.Prompt) -> str:
    """SHA-256 of what a client model reads and what a call must fit: the description
    and the schema. A change of either after registration is ``TOOL.MANIFEST_CHANGED``."""
    if isinstance(item, types.Tool):
        body: dict[str, Any] = {
            "name": item.name,
            "description": item.description or "",
            "input_schema": item.input_schema,
        }
    else:
        args = [a.model_dump(mode="json") for a in item.arguments or ()]
        body = {"name": item.name, "description": item.description or "", "arguments": args}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Announced:
    """What an upstream offered when the gateway (re)connected."""

    tools: tuple[types.Tool, ...]
    resources: tuple[types.Resource, ...]
    prompts: tuple[types.Prompt, ...]


async def _pages(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await fetch(cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise UpstreamError("MCP.UPSTREAM.BAD_RESULT", f"more than {_MAX_PAGES} pages of {attr}")


class Connection:
    """One upstream server, connected on demand; see the module doc."""

    def __init__(
        self,
        name: str,
        spec: Upstream,
        *,
        on_change: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self._on_change = on_change
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._home = tempfile.mkdtemp(prefix=f"maos-mcp-{name}-")
        self.announced: Announced | None = None
        self.capabilities: types.ServerCapabilities | None = None

    async def _own(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """Enter the client, hand it over, hold it until closing (or until it breaks)."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport: Any
                if self.spec.url is not None:
                    http = create_mcp_http_client(
                        headers=dict(self.spec.headers),
                        timeout=httpx2.Timeout(self.spec.timeout_s, read=300),
                    )
                    await stack.enter_async_context(http)
                    transport = streamable_http_client(self.spec.url, http_client=http)
                else:
                    transport = stdio_client(
                        launch(self.name, self.spec, self._home), errlog=_errlog()
                    )
                client = await stack.enter_async_context(
                    Client(
                        transport,
                        read_timeout_seconds=None,
                        message_handler=self._message,
                        cache=None,
                    )
                )
                ready.set_result(client)
                await closing.wait()
        except asyncio.CancelledError:
            ready.cancel()
            raise
        except Exception as exc:  # a failed start is the caller's error; a break, the next call's
            if not ready.done():
                ready.set_exception(exc)
            _log.info("upstream %s: connection ended: %s", self.name, _why(exc))

    async def _message(self, message: IncomingMessage) -> None:
        if (
            self._on_change is not None
            and not isinstance(message, Exception)
            and message.method in _CHANGED
        ):
            await self._on_change(self.name)

    async def client(self) -> Client:
        """The live client, (re)connecting and re-listing when there is none."""
        async with self._lock:
            if self._client is not None and self._owner is not None and not self._owner.done():
                return self._client
            await self._drop()
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[Client] = loop.create_future()
            closing = asyncio.Event()
            self._owner = asyncio.create_task(self._own(ready, closing), name=f"mcp-{self.name}")
            self._closing = closing
            try:
                client = await asyncio.wait_for(asyncio.shield(ready), self.spec.timeout_s)
            except TimeoutError:
                await self._drop()
                raise UpstreamError(
                    "MCP.UPSTREAM.START",
                    f"{self.name}: no handshake within {self.spec.timeout_s:g}s",
                ) from None
            except Exception as exc:
                await self._drop()
                raise UpstreamError(
                    "MCP.UPSTREAM.START", f"{self.name}: cannot connect: {_why(exc)}"
                ) from None
            self._client = client
            self.capabilities = client.server_capabilities
            try:
                self.announced = await asyncio.wait_for(self._list(client), self.spec.timeout_s)
            except TimeoutError:
                await self._drop()
                raise UpstreamError(
                    "MCP.UPSTREAM.TIMEOUT",
                    f"{self.name}: listing took over {self.spec.timeout_s:g}s",
                ) from None
            except (MCPError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
                await self._drop()
                raise UpstreamError("MCP.UPSTREAM.START", f"{self.name}: {_why(exc)}") from None
            return client

    async def _list(self, client: Client) -> Announced:
        caps = client.server_capabilities
        tools = await _pages(lambda c: client.list_tools(cursor=c), "tools")
        resources: list[Any] = []
        prompts: list[Any] = []
        if caps.resources is not None:
            resources = await _pages(lambda c: client.list_resources(cursor=c), "resources")
        if caps.prompts is not None:
            prompts = await _pages(lambda c: client.list_prompts(cursor=c), "prompts")
        return Announced(tuple(tools), tuple(resources), tuple(prompts))

    async def relist(self) -> Announced:
        client = await self.client()
        self.announced = await asyncio.wait_for(self._list(client), self.spec.timeout_s)
        return self.announced

    async def request(
        self, what: str, call: Callable[[Client], Awaitable[Any]], timeout: float
    ) -> Any:
        """Run one request on the live client; a timeout or a death drops the connection
        (the next request reconnects and re-lists)."""
        client = await self.client()
        try:
            result = await asyncio.wait_for(call(client), timeout)
        except TimeoutError:
            await self._drop()
            raise UpstreamError(
                "MCP.UPSTREAM.TIMEOUT", f"{self.name}: {what} took over {timeout:g}s"
            ) from None
        except MCPError as exc:
            if exc.code != types.CONNECTION_CLOSED:
                raise UpstreamError("MCP.UPSTREAM.ERROR", f"{self.name}: {what}: {exc}") from None
            await self._drop()
            raise UpstreamError("MCP.UPSTREAM.DIED", f"{self.name}: {what}: {exc}") from None
        except Exception as exc:
            await self._drop()
            raise UpstreamError("MCP.UPSTREAM.DIED", f"{self.name}: {what}: {_why(exc)}") from None
        size = len(orjson.dumps(result.model_dump(mode="json", by_alias=True)))
        if size > self.spec.max_result_bytes:
            raise UpstreamError(
                "MCP.UPSTREAM.TOO_LARGE",
                f"{self.name}: {what} returned {size} bytes, over {self.spec.max_result_bytes}",
            )
        return result

    async def _drop(self) -> None:
        owner, closing = self._owner, self._closing
        self._client = self._owner = self._closing = None
        if closing is not None:
            closing.set()
        if owner is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(owner, 10)

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()


def _errlog() -> TextIO:
    """Where upstreams' stderr goes: the gateway's own, when it is a real file (a test
    runner's capture is not, and a child needs a descriptor)."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__ or open(os.devnull, "w")
    return sys.stderr


def _why(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_why(e) for e in exc.exceptions)
    text = str(exc) or type(exc).__name__
    return text[:500]
