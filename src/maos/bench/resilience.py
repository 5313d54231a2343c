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
* **pod heartbeats on vs off**: an agent's request answered by its pod's bare channel
  (`maos.bench.pods.echo_round_trip`: what beats share with every request - the pod's
  socket, the channel's reader, the kernel's loop), timed inside the pod while it and
  `NEIGHBOURS` idle pods beat at the nominal period into a real Watchdog, against the
  same with no pod beating; alternated in one run. The Sentry, the gateways and the DSC
  never see a beat, so this is all they can cost an agent's decision.

The time from a confirmed signal to hard isolation and a pod's freeze and thaw are the
``immune`` section's (`maos.bench.immune`), measured on a real pod; not repeated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from maos.bench.pods import echo_round_trip
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.services import Batcher
from maos.pod.beats import enrol
from maos.pod.channel import ChannelClosed
from maos.pod.gateways import GATEWAY_OPS
from maos.pod.isolation import PodHome, PodProcess, PodSpec, detect, sandbox_for
from maos.services.manager import RestartPolicy, ServiceManager

__all__ = ["measure"]

MEMBER = "service:beacon"
NEIGHBOURS = 8
"""Idle pods beating beside the measured one: a kernel's share of a busy node."""
IDLE = "import time\ntime.sleep(3600)\n"


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


async def _idle(
    kernel: Kernel, home: PodHome, idle: Path, beating: bool
) -> list[tuple[PodProcess, asyncio.Task[None]]]:
    out = []
    for i in range(NEIGHBOURS):
        beats = enrol(kernel.watchdog, f"pod:idle-{i}") if beating else None
        pod = await sandbox_for(2, home, ops=GATEWAY_OPS).spawn(
            PodSpec(f"idle-{i}", idle, heartbeat=beats)
        )
        out.append((pod, asyncio.create_task(_drain(pod))))
    return out


async def _drain(pod: PodProcess) -> None:
    """Start the channel's reader (an idle pod asks nothing) until the pod is gone."""
    assert pod.channel is not None
    with contextlib.suppress(ChannelClosed):
        await pod.channel.recv()


async def _pod_beats(tmp: Path, quick: bool) -> dict[str, Any]:
    kernel = await Kernel.boot(KernelConfig(data_dir=tmp / "beats"), follow=False)
    home = PodHome()
    idle = tmp / "idle.py"
    idle.write_text(IDLE)
    pings = 500 if quick else 5000
    on: list[float] = []
    off: list[float] = []
    taken = 0
    try:
        for _ in range(2 if quick else 4):
            for beating, into in ((True, on), (False, off)):
                neighbours = await _idle(kernel, home, idle, beating)
                beats = enrol(kernel.watchdog, "pod:echo") if beating else None
                into.append((await echo_round_trip(tmp, pings, home, beats))[0])
                for pod, drain in neighbours:
                    pod.kill()
                    await pod.wait()
                    await drain
                taken += sum(max(0, b.counter) for b in kernel.watchdog.members.values())
                for member in list(kernel.watchdog.members):
                    kernel.watchdog.leave(member)
    finally:
        home.close()
        await kernel.close()
    on_us, off_us = statistics.median(on), statistics.median(off)
    return {
        "pod_round_trip_us_p50_beats_on": round(on_us, 1),
        "pod_round_trip_us_p50_beats_off": round(off_us, 1),
        "ratio_round_trip_beats_on_vs_off": round(on_us / off_us, 3),
        "beating_pods": NEIGHBOURS + 1,
        "beats_taken": taken,
    }


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-resil-") as tmp:
        figures = asyncio.run(_measure(Path(tmp) / "data", 2 if quick else 5))
        if detect(2).available:
            figures.update(asyncio.run(_pod_beats(Path(tmp), quick)))
        return figures


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = [
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
    if "ratio_round_trip_beats_on_vs_off" in r:
        out.append(
            (
                f"pod request, {r['beating_pods']} pods beating p50",
                f"{r['pod_round_trip_us_p50_beats_on']} µs",
                f"{r['ratio_round_trip_beats_on_vs_off']} × none beating "
                f"({r['pod_round_trip_us_p50_beats_off']} µs), {r['beats_taken']} beats taken",
            )
        )
    return out
