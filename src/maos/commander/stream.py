"""The dashboard's live updates: the server pushes the state over one EventSource stream
(``text/event-stream``) whenever the log moves, instead of the page polling for it.

Authorisation without the token in a URL: a browser's `EventSource` cannot send an
``Authorization`` header, and a URL is what logs, histories and proxies keep. So the page
first asks ``POST /api/stream/ticket`` *with* the header and gets a ticket: 32 random
bytes, good for one connection within `TICKET_TTL` seconds, kept here only as its
SHA-256. The stream is opened with ``?ticket=...``; the ticket is spent on arrival, so
one that turns up in a log later opens nothing, and it never grants anything but this
read-only stream. A reconnect fetches a new one.

Cost: one watcher task (only while someone listens) asks the log for its last sequence
number every `WATCH_INTERVAL` seconds - an indexed ``max(seq)``, a few microseconds - and
on a change renders the state once for every listener. Records written by another
process (the console's orders) move the same tail, so they are pushed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable

__all__ = [
    "MAX_STREAMS",
    "TICKET_TTL",
    "WATCH_INTERVAL",
    "Broadcaster",
    "StreamTickets",
]

TICKET_TTL = 30.0
"""Seconds a stream ticket stays good for (it is spent by the first connection)."""
MAX_TICKETS = 32
"""Unspent tickets kept; the oldest go first (a page needs one per connection)."""
MAX_STREAMS = 16
"""Streams served at once; one more is refused (429) rather than queued."""
WATCH_INTERVAL = 0.02
"""How often the watcher looks at the log's tail while someone listens."""
KEEPALIVE = 15.0
"""A comment line when nothing changed for this long, so a dead peer is noticed."""


class StreamTickets:
    """Single-use, short-lived tickets for the event stream (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._live: OrderedDict[bytes, float] = OrderedDict()
        """SHA-256 of each unspent ticket -> when it expires."""

    def issue(self) -> str:
        now = self._clock()
        for digest, expires in list(self._live.items()):
            if expires <= now:
                del self._live[digest]
        while len(self._live) >= MAX_TICKETS:
            self._live.popitem(last=False)
        ticket = secrets.token_urlsafe(32)
        self._live[_digest(ticket)] = now + TICKET_TTL
        return ticket

    def redeem(self, ticket: str) -> bool:
        """Whether ``ticket`` is good; it is spent either way."""
        if not 0 < len(ticket) <= 64:
            return False
        expires = self._live.pop(_digest(ticket), None)
        return expires is not None and self._clock() < expires


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "replace")).digest()


class Broadcaster:
    """Pushes ``render()`` to every listener whenever ``version()`` changes.

    ``version`` is cheap (the log's tail and what the serving process adds); ``render``
    builds the whole state and is called once per change, whatever the listeners.
    ``closing`` says the server is shutting down: streams end so it need not wait."""

    def __init__(
        self,
        version: Callable[[], Hashable],
        render: Callable[[], tuple[int, bytes]],
        closing: Callable[[], bool],
    ) -> None:
        self._version = version
        self._render = render
        self._closing = closing
        self._queues: set[asyncio.Queue[bytes | None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def full(self) -> bool:
        return len(self._queues) >= MAX_STREAMS

    async def frames(self) -> AsyncIterator[bytes]:
        """One listener's stream: the state now, then every change, until shutdown."""
        if self._closed:
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._queues.add(queue)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())
        try:
            yield b"retry: 1000\n" + _frame(*self._render())
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if frame is None or self._closed:
                    return
                yield frame
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        """End every stream now (the server stops)."""
        self._closed = True
        for queue in list(self._queues):
            _offer(queue, None)

    async def _watch(self) -> None:
        seen = self._version()
        while self._queues:
            await asyncio.sleep(WATCH_INTERVAL)
            if self._closed or self._closing():
                self.close()
                return
            now = self._version()
            if now == seen:
                continue
            seen = now
            frame = _frame(*self._render())
            for queue in list(self._queues):
                _offer(queue, frame)


def _frame(seq: int, data: bytes) -> bytes:
    """One ``state`` event; orjson escapes newlines, so the JSON is one ``data`` line."""
    return b"id: %d\nevent: state\ndata: %s\n\n" % (seq, data)


def _offer(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    """Latest wins: a listener that has not taken the last state gets this one instead."""
    with contextlib.suppress(asyncio.QueueEmpty):
        if queue.full():
            queue.get_nowait()
    queue.put_nowait(item)
