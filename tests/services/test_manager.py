"""The Service Manager and the Watchdog on real service processes (issue 12 items 6-7):
a SIGKILLed service is restarted and recorded, a wedged one (SIGSTOP: no beats) is found
by the Watchdog and restarted, critical services killed past their restart policy step
the system down through the degradation modes and back up, and the Security Agent - a
separate process - cannot stop silently."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from svckit import logged

from maos.kernel.cascade import rca_dir, stage_order
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.modes import Mode
from maos.kernel.stages import Stage
from maos.services.manager import RestartPolicy, ServiceManager
from maos.testing import eventually, with_kernel

FAST = RestartPolicy(max_restarts=2, window_s=60.0, backoff_s=0.05, cooldown_s=1.5)


def _run(
    config: KernelConfig,
    body: Callable[[Kernel, ServiceManager], Awaitable[None]],
    **policies: RestartPolicy,
) -> None:
    async def go(k: Kernel) -> None:
        manager = ServiceManager(k, policies=policies)
        try:
            await body(k, manager)
        finally:
            await manager.stop()

    with_kernel(config, go)


def test_a_sigkilled_service_is_restarted_and_recorded(config: KernelConfig) -> None:
    """issue 12: kill -9 a Ring 1 service process; it comes back, and the log says so."""

    async def body(k: Kernel, manager: ServiceManager) -> None:
        manager.start("beacon")
        await eventually(
            lambda: (
                k.watchdog.alive("service:beacon")
                and (k.watchdog.members["service:beacon"].counter > 2)
            )
        )
        first = manager.runs["beacon"].pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(
            lambda: manager.runs["beacon"].pid != first and manager.runs["beacon"].state == "up"
        )
        await eventually(
            lambda: (
                k.watchdog.members.get("service:beacon") is not None
                and k.watchdog.members["service:beacon"].counter > 0
            )
        )
        exited = logged(k, "service.exited")
        assert exited[0]["pid"] == first and exited[0]["reason"] == "killed by signal 9"
        assert logged(k, "service.restarted")[0]["service"] == "beacon"
        assert exited[0]["principal"] == "service:manager"
        assert k.mode() is Mode.NORMAL  # restarted within its policy: health holds

    _run(config, body, beacon=FAST)


@pytest.mark.parametrize("sweep_every_s", [0.02, 3600.0], ids=["follower-sweeps", "no-sweep"])
def test_a_wedged_service_misses_beats_and_is_restarted(
    config: KernelConfig, sweep_every_s: float
) -> None:
    """A SIGSTOPped process sends no beat: the Watchdog records the miss, the manager
    kills and restarts it. The miss is recorded even when the manager finds the silence
    before the kernel's follower sweeps (a loaded machine: the CI run that lost it)."""
    config = replace(config, follow_interval=sweep_every_s)

    async def body(k: Kernel, manager: ServiceManager) -> None:
        manager.start("beacon")
        await eventually(
            lambda: (
                manager.runs["beacon"].state == "up"
                and k.watchdog.members["service:beacon"].counter > 2
            )
        )
        first = manager.runs["beacon"].pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)
        await eventually(lambda: bool(logged(k, "service.missed")))
        missed = logged(k, "service.missed")[0]
        assert missed["member"] == "service:beacon"
        await eventually(
            lambda: manager.runs["beacon"].pid != first and manager.runs["beacon"].state == "up"
        )
        assert logged(k, "service.exited")[0]["reason"] == "missed heartbeats: killed"

    _run(config, body, beacon=FAST)


def test_critical_services_failing_step_the_modes_down_and_back(config: KernelConfig) -> None:
    """Kill the Security Agent (critical) past its restart policy: degraded-2; the beacon
    (non-critical) too: degraded-3; after the cool-down both come back: normal."""

    async def body(k: Kernel, manager: ServiceManager) -> None:
        manager.start("security")
        manager.start("beacon")

        def _failed(name: str) -> bool:
            return manager.runs[name].state == "failed"

        async def exhaust(name: str) -> None:
            while manager.runs[name].state != "failed":
                await eventually(lambda: manager.runs[name].state in ("up", "failed"))
                pid = manager.runs[name].pid
                if manager.runs[name].state == "up" and pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    await eventually(lambda p=pid: manager.runs[name].pid != p or _failed(name))

        await exhaust("security")
        await eventually(lambda: k.mode() is Mode.DEGRADED_2)
        await exhaust("beacon")
        await eventually(lambda: k.mode() is Mode.DEGRADED_3)
        await eventually(lambda: k.mode() is Mode.NORMAL)  # the cool-down: both back up
        modes = [b["mode"] for b in logged(k, "kernel.mode") if b["source"] == "health"]
        assert modes[:3] == ["degraded-2", "degraded-3", "degraded-2"] or modes[:2] == [
            "degraded-2",
            "degraded-3",
        ]
        assert modes[-1] == "normal"
        assert {b["service"] for b in logged(k, "service.failed")} == {"security", "beacon"}

    _run(config, body, security=FAST, beacon=FAST)


def test_the_security_agent_process_cannot_stop_silently(config: KernelConfig) -> None:
    """issue 12: `SecurityAgent._follow` used to stop on an error and nobody noticed.
    Make its work fail for real (the RCA directory cannot be made), and its process
    exits with the error; the manager records it and restarts it."""

    async def body(k: Kernel, manager: ServiceManager) -> None:
        await k.register_agent("a1", ring=3)
        await k.open_task("t1")
        where = rca_dir(k.config.data_dir, "a1")
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text("not a directory")  # the excerpt cannot be written: a real error
        order = stage_order(
            k.registry,
            "a1",
            Stage.HARD_ISOLATION,
            cause="test",
            principal="commander",
            at=k.clock(),
        )
        await k.cascade(order)
        manager.start("security")
        await eventually(lambda: bool(logged(k, "service.exited")))
        exited = logged(k, "service.exited")[0]
        assert exited["service"] == "security" and exited["code"] == 1, exited["stderr"]
        assert "Error" in str(exited["stderr"])
        await eventually(lambda: bool(logged(k, "service.restarted")))

    _run(config, body, security=replace(FAST, backoff_s=0.2))
