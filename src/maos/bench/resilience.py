"""Resilience figures (issue 12), each beside its baseline from the same run.

* **service restart after a crash**: a supervised service process (the beacon: the
  smallest one, so the figure is the supervision's, not a service's own start-up) is
  SIGKILLed; the time from the kill to its replacement's first authenticated heartbeat,
  against the same process's cold start (start -> first beat) in the same run. The
  restart includes the policy's first backoff, reported beside it.

The time from a confirmed signal to hard isolation and a pod's freeze and thaw are the
``immune`` section's (`maos.bench.immune`), measured on a real pod; not repeated here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from maos.kernel.kernel import Kernel, KernelConfig
from maos.services.manager import RestartPolicy, ServiceManager

__all__ = ["measure"]

MEMBER = "service:beacon"


async def _first_beat(kernel: Kernel) -> None:
    """Until the (current) beacon process has beaten once."""
    while True:
        beat = kernel.watchdog.members.get(MEMBER)
        if beat is not None and beat.counter >= 1:
            return
        await asyncio.sleep(0.002)


async def _measure(data_dir: Path, rounds: int) -> dict[str, Any]:
    policy = RestartPolicy(max_restarts=rounds + 5, window_s=3600.0)
    kernel = await Kernel.boot(KernelConfig(data_dir=data_dir))
    cold, restart = [], []
    try:
        for _ in range(rounds):
            manager = ServiceManager(kernel, policies={"beacon": policy})
            t0 = time.perf_counter()
            manager.start("beacon")
            await asyncio.wait_for(_first_beat(kernel), 120)
            cold.append(time.perf_counter() - t0)
            pid = manager.runs["beacon"].pid
            assert pid is not None
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while manager.runs["beacon"].pid == pid or kernel.watchdog.members.get(MEMBER) is None:
                await asyncio.sleep(0.002)
            await asyncio.wait_for(_first_beat(kernel), 120)
            restart.append(time.perf_counter() - t0)
            await manager.stop()
    finally:
        await kernel.close()
    cold_ms = statistics.median(cold) * 1000
    restart_ms = statistics.median(restart) * 1000
    return {
        "service_restart_ms_p50": round(restart_ms, 1),
        "service_cold_start_ms_p50": round(cold_ms, 1),
        "ratio_restart_vs_cold_start": round(restart_ms / cold_ms, 2),
        "restart_backoff_s": policy.delay(1),
        "rounds": rounds,
    }


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-resil-") as tmp:
        return asyncio.run(_measure(Path(tmp) / "data", 2 if quick else 5))


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            "service restart after SIGKILL p50",
            f"{r['service_restart_ms_p50']} ms",
            f"{r['ratio_restart_vs_cold_start']} × a cold start ({r['service_cold_start_ms_p50']}"
            f" ms), backoff {r['restart_backoff_s']} s",
        )
    ]
