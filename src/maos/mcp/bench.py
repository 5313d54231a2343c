"""`maos bench`'s MCP figures: what the gateway adds to one tool call.

Both paths call the same upstream (`maos.mcp.echo`, a stdio child) in the same run: the
direct path is the SDK's client talking to it; the gateway path is the SDK's client
talking in-process to a gateway (so no second stdio hop is counted: what is measured is
the gateway's mediation - the DSC, the WAL's prepared and committed records, the
labelling - plus the gateway's own client call to the upstream).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from maos.mcp.policy import load_policy
from maos.mcp.serve import running_gateway

__all__ = ["measure", "render"]

_PACE = 0.21
"""Seconds between calls on both paths: the kernel's default limit for one op is 5/s."""


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
    async with (
        running_gateway(load_policy(policy_path), root / "data") as gateway,
        Client(gateway.server(session_key=lambda ctx: "bench")) as client,
    ):
        await _timed(client, 3)
        mediated = await _timed(client, n)
    return {
        "calls": n,
        "direct_call_p50_us": _us(direct, 0.5),
        "direct_call_p99_us": _us(direct, 0.99),
        "gateway_call_p50_us": _us(mediated, 0.5),
        "gateway_call_p99_us": _us(mediated, 0.99),
        "gateway_overhead_p50_us": round(
            (statistics.median(mediated) - statistics.median(direct)) * 1e6, 1
        ),
        "ratio_gateway_vs_direct_p50": round(
            statistics.median(mediated) / statistics.median(direct), 2
        ),
    }


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-mcp-") as tmp:
        return asyncio.run(_run(Path(tmp), 15 if quick else 100))


def render(m: dict[str, Any]) -> str:
    direct = f"{m['direct_call_p50_us']} / {m['direct_call_p99_us']} µs"
    mediated = f"{m['gateway_call_p50_us']} / {m['gateway_call_p99_us']} µs"
    ratio = f"{m['ratio_gateway_vs_direct_p50']} × direct, +{m['gateway_overhead_p50_us']} µs"
    return "\n".join(
        [
            f"MCP tool call direct p50/p99       {direct}",
            f"MCP tool call via gateway p50/p99  {mediated}  ({ratio})",
        ]
    )
