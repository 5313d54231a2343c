"""R8 under load (issue 12): while agents in real pods flood the gateways as fast as
they can, the Commander still kills one and still reaches Minimal Safe State; every
flooding pod ends."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import pytest

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.modes import Mode
from maos.kernel.tokens import Grant
from maos.pod.isolation import PodHome
from maos.pod.lifecycle import AgentRun
from maos.pod.runtime import PodRuntime
from maos.testing import with_kernel

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="models production: the kernel runs as root, pods as nobody"
)

FLOOD = """
from maos import sdk
n = 0
while True:  # no pause: every request it can make, refused or not
    n += 1
    try:
        sdk.fs.write("flood.txt", str(n))
        sdk.fs.read("flood.txt")
    except sdk.Denied:
        pass
"""


async def _flooding(k: Kernel, runtime: PodRuntime, agent: str, script: Path) -> AgentRun:
    await k.register_agent(agent, ring=3, rate_per_s=100_000.0, burst=100_000)
    token = k.mint(agent, "t1", [Grant("fs.*", "*")])
    return await runtime.start(agent, script, task_id="t1", token=token)


def _requests(k: Kernel, agent: str) -> int:
    return sum(1 for r in k.wal.read(kinds=["intent.committed"]) if r.body.get("agent_id") == agent)


def test_the_commander_kills_and_reaches_mss_while_agents_flood(
    config: KernelConfig, tmp_path: Path, home: PodHome
) -> None:
    script = tmp_path / "flood.py"
    script.write_text(textwrap.dedent(FLOOD))

    async def body(k: Kernel) -> None:
        await k.open_task("t1")
        runtime = PodRuntime(k, home=home)
        try:
            a = await _flooding(k, runtime, "flood-a", script)
            b = await _flooding(k, runtime, "flood-b", script)
            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while _requests(k, "flood-a") < 50 or _requests(k, "flood-b") < 50:
                assert loop.time() < end, "the agents never flooded"
                await asyncio.sleep(0.05)
            await asyncio.wait_for(k.set_agent_status("flood-a", AgentStatus.KILLED), 10)
            ended_a = await asyncio.wait_for(a.wait(), 30)
            assert "killed" in str(ended_a)
            assert b.stop_reason is None
            await asyncio.wait_for(k.set_safe_state(True, reason="flood"), 10)
            assert k.mode() is Mode.MSS
            ended_b = await asyncio.wait_for(b.wait(), 30)
            assert "minimal safe state" in str(ended_b)
            before = _requests(k, "flood-b")
            await asyncio.sleep(0.5)
            assert _requests(k, "flood-b") == before  # nothing more gets through
        finally:
            await runtime.close()

    with_kernel(config, body)
