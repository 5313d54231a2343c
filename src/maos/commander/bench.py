"""`maos bench`, section ``dashboard`` (run by the console beside ``mcp_gateway``: the
bench package may not import the dashboard). The dashboard's live updates: from a
record's commit to its state at the other end of the event stream, against what one poll
of the state costs.

A real kernel and a real `Dashboard` (uvicorn on loopback, in the kernel's loop as
`maos up` runs it); the stream is read over HTTP by a client in its own thread (the
browser's side of the connection; its parse and draw are not included), stamping each
event as it arrives. Each round commits one record (an agent registered, through the
kernel's own order path), stamps the commit's return, and waits for the event whose
sequence number reaches it; rounds start at random phases of the watcher's interval.

The baseline, measured in the same run: one ``GET /api/state`` round trip, i.e. what
each poll of the page before cost - and the page polled every 1.5 s, so a change used to
wait 0.75 s on average before a poll even asked for it.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from maos.commander.stream import WATCH_INTERVAL
from maos.commander.web import Dashboard, load_or_create_token
from maos.kernel.kernel import Kernel, KernelConfig

__all__ = ["measure", "render"]

OLD_POLL_S = 1.5
"""How often the page polled before the stream (session 4)."""


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-dash-") as tmp:
        return asyncio.run(_measure(Path(tmp), 20 if quick else 100))


class _Reader(threading.Thread):
    """Reads the stream; ``arrived`` maps each event's seq to when it came."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()
        self._url, self._token = url, token
        self._stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(base_url=self._url, headers=headers, timeout=60) as http:
            ticket = http.post("api/stream/ticket", json={}).json()["ticket"]
            with http.stream("GET", "api/stream", params={"ticket": ticket}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        seq = int(json.loads(line[6:])["wal_records"])
                        self.arrived.setdefault(seq, time.perf_counter())
                        self.ready.set()
                    if self._stop.is_set():
                        return

    def stop(self) -> None:
        self._stop.set()


async def _measure(data_dir: Path, rounds: int) -> dict[str, Any]:
    kernel = await Kernel.boot(KernelConfig(data_dir=data_dir))
    token = load_or_create_token(data_dir)
    dashboard = Dashboard(kernel, token)
    server = asyncio.create_task(dashboard.serve())
    try:
        await dashboard.started()
        reader = _Reader(dashboard.url, token)
        reader.start()
        while not reader.ready.is_set():
            await asyncio.sleep(0.01)
        pushed = []
        for i in range(rounds):
            await asyncio.sleep(random.uniform(0, WATCH_INTERVAL))
            await kernel.register_agent(f"bench-{i}", ring=3)
            seq, committed = kernel.wal.tail_seq(), time.perf_counter()
            while (got := _first_at_or_after(reader.arrived, seq)) is None:
                await asyncio.sleep(0.001)
            pushed.append(got - committed)
        polled = []
        async with httpx.AsyncClient(
            base_url=dashboard.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            for _ in range(rounds):
                started = time.perf_counter()
                (await http.get("api/state")).raise_for_status()
                polled.append(time.perf_counter() - started)
        reader.stop()
        await kernel.register_agent("bench-end", ring=3)  # wakes the reader to see stop
    finally:
        dashboard.stop()
        await server
        await kernel.close()
    push_p50 = statistics.median(pushed) * 1000
    poll_p50 = statistics.median(polled) * 1000
    return {
        "rounds": rounds,
        "event_latency_ms_p50": round(push_p50, 2),
        "event_latency_ms_p99": round(
            sorted(pushed)[min(rounds - 1, int(rounds * 0.99))] * 1000, 2
        ),
        "state_fetch_ms_p50": round(poll_p50, 2),
        "ratio_event_latency_vs_state_fetch_p50": round(push_p50 / poll_p50, 2),
        "watch_interval_ms": WATCH_INTERVAL * 1000,
        "old_poll_mean_wait_ms": OLD_POLL_S / 2 * 1000,
    }


def render(b: dict[str, Any]) -> str:
    return (
        f"dashboard event, commit to stream p50  {b['event_latency_ms_p50']} ms  "
        f"({b['ratio_event_latency_vs_state_fetch_p50']} × one state fetch, "
        f"{b['state_fetch_ms_p50']} ms; polling waited {b['old_poll_mean_wait_ms']:.0f} ms)"
    )


def _first_at_or_after(arrived: dict[int, float], seq: int) -> float | None:
    times = [t for s, t in list(arrived.items()) if s >= seq]
    return min(times) if times else None
