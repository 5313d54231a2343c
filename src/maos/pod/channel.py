"""The gateway channel: one SOCK_SEQPACKET socket pair per pod, kernel side in asyncio.

SEQPACKET keeps message boundaries, so a frame is one record and no length prefix can
lie. Every inbound record is untrusted: it must be at most `MAX_FRAME` bytes, not be
empty, decode as JSON with no key given twice, fit `RequestFrame` and its op's args
model, and carry exactly the next id. Any
failure is a `ChannelViolation` - a hard violation, never a recoverable parse error,
because the only program on the other end is agent code and our own bootstrap never
sends a bad frame. The first violation poisons the channel: later calls re-raise it.

    MaosError
    ├── ChannelViolation   POD.FRAME.*    the pod sent something the sanitizer refuses
    │                      (and BAD_INPUT.DUPLICATE_KEY)
    └── ChannelClosed      POD.CHANNEL.CLOSED  the pod's end is gone (exit, kill, close)

An empty record and the end of the stream both read as ``b""`` on SEQPACKET; the channel
tells them apart by whether the socket is hung up (`PodChannel._peer_gone`): an empty
record is `POD.FRAME.EMPTY`, a violation like any malformed frame.

Heartbeats: a pod that beats (its spec names a `Heartbeat`) sends `BeatFrame` records
between and *during* its requests, from its bootstrap's beat thread. So the channel reads
all the time, in its own task, whatever the runtime's request/reply pump is doing (an LLM
call, an approval wait): beats go straight to the Watchdog, requests wait in a one-frame
inbox for `recv`. A pod that sends a second request before its first was answered (our
client never does) fills the inbox and the reader waits: its beats then stop being read,
and that is its own doing. A beat on a channel that expects none is a malformed frame.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable

import orjson
from pydantic import ValidationError

from maos.kernel import strictjson
from maos.kernel.errors import InputError, MaosError
from maos.pod.frames import (
    GATEWAYS,
    BeatFrame,
    Frame,
    OpTable,
    Reply,
    RequestFrame,
    StrictModel,
)

__all__ = [
    "MAX_FRAME",
    "MAX_KERNEL_FRAME",
    "ChannelClosed",
    "ChannelViolation",
    "PodChannel",
    "ViolationCode",
    "channel_pair",
    "decode_frame",
    "decode_request",
]

BeatSink = Callable[[int, str], object]
"""Where a channel hands each well-formed beat: ``(counter, mac)``, checked by the taker."""
BEAT_BURST = 2000
"""Beats a pod may send at once: more than its channel's buffer holds (about 1,400 beat
records with `channel_pair`'s buffer, measured), so a kernel loop that stalled finds
every beat queued meanwhile within it."""
BEAT_RATE = 4
"""Beats per nominal period a pod may keep up beyond the burst: four times what its
bootstrap sends. More is a flood (`ViolationCode.BEAT_FLOOD`): each beat costs the
kernel's loop a parse and an HMAC, and no request's rate limit covers beats."""

MAX_FRAME = 256 * 1024
"""Largest pod-to-kernel frame; `maos.pod.bootstrap` repeats it (a test keeps them equal)."""
MAX_KERNEL_FRAME = 4 * 1024 * 1024
"""Largest kernel-to-pod frame (replies, the launch frame carrying agent code)."""


class ViolationCode:
    """Stable codes of `ChannelViolation`."""

    TOO_LARGE = "POD.FRAME.TOO_LARGE"
    MALFORMED = "POD.FRAME.MALFORMED"
    REPLAY = "POD.FRAME.REPLAY"
    SEQUENCE_GAP = "POD.FRAME.SEQUENCE_GAP"
    UNKNOWN_GATEWAY = "POD.FRAME.UNKNOWN_GATEWAY"
    UNKNOWN_OP = "POD.FRAME.UNKNOWN_OP"
    EMPTY = "POD.FRAME.EMPTY"
    BEAT_FLOOD = "POD.FRAME.BEAT_FLOOD"
    """Beats far faster than the nominal period (`BEAT_RATE`): our bootstrap never does."""
    DUPLICATE_KEY = "BAD_INPUT.DUPLICATE_KEY"
    """A key given twice: the Sentry and the kernel might read different values."""


class ChannelViolation(MaosError):
    """The pod sent a frame the Input Sanitizer refuses; the pod is killed for it."""


class ChannelClosed(MaosError):
    """The pod's end of the channel is closed; not a violation (the pod may have exited)."""


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair ``(kernel_end, pod_end)``; only ``pod_end`` is inheritable.

    Send buffers are raised so one record of the largest allowed size fits: an AF_UNIX
    SEQPACKET record must fit the sender's buffer whole. The pod's buffer is twice
    `MAX_FRAME` so an oversized frame reaches the kernel and is refused there (and
    logged), rather than failing silently in the pod.
    """
    kernel_end, pod_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _raise_sndbuf(kernel_end, 2 * MAX_KERNEL_FRAME)
    _raise_sndbuf(pod_end, 2 * MAX_FRAME)
    pod_end.set_inheritable(True)
    kernel_end.setblocking(False)
    return kernel_end, pod_end


_SO_SNDBUFFORCE = 32  # Linux; missing from Python's socket module


def _raise_sndbuf(sock: socket.socket, size: int) -> None:
    try:  # root may exceed net.core.wmem_max; others get what the sysctl allows
        sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def decode_request(
    data: bytes, *, expected_id: int, ops: OpTable, max_frame: int = MAX_FRAME
) -> tuple[RequestFrame, StrictModel]:
    """Sanitize one record; pure, so it can be fuzzed without a pod."""
    return _request(_parse(data, max_frame), expected_id=expected_id, ops=ops)


def decode_frame(
    data: bytes, *, expected_id: int, ops: OpTable, max_frame: int = MAX_FRAME
) -> tuple[RequestFrame, StrictModel] | BeatFrame:
    """Sanitize one record of a channel that expects beats: a request or a beat (a
    record with a ``beat`` key must be exactly a `BeatFrame`)."""
    raw = _parse(data, max_frame)
    if "beat" not in raw:
        return _request(raw, expected_id=expected_id, ops=ops)
    try:
        return BeatFrame.model_validate(raw)
    except RecursionError as exc:
        raise ChannelViolation(ViolationCode.MALFORMED, "beat nests too deeply") from exc
    except ValidationError as exc:
        raise ChannelViolation(
            ViolationCode.MALFORMED, "beat does not fit the beat frame", errors=_summary(exc)
        ) from exc


def _parse(data: bytes, max_frame: int) -> dict[str, object]:
    if len(data) > max_frame:
        raise ChannelViolation(ViolationCode.TOO_LARGE, "frame exceeds the size cap", cap=max_frame)
    if not data:
        raise ChannelViolation(ViolationCode.EMPTY, "an empty frame (a record of zero bytes)")
    try:
        raw = strictjson.loads(data, limit=max_frame, what="frame")
    except InputError as exc:
        if exc.code == strictjson.DUPLICATE_KEY:
            raise ChannelViolation(ViolationCode.DUPLICATE_KEY, exc.message) from exc
        raise ChannelViolation(ViolationCode.MALFORMED, "frame is not JSON") from exc
    if not isinstance(raw, dict):
        raise ChannelViolation(ViolationCode.MALFORMED, "frame is not a JSON object")
    return raw


def _request(
    raw: dict[str, object], *, expected_id: int, ops: OpTable
) -> tuple[RequestFrame, StrictModel]:
    gw = raw.get("gw")
    if isinstance(gw, str) and gw not in GATEWAYS:
        raise ChannelViolation(ViolationCode.UNKNOWN_GATEWAY, "no such gateway", gw=gw[:64])
    try:
        req = RequestFrame.model_validate(raw)
    except RecursionError as exc:  # fail closed, whatever the nesting does to a validator
        raise ChannelViolation(ViolationCode.MALFORMED, "frame nests too deeply") from exc
    except ValidationError as exc:
        raise ChannelViolation(
            ViolationCode.MALFORMED, "frame does not fit the envelope", errors=_summary(exc)
        ) from exc
    if req.id < expected_id:
        raise ChannelViolation(ViolationCode.REPLAY, "frame id already used", id=req.id)
    if req.id > expected_id:
        raise ChannelViolation(
            ViolationCode.SEQUENCE_GAP, "frame id skips ahead", id=req.id, expected=expected_id
        )
    model = ops.model_for(req.gw, req.op)
    if model is None:
        raise ChannelViolation(ViolationCode.UNKNOWN_OP, "no such operation", gw=req.gw, op=req.op)
    try:
        args = model.model_validate(req.args)
    except ValidationError as exc:
        raise ChannelViolation(
            ViolationCode.MALFORMED, "args do not fit the operation", errors=_summary(exc)
        ) from exc
    return req, args


def _summary(exc: ValidationError) -> list[str]:
    """Error locations and types only: the pod's own values never reach the log verbatim."""
    return [f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:8]]


class PodChannel:
    """Kernel end of one pod's channel, bound to one agent id for its whole life.

    One reader task (started by the first `recv`) reads every record; one caller at a
    time may `recv` (the pod's Sentry); any number of tasks may `send`. ``on_beat``
    makes it a channel that expects beats.
    """

    def __init__(
        self,
        sock: socket.socket,
        agent_id: str,
        *,
        ops: OpTable,
        on_violation: Callable[[ChannelViolation], None] | None = None,
        on_beat: BeatSink | None = None,
        beat_period_s: float = 0.1,
        max_frame: int = MAX_FRAME,
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.agent_id = agent_id
        self._ops = ops
        self._on_violation = on_violation
        self._on_beat = on_beat
        self._beat_refill = BEAT_RATE / beat_period_s
        """Beats per second the pod earns back, up to `BEAT_BURST`."""
        self._beat_credit = float(BEAT_BURST)
        self._beat_at = 0.0
        self._max_frame = max_frame
        self._next_id = 1
        self._end: MaosError | None = None
        """Why the reader stopped (a violation, the pod's end closed): raised for ever after."""
        self._closed = False
        self._inbox: asyncio.Queue[Frame | MaosError] = asyncio.Queue(maxsize=1)
        self._reader: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[Frame | MaosError] | None = None

    async def recv(self) -> Frame:
        """The next sanitized request; raises `ChannelViolation` or `ChannelClosed`."""
        if self._closed:
            raise ChannelClosed("POD.CHANNEL.CLOSED", "the channel is closed")
        if self._end is not None and self._inbox.empty():
            raise self._end
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        self._waiter = asyncio.ensure_future(self._inbox.get())
        try:
            item = await self._waiter
        except asyncio.CancelledError:
            if self._closed:
                raise ChannelClosed("POD.CHANNEL.CLOSED", "the pod was reaped") from None
            raise
        finally:
            self._waiter = None
        if isinstance(item, MaosError):
            raise item
        return item

    async def _read(self) -> None:
        """Every record the pod sends, in order, until its end or its first violation."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                # One byte more than the cap: a longer record is cut there, proving it too big.
                data = await loop.sock_recv(self._sock, self._max_frame + 1)
            except OSError as exc:
                return await self._stop(
                    ChannelClosed("POD.CHANNEL.CLOSED", "channel error", errno=exc.errno)
                )
            if not data and self._peer_gone():
                return await self._stop(
                    ChannelClosed("POD.CHANNEL.CLOSED", "the pod closed its end")
                )
            try:
                decode = decode_request if self._on_beat is None else decode_frame
                got = decode(
                    data, expected_id=self._next_id, ops=self._ops, max_frame=self._max_frame
                )
            except ChannelViolation as violation:
                return await self._refuse(violation)
            if isinstance(got, BeatFrame):
                assert self._on_beat is not None
                if not self._beat_allowed(loop.time()):
                    return await self._refuse(
                        ChannelViolation(
                            ViolationCode.BEAT_FLOOD, "beats far faster than the period"
                        )
                    )
                self._on_beat(got.beat, got.mac)
                await asyncio.sleep(0)  # a pod that floods beats must not starve the loop
                continue
            req, args = got
            self._next_id += 1
            await self._inbox.put(Frame(self.agent_id, req.id, req.gw, req.op, args, req.cap))

    def _beat_allowed(self, now: float) -> bool:
        """A token bucket on the loop's monotonic clock (a bound on cost, not a timer)."""
        if self._beat_at:
            self._beat_credit = min(
                BEAT_BURST, self._beat_credit + (now - self._beat_at) * self._beat_refill
            )
        self._beat_at = now
        if self._beat_credit < 1:
            return False
        self._beat_credit -= 1
        return True

    async def _refuse(self, violation: ChannelViolation) -> None:
        if self._on_violation is not None:
            self._on_violation(violation)
        await self._stop(violation)

    async def _stop(self, why: MaosError) -> None:
        self._end = why
        await self._inbox.put(why)

    def _peer_gone(self) -> bool:
        """After a read of zero bytes: was it the end of the stream or an empty record?
        SEQPACKET reads both as ``b""``; only the end leaves the socket hung up (every copy
        of the pod's end closed, or shut down for writing). An empty record is a frame the
        sanitizer refuses like any other, so a pod cannot end its supervision with one."""
        if self._closed or self._sock.fileno() < 0:
            return True  # reaped while the read ended: the kernel closed this end itself
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | select.POLLRDHUP)
        return any(ev & (select.POLLHUP | select.POLLRDHUP) for _, ev in poller.poll(0))

    async def send(self, reply: Reply) -> None:
        data = orjson.dumps(reply.model_dump(mode="json"))
        if len(data) > MAX_KERNEL_FRAME:
            raise ValueError("reply exceeds MAX_KERNEL_FRAME")
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        except OSError as exc:
            raise ChannelClosed("POD.CHANNEL.CLOSED", "cannot send", errno=exc.errno) from exc

    def close(self) -> None:
        """Close the kernel end; a pending `recv` raises `ChannelClosed`.

        The reader is cancelled first and the socket closed one loop turn later, once
        asyncio has unregistered the fd - closing at once could let a new socket reuse
        the number while the old registration still points at it.
        """
        if self._closed:
            return
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            asyncio.get_running_loop().call_soon(self._sock.close)
        else:
            self._sock.close()
