"""Pods heartbeat to the Watchdog (issue 12 item 6), with real pods on a real kernel.

A running pod's bootstrap beats every ``resilience.heartbeat_s`` over its own channel,
and the channel reads all the time, so beats arrive while a long request (an approval
wait) is in flight. Beats are authenticated (a forged or replayed one is refused and
counted) and never logged. A pod that really stops (SIGSTOP, not the freezer) is recorded
missing and restarted - not as a violation, so its agent's danger is untouched - while a
hard-isolated (frozen) pod is never restarted for its silence. Timers run on the
kernel's injectable clock: nothing here waits on, or asserts, wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import textwrap
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.cascade import release_order, stage_order
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.stages import Stage
from maos.kernel.tokens import Grant
from maos.kernel.wal import Wal, WalRecord
from maos.pod.channel import (
    BEAT_BURST,
    ChannelViolation,
    PodChannel,
    channel_pair,
    decode_frame,
    decode_request,
)
from maos.pod.frames import BASE_OPS, BeatFrame
from maos.pod.isolation import PodHome
from maos.pod.runtime import HEARTBEAT_MISSED, PodEvent, PodRuntime
from maos.services.danger import signal_of
from maos.testing import Mailbox, StepClock, eventually, stopped

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="models production: the kernel runs as root, pods as nobody"
)
TASK = "t1"
GRANTS = [Grant("fs.read", "*"), Grant("fs.write", "*"), Grant("admin.*", "*")]
MAC = "ab" * 32


def _script(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(textwrap.dedent(code))
    return path


def _boot(config: KernelConfig, body: Callable[[Kernel], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        kernel = await Kernel.boot(config)
        try:
            return await body(kernel)
        finally:
            await kernel.close()

    return asyncio.run(go())


def _records(config: KernelConfig) -> list[WalRecord]:
    with Wal(config.wal_path) as wal:
        return list(wal.read())


# -- the beat frame, without a pod ---------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b'{"v":1,"beat":0,"mac":"' + MAC.encode() + b'"}',  # beats count from 1
        b'{"v":1,"beat":"1","mac":"' + MAC.encode() + b'"}',  # strict: no coercion
        b'{"v":1,"beat":1,"mac":"' + MAC.upper().encode() + b'"}',
        b'{"v":1,"beat":1,"mac":"abc"}',
        b'{"v":2,"beat":1,"mac":"' + MAC.encode() + b'"}',
        b'{"v":1,"beat":1,"mac":"' + MAC.encode() + b'","id":1}',  # nothing else rides along
        b'{"v":1,"beat":1,"beat":2,"mac":"' + MAC.encode() + b'"}',
    ],
)
def test_a_beat_frame_is_exactly_a_beat_or_a_violation(frame: bytes) -> None:
    with pytest.raises(ChannelViolation):
        decode_frame(frame, expected_id=1, ops=BASE_OPS)


def test_a_beat_is_a_beat_only_on_a_channel_that_expects_beats() -> None:
    good = b'{"v":1,"beat":7,"mac":"' + MAC.encode() + b'"}'
    assert decode_frame(good, expected_id=1, ops=BASE_OPS) == BeatFrame(v=1, beat=7, mac=MAC)
    with pytest.raises(ChannelViolation) as info:
        decode_request(good, expected_id=1, ops=BASE_OPS)
    assert info.value.code == "POD.FRAME.MALFORMED"


def _beat(n: int) -> bytes:
    return b'{"v":1,"beat":%d,"mac":"%s"}' % (n, MAC.encode())


def test_the_channel_takes_beats_while_a_request_waits_unread() -> None:
    async def main() -> None:
        kernel_end, pod_end = channel_pair()
        beats: list[int] = []
        chan = PodChannel(kernel_end, "a1", ops=BASE_OPS, on_beat=lambda n, _: beats.append(n))
        pod_end.send(b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{}}')
        assert (await chan.recv()).op == "heartbeat"  # served meanwhile: no recv now
        for n in (1, 2, 3):
            pod_end.send(_beat(n))
        await eventually(lambda: beats == [1, 2, 3], "beats read with no recv pending")
        pod_end.close()
        chan.close()

    asyncio.run(main())


def test_every_beat_queued_while_the_kernel_stalled_is_no_flood() -> None:
    async def main() -> None:
        kernel_end, pod_end = channel_pair()
        seen: list[str] = []
        taken: list[int] = []
        pod_end.setblocking(False)
        n = 0
        with contextlib.suppress(BlockingIOError):  # as many as the channel holds
            while True:
                pod_end.send(_beat(n + 1))
                n += 1
        chan = PodChannel(
            kernel_end,
            "a1",
            ops=BASE_OPS,
            on_violation=lambda v: seen.append(v.code),
            on_beat=lambda b, _: taken.append(b),
        )
        request = asyncio.create_task(chan.recv())  # the reader starts: room again
        await eventually(lambda: taken or seen, "the reader runs")
        pod_end.setblocking(True)
        await asyncio.to_thread(
            pod_end.send, b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{}}'
        )
        assert (await asyncio.wait_for(request, 60)).op == "heartbeat"
        assert (len(taken), seen) == (n, []) and n > 1000
        pod_end.close()
        chan.close()

    asyncio.run(main())


def test_a_flood_of_beats_is_a_violation() -> None:
    async def main() -> None:
        kernel_end, pod_end = channel_pair()
        seen: list[str] = []
        taken: list[int] = []
        chan = PodChannel(
            kernel_end,
            "a1",
            ops=BASE_OPS,
            on_violation=lambda v: seen.append(v.code),
            on_beat=lambda n, _: taken.append(n),
        )

        def flood() -> None:
            try:
                for n in range(1, 20 * BEAT_BURST):
                    pod_end.send(_beat(n))
            except OSError:
                return  # the kernel closed its end

        sender = threading.Thread(target=flood)
        sender.start()
        with pytest.raises(ChannelViolation) as info:
            await asyncio.wait_for(chan.recv(), 60)  # a regression fails, not hangs
        chan.close()
        await asyncio.to_thread(sender.join)
        pod_end.close()
        assert info.value.code == "POD.FRAME.BEAT_FLOOD" and seen == [info.value.code]
        assert BEAT_BURST <= len(taken) < 2 * BEAT_BURST

    asyncio.run(main())


# -- in real pods ----------------------------------------------------------------------------


@needs_root
def test_beats_reach_the_watchdog_while_a_long_request_is_in_flight_and_are_never_logged(
    tmp_path: Path, config: KernelConfig, mailbox: Mailbox, home: PodHome
) -> None:
    agent = _script(
        tmp_path,
        """
        from maos import sdk

        try:
            sdk.email.send("stranger@example.net", "hello", "from the agent")
        except sdk.PendingApproval as parked:
            print("parked", parked.wait().value is not None, flush=True)  # one long request
        """,
    )
    member = "pod:worker"
    seen: dict[str, int] = {}

    async def body(kernel: Kernel) -> None:
        await kernel.register_agent("worker", ring=3)
        await kernel.open_task(TASK)
        token = kernel.mint("worker", TASK, [Grant("email.send", "*"), Grant("admin.*", "*")])
        dog = kernel.watchdog
        approved: list[asyncio.Task[None]] = []

        async def approve_after_beats(approval_id: str) -> None:
            # Parked: the agent's next request is admin.wait, answered only once this
            # approves. Twenty beats (two seconds at 100 ms) must arrive meanwhile.
            await eventually(
                lambda: dog.members[member].counter >= seen["parked_at"] + 20,
                "twenty beats while the agent waits for its approval",
            )
            seen["beats_in_wait"] = dog.members[member].counter - seen["parked_at"]
            seen["bad"] = dog.members[member].bad
            await kernel.approve(approval_id, kernel.packet(approval_id).digest)

        def commander(event: PodEvent) -> None:
            if event.status == "pending" and event.approval_id is not None:
                seen["parked_at"] = dog.members[member].counter
                approved.append(asyncio.create_task(approve_after_beats(event.approval_id)))

        async with PodRuntime(kernel, home=home, on_event=commander) as runtime:
            run = await runtime.start("worker", agent, task_id=TASK, token=token)
            ended = await asyncio.wait_for(run.wait(), 120)  # a regression fails, not hangs
            output = run.log()
        await asyncio.gather(*approved)
        assert (ended.reason, ended.exit_code, ended.restarts) == ("exited", 0, 0), output
        assert "parked True" in output
        assert member not in dog.members  # it ended on purpose: no longer watched

    _boot(config, body)
    assert seen["beats_in_wait"] >= 20 and seen["bad"] == 0
    records = _records(config)
    assert not [r for r in records if "beat" in r.kind or r.kind.endswith(".missed")]
    assert not [r for r in records if member in str(r.body)]  # no beat, no member, no key


@needs_root
def test_a_forged_or_replayed_beat_is_refused_and_counted_and_the_pod_runs_on(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    # The key is in the pod's own memory (the agent shares the bootstrap's process): it
    # can only beat as itself, and a beat it already sent is refused as a replay.
    agent = _script(
        tmp_path,
        """
        import gc, hashlib, hmac
        import maos_pod_client as pod
        from maos import sdk

        beat = next(
            o["heartbeat"] for o in gc.get_objects()
            if isinstance(o, dict) and isinstance(o.get("heartbeat"), dict)  # the launch frame
        )
        key, member = bytes.fromhex(beat["key"]), beat["member"]
        replay = hmac.new(key, f"{member}:1".encode(), hashlib.sha256).hexdigest()
        pod.send_raw(b'{"v":1,"beat":999999,"mac":"' + b"0" * 64 + b'"}')  # forged
        pod.send_raw(b'{"v":1,"beat":1,"mac":"' + replay.encode() + b'"}')  # replayed
        sdk.admin.heartbeat()  # a round trip: both beats were read before its reply
        print("still here", flush=True)
        """,
    )
    counted: list[int] = []

    async def body(kernel: Kernel) -> None:
        await kernel.register_agent("forger", ring=3)
        await kernel.open_task(TASK)
        token = kernel.mint("forger", TASK, GRANTS)

        def look(event: PodEvent) -> None:
            if event.op == "admin.heartbeat":
                counted.append(kernel.watchdog.members["pod:forger"].bad)

        async with PodRuntime(kernel, home=home, on_event=look) as runtime:
            run = await runtime.start("forger", agent, task_id=TASK, token=token)
            ended = await asyncio.wait_for(run.wait(), 120)  # a regression fails, not hangs
            output = run.log()
        assert (ended.reason, ended.exit_code, ended.restarts) == ("exited", 0, 0), output
        assert "still here" in output

    _boot(config, body)
    assert counted == [2]
    assert not [r for r in _records(config) if r.kind == "pod.violation"]


@needs_root
def test_a_pod_that_floods_beats_is_killed_as_a_violation(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    agent = _script(
        tmp_path,
        """
        import os
        import maos_pod_client as pod

        if os.environ["MAOS_ATTEMPT"] == "1":
            n = 10**6
            while True:  # forged or not, each beat costs the kernel a parse and an HMAC
                n += 1
                pod.send_raw(b'{"v":1,"beat":%d,"mac":"%s"}' % (n, b"0" * 64))
        print("calm again", flush=True)
        """,
    )

    async def body(kernel: Kernel) -> Any:
        await kernel.register_agent("flooder", ring=3)
        await kernel.open_task(TASK)
        token = kernel.mint("flooder", TASK, GRANTS)
        async with PodRuntime(kernel, home=home) as runtime:
            return await asyncio.wait_for(
                runtime.run("flooder", agent, task_id=TASK, token=token), 120
            )

    ended = _boot(config, body)
    assert (ended.reason, ended.restarts) == ("exited", 1)
    assert [v.code for v in ended.violations] == ["POD.FRAME.BEAT_FLOOD"]


@needs_root
def test_a_stopped_pod_is_recorded_missing_and_restarted_without_a_danger_signal(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    # Ring 2 runs at level 1: the pod's process group is the agent's interpreter, so
    # SIGSTOP reaches it directly (not through the freezer: the Watchdog must not
    # think it is frozen on purpose).
    agent = _script(
        tmp_path,
        """
        import os, time
        from maos import sdk

        attempt = os.environ["MAOS_ATTEMPT"]
        sdk.fs.write(f"attempt-{attempt}.txt", attempt)
        if attempt == "1":
            time.sleep(3600)  # stopped and killed long before
        print("attempt", attempt, "done", flush=True)
        """,
    )
    clock = StepClock(1_000_000.0)
    config = replace(config, clock=clock)

    async def body(kernel: Kernel) -> None:
        await kernel.register_agent("slow", ring=2)
        await kernel.open_task(TASK)
        token = kernel.mint("slow", TASK, GRANTS)
        dog = kernel.watchdog
        runtime = PodRuntime(kernel, home=home)
        try:
            run = await runtime.start("slow", agent, task_id=TASK, token=token)
            assert run.level == 1
            first = (config.workspaces / TASK / "attempt-1.txt").exists
            await eventually(first, "the first attempt wrote its file")
            await eventually(lambda: dog.members["pod:slow"].counter >= 3, "beats arrive")
            assert run.pod is not None
            pid = run.pod.pid
            os.killpg(pid, signal.SIGSTOP)
            await eventually(lambda: stopped(pid), "the pod is stopped")

            def missing() -> bool:  # beats still queued may land after a step: step again
                clock.now += dog.pod_limit_s + 1
                return any(r.kind == "pod.missed" for r in kernel.wal.read(kinds=["pod.missed"]))

            await eventually(missing, "the stopped pod recorded missing")
            ended = await asyncio.wait_for(run.wait(), 120)  # a regression fails, not hangs
        finally:
            await runtime.close()
        assert (ended.reason, ended.restarts, ended.violations) == ("exited", 1, ())
        assert "attempt 2 done" in run.log()
        agent_now = kernel.registry.agent("slow")
        assert (agent_now.status.value, agent_now.danger) == ("active", 0.0)

    _boot(config, body)
    records = _records(config)
    missed = [r.body for r in records if r.kind == "pod.missed"]
    assert [m["member"] for m in missed] == ["pod:slow"]
    restarted = [r.body for r in records if r.kind == "pod.restarted"]
    assert restarted == [{"agent_id": "slow", "attempt": 2, "level": 1, "after": HEARTBEAT_MISSED}]
    assert not [r for r in records if r.kind == "pod.violation"]
    assert [s for s in map(signal_of, records) if s is not None and s.agent_id == "slow"] == []
    status = CliRunner().invoke(app, ["status", "--json", "-d", str(config.data_dir)])
    assert json.loads(status.output)["pods"] == {"slow": {"state": "exited", "missed": 1}}
    text = CliRunner().invoke(app, ["status", "-d", str(config.data_dir)]).output
    assert "pods          1 exited; heartbeats missed: slow (1)" in text


@needs_root
def test_a_frozen_pod_is_never_restarted_for_its_silence(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    # Hard isolation freezes the pod (cgroup freezer or SIGSTOP of its processes, the
    # runtime's own doing): silent by design, so no miss and no restart, however long.
    agent = _script(
        tmp_path,
        """
        import os, time
        from maos import sdk

        sdk.fs.write("up.txt", os.environ["MAOS_ATTEMPT"])
        while not os.path.exists("go"):  # the test drops it in the pod's own scratch dir
            time.sleep(0.02)
        print("resumed", flush=True)
        """,
    )
    clock = StepClock(1_000_000.0)
    config = replace(config, clock=clock)

    async def body(kernel: Kernel) -> None:
        await kernel.register_agent("held", ring=3)
        await kernel.open_task(TASK)
        token = kernel.mint("held", TASK, GRANTS)
        dog = kernel.watchdog
        runtime = PodRuntime(kernel, home=home)
        try:
            run = await runtime.start("held", agent, task_id=TASK, token=token)
            await eventually((config.workspaces / TASK / "up.txt").exists, "the agent is up")
            await eventually(lambda: dog.members["pod:held"].counter >= 3, "beats arrive")
            hard = stage_order(
                kernel.registry,
                "held",
                Stage.HARD_ISOLATION,
                cause="t",
                principal="commander",
                at=clock(),
            )
            await kernel.cascade(hard)
            await eventually(lambda: run.frozen, "the pod is frozen")
            pod = run.pod
            assert pod is not None
            probe = "service:probe"  # never beats: its miss proves a sweep ran after the step
            dog.enrol(probe)
            clock.now += max(dog.pod_limit_s, dog.grace_s) * 10
            await eventually(lambda: dog.members[probe].missed, "a sweep after the step")
            dog.leave(probe)
            assert pod.returncode is None and run.pod is pod and run.restarts == 0
            at_freeze = dog.members["pod:held"].counter
            await kernel.cascade(
                release_order(
                    kernel.registry, "held", Stage.OBSERVATION, principal="commander", at=clock()
                )
            )
            await eventually(lambda: not run.frozen, "the pod is thawed")
            await eventually(lambda: dog.members["pod:held"].counter > at_freeze, "it beats again")
            (pod.workspace / "go").write_text("")
            ended = await asyncio.wait_for(run.wait(), 120)  # a regression fails, not hangs
        finally:
            await runtime.close()
        assert (ended.reason, ended.restarts) == ("exited", 0), run.log()
        assert "resumed" in run.log()

    _boot(config, body)
    kinds = [r.kind for r in _records(config)]
    assert "pod.frozen" in kinds and "pod.thawed" in kinds
    assert "pod.missed" not in kinds and "pod.restarted" not in kinds
