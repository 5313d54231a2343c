"""Pod figures: cold start per level, warm acquisition, the gateway round trip, idle memory.

* **cold start**: `Sandbox.spawn` to the first frame received from the agent (a script
  that sends one request through ``maos_pod_client``), per level the host can give;
* **warm acquisition**: `WarmPool.acquire` returning a launched pod, and to its first
  frame, with the pool full beforehand;
* **round trip**: ``sdk.admin.heartbeat()`` timed *inside* a level-2 pod through the whole
  path - channel, Sentry, gateways, the kernel's DSC - so what an agent waits for. The
  Sentry's and the kernel's rate limits are raised for the agent: they would otherwise
  (rightly) refuse a bench. Beside it, in the same run, the baseline: the same request
  answered by the bare channel at once (``channel_echo_*``);
* **idle memory**: PSS and USS of each idle pooled pod's whole process tree (bwrap,
  runsc and their children too), from ``/proc/<pid>/smaps_rollup``;
* **level 1's own network** (issue 9): cold starts of today's level 1 (a minimal bwrap
  giving it its own network namespace, /tmp and /dev/shm) against the level 1 before it
  (the same process without the wrapper, sharing the host's), alternated in one run,
  as a ratio (``level1_own_network``).

Goals sit beside the figures as ``target_*`` keys; nothing here asserts them.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from maos.kernel.dsc.ratelimit import AgentRates, RateLimit
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.pod.channel import ChannelClosed
from maos.pod.frames import Reply
from maos.pod.gateways import GATEWAY_OPS
from maos.pod.isolation import Heartbeat, PodHome, PodProcess, PodSpec, detect, sandbox_for
from maos.pod.isolation.base import ProcessSandbox
from maos.pod.isolation.home import PodDir
from maos.pod.isolation.level1 import Level1Sandbox
from maos.pod.isolation.pool import WarmPool
from maos.pod.runtime import PodRuntime, profile_for

__all__ = ["echo_round_trip", "measure", "memory_kib"]

LEVELS = (1, 2, 3)
HELLO = 'import maos_pod_client as pod\npod.request("admin", "heartbeat", {})\n'
PING = """import os, time
from maos import sdk
import maos_pod_client as pod
ping = (lambda: pod.request("admin", "heartbeat", {})) if os.environ.get("MAOS_BENCH_RAW") \\
    else sdk.admin.heartbeat
rounds = int(os.environ["MAOS_BENCH_ROUNDS"])
for _ in range(min(rounds, 100)):
    ping()
samples = []
for _ in range(rounds):
    t = time.perf_counter()
    ping()
    samples.append(time.perf_counter() - t)
samples.sort()
print(samples[len(samples) // 2] * 1e6, samples[min(rounds - 1, int(rounds * 0.99))] * 1e6)
"""
TARGETS = {
    "target_cold_start_ms_level2": 30.0,
    "target_warm_acquire_ms": 1.0,
    "target_round_trip_us_p50": 150.0,
    "target_idle_pod_mib": 15.0,
}


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            pids += _tree(int(child))
    return pids


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, USS) in KiB of ``pid`` and all its descendants."""
    pss = uss = 0
    for p in _tree(pid):
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                pss += int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                uss += int(rest.split()[0])
    return pss, uss


async def _first_frame(pod: PodProcess) -> None:
    """Answer the pod's one request and reap it."""
    assert pod.channel is not None
    frame = await pod.channel.recv()
    await pod.channel.send(Reply(id=frame.id, ok=True))
    await pod.wait()


def _ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1e3, 2)


async def _level(level: int, rounds: int, home: PodHome, hello: Path) -> dict[str, Any]:
    sandbox = sandbox_for(level, home, ops=GATEWAY_OPS)
    cold = []
    for i in range(rounds):
        started = time.perf_counter()
        pod = await sandbox.spawn(PodSpec(f"bench-{i}", hello))
        assert pod.channel is not None
        frame = await pod.channel.recv()
        cold.append(time.perf_counter() - started)
        await pod.channel.send(Reply(id=frame.id, ok=True))
        await pod.wait()
    acquire, first = [], []
    async with WarmPool(sandbox, size=min(rounds, 4)) as pool:
        await pool.wait_full()
        memory = [memory_kib(p.pid) for p in pool._idle]
        for i in range(rounds):
            await pool.wait_full()
            started = time.perf_counter()
            pod = await pool.acquire(PodSpec(f"bench-warm-{i}", hello))
            acquire.append(time.perf_counter() - started)
            await _first_frame(pod)
            first.append(time.perf_counter() - started)
    return {
        "cold_start_ms_p50": _ms(cold),
        "cold_start_ms_max": round(max(cold) * 1e3, 2),
        "warm_acquire_ms_p50": _ms(acquire),
        "warm_to_first_frame_ms_p50": _ms(first),
        "idle_pss_mib": round(statistics.median(m[0] for m in memory) / 1024, 2),
        "idle_uss_mib": round(statistics.median(m[1] for m in memory) / 1024, 2),
    }


class _SharedHostLevel1(Level1Sandbox):
    """Level 1 as it was before issue 9: the host's network, /tmp and /dev/shm. Only
    the bench starts it, as the baseline of `_own_network`."""

    _exit_signal = staticmethod(ProcessSandbox._exit_signal)  # no bwrap between: plain status

    def _wrapper(self, pod_dir: PodDir) -> list[str]:
        return []


async def _cold_start(sandbox: Level1Sandbox, hello: Path, name: str) -> float:
    started = time.perf_counter()
    pod = await sandbox.spawn(PodSpec(name, hello))
    assert pod.channel is not None
    frame = await pod.channel.recv()
    took = time.perf_counter() - started
    await pod.channel.send(Reply(id=frame.id, ok=True))
    await pod.wait()
    return took


async def _own_network(rounds: int, home: PodHome, hello: Path) -> dict[str, Any]:
    """Today's level 1 against the one before it, started alternately in one run."""
    own = sandbox_for(1, home, ops=GATEWAY_OPS)
    assert isinstance(own, Level1Sandbox)
    shared = _SharedHostLevel1(home, ops=GATEWAY_OPS)
    with_ns, without = [], []
    for i in range(rounds):
        with_ns.append(await _cold_start(own, hello, f"bench-own-{i}"))
        without.append(await _cold_start(shared, hello, f"bench-shared-{i}"))
    return {
        "cold_start_ms_p50": _ms(with_ns),
        "shared_host_cold_start_ms_p50": _ms(without),
        "ratio": round(statistics.median(with_ns) / statistics.median(without), 2),
    }


def _percentiles(output: str) -> tuple[float, float]:
    p50, p99 = output.split()
    return round(float(p50), 1), round(float(p99), 1)


async def echo_round_trip(
    tmp: Path, rounds: int, home: PodHome, heartbeat: Heartbeat | None = None
) -> tuple[float, float]:
    """The baseline: the same ping answered at once by the channel, no Sentry, no kernel
    (p50 and p99 in µs); ``heartbeat``: the pod beats meanwhile (`maos.bench.resilience`)."""
    ping = tmp / "ping.py"
    ping.write_text(PING)
    env = {"MAOS_BENCH_ROUNDS": str(rounds), "MAOS_BENCH_RAW": "1"}
    spec = PodSpec("echo", ping, env=env, heartbeat=heartbeat)
    pod = await sandbox_for(2, home, ops=GATEWAY_OPS).spawn(spec)
    assert pod.channel is not None
    while True:
        try:
            frame = await pod.channel.recv()
        except ChannelClosed:
            break
        await pod.channel.send(Reply(id=frame.id, ok=True))
    if await pod.wait() != 0:
        raise RuntimeError(f"the echo agent failed: {pod.log()[-500:]}")
    return _percentiles(pod.log())


async def _round_trip(tmp: Path, rounds: int, home: PodHome) -> tuple[float, float]:
    kernel = await Kernel.boot(KernelConfig(data_dir=tmp / "data"), follow=False)
    try:
        await kernel.register_agent("bench", ring=3)
        unlimited = RateLimit(rate=1e9, burst=1e9)
        kernel.rates.configure("bench", AgentRates(overall=unlimited, op_default=unlimited))
        await kernel.open_task("bench-task")
        grants = [Grant("admin.heartbeat", "*")]
        token = kernel.mint("bench", "bench-task", grants)
        profile = profile_for(3, grants).with_rate("admin", 1e9, 1e9)
        ping = tmp / "ping.py"
        ping.write_text(PING)
        async with PodRuntime(kernel, level=2, profile=profile, home=home) as runtime:
            run = await runtime.start(
                "bench",
                ping,
                task_id="bench-task",
                token=token,
                env={"MAOS_BENCH_ROUNDS": str(rounds)},
            )
            ended = await run.wait()
            output = run.log()
        if ended.exit_code != 0:
            raise RuntimeError(f"the ping agent failed ({ended.reason}): {output[-500:]}")
        return _percentiles(output)
    finally:
        await kernel.close()


def measure(*, quick: bool) -> dict[str, Any]:
    """The pod figures as JSON-ready values; levels this host lacks say why."""
    rounds = 5 if quick else 20
    figures: dict[str, Any] = {}

    async def go(tmp: Path) -> None:
        home = PodHome()
        try:
            hello = tmp / "hello.py"
            hello.write_text(HELLO)
            for level in LEVELS:
                support = detect(level)
                if not support.available:
                    figures[f"level{level}"] = {"unavailable": support.reason}
                    continue
                n = max(2, rounds // 4) if level == 3 else rounds  # gVisor starts in ~0.3 s
                figures[f"level{level}"] = await _level(level, n, home, hello)
            if detect(1).available:
                figures["level1_own_network"] = await _own_network(rounds, home, hello)
            if detect(2).available:
                pings = 500 if quick else 5000
                echo = await echo_round_trip(tmp, pings, home)
                figures["channel_echo_us_p50"], figures["channel_echo_us_p99"] = echo
                whole = await _round_trip(tmp, pings, home)
                figures["round_trip_us_p50"], figures["round_trip_us_p99"] = whole
                figures["round_trip_level"] = 2
        finally:
            home.close()

    with tempfile.TemporaryDirectory(prefix="maos-bench-pods-") as tmp:
        asyncio.run(go(Path(tmp)))
    return {**figures, **TARGETS}
