"""Issue 9: frames that say two things, or nothing, and pods that cut their channel.

A zero-length record read like the end of the stream, so a pod could stop its own
supervision with ``b""`` and run on; a key given twice let the last value win. These run
the channel on a real SEQPACKET pair and the rest in real level-2 pods.
"""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap
from pathlib import Path

import pytest

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.wal import Wal
from maos.pod.channel import ChannelClosed, ChannelViolation, PodChannel, decode_request
from maos.pod.frames import BASE_OPS
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodRuntime

HEARTBEAT = b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{}}'


@pytest.mark.parametrize(
    "data",
    [
        b'{"v":1,"id":1,"gw":"fs","op":"read","args":{"path":"a"},"args":{"path":"../b"}}',
        b'{"v":1,"id":1,"gw":"fs","op":"read","args":{"path":"a","path":"../b"}}',
        b'{"v":1, "id":1, "gw":"fs", "gw":"fs", "op":"read", "args":{"path":"a"}}',
    ],
)
def test_issue9_a_key_given_twice_in_a_frame_is_a_violation(data: bytes) -> None:
    with pytest.raises(ChannelViolation) as info:
        decode_request(data, expected_id=1, ops=BASE_OPS)
    assert info.value.code == "BAD_INPUT.DUPLICATE_KEY"


def test_issue9_the_same_frame_without_the_duplicate_passes() -> None:
    req, _ = decode_request(
        b'{"v": 1, "id": 1, "gw": "fs", "op": "read", "args": {"path": "\\u00e9"}}',
        expected_id=1,
        ops=BASE_OPS,
    )
    assert req.op == "read"


async def _pair() -> tuple[PodChannel, socket.socket, list[str]]:
    kernel_end, pod_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    seen: list[str] = []
    chan = PodChannel(kernel_end, "a1", ops=BASE_OPS, on_violation=lambda v: seen.append(v.code))
    return chan, pod_end, seen


def test_issue9_an_empty_record_is_a_violation_not_the_end_of_the_channel() -> None:
    async def main() -> None:
        chan, pod_end, seen = await _pair()
        pod_end.send(b"")
        pod_end.send(HEARTBEAT)
        with pytest.raises(ChannelViolation) as info:
            await chan.recv()
        assert info.value.code == "POD.FRAME.EMPTY" and seen == ["POD.FRAME.EMPTY"]
        pod_end.close()
        chan.close()

    asyncio.run(main())


@pytest.mark.parametrize("how", ["close", "shutdown"])
def test_issue9_a_pod_that_really_ends_its_channel_is_closed(how: str) -> None:
    async def main() -> None:
        chan, pod_end, seen = await _pair()
        pod_end.send(HEARTBEAT)
        assert (await chan.recv()).op == "heartbeat"
        if how == "close":
            pod_end.close()
        else:
            pod_end.shutdown(socket.SHUT_WR)
        with pytest.raises(ChannelClosed):
            await chan.recv()
        assert seen == []
        chan.close()
        if how == "shutdown":
            pod_end.close()

    asyncio.run(main())


# -- in real pods ----------------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="models production: the kernel runs as root, pods as nobody"
)


def _agent(tmp_path: Path, first_attempt: str) -> Path:
    path = tmp_path / "rogue.py"
    path.write_text(
        textwrap.dedent(
            """
            import os, socket, time
            import maos_pod_client as pod
            from maos import sdk

            if os.environ["MAOS_ATTEMPT"] == "1":
            {first}
            sdk.admin.heartbeat()
            print("second attempt done")
            """
        ).format(first=textwrap.indent(textwrap.dedent(first_attempt), "    "))
    )
    return path


def _run(
    config: KernelConfig, home: PodHome, agent: Path
) -> tuple[object, list[dict[str, object]]]:
    async def go() -> object:
        kernel = await Kernel.boot(config)
        try:
            await kernel.register_agent("rogue", ring=3)
            await kernel.open_task("t1")
            token = kernel.mint("rogue", "t1", [Grant("admin.*", "*")])
            async with PodRuntime(kernel, level=2, home=home) as runtime:
                # Today's code never returns here: bounded, so a regression fails, not hangs.
                return await asyncio.wait_for(
                    runtime.run("rogue", agent, task_id="t1", token=token), 60
                )
        finally:
            await kernel.close()

    ended = asyncio.run(go())
    with Wal(config.wal_path) as wal:
        records = [dict(r.body, kind=r.kind) for r in wal.read() if r.kind.startswith("pod.")]
    return ended, records


@needs_root
def test_issue9_an_empty_frame_from_a_pod_kills_and_restarts_it_and_the_run_goes_on(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    agent = _agent(
        tmp_path,
        """
        pod.send_raw(b"")
        pod.send_raw(b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{}}')
        pod.recv_raw()
        time.sleep(600)
        """,
    )
    ended, records = _run(config, home, agent)
    assert (ended.reason, ended.exit_code, ended.restarts) == ("exited", 0, 1)  # type: ignore[attr-defined]
    violations = [r for r in records if r["kind"] == "pod.violation"]
    assert [v["code"] for v in violations] == ["POD.FRAME.EMPTY"]
    assert [r["after"] for r in records if r["kind"] == "pod.restarted"] == ["POD.FRAME.EMPTY"]


@needs_root
def test_issue9_a_pod_that_shuts_its_channel_and_runs_on_is_killed_and_restarted(
    tmp_path: Path, config: KernelConfig, home: PodHome
) -> None:
    agent = _agent(
        tmp_path,
        """
        socket.socket(fileno=os.dup(pod.fileno)).shutdown(socket.SHUT_RDWR)
        time.sleep(600)  # unsupervised, if the kernel let it
        """,
    )
    ended, records = _run(config, home, agent)
    assert (ended.reason, ended.exit_code, ended.restarts) == ("exited", 0, 1)  # type: ignore[attr-defined]
    violations = [r for r in records if r["kind"] == "pod.violation"]
    assert [v["code"] for v in violations] == ["POD.CHANNEL.ABANDONED"]
