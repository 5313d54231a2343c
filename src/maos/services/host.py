"""The child half of a supervised Ring 1 service process: its link to the kernel.

The Service Manager (`maos.services.manager`) starts each service as its own process
with one end of a socket pair and, in its environment, the service's beat key and Ring 1
capability (never in a file). Over the socket the child sends newline-delimited JSON:

    {"t": "beat", "n": 7, "mac": "..."}                      every resilience.heartbeat_s
    {"t": "order", "id": 3, "cap": "svc1...", "kind": "...", "body": {...}}
    {"t": "bye", "error": "..."}                               the process is ending

and the parent answers each order with ``{"t": "ack", "id": 3, "seq": 812}`` or
``{"t": "err", "id": 3, "code": "...", "message": "..."}``. Beats are sent by their own
task: a service whose loop is stuck in a long await still beats, one whose event loop
is blocked (or that died) does not. When the service's main coroutine ends - returns or
raises - the process exits (status 1 on an error, with the error on stderr), so a
service cannot stop silently: its parent sees the exit and logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from maos.kernel.config import KernelConfig
from maos.kernel.errors import MaosError, StateError
from maos.kernel.view import LogView
from maos.kernel.wal import Wal
from maos.kernel.watchdog import beat_mac

__all__ = ["ENV", "MAX_LINE", "LogCopy", "Main", "ServiceLink", "run_service"]

ENV = {
    "name": "MAOS_SERVICE",
    "fd": "MAOS_SERVICE_FD",
    "key": "MAOS_BEAT_KEY",
    "cap": "MAOS_SERVICE_CAP",
    "period": "MAOS_HEARTBEAT_S",
}
MAX_LINE = 1024 * 1024
"""A record body is small; a line past this is a broken or hostile peer."""


class ServiceLink:
    """Beats and orders to the parent over the inherited socket."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        member: str,
        key: bytes,
        capability: str,
        period_s: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._member = member
        self._key = key
        self._cap = capability
        self._period = period_s
        self._counter = 0
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    async def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceLink:
        sock = socket.socket(fileno=int(env[ENV["fd"]]))
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        return cls(
            reader,
            writer,
            member="service:" + env[ENV["name"]],
            key=bytes.fromhex(env[ENV["key"]]),
            capability=env[ENV["cap"]],
            period_s=float(env[ENV["period"]]),
        )

    async def _send(self, message: Mapping[str, Any]) -> None:
        async with self._lock:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()

    async def beat(self) -> None:
        self._counter += 1
        mac = beat_mac(self._key, self._member, self._counter)
        await self._send({"t": "beat", "n": self._counter, "mac": mac})

    async def beats(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self._period)

    async def bye(self, error: str) -> None:
        """Say this process is ending (with the error that ends it, if any): its parent
        stops counting beats and waits for the exit rather than killing a slow one."""
        with contextlib.suppress(OSError):
            await self._send({"t": "bye", "error": error[:2000]})

    async def order(self, kind: str, body: Mapping[str, Any]) -> int:
        """Ask the kernel to log one record; its seq, or the kernel's refusal raised."""
        self._next_id += 1
        ident = self._next_id
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = fut
        await self._send({"t": "order", "id": ident, "cap": self._cap, "kind": kind, "body": body})
        return await fut

    async def answers(self) -> None:
        """Route the parent's answers; the parent gone is the end of this service."""
        while True:
            line = await self._reader.readline()
            if not line:
                raise StateError("SERVICE.PARENT_GONE", "the Service Manager closed the link")
            msg = json.loads(line)
            fut = self._waiting.pop(int(msg.get("id", -1)), None)
            if fut is None or fut.done():
                continue
            if msg.get("t") == "ack":
                fut.set_result(int(msg["seq"]))
            else:
                fut.set_exception(StateError(str(msg.get("code")), str(msg.get("message"))))


Main = Callable[[ServiceLink, asyncio.Event], Coroutine[Any, Any, None]]
"""A service's body: runs until ``stopping`` is set (SIGTERM: stop cleanly, exit 0)."""


def run_service(main: Main) -> int:
    """The process: link, beats, the service; its exit status."""

    async def go() -> None:
        link = await ServiceLink.from_env()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        beats = asyncio.create_task(link.beats())
        answers = asyncio.create_task(link.answers())
        body = asyncio.create_task(main(link, stopping))
        done, _ = await asyncio.wait({beats, answers, body}, return_when=asyncio.FIRST_COMPLETED)
        for task in (beats, answers, body):
            if task not in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, MaosError):
                    await task
        errors = [t.exception() for t in done if not t.cancelled() and t.exception()]
        await link.bye("" if not errors else f"{type(errors[0]).__name__}: {errors[0]}")
        for task in done:
            task.result()  # the error that ended it, if any, ends the process

    try:
        asyncio.run(go())
    except (MaosError, Exception) as exc:
        traceback.print_exception(exc, file=sys.stderr)
        return 1
    return 0


class LogCopy:
    """What a service process reads: the data dir's log opened read-only and folded
    (the same fold as the kernel's), brought up to date by `refresh`."""

    def __init__(self, data_dir: Path) -> None:
        self.config = KernelConfig(data_dir=data_dir)
        self.wal = Wal(self.config.wal_path, readonly=True)
        self.view = LogView(self.wal)
        self.registry = self.view.registry
        self.view.catch_up()

    def clock(self) -> float:
        return time.time()

    def refresh(self) -> None:
        self.view.catch_up()

    def close(self) -> None:
        self.wal.close()
