"""Running a gateway: upstreams first, then the kernel, then the MCP server (stdio or HTTP).

The upstreams connect before the kernel boots, because boot carries out calls the
Commander approved while the gateway was down, and those need their upstream; what
the upstreams announce is compared with the log's registrations before that, so an
approved call to a tool that changed meanwhile is refused, not sent.

Over HTTP every request must carry ``Authorization: Bearer <token>``, the token in
``<data-dir>/mcp-gateway.token`` (created 0600 on first start), compared in constant
time; the SDK's DNS-rebinding protection stays on for loopback hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import orjson
import uvicorn
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maos.boot import configured_kernel
from maos.commander.web import load_or_create_token
from maos.kernel.kernel import KernelConfig
from maos.kernel.view import LogView
from maos.kernel.wal import Wal
from maos.mcp.adapter import McpAdapter
from maos.mcp.catalogue import Catalogue, same_definition
from maos.mcp.gateway import Gateway
from maos.mcp.policy import Policy
from maos.mcp.upstream import Connection, Sandboxing, default_runtime_cache
from maos.pod.egress import EgressEvent
from maos.pod.isolation import PodHome

__all__ = [
    "MAX_BODY",
    "TOKEN_FILE",
    "BearerGuard",
    "MessageGuard",
    "connect",
    "running_gateway",
    "serve_http",
    "serve_stdio",
]

TOKEN_FILE = "mcp-gateway.token"


@dataclass(frozen=True, slots=True)
class Connected:
    adapter: McpAdapter
    catalogue: Catalogue
    home: PodHome | None
    """Where the sandboxed upstreams' pods live; removed by `aclose`."""

    async def aclose(self) -> None:
        for conn in self.adapter.connections.values():
            await conn.aclose()
        if self.home is not None:
            self.home.close()


class _Late:
    """Forwards an upstream's list_changed and its egress decisions to the gateway, once
    there is one. Before the kernel runs an egress cannot be logged, so it is refused."""

    gateway: Gateway | None = None

    async def changed(self, upstream: str) -> None:
        if self.gateway is not None:
            await self.gateway.upstream_changed(upstream)

    async def egress(self, upstream: str, event: EgressEvent) -> None:
        if self.gateway is None:
            raise RuntimeError("no kernel to log the connection to yet")
        await self.gateway.kernel.wal.append(
            "mcp.egress",
            {
                "upstream": upstream,
                "destination": event.destination,
                "allowed": event.allowed,
                "code": event.code,
                "address": event.address,
            },
        )


async def connect(policy: Policy, late: _Late | None = None) -> Connected:
    """Connect every upstream and learn what it offers; nothing is registered yet."""
    late = late or _Late()
    sandboxed = any(
        u.command is not None and u.sandbox.level != "none" for u in policy.upstreams.values()
    )
    home = PodHome() if sandboxed else None
    cache = Path(policy.runtime_cache) if policy.runtime_cache else default_runtime_cache()
    sandboxing = None if home is None else Sandboxing(home, cache, late.egress)
    connections = {
        name: Connection(name, spec, on_change=late.changed, sandboxing=sandboxing)
        for name, spec in policy.upstreams.items()
    }
    adapter = McpAdapter(connections)
    connected = Connected(adapter, Catalogue([]), home)
    try:
        # Together: a server's start is mostly its interpreter importing the SDK.
        await asyncio.gather(*(conn.client() for conn in connections.values()))
        announced = {}
        for name, conn in connections.items():
            assert conn.announced is not None
            announced[name] = conn.announced
        catalogue = Catalogue.build(policy, announced)
    except BaseException:
        await connected.aclose()
        raise
    adapter.use(catalogue)
    return Connected(adapter, catalogue, home)


def _changed_in_log(data_dir: Path, policy: Policy, catalogue: Catalogue) -> set[str]:
    """Kernel tools whose registration in the log differs from what is offered now."""
    path = KernelConfig(data_dir=data_dir).wal_path
    if not path.exists():
        return set()
    wal = Wal(path)
    try:
        view = LogView(wal)
        view.catch_up()
        tools = view.registry.tools
    finally:
        wal.close()
    out = set()
    for entry in catalogue.entries:
        known = tools.get(entry.kernel)
        if known is not None and entry.tool is not None:
            reg = entry.registration(policy.upstreams[entry.upstream].resources)
            if not same_definition(known.manifest, reg):
                out.add(entry.kernel)
    return out


@contextlib.asynccontextmanager
async def running_gateway(policy: Policy, data_dir: Path) -> AsyncIterator[Gateway]:
    """Upstreams connected, kernel booted with the ``tool`` adapter, tools registered."""
    late = _Late()
    connected = await connect(policy, late)
    adapter = connected.adapter
    try:
        adapter.changed |= _changed_in_log(data_dir, policy, connected.catalogue)
        async with configured_kernel(data_dir, adapters={"tool": adapter}) as kernel:
            adapter.watch(kernel.watchdog)  # the upstreams beat from now on
            gateway = Gateway(kernel, policy, adapter)
            late.gateway = gateway
            await gateway.start(connected.catalogue)
            yield gateway
    finally:
        await connected.aclose()


_SDK_CODES = {
    types.PARSE_ERROR: "MCP.BAD_MESSAGE.JSON",
    types.INVALID_REQUEST: "MCP.BAD_MESSAGE.SHAPE",
    types.METHOD_NOT_FOUND: "MCP.BAD_MESSAGE.METHOD",
    types.INVALID_PARAMS: "MCP.BAD_MESSAGE.PARAMS",
}
_CODED = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+: ")


def _coded(message: SessionMessage) -> SessionMessage:
    """A JSON-RPC error the SDK wrote (a bad request's shape, an unknown method) with
    the MAOS code its kind has in front of its sentence; the gateway's own are coded."""
    rpc = message.message
    if not isinstance(rpc, types.JSONRPCError) or _CODED.match(rpc.error.message):
        return message
    code = _SDK_CODES.get(rpc.error.code, "MCP.ERROR")
    error = rpc.error.model_copy(update={"message": f"{code}: {rpc.error.message}"})
    return SessionMessage(rpc.model_copy(update={"error": error}))


class _CodedWrite:
    """The server's write stream, every error going out through `_coded`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def send(self, item: SessionMessage, /) -> None:
        await self._stream.send(_coded(item))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> _CodedWrite:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def serve_stdio(gateway: Gateway) -> None:
    """Serve the one client on this process's stdin and stdout until it closes them.

    A line that is not a JSON-RPC message gets a parse error (``id: null``, its request
    id being unreadable) instead of the SDK's silence, so the client is told; every
    JSON-RPC error the client gets names a MAOS code (`_coded`)."""
    server = gateway.server()
    async with stdio_server() as (read, write):
        inbound, relayed = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def screen() -> None:
            async with inbound:
                async for item in read:
                    if not isinstance(item, Exception):
                        await inbound.send(item)
                        continue
                    why = f"MCP.BAD_MESSAGE.JSON: not a JSON-RPC message ({type(item).__name__})"
                    error = types.ErrorData(code=types.PARSE_ERROR, message=why)
                    await write.send(
                        SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=None, error=error))
                    )

        async with anyio.create_task_group() as tg:
            tg.start_soon(screen)
            options = server.create_initialization_options()
            await server.run(relayed, _CodedWrite(write), options)
            tg.cancel_scope.cancel()


class BearerGuard:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` matches."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = b'{"error": "MCP.AUTH.TOKEN: a bearer token is required (see docs/mcp.md)"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


MAX_BODY = 4 * 1024 * 1024
"""The largest request body the HTTP gateway reads (the SDK's own limit too)."""


async def _reject(send: Send, status: int, code: int, message: str) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MessageGuard:
    """ASGI middleware before the SDK: a POST body over `MAX_BODY`, one that is not JSON,
    or one that is not a JSON-RPC object is answered here - a JSON-RPC error whose
    message starts with its MAOS code (``MCP.BAD_MESSAGE.*``) - and never parsed further.
    What passes is handed on unchanged; the SDK validates the rest."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        too_large = f"MCP.BAD_MESSAGE.TOO_LARGE: a request body is at most {self.limit} bytes"
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _reject(send, 413, types.INVALID_REQUEST, too_large)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await _reject(send, 413, types.INVALID_REQUEST, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        data = b"".join(chunks)
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            why = "MCP.BAD_MESSAGE.JSON: the body is not JSON; send one JSON-RPC message"
            await _reject(send, 400, types.PARSE_ERROR, why)
            return
        if not _jsonrpc_shaped(value):
            why = (
                "MCP.BAD_MESSAGE.SHAPE: the body must be one JSON-RPC 2.0 object with a string"
                " method (or a result or error)"
            )
            await _reject(send, 400, types.INVALID_REQUEST, why)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _jsonrpc_shaped(value: Any) -> bool:
    if not isinstance(value, dict) or value.get("jsonrpc") != "2.0":
        return False
    if "method" in value:
        return isinstance(value["method"], str) and isinstance(value.get("params", {}), dict)
    return "result" in value or "error" in value


async def serve_http(
    gateway: Gateway,
    host: str,
    port: int,
    *,
    token: str | None = None,
    ready: Callable[[str, int], Any] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve streamable HTTP on ``host:port`` (0: any free port) until cancelled, or
    until ``stop`` is set (then open requests are finished first)."""
    server = gateway.server()
    token = token or load_or_create_token(gateway.kernel.config.data_dir, TOKEN_FILE)
    app = BearerGuard(MessageGuard(server.streamable_http_app(host=host)), token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    web = uvicorn.Server(config)

    async def announce() -> None:
        while not web.started:
            await asyncio.sleep(0.02)
        bound = web.servers[0].sockets[0].getsockname()
        if ready is not None:
            ready(str(bound[0]), int(bound[1]))

    async def stopper() -> None:
        if stop is not None:
            await stop.wait()
            web.should_exit = True

    watchers = [asyncio.create_task(announce()), asyncio.create_task(stopper())]
    try:
        await web.serve()
    finally:
        for watcher in watchers:
            watcher.cancel()
