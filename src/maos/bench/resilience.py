"""Resilience figures (issue 12), each beside its baseline from the same run.

* **service restart after a crash**: a supervised service process (the beacon: the
  smallest one, so the figure is the supervision's, not a service's own start-up) is
  SIGKILLed; the time from the kill to its replacement's first authenticated heartbeat,
  against the same process's cold start (start -> first beat) in the same run. The
  restart includes the policy's first backoff, reported beside it.

* **the Sentry's records in batches**: many Sentries (one per pod) recording egress at
  once, their records through the service desk in batched orders (`Batcher`, what
  `sentry_log` uses) against one order per record, same kernel, same callers: records/s
  both ways and the log's commits per record.

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
from maos.kernel.services import Batcher
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
        batches = await _sentry_batches(kernel, callers=20, each=10 if rounds < 5 else 50)
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
        **batches,
    }


async def _sentry_batches(kernel: Kernel, *, callers: int, each: int) -> dict[str, Any]:
    """``callers`` Sentries, each recording ``each`` egress records one after another,
    all at once: through one order per record, then through a batcher."""
    desk = kernel.services
    cap = desk.capability("sentry")
    batcher = Batcher(desk, cap)

    async def single(kind: str, body: dict[str, Any]) -> int:
        return await desk.submit(cap, kind, body)

    async def caller(log: Any, n: int) -> None:
        for i in range(each):
            body = {"agent_id": f"a{n}", "gw": "api", "op": "request", "bytes_out": i}
            await log("sentry.egress", body)

    out: dict[str, float] = {}
    for name, log in (("single", single), ("batched", batcher)):
        commits = kernel.wal.commit_count
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(log, n) for n in range(callers)))
        seconds = time.perf_counter() - t0
        out[f"sentry_{name}_records_per_s"] = round(callers * each / seconds, 1)
        out[f"sentry_{name}_commits_per_record"] = round(
            (kernel.wal.commit_count - commits) / (callers * each), 3
        )
    out["sentry_batched_records_per_order"] = round(callers * each / max(1, batcher.orders), 1)
    out["ratio_sentry_batched_vs_single"] = round(
        out["sentry_batched_records_per_s"] / out["sentry_single_records_per_s"], 2
    )
    return out


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
        ),
        (
            "Sentry records, batched orders",
            f"{r['sentry_batched_records_per_s']} records/s",
            f"{r['ratio_sentry_batched_vs_single']} × one order per record "
            f"({r['sentry_single_records_per_s']}/s), "
            f"{r['sentry_batched_records_per_order']} records per order",
        ),
    ]
