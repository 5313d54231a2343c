"""The gateway's connections to its upstream MCP servers, through the SDK's real client.

`launch` is the one place a stdio upstream's command line and environment are decided.
By default the server runs as a level-2 pod (`maos.pod.upstream.upstream_pod`): uid
nobody, its own namespaces, no host files but its runtime and the ``files`` its policy
names, and no network but the policy's ``egress`` through a relay that logs every
connection to the kernel's log (``mcp.egress``). Its environment is the policy's
``env`` and ``secrets`` over the sandbox's fixed base, nothing the gateway inherited.
``sandbox: {level: none}`` runs it as a plain child instead, with the same environment
rule (the SDK's client adds HOME, LOGNAME, PATH, SHELL, TERM and USER from the parent;
each is overridden with a neutral value unless the policy names it).

Secrets stay on this side: every value of the upstream's ``secrets`` is replaced by
``[secret NAME]`` in whatever the server answers (listings, results, error texts, its
stderr) before the kernel logs it or the client sees it.

A remote (``url``) upstream is reached by a client that sends each request only to the
host and port the policy's URL names, as the HTTP effect reads an allowlist
(`maos.effects.http.allowed`): no redirect elsewhere, no proxy from the environment.

Each connection is owned by one task (anyio's scopes must be left by the task that
entered them); calls come from any task. A connection that dies is reopened by the
next call, and what the server then announces is compared with what was registered
(`digest`): a changed description or schema is the rug-pull the gateway refuses.

Once the gateway's kernel runs (`watch`), every stdio server beats to its Watchdog as
``pod:mcp/<name>``, each beat an answer to the protocol's own liveness probe
(`maos.mcp.liveness`); a call in flight holds its silence, bounded by the call's own
timeout. A server the Watchdog records missing (``pod.missed``: stopped, wedged) is
dropped like one that died, and the next call starts a fresh one.

Errors are `UpstreamError` with ``MCP.UPSTREAM.*`` codes: ``START`` (cannot launch or
connect), ``TIMEOUT`` (no answer in time: the connection is dropped), ``DIED`` (the
server went away mid-call), ``ERROR`` (the server answered a JSON-RPC error),
``TOO_LARGE`` (a result over the policy's ``max_result_bytes``), ``BAD_RESULT``,
``SECRET`` (a secret's file cannot be read), ``NOT_ALLOWED`` (a request to a host the
URL does not name).
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
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import httpx2
import mcp_types as types
import orjson
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from maos.effects.http import allowed
from maos.kernel.errors import MaosError
from maos.kernel.watchdog import Watchdog
from maos.mcp.liveness import Pulse, upstream_member
from maos.mcp.policy import Upstream
from maos.pod.egress import EgressEvent
from maos.pod.isolation import PodHome
from maos.pod.isolation.level1 import PYTHON
from maos.pod.upstream import upstream_pod
from maos.pod.upstream_runtime import NODE, Runtime, build_runtime

__all__ = [
    "Announced",
    "Connection",
    "Sandboxing",
    "UpstreamError",
    "default_runtime_cache",
    "digest",
    "launch",
    "remote_client",
    "scrub",
]

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


@dataclass(frozen=True, slots=True)
class Sandboxing:
    """What a gateway gives its sandboxed upstreams: one pod home, a runtime cache, and
    where each egress decision is logged (it raises when it cannot log: a refusal)."""

    home: PodHome
    runtime_cache: Path
    on_egress: Callable[[str, EgressEvent], Awaitable[None]]


def default_runtime_cache() -> Path:
    """Runtimes' default home: one uid nobody can traverse to (bwrap mounts them as nobody)."""
    if os.geteuid() == 0:
        return Path("/var/cache/maos/mcp-runtime")
    return Path.home() / ".cache" / "maos" / "mcp-runtime"


def _command(spec: Upstream, runtime: Runtime | None) -> str:
    """The sandboxed server's program: a bare ``python``/``python3`` is the runtime's
    (else Debian's), ``node`` Debian's, another bare name a command of the runtime."""
    assert spec.command is not None
    command = spec.command
    if "/" in command:
        return command
    if command in ("python", "python3"):
        return str(runtime.python) if runtime is not None else PYTHON
    if command == "node":
        return NODE
    if runtime is not None and (runtime.root / "bin" / command).exists():
        return str(runtime.root / "bin" / command)
    return command  # refused by the sandbox as not mounted, with its code


@contextlib.asynccontextmanager
async def launch(
    name: str,
    spec: Upstream,
    *,
    home: str,
    secrets: Mapping[str, str],
    sandboxing: Sandboxing | None,
    runtime: Runtime | None = None,
) -> AsyncIterator[StdioServerParameters]:
    """How the stdio upstream ``name`` is started, for as long as the block runs: its
    command, arguments and exactly the environment its policy names (``secrets`` are
    its secrets' values). ``home`` is the HOME of an unsandboxed server."""
    assert spec.command is not None
    given = {**spec.env, **secrets}
    if spec.sandbox.level == "none":
        env = {**_NEUTRAL_ENV, "HOME": home, **given}
        # A bare name is found on the gateway's PATH (the operator's choice of program),
        # not the neutral one the server runs with.
        command = shutil.which(spec.command) or spec.command
        yield StdioServerParameters(command=command, args=list(spec.args), env=env, cwd=spec.cwd)
        return
    if sandboxing is None:
        raise UpstreamError("MCP.UPSTREAM.START", f"{name}: no sandbox to start it in")

    async def log(event: EgressEvent) -> None:
        await sandboxing.on_egress(name, event)

    async with upstream_pod(
        _command(spec, runtime),
        spec.args,
        env=given,
        home=sandboxing.home,
        egress=spec.sandbox.egress,
        on_connect=log if spec.sandbox.egress else None,
        runtime=runtime,
        files=[Path(f) for f in spec.sandbox.files],
        writable=[Path(w) for w in spec.sandbox.writable],
    ) as pod:
        yield StdioServerParameters(command=pod.command, args=list(pod.args), env=dict(pod.env))


def _read_secrets(name: str, spec: Upstream) -> dict[str, str]:
    """Each secret's value from its file (the first line), read at each start."""
    out = {}
    for var, path in spec.secrets.items():
        try:
            value = Path(path).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError):
            raise UpstreamError(
                "MCP.UPSTREAM.SECRET",
                f"{name}: the secret {var} cannot be read from {path} (one line of text)",
            ) from None
        if not value or "\0" in value:
            raise UpstreamError("MCP.UPSTREAM.SECRET", f"{name}: the secret {var} is empty")
        out[var] = value
    return out


def scrub(value: Any, secrets: Mapping[str, str]) -> Any:
    """``value`` (JSON-like) with every secret's value replaced by ``[secret NAME]``."""
    if not secrets:
        return value
    if isinstance(value, str):
        for var, secret in secrets.items():
            value = value.replace(secret, f"[secret {var}]")
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value


class _Errlog:
    """An upstream's stderr, scrubbed of its secrets on the way to the gateway's own
    (a stdio client such as Claude Desktop keeps its servers' stderr in its logs)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        read, write = os.pipe()
        self.file = os.fdopen(write, "w")
        self._secrets = dict(secrets)
        self._thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self._thread.start()

    def _pump(self, fd: int) -> None:
        out = _errlog()
        with os.fdopen(fd, "r", errors="replace") as lines:
            for line in lines:
                with contextlib.suppress(OSError, ValueError):
                    out.write(scrub(line, self._secrets))
                    out.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


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
        sandboxing: Sandboxing | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self._on_change = on_change
        self._sandboxing = sandboxing
        self._runtime: Runtime | None = None
        self._secrets: dict[str, str] = {}
        self._changes: set[asyncio.Task[None]] = set()
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._home = tempfile.mkdtemp(prefix=f"maos-mcp-{name}-")
        self._watchdog: Watchdog | None = None
        self._watched = asyncio.Event()
        self.member = upstream_member(name)
        """Its servers' Watchdog member (`maos.mcp.liveness`)."""
        self.announced: Announced | None = None
        self.capabilities: types.ServerCapabilities | None = None

    async def _own(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """Enter the client, hand it over, hold it until closing (or until it breaks)."""
        errlog: _Errlog | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport: Any
                if self.spec.url is not None:
                    http = remote_client(self.spec)
                    await stack.enter_async_context(http)
                    transport = streamable_http_client(self.spec.url, http_client=http)
                else:
                    params = await stack.enter_async_context(
                        launch(
                            self.name,
                            self.spec,
                            home=self._home,
                            secrets=self._secrets,
                            sandboxing=self._sandboxing,
                            runtime=self._runtime,
                        )
                    )
                    errlog = _Errlog(self._secrets)
                    stack.callback(errlog.close)
                    transport = stdio_client(params, errlog=errlog.file)
                client = await stack.enter_async_context(
                    Client(
                        transport,
                        mode=self.spec.protocol,
                        read_timeout_seconds=None,
                        message_handler=self._message,
                        cache=None,
                    )
                )
                ready.set_result(client)
                tasks = [asyncio.create_task(self._listen(client), name=f"mcp-{self.name}-listen")]
                if self.spec.url is None:  # a process of ours: it beats
                    tasks.append(asyncio.create_task(self._beat(client, closing)))
                try:
                    await closing.wait()
                finally:
                    for task in tasks:
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
        except asyncio.CancelledError:
            ready.cancel()
            raise
        except Exception as exc:  # a failed start is the caller's error; a break, the next call's
            if not ready.done():
                ready.set_exception(exc)
            _log.info("upstream %s: connection ended: %s", self.name, self._why(exc))

    def watch(self, watchdog: Watchdog) -> None:
        """Beat to ``watchdog`` (the gateway's kernel's) from now on, this server and
        every one started after it."""
        self._watchdog = watchdog
        self._watched.set()

    async def _beat(self, client: Client, closing: asyncio.Event) -> None:
        """This server's heartbeats, once there is a Watchdog; a server it records missing
        is dropped like one that died (the next call starts a fresh one)."""
        await self._watched.wait()
        assert self._watchdog is not None
        if not await Pulse(self._watchdog, self.name).run(client):
            return
        _log.warning("upstream %s: missed its heartbeats; dropped until the next call", self.name)
        if self._client is client:
            self._client = None
        closing.set()

    def _missing(self) -> bool:
        """The Watchdog has recorded the live server missing: it is about to be dropped,
        so a call does not go to it but to a fresh one."""
        return self._watchdog is not None and self._watchdog.missing(self.member)

    async def _prepare(self) -> None:
        """Before each start: the secrets (re-read) and, once, the runtime (built in a
        thread on first use: pip and npm block)."""
        self._secrets = _read_secrets(self.name, self.spec)
        wanted = self.spec.sandbox.runtime
        if wanted is None or self._runtime is not None or self.spec.command is None:
            return
        cache = self._sandboxing.runtime_cache if self._sandboxing else default_runtime_cache()
        try:
            self._runtime = await asyncio.to_thread(
                build_runtime, wanted.python, cache, npm_packages=wanted.npm, node=wanted.node
            )
        except MaosError as exc:
            raise UpstreamError(
                "MCP.UPSTREAM.START", f"{self.name}: its runtime: {exc.code}: {exc.message}"
            ) from None

    def _why(self, exc: BaseException) -> str:
        return str(scrub(_why(exc), self._secrets))

    async def _message(self, message: IncomingMessage) -> None:
        """A handshake-era ``notifications/*/list_changed``: re-listing is a request on
        this same session, whose answers this handler's caller reads, so it runs apart."""
        if (
            self._on_change is not None
            and not isinstance(message, Exception)
            and message.method in _CHANGED
        ):
            task = asyncio.create_task(self._changed())
            self._changes.add(task)
            task.add_done_callback(self._changes.discard)

    async def _changed(self) -> None:
        if self._on_change is not None:
            await self._on_change(self.name)

    async def _listen(self, client: Client) -> None:
        """A 2026-07-28 server announces changes only on a ``subscriptions/listen``
        stream: hold one open for as long as the connection, and re-list on each event."""
        if self._on_change is None or client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return
        try:
            async with client.listen(
                tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True
            ) as events:
                async for _event in events:
                    await self._changed()
        except (MCPError, SubscriptionLost, ListenNotSupportedError, TimeoutError) as exc:
            _log.info("upstream %s: no change stream: %s", self.name, self._why(exc))

    async def client(self) -> Client:
        """The live client, (re)connecting and re-listing when there is none."""
        async with self._lock:
            owner = self._owner
            if self._client is not None and owner and not owner.done() and not self._missing():
                return self._client
            await self._drop()
            await self._prepare()
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
                    "MCP.UPSTREAM.START", f"{self.name}: cannot connect: {self._why(exc)}"
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
                raise UpstreamError(
                    "MCP.UPSTREAM.START", f"{self.name}: {self._why(exc)}"
                ) from None
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
        return Announced(
            tuple(self._clean(t) for t in tools),
            tuple(self._clean(r) for r in resources),
            tuple(self._clean(p) for p in prompts),
        )

    def _clean(self, item: Any) -> Any:
        """An announced item with the upstream's secrets scrubbed out of it."""
        if not self._secrets:
            return item
        dumped = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        return type(item).model_validate(scrub(dumped, self._secrets))

    async def relist(self) -> Announced:
        client = await self.client()
        self.announced = await asyncio.wait_for(self._list(client), self.spec.timeout_s)
        return self.announced

    async def request(
        self, what: str, call: Callable[[Client], Awaitable[Any]], timeout: float
    ) -> dict[str, Any]:
        """Run one request on the live client and answer its result as JSON, secrets
        scrubbed; a timeout or a death drops the connection (the next request reconnects
        and re-lists)."""
        client = await self.client()
        held = self._watchdog.holding(self.member) if self._watchdog else None
        try:
            with held or contextlib.nullcontext():  # the call's timeout bounds its silence
                result = await asyncio.wait_for(call(client), timeout)
        except TimeoutError:
            await self._drop()
            raise UpstreamError(
                "MCP.UPSTREAM.TIMEOUT", f"{self.name}: {what} took over {timeout:g}s"
            ) from None
        except MCPError as exc:
            if exc.code != types.CONNECTION_CLOSED:
                raise UpstreamError(
                    "MCP.UPSTREAM.ERROR", f"{self.name}: {what}: {self._why(exc)}"
                ) from None
            await self._drop()
            raise UpstreamError(
                "MCP.UPSTREAM.DIED", f"{self.name}: {what}: {self._why(exc)}"
            ) from None
        except Exception as exc:
            await self._drop()
            raise UpstreamError(
                "MCP.UPSTREAM.DIED", f"{self.name}: {what}: {self._why(exc)}"
            ) from None
        value: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        size = len(orjson.dumps(value))
        if size > self.spec.max_result_bytes:
            raise UpstreamError(
                "MCP.UPSTREAM.TOO_LARGE",
                f"{self.name}: {what} returned {size} bytes, over {self.spec.max_result_bytes}",
            )
        scrubbed: dict[str, Any] = scrub(value, self._secrets)
        return scrubbed

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


def remote_client(spec: Upstream) -> httpx2.AsyncClient:
    """The client of a ``url`` upstream: each request goes only to the URL's host and
    port (the HTTP effect's reading of an allowlist), never by a proxy from the env."""
    assert spec.url is not None
    host = httpx2.URL(spec.url)
    allowlist = [f"{host.host}:{host.port}" if host.port else host.host]

    async def check(request: httpx2.Request) -> None:
        if not allowed(httpx.URL(str(request.url)), allowlist):
            raise UpstreamError(
                "MCP.UPSTREAM.NOT_ALLOWED",
                f"a request to {request.url.host}:{request.url.port} is not to {allowlist[0]}",
            )

    return httpx2.AsyncClient(
        headers=dict(spec.headers),
        timeout=httpx2.Timeout(spec.timeout_s, read=300),
        follow_redirects=False,
        trust_env=False,
        event_hooks={"request": [check]},
    )


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
    if isinstance(exc, MaosError) and exc.fields:
        text += " (" + ", ".join(f"{k}={v}" for k, v in exc.fields.items()) + ")"
    return text[:500]
