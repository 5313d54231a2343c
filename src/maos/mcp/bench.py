"""`maos bench`'s MCP figures: what the gateway adds to one tool call, and its throughput.

* **Per call**: both paths call the same upstream (`maos.mcp.echo`, a stdio child) in
  the same run: the direct path is the SDK's client talking to it; the gateway path is
  the SDK's client talking in-process to a gateway (so no second stdio hop is counted:
  what is measured is the gateway's mediation - the DSC, the WAL's prepared and
  committed records, the labelling - plus the gateway's own client call to the upstream).
* **Throughput over HTTP**: 50 client sessions at once (each its own agent), each
  making a few calls, through one gateway served over streamable HTTP in this process,
  against the same 50 sessions calling the echo server over streamable HTTP directly
  (a child process). The clients run in this process for both, so they share its CPU
  with the in-process gateway: the ratio is an upper bound of the gateway's cost.

The upstream is unsandboxed here (``level: none``) so that both paths talk to the same
process; a pod's start and its egress relay are in the ``egress`` section.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from maos.mcp.gateway import Gateway
from maos.mcp.policy import load_policy
from maos.mcp.serve import running_gateway, serve_http

__all__ = ["measure", "render"]

_PACE = 0.21
"""Seconds between calls on both paths: the kernel's default limit for one op is 5/s."""


_SESSIONS = 50
_CALLS_EACH = 6
"""Within the kernel's per-op burst for one agent: no call waits for its rate bucket."""
_TOKEN = "bench-token"


_PATH = {"PYTHONPATH": ":".join(sys.path)}
"""The child finds maos where this process did, installed or not."""


def _upstream() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "maos.mcp.echo"], env=_PATH)


def _us(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)


async def _timed(client: Client, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        result = await client.call_tool("say", {"text": f"hello {i}"})
        out.append(time.perf_counter() - t0)
        assert not result.is_error, result
        await asyncio.sleep(_PACE)
    return out


async def _sessions(url: str, token: str | None) -> float:
    """Calls per second of `_SESSIONS` concurrent sessions, each `_CALLS_EACH` calls."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(_SESSIONS):
            http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            transport = streamable_http_client(url, http_client=http)
            clients.append(await stack.enter_async_context(Client(transport, mode="legacy")))

        async def work(client: Client, k: int) -> None:
            for i in range(_CALLS_EACH):
                result = await client.call_tool("say", {"text": f"s{k} c{i}"})
                assert not result.is_error, result

        t0 = time.perf_counter()
        await asyncio.gather(*(work(c, k) for k, c in enumerate(clients)))
        return _SESSIONS * _CALLS_EACH / (time.perf_counter() - t0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _direct_http() -> float:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "maos.mcp.echo", "--http", str(port)],
        env=_PATH,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            await asyncio.sleep(0.05)
        return await _sessions(f"http://127.0.0.1:{port}/mcp", None)
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _gateway_http(gateway: Gateway) -> float:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    serving = asyncio.create_task(
        serve_http(
            gateway,
            "127.0.0.1",
            0,
            token=_TOKEN,
            ready=lambda h, p: bound.set_result(p),
            stop=stop,
        )
    )
    try:
        port = await asyncio.wait_for(asyncio.shield(bound), 60)
        return await _sessions(f"http://127.0.0.1:{port}/mcp", _TOKEN)
    finally:
        stop.set()
        await serving


async def _run(root: Path, n: int) -> dict[str, Any]:
    with open(os.devnull, "w") as quiet:  # a test runner's stderr has no descriptor
        transport = stdio_client(_upstream(), errlog=quiet)
        async with Client(transport, mode="legacy") as direct_client:
            await _timed(direct_client, 3)
            direct = await _timed(direct_client, n)
    policy_path = root / "gateway.yaml"
    upstream = {
        "command": sys.executable,
        "args": ["-m", "maos.mcp.echo"],
        "env": _PATH,
        "sandbox": {"level": "none"},  # the same process as the direct path's
    }
    policy_path.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "task": "Echo what I say.",
                "effects": ["read"],
                "upstreams": {"echo": upstream},
                "tools": {"echo": {"say": {"effect": "read", "external": False}}},
            }
        )
    )
    direct_rate = await _direct_http()
    async with running_gateway(load_policy(policy_path), root / "data") as gateway:
        async with Client(gateway.server(session_key=lambda ctx: "bench")) as client:
            await _timed(client, 3)
            mediated = await _timed(client, n)
        gateway_rate = await _gateway_http(gateway)
    return {
        "calls": n,
        "direct_call_p50_us": _us(direct, 0.5),
        "direct_call_p99_us": _us(direct, 0.99),
        "gateway_call_p50_us": _us(mediated, 0.5),
        "gateway_call_p99_us": _us(mediated, 0.99),
        "gateway_overhead_p50_us": round(
            (statistics.median(mediated) - statistics.median(direct)) * 1e6, 1
        ),
        "gateway_overhead_p99_us": round((_us(mediated, 0.99) - _us(direct, 0.99)), 1),
        "ratio_gateway_vs_direct_p50": round(
            statistics.median(mediated) / statistics.median(direct), 2
        ),
        "ratio_gateway_vs_direct_p99": round(_us(mediated, 0.99) / _us(direct, 0.99), 2),
        "http_sessions": _SESSIONS,
        "http_direct_calls_per_s": round(direct_rate, 1),
        "http_gateway_calls_per_s": round(gateway_rate, 1),
        "ratio_http_gateway_vs_direct_calls_per_s": round(gateway_rate / direct_rate, 3),
    }


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-mcp-") as tmp:
        return asyncio.run(_run(Path(tmp), 15 if quick else 60))


def render(m: dict[str, Any]) -> str:
    direct = f"{m['direct_call_p50_us']} / {m['direct_call_p99_us']} µs"
    mediated = f"{m['gateway_call_p50_us']} / {m['gateway_call_p99_us']} µs"
    ratio = (
        f"{m['ratio_gateway_vs_direct_p50']} / {m['ratio_gateway_vs_direct_p99']} × direct,"
        f" +{m['gateway_overhead_p50_us']} / +{m['gateway_overhead_p99_us']} µs"
    )
    http = (
        f"{m['http_gateway_calls_per_s']} calls/s via gateway, {m['http_direct_calls_per_s']}"
        f" direct ({m['ratio_http_gateway_vs_direct_calls_per_s']} ×)"
    )
    return "\n".join(
        [
            f"MCP tool call direct p50/p99       {direct}",
            f"MCP tool call via gateway p50/p99  {mediated}  ({ratio})",
            f"MCP over HTTP, {m['http_sessions']} sessions at once  {http}",
        ]
    )
