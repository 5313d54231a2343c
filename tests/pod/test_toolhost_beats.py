"""Tool hosts heartbeat to the Watchdog like agents' pods (issue 12 item 6).

A real tool host (a level-1 pod, so SIGSTOP reaches its interpreter directly, not through
a freezer) on a real kernel on the stepped clock: its beats keep arriving while a long
call is in flight; stopped, it is recorded missing, killed, the call in flight fails with
``TOOL.HEARTBEAT.MISSED`` and the next call runs in a fresh host; a host started before
the kernel is replaced by one that beats when its tools are registered. Nothing here
waits on, or asserts, wall-clock time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from maos.effects.base import EffectError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.pod.isolation import PodHome, PodProcess
from maos.pod.lifecycle import pods_from_log
from maos.pod.toolhost import ToolHost, install_tools, register_tools, start_tools
from maos.testing import StepClock, eventually, stopped

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")

TOOLS = '''
import os, time
from maos.tool import tool

@tool(effect="read-only")
def echo(text: str) -> str:
    """Say it back."""
    return text

@tool(effect="read-only", timeout_s=3600)
def wait_for_go() -> str:
    """Says ``busy``, then answers once the test drops ``go`` into the host's scratch dir."""
    open("busy", "w").close()
    while not os.path.exists("go"):
        time.sleep(0.02)
    os.remove("go")
    return "went"
'''


def _module(tmp_path: Path) -> Path:
    path = tmp_path / "chores.py"
    path.write_text(textwrap.dedent(TOOLS))
    return path


def _missed(kernel: Kernel) -> list[str]:
    return [str(r.body["member"]) for r in kernel.wal.read(kinds=["pod.missed"])]


def _host_pod(host: ToolHost) -> PodProcess:
    assert host.pod is not None
    return host.pod


def test_a_tool_host_beats_while_a_long_call_is_in_flight(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    clock = StepClock(1_000_000.0)

    async def go() -> None:
        kernel = await Kernel.boot(replace(config, clock=clock))
        adapter = await install_tools(kernel, [_module(tmp_path)], home=home, level=1)
        try:
            host = adapter.served()[0][0]
            dog = kernel.watchdog
            assert host.member.startswith("pod:tool/chores-")
            call = asyncio.create_task(host.call("wait_for_go", {}, 3600))
            # Twenty-five steps of forty periods (ten times the miss limit in all), each
            # answered by a beat of the host busy with its call: no miss is recorded.
            for _ in range(25):
                seen = dog.members[host.member].counter
                clock.now += 40 * dog.period_s
                await eventually(lambda n=seen: dog.members[host.member].counter > n, "a beat")
            assert clock.now - 1_000_000.0 > 8 * dog.pod_limit_s
            (_host_pod(host).workspace / "go").write_text("")
            assert await asyncio.wait_for(call, 120) == "went"
            assert dog.members[host.member].bad == 0
            assert _missed(kernel) == []
        finally:
            await adapter.aclose()
            await kernel.close()
        assert host.member not in kernel.watchdog.members  # closed: no longer watched

    asyncio.run(go())


def test_a_stopped_tool_host_is_recorded_missing_killed_and_the_next_call_runs_fresh(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    clock = StepClock(1_000_000.0)

    async def go() -> None:
        kernel = await Kernel.boot(replace(config, clock=clock))
        adapter = await install_tools(kernel, [_module(tmp_path)], home=home, level=1)
        try:
            host = adapter.served()[0][0]
            dog = kernel.watchdog
            await eventually(lambda: dog.members[host.member].counter >= 3, "beats arrive")
            first = _host_pod(host)
            call = asyncio.create_task(host.call("wait_for_go", {}, 3600))
            await eventually((first.workspace / "busy").exists, "the call runs in the host")
            os.killpg(first.pid, signal.SIGSTOP)
            await eventually(lambda: stopped(first.pid), "the host is stopped")

            def missing() -> bool:  # beats still queued may land after a step: step again
                clock.now += dog.pod_limit_s + 1
                return bool(_missed(kernel))

            await eventually(missing, "the stopped host recorded missing")
            with pytest.raises(EffectError) as failed:
                await asyncio.wait_for(call, 120)  # a regression fails, not hangs
            assert failed.value.code == "TOOL.HEARTBEAT.MISSED"
            await asyncio.wait_for(first.wait(), 120)
            assert first.signal == signal.SIGKILL  # killed, not left stopped
            assert await asyncio.wait_for(host.call("echo", {"text": "again"}, 60), 120) == "again"
            assert _host_pod(host) is not first
            await eventually(lambda: dog.members[host.member].counter >= 1, "the fresh host beats")
            assert _missed(kernel) == [host.member]
            pods = pods_from_log(kernel.wal)  # what maos status shows
            assert pods == {host.member.removeprefix("pod:"): {"state": "tool host", "missed": 1}}
        finally:
            await adapter.aclose()
            await kernel.close()

    asyncio.run(go())


def test_a_call_right_after_an_idle_host_was_recorded_missing_runs_in_a_fresh_host(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    clock = StepClock(1_000_000.0)

    async def go() -> None:
        kernel = await Kernel.boot(replace(config, clock=clock))
        adapter = await install_tools(kernel, [_module(tmp_path)], home=home, level=1)
        try:
            host = adapter.served()[0][0]
            dog = kernel.watchdog
            await eventually(lambda: dog.members[host.member].counter >= 3, "beats arrive")
            first = _host_pod(host)
            os.killpg(first.pid, signal.SIGSTOP)
            await eventually(lambda: stopped(first.pid), "the host is stopped")

            def missing() -> bool:
                clock.now += dog.pod_limit_s + 1
                return bool(_missed(kernel))

            await eventually(missing, "the stopped host recorded missing")
            # At once, before the watcher's next look: not sent to the stopped host.
            assert await asyncio.wait_for(host.call("echo", {"text": "fresh"}, 60), 120) == "fresh"
            assert _host_pod(host) is not first and first.signal == signal.SIGKILL
        finally:
            await adapter.aclose()
            await kernel.close()

    asyncio.run(go())


def test_a_host_started_before_the_kernel_beats_once_its_tools_are_registered(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    async def go() -> None:
        adapter = await start_tools([_module(tmp_path)], home=home, level=1)
        host = adapter.served()[0][0]
        before = _host_pod(host)
        kernel = await Kernel.boot(config)
        try:
            assert host.member not in kernel.watchdog.members  # no kernel to beat to then
            await register_tools(kernel, adapter)
            after = _host_pod(host)
            assert before.returncode is not None and after is not before
            dog = kernel.watchdog
            await eventually(lambda: dog.members[host.member].counter >= 3, "the new host beats")
            assert await asyncio.wait_for(host.call("echo", {"text": "hi"}, 60), 120) == "hi"
            assert _host_pod(host) is after and dog.members[host.member].bad == 0
        finally:
            await adapter.aclose()
            await kernel.close()

    asyncio.run(go())


def test_the_hosts_a_boot_starts_for_parked_calls_beat(
    tmp_path: Path, config: KernelConfig
) -> None:
    """A call parked for the Commander outlives its kernel; the kernel that boots next
    (`configured_kernel`, what `maos approvals approve` runs) starts its tool's host
    before it folds the approvals, and that host beats to it like any other."""
    from maos.agents import script
    from maos.boot import configured_kernel
    from maos.kernel.tokens import Grant

    module = tmp_path / "office_tools.py"
    module.write_bytes(script("office_tools").read_bytes())
    iban = "DE89370400440532013000"

    async def park() -> None:
        home = PodHome()
        try:
            async with await Kernel.boot(config, follow=False) as k:
                tools = await install_tools(k, [module], home=home, level=1)
                await k.register_agent("payer", ring=3, budgets={"money_cents": 10_000})
                await k.open_task("t1", budgets={"money_cents": 10_000}, effect_classes=["pay"])
                frame = {
                    "task_id": "t1",
                    "op": "tool.pay_invoice",
                    "target": iban,
                    "target_kinds": ["account"],
                    "token": k.mint("payer", "t1", [Grant("tool.pay_invoice", "*")]),
                    "idempotency_key": "pay-1",
                    "params": {
                        "args": {"iban": iban, "amount_cents": 500},
                        "manifest_sha256": k.registry.tools["pay_invoice"].manifest.manifest_sha256,
                    },
                    "cost": {"money_cents": 500, "api_calls": 1},
                }
                parked = await k.submit(frame, agent_id="payer")
                await tools.aclose()
                assert parked.approval_id is not None, parked
        finally:
            home.close()

    async def boot_again() -> None:
        async with configured_kernel(config.data_dir, follow=False) as k:
            dog = k.watchdog
            hosts = [m for m in dog.members if m.startswith("pod:tool/")]
            assert len(hosts) == 1, dog.members
            await eventually(lambda: dog.members[hosts[0]].counter >= 3, "the parked host beats")
            assert dog.members[hosts[0]].bad == 0

    asyncio.run(park())
    asyncio.run(boot_again())
