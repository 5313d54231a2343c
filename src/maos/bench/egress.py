"""The egress relay's cost per connection, against a direct loopback connection.

One connection = connect, send one byte, read it echoed back, close, against a real echo
server on 127.0.0.1, measured in one event loop and one run:

* **direct**: a TCP connection straight to the echo server (the baseline);
* **relay**: the kernel side only - a Unix-socket connection to `EgressRelay`, the
  ``CONNECT`` line, the allowlist check, the log callback (a list append standing in for
  the WAL), the relay's own TCP connection, then the byte;
* **sandboxed**: the whole path an upstream server pays, timed *inside* a level-2
  upstream pod - its loopback forwarder, the bind-mounted Unix socket, the relay - when
  the host can give level 2 and the kernel is root.

Beside them, an upstream pod's start: `upstream_pod` entered, ``python3 -I -S -c pass``
spawned through its command line and reaped, against the same interpreter started
plainly (there is no warm pool for upstreams: an MCP client owns the process). The
median of repeated starts in one pod home is the warm figure (``upstream_cold_start_*``:
cold as in "no pool"); ``upstream_first_start_ms`` is the first start in a fresh pod
home, the launcher not yet installed in it - what a gateway's first upstream pays.

Ratios are p50 against the direct p50 of the same run; beside them the CPU time this
process spends per connection (client, relay and echo server together), which a loaded
machine inflates far less than wall-clock time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from maos.pod.egress import EgressEvent, EgressRelay
from maos.pod.isolation import PodHome, detect
from maos.pod.isolation.level1 import PYTHON
from maos.pod.upstream import PROXY_PORT, upstream_pod

__all__ = ["measure"]

PROBE = """import socket, sys, time
port, rounds, proxy = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
samples = []
for _ in range(rounds):
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", proxy)) as conn:
        conn.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n".encode())
        head = b""
        while not head.endswith(b"\\r\\n\\r\\n"):
            head += conn.recv(1)
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
    samples.append(time.perf_counter() - t)
samples.sort()
print(samples[len(samples) // 2] * 1e6, samples[min(rounds - 1, int(rounds * 0.99))] * 1e6)
"""


def measure(*, quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_measure(50 if quick else 1000))


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(1)
    writer.write(data)
    await writer.drain()
    await reader.read()  # until the client closes
    writer.close()


async def _measure(rounds: int) -> dict[str, Any]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[EgressEvent] = []
    figures: dict[str, Any] = {"connections": rounds}
    with tempfile.TemporaryDirectory(prefix="maos-bench-egress-") as tmp:
        relay = EgressRelay([f"127.0.0.1:{port}"], Path(tmp) / "e.sock", on_connect=events.append)
        async with relay:
            direct, direct_cpu = await _time(rounds, lambda: _direct(port))
            relayed, relay_cpu = await _time(rounds, lambda: _relayed(relay.socket_path, port))
            figures |= _figures("direct", direct) | _figures("relay", relayed)
            figures["ratio_relay_vs_direct_p50"] = round(
                figures["relay_us_p50"] / figures["direct_us_p50"], 2
            )
            figures["direct_cpu_us_per_connection"] = round(direct_cpu, 1)
            figures["relay_cpu_us_per_connection"] = round(relay_cpu, 1)
            figures["ratio_relay_vs_direct_cpu"] = round(relay_cpu / direct_cpu, 2)
            figures |= await _sandboxed(port, rounds, figures["direct_us_p50"])
    server.close()
    await server.wait_closed()
    figures["relay_logged"] = sum(e.allowed for e in events)
    return figures


async def _sandboxed(port: int, rounds: int, direct_p50: float) -> dict[str, Any]:
    support = detect(2)
    if os.geteuid() != 0 or not support.available:
        return {"sandboxed_unavailable": support.reason if os.geteuid() == 0 else "needs root"}
    home = PodHome()
    try:
        probe = home.root / "bench-egress.py"
        probe.write_text(PROBE)
        probe.chmod(0o444)
        async with upstream_pod(
            PYTHON,
            [str(probe), str(port), str(rounds), str(PROXY_PORT)],
            env={},
            home=home,
            files=[probe],
            egress=[f"127.0.0.1:{port}"],
            on_connect=lambda event: None,
        ) as cmd:
            proc = await asyncio.create_subprocess_exec(
                cmd.command, *cmd.args, env=dict(cmd.env), stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
        p50, p99 = (float(x) for x in out.split())
        starts = 5 if rounds < 100 else 30
        plain = [await _start(None) for _ in range(starts)]
        boxed = [await _start(home) for _ in range(starts)]
        fresh = PodHome()  # a gateway's first upstream: nothing of a pod started before
        try:
            first = await _start(fresh)
        finally:
            fresh.close()
    finally:
        home.close()
    plain_ms, boxed_ms = statistics.median(plain), statistics.median(boxed)
    return {
        "sandboxed_us_p50": round(p50, 1),
        "sandboxed_us_p99": round(p99, 1),
        "ratio_sandboxed_vs_direct_p50": round(p50 / direct_p50, 2),
        "upstream_cold_start_ms_p50": round(boxed_ms, 1),
        "python_start_ms_p50": round(plain_ms, 1),
        "ratio_upstream_start_vs_plain": round(boxed_ms / plain_ms, 2),
        "upstream_first_start_ms": round(first, 1),
        "ratio_upstream_first_vs_warm_start": round(first / boxed_ms, 2),
    }


async def _start(home: PodHome | None) -> float:
    """Milliseconds from nothing to a reaped ``python3 -I -S -c pass`` (sandboxed in a pod
    of ``home``, or plainly)."""
    t = time.perf_counter()
    if home is None:
        proc = await asyncio.create_subprocess_exec(PYTHON, "-I", "-S", "-c", "pass")
        await proc.wait()
    else:
        async with upstream_pod(PYTHON, ["-I", "-S", "-c", "pass"], env={}, home=home) as cmd:
            proc = await asyncio.create_subprocess_exec(cmd.command, *cmd.args, env=dict(cmd.env))
            await proc.wait()
    return (time.perf_counter() - t) * 1e3


async def _direct(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _exchange(reader, writer)


async def _relayed(path: Path, port: int) -> None:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"the relay refused the bench: {head[:80]!r}")
    await _exchange(reader, writer)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"x")
    if await reader.readexactly(1) != b"x":
        raise RuntimeError("echo mismatch")
    writer.close()
    await writer.wait_closed()


async def _time(rounds: int, once: Callable[[], Awaitable[None]]) -> tuple[list[float], float]:
    """Wall-clock µs per connection, and this process's CPU µs per connection (client,
    relay and echo server all run here): the CPU figure is what load does not inflate
    with waiting for a time slice."""
    for _ in range(min(rounds, 20)):
        await once()
    samples = []
    cpu = time.process_time()
    for _ in range(rounds):
        t = time.perf_counter()
        await once()
        samples.append((time.perf_counter() - t) * 1e6)
    return samples, (time.process_time() - cpu) / rounds * 1e6


def _figures(name: str, samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        f"{name}_us_p50": round(statistics.median(samples), 1),
        f"{name}_us_p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
    }
