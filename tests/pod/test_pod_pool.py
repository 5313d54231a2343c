"""The warm pool hands out started pods, binds identity late and falls back to cold."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from maos.pod.frames import Reply
from maos.pod.isolation import Level1Sandbox, PodDir, PodHome, PodSpec, SandboxError, detect
from maos.pod.isolation.base import Launch, Started
from maos.pod.isolation.pool import WarmPool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(
        "import os, maos_pod_client as pod\n"
        'pod.request("outmsg", "send", {"to": "kernel", "body": os.environ["WHO"]})\n'
    )
    return path


async def first_frame_then_exit(pod_acquired: object) -> tuple[str, str]:
    from maos.pod.isolation import PodProcess

    assert isinstance(pod_acquired, PodProcess) and pod_acquired.channel is not None
    frame = await pod_acquired.channel.recv()
    await pod_acquired.channel.send(Reply(id=frame.id, ok=True))
    await pod_acquired.wait()
    return frame.agent_id, frame.args.model_dump()["body"]


@pytest.mark.parametrize("level", [1, 2])
def test_warm_pods_are_bound_to_the_agent_that_acquires_them(
    level: int, home: PodHome, agent: Path
) -> None:
    if not detect(level).available:
        pytest.skip(detect(level).reason)
    from maos.pod.isolation import sandbox_for

    async def main() -> None:
        async with WarmPool(sandbox_for(level, home), size=2) as pool:
            await pool.wait_full()
            assert pool.idle == 2
            results = []
            for who in ("agent-a", "agent-b", "agent-c"):
                idle_pids, warm = {p.pid for p in pool._idle}, pool.stats.warm
                pod = await pool.acquire(PodSpec(who, agent, env={"WHO": who}))
                assert (pod.pid in idle_pids) == (pool.stats.warm == warm + 1)
                results.append(await first_frame_then_exit(pod))
            assert results == [(w, w) for w in ("agent-a", "agent-b", "agent-c")]
            assert pool.stats.warm + pool.stats.cold == 3 and pool.stats.warm >= 2
            await pool.wait_full()
            assert pool.idle == 2, "the pool refills in the background"
            idle = list(pool._idle)
        assert all(p.returncode is not None for p in idle), "closing reaps idle pods"

    asyncio.run(main())


def test_a_spec_with_its_own_workspace_or_an_empty_pool_starts_cold(
    home: PodHome, agent: Path
) -> None:
    async def main() -> None:
        async with WarmPool(Level1Sandbox(home), size=0) as pool:
            pod = await pool.acquire(PodSpec("agent-a", agent, env={"WHO": "x"}))
            await first_frame_then_exit(pod)
            ws = home.root / "own-ws"
            pod = await pool.acquire(PodSpec("agent-b", agent, env={"WHO": "y"}, workspace=ws))
            await first_frame_then_exit(pod)
            assert (pool.stats.warm, pool.stats.cold) == (0, 2)

    asyncio.run(main())


class BrokenSandbox(Level1Sandbox):
    """A level whose interpreter never says READY."""

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        import subprocess

        proc = subprocess.Popen(["/bin/false"], start_new_session=True, stdout=log_fd)
        return Started(proc, Launch(cwd="/"))


class BuggySandbox(Level1Sandbox):
    """A level whose start fails with an error that is not a SandboxError (a bug)."""

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        raise LookupError("no such launcher")


def test_a_start_that_fails_with_a_bug_still_ends_wait_full_with_a_coded_error(
    home: PodHome, agent: Path
) -> None:
    async def main() -> None:
        async with WarmPool(BuggySandbox(home), size=2) as pool:
            await pool.wait_full()
            assert pool.idle == 0 and pool.stats.failed_starts == 1
            assert pool.last_error is not None and pool.last_error.code == "POD.SPAWN.FAILED"
            assert "no such launcher" in str(pool.last_error)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_host_that_cannot_start_pods_stops_refilling_and_callers_see_the_error(
    home: PodHome, agent: Path
) -> None:
    async def main() -> None:
        async with WarmPool(BrokenSandbox(home), size=3) as pool:
            await pool.wait_full()
            assert pool.stats.failed_starts == 1 and pool.idle == 0
            assert pool.last_error is not None
            assert pool.last_error.code == "POD.SPAWN.NO_READY"
            with pytest.raises(SandboxError):
                await pool.acquire(PodSpec("agent-a", agent))
        with pytest.raises(SandboxError) as info:
            await pool.acquire(PodSpec("agent-a", agent))
        assert info.value.code == "POD.POOL.CLOSED"

    asyncio.run(main())
