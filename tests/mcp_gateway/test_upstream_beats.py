"""Upstream MCP servers heartbeat to the Watchdog (issue 12 item 6): each answer to the
protocol's own liveness probe is a beat of ``pod:mcp/<upstream>``.

Real servers (the SDK's, `upstreams.py`) in real level-2 pods, on a real kernel on the
stepped clock: beats keep arriving, also while a slow call is in flight (the SDK answers
probes beside it); a server stopped during a call is held while the call lasts (its
timeout bounds it), then recorded missing, dropped, and the next call runs on a fresh
server; the gateway's own kernel gets its upstreams' beats. Nothing here waits on, or
asserts, wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gwtest import Setup, text

from maos.kernel.kernel import Kernel, KernelConfig
from maos.mcp.liveness import PROBE_PERIODS
from maos.mcp.policy import load_policy
from maos.mcp.serve import running_gateway
from maos.mcp.upstream import Connection, Sandboxing
from maos.pod.egress import EgressEvent
from maos.pod.isolation import PodHome, detect
from maos.pod.lifecycle import pods_from_log
from maos.testing import StepClock, eventually, stopped

pytestmark = pytest.mark.skipif(not detect(2).available, reason=detect(2).reason)

MEMBER = "pod:mcp/files"


async def _no_egress(upstream: str, event: EgressEvent) -> None:
    raise AssertionError("files has no egress")


def _server_pids(setup: Setup) -> list[int]:
    """The files server's process (inside its pod), by the record file in its env."""
    mark = f"RECORD={setup.record('files')}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[1].endswith(b"upstreams.py") and mark in env:
            out.append(int(entry))
    return out


def _missed(kernel: Kernel) -> list[str]:
    return [str(r.body["member"]) for r in kernel.wal.read(kinds=["pod.missed"])]


@contextlib.asynccontextmanager
async def _files(
    setup: Setup, config: KernelConfig, clock: StepClock, protocol: str = "auto"
) -> Any:
    policy = load_policy(setup.policy)
    assert policy.runtime_cache is not None
    kernel = await Kernel.boot(replace(config, clock=clock))
    home = PodHome()
    conn = Connection(
        "files",
        policy.upstreams["files"].model_copy(update={"protocol": protocol}),
        sandboxing=Sandboxing(home, Path(policy.runtime_cache), _no_egress),
    )
    try:
        conn.watch(kernel.watchdog)
        await conn.client()
        yield kernel, conn
    finally:
        await conn.aclose()
        home.close()
        await kernel.close()


def _call(conn: Connection, tool: str, **args: Any) -> Any:
    return conn.request(f"tools/call {tool}", lambda c: c.call_tool(tool, args), 3600)


async def _beats_through(clock: StepClock, kernel: Kernel, steps: int) -> None:
    """``steps`` steps of the clock just under the miss limit, each answered by a beat."""
    dog = kernel.watchdog
    for _ in range(steps):
        seen = dog.members[MEMBER].counter
        clock.now += dog.pod_limit_s - dog.period_s * PROBE_PERIODS
        await eventually(lambda n=seen: dog.members[MEMBER].counter > n, "a beat")


@pytest.mark.parametrize("protocol", ["auto", "legacy"])  # server/discover; ping
def test_a_server_beats_while_idle_and_while_a_slow_call_is_in_flight(
    setup: Setup, config: KernelConfig, protocol: str
) -> None:
    clock = StepClock(1_000_000.0)

    async def go() -> None:
        async with _files(setup, config, clock, protocol) as (kernel, conn):
            client = await conn.client()
            assert (client.protocol_version == "2026-07-28") is (protocol == "auto")
            dog = kernel.watchdog
            await _beats_through(clock, kernel, 4)
            slow = asyncio.create_task(_call(conn, "slow", seconds=3600))
            await eventually(lambda: setup.calls("files", "slow"), "the slow call runs")
            await _beats_through(clock, kernel, 6)  # probes answered beside the call
            assert not slow.done()
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow
            assert clock.now - 1_000_000.0 > 8 * dog.pod_limit_s
            assert dog.members[MEMBER].bad == 0
            assert _missed(kernel) == []
            assert len(setup.starts("files")) == 1

    asyncio.run(go())


def test_a_stopped_server_is_held_during_its_call_then_recorded_missing_and_replaced(
    setup: Setup, config: KernelConfig
) -> None:
    clock = StepClock(1_000_000.0)

    async def go() -> None:
        async with _files(setup, config, clock) as (kernel, conn):
            dog = kernel.watchdog
            await eventually(lambda: dog.members[MEMBER].counter >= 2, "beats arrive")
            (pid,) = _server_pids(setup)
            slow = asyncio.create_task(_call(conn, "slow", seconds=3600))
            await eventually(lambda: setup.calls("files", "slow"), "the slow call runs")
            os.kill(pid, signal.SIGSTOP)
            await eventually(lambda: stopped(pid), "the server is stopped")
            # While its call lasts (bounded by the call's own timeout), its silence is
            # held: however far the clock goes, no miss.
            probe = "service:probe"  # never beats: its miss proves a sweep after the step
            dog.enrol(probe)
            clock.now += max(dog.pod_limit_s, dog.grace_s) * 10
            await eventually(lambda: dog.members[probe].missed, "a sweep after the step")
            dog.leave(probe)
            assert _missed(kernel) == [] and not slow.done()
            slow.cancel()  # the caller gives up: the server's silence counts again
            with contextlib.suppress(asyncio.CancelledError):
                await slow

            def missing() -> bool:
                clock.now += dog.pod_limit_s + 1
                return bool(_missed(kernel))

            await eventually(missing, "the stopped server recorded missing")
            await eventually(lambda: not Path(f"/proc/{pid}").exists(), "the server is gone")
            result = await asyncio.wait_for(_call(conn, "read_file", path="/srv/reports/q"), 120)
            assert "contents of /srv/reports/q" in str(result)
            assert len(setup.starts("files")) == 2
            await eventually(lambda: dog.members[MEMBER].counter >= 1, "the fresh server beats")
            assert _missed(kernel) == [MEMBER]
            assert pods_from_log(kernel.wal) == {"mcp/files": {"state": "mcp server", "missed": 1}}

    asyncio.run(go())


def test_a_call_right_after_an_idle_server_was_recorded_missing_runs_on_a_fresh_one(
    setup: Setup, config: KernelConfig
) -> None:
    clock = StepClock(1_000_000.0)

    async def go() -> None:
        async with _files(setup, config, clock) as (kernel, conn):
            dog = kernel.watchdog
            await eventually(lambda: dog.members[MEMBER].counter >= 2, "beats arrive")
            (pid,) = _server_pids(setup)
            os.kill(pid, signal.SIGSTOP)
            await eventually(lambda: stopped(pid), "the server is stopped")

            def missing() -> bool:
                clock.now += dog.pod_limit_s + 1
                return bool(_missed(kernel))

            await eventually(missing, "the stopped server recorded missing")
            # At once, before its prober's next look: the call goes to a fresh server.
            result = await asyncio.wait_for(_call(conn, "read_file", path="/srv/reports/r"), 120)
            assert "contents of /srv/reports/r" in str(result)
            assert not Path(f"/proc/{pid}").exists() and len(setup.starts("files")) == 2

    asyncio.run(go())


def test_the_gateways_upstreams_beat_to_its_kernel(setup: Setup) -> None:
    async def go() -> None:
        async with running_gateway(load_policy(setup.policy), setup.data_dir) as gateway:
            dog = gateway.kernel.watchdog
            members = [f"pod:mcp/{name}" for name in ("mail", "files", "fetch")]
            await eventually(
                lambda: all(m in dog.members and dog.members[m].counter >= 2 for m in members),
                "every upstream beats",
            )
            result = await gateway.call_tool("stdio", "read_file", {"path": "/srv/reports/a"})
            assert "contents of /srv/reports/a" in text(result), text(result)

    asyncio.run(go())
