"""The egress relay: the only way out of an upstream server's network namespace.

An upstream (MCP) server's sandbox has a private network namespace with nothing but a
loopback. Inside it a forwarder (`maos.pod.upstream_init`) listens on
``127.0.0.1:PROXY_PORT`` and pipes each connection through a bind-mounted Unix socket to
this relay, in the kernel's process; the server is told ``HTTPS_PROXY`` points there. The
relay speaks the proxy side of HTTP ``CONNECT`` and decides each connection itself:

1. the request line must be ``CONNECT host:port HTTP/1.x`` within `HEADER_LIMIT` bytes
   and `HEADER_TIMEOUT` seconds (any other method: 405, plain-HTTP proxying would let one
   keep-alive connection change hosts between requests);
2. ``host`` is an IP literal or a strict DNS name; anything else (``127.1``, ``0x7f.1``,
   a bare number, which resolvers read as addresses) is `EGRESS.BAD_DESTINATION`;
3. ``host:port`` must be in the server's allowlist exactly: an IP literal only as that
   literal, a name only as that name (`EGRESS.NOT_ALLOWED`);
4. a name is resolved once, here; if any address it resolves to is not globally routable
   (loopback, private, link-local, ...) the connection is refused
   (`EGRESS.INTERNAL_ADDRESS`): that is DNS rebinding, and an operator who means an
   internal service lists its address literally. The relay connects to the address it
   checked, never re-resolving;
5. the decision is reported to ``on_connect`` (the kernel's WAL) *before* any byte goes
   out; a callback that fails refuses the connection (`EGRESS.LOG_FAILED`).

MaosError
└── EgressError   EGRESS.*   an allowlist entry cannot be understood
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from maos.kernel.errors import MaosError

__all__ = [
    "HEADER_LIMIT",
    "HEADER_TIMEOUT",
    "MAX_CONNECTIONS",
    "Destination",
    "EgressError",
    "EgressEvent",
    "EgressRelay",
    "OnConnect",
    "parse_destination",
]

HEADER_LIMIT = 8 * 1024
HEADER_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
"""Concurrent tunnels per relay (per upstream server); the next one gets 503."""

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_REQUEST = re.compile(rb"^CONNECT ([^ ]{1,300}) HTTP/1\.[01]\r\n")


class EgressError(MaosError):
    """A destination or allowlist entry that the relay cannot understand: a deny."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A normalised ``host:port``: lower-case names, canonical IP literals."""

    host: str
    port: int
    literal: bool
    """Whether ``host`` is an IP address (then never resolved)."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EgressEvent:
    """One connection the relay decided, as the kernel's log records it."""

    destination: str
    """What the server asked for, normalised; the raw text (cut to 200) when unparseable."""
    allowed: bool
    code: str | None
    """The refusal's code; None when allowed."""
    address: str | None = None
    """The address the relay connects to (after resolution); None when refused."""


OnConnect = Callable[[EgressEvent], Awaitable[None] | None]


def parse_destination(text: str) -> Destination:
    """``host:port`` → `Destination`, or `EgressError` ``EGRESS.BAD_DESTINATION``."""
    host, sep, port = text.rpartition(":")
    if not sep or not _PORT.match(port) or not 0 < int(port) < 65536:
        raise _bad(text, "needs host:port with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise _bad(text, "brackets are for IPv6 addresses only")
    elif ":" in host:
        raise _bad(text, "an IPv6 address must be in brackets")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().removesuffix(".")
        labels = name.split(".")
        if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
            raise _bad(text, "not an IP address nor a DNS name") from None
        if labels[-1].isdigit():
            raise _bad(text, "a numeric last label reads as an address to resolvers") from None
        return Destination(name, int(port), literal=False)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return Destination(str(address), int(port), literal=True)


def _bad(text: str, why: str) -> EgressError:
    return EgressError(
        "EGRESS.BAD_DESTINATION",
        f"{why}; write destinations as host:port, e.g. api.example.com:443",
        destination=text[:200],
    )


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


class EgressRelay:
    """One upstream server's relay: an allowlist, a Unix socket, a log callback.

    Use as ``async with EgressRelay(allow, socket_path, on_connect=...)``; the socket is
    made owned by ``owner`` (the pod's uid) with mode 0600 so that only that uid (and
    root) can connect. Needs a running event loop.
    """

    def __init__(
        self,
        allow: Iterable[str],
        socket_path: Path,
        *,
        on_connect: OnConnect,
        owner: int | None = None,
    ) -> None:
        self.allow = frozenset(parse_destination(entry) for entry in allow)
        self.socket_path = socket_path
        self._on_connect = on_connect
        self._owner = owner
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0

    async def __aenter__(self) -> EgressRelay:
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=HEADER_LIMIT
        )
        os.chmod(self.socket_path, 0o600)
        if self._owner is not None and os.geteuid() == 0:
            os.chown(self.socket_path, self._owner, self._owner)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting and cut every open tunnel."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open += 1
        try:
            await self._tunnel(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # `close` cut this tunnel. Ending normally keeps asyncio's stream callback
            # from reporting the cancellation of a task only we ever await.
            pass
        finally:
            self._open -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The reader's limit is HEADER_LIMIT: a longer header is an overrun.
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        except (TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            await self._refuse(writer, "?", 400, "EGRESS.BAD_REQUEST", "no CONNECT request")
            return
        match = _REQUEST.match(head)
        if match is None:
            first = head.split(b"\r\n", 1)[0][:200].decode("ascii", "replace")
            await self._refuse(
                writer, first, 405, "EGRESS.BAD_REQUEST", "only CONNECT host:port is relayed"
            )
            return
        text = match.group(1).decode("ascii", "replace")
        if self._open > MAX_CONNECTIONS:
            await self._refuse(writer, text, 503, "EGRESS.TOO_MANY", "too many open tunnels")
            return
        try:
            dest = parse_destination(text)
        except EgressError as exc:
            await self._refuse(writer, text, 400, exc.code, exc.message)
            return
        if dest not in self.allow:
            await self._refuse(
                writer, str(dest), 403, "EGRESS.NOT_ALLOWED", "not in this server's allowlist"
            )
            return
        addresses = [dest.host] if dest.literal else await self._resolve(dest)
        if not addresses:
            await self._refuse(writer, str(dest), 502, "EGRESS.UNRESOLVED", "name not found")
            return
        if not dest.literal and any(_internal(a) for a in addresses):
            await self._refuse(
                writer,
                str(dest),
                403,
                "EGRESS.INTERNAL_ADDRESS",
                "the name resolves to an internal address; list the address itself",
            )
            return
        address = addresses[0]
        shown = str(Destination(address, dest.port, literal=True))
        if not await self._log(EgressEvent(str(dest), True, None, shown)):
            await self._reply(writer, 503, "EGRESS.LOG_FAILED", "the connection cannot be logged")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(address, dest.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            await self._reply(writer, 502, "EGRESS.UNREACHABLE", "the destination did not answer")
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()

    async def _resolve(self, dest: Destination) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                dest.host, dest.port, type=1, proto=6
            )
        except OSError:
            return []
        return [str(info[4][0]) for info in infos]

    async def _log(self, event: EgressEvent) -> bool:
        try:
            result = self._on_connect(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            return False
        return True

    async def _refuse(
        self, writer: asyncio.StreamWriter, dest: str, status: int, code: str, why: str
    ) -> None:
        await self._log(EgressEvent(dest, False, code))
        await self._reply(writer, status, code, why)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, code: str, why: str) -> None:
        body = f"error {code}: {why}\n".encode()
        writer.write(
            f"HTTP/1.1 {status} Refused\r\nContent-Type: text/plain\r\n"
            f"X-Maos-Code: {code}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
