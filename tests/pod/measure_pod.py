"""Figures for docs/sandbox.md; run by hand as root, never collected by pytest.

    .venv/bin/python tests/pod/measure_pod.py [--levels 1,2,3] [--rounds 20]

Prints cold start (spawn to first frame), warm acquisition, channel round trip from
inside the pod, and the memory of idle pooled pods (PSS and USS over each pod's whole
process tree, from /proc/<pid>/smaps_rollup).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import Field

from maos.pod.frames import BASE_OPS, Reply, StrictModel
from maos.pod.isolation import PodHome, PodProcess, PodSpec, sandbox_for
from maos.pod.isolation.pool import WarmPool

HELLO = 'import maos_pod_client as pod\npod.request("admin", "heartbeat", {})\n'
PING = """import time
import maos_pod_client as pod
samples = []
for _ in range(ROUNDS):
    t = time.perf_counter()
    pod.request("admin", "heartbeat", {})
    samples.append(time.perf_counter() - t)
samples.sort()
pod.request("admin", "figures", {"p50": samples[len(samples) // 2],
                                  "p99": samples[int(len(samples) * 0.99)]})
"""


class Figures(StrictModel):
    p50: float = Field(ge=0)
    p99: float = Field(ge=0)


OPS = BASE_OPS.with_op("admin", "figures", Figures)


async def serve(pod: PodProcess) -> list[StrictModel]:
    """Answer every frame until the pod exits; returns the args it sent."""
    assert pod.channel is not None
    seen = []
    while pod.returncode is None:
        try:
            frame = await pod.channel.recv()
        except Exception:
            break
        seen.append(frame.args)
        await pod.channel.send(Reply(id=frame.id, ok=True))
    await pod.wait()
    return seen


def tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            pids += tree(int(child))
    return pids


def memory_kib(pid: int) -> tuple[int, int]:
    pss = uss = 0
    for p in tree(pid):
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                pss += int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                uss += int(rest.split()[0])
    return pss, uss


def ms(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values) * 1e3:.2f} ms, max {values[-1] * 1e3:.2f} ms"


async def measure(level: int, rounds: int, home: PodHome, script_dir: Path) -> None:
    hello = script_dir / "hello.py"
    hello.write_text(HELLO)
    ping = script_dir / "ping.py"
    ping.write_text(PING.replace("ROUNDS", "2000"))
    sandbox = sandbox_for(level, home, ops=OPS)
    cold = []
    for i in range(rounds):
        t = time.perf_counter()
        pod = await sandbox.spawn(PodSpec(f"agent-{i}", hello))
        assert pod.channel is not None
        frame = await pod.channel.recv()
        cold.append(time.perf_counter() - t)
        await pod.channel.send(Reply(id=frame.id, ok=True))
        await pod.wait()
    print(f"level {level} cold start to first frame: {ms(cold)}")

    pod = await sandbox.spawn(PodSpec("agent-ping", ping))
    figures = next(a for a in await serve(pod) if isinstance(a, Figures))
    print(
        f"level {level} round trip in pod: p50 {figures.p50 * 1e6:.0f} us, "
        f"p99 {figures.p99 * 1e6:.0f} us"
    )

    async with WarmPool(sandbox, size=min(rounds, 8)) as pool:
        await pool.wait_full()
        mem = [memory_kib(p.pid) for p in list(pool._idle)]
        print(
            f"level {level} idle pod memory: PSS {statistics.median(m[0] for m in mem)} KiB, "
            f"USS {statistics.median(m[1] for m in mem)} KiB (median of {len(mem)})"
        )
        acquire, first = [], []
        for i in range(rounds):
            await pool.wait_full()
            t = time.perf_counter()
            pod = await pool.acquire(PodSpec(f"agent-w{i}", hello))
            acquire.append(time.perf_counter() - t)
            assert pod.channel is not None
            frame = await pod.channel.recv()
            first.append(time.perf_counter() - t)
            await pod.channel.send(Reply(id=frame.id, ok=True))
            await pod.wait()
        print(
            f"level {level} warm acquire: {ms(acquire)}; to first frame: {ms(first)} ({pool.stats})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,2")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    home = PodHome()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for level in (int(x) for x in args.levels.split(",")):
                await measure(level, args.rounds, home, Path(tmp))
    finally:
        home.close()


if __name__ == "__main__":
    asyncio.run(main())
