"""The Input Sanitizer and the kernel end of the channel, without a sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maos.pod import bootstrap
from maos.pod.channel import (
    MAX_FRAME,
    MAX_KERNEL_FRAME,
    ChannelClosed,
    ChannelViolation,
    PodChannel,
    channel_pair,
    decode_request,
)
from maos.pod.frames import BASE_OPS, FsPathArgs, Reply


def frame(**over: object) -> bytes:
    base: dict[str, object] = {"v": 1, "id": 1, "gw": "fs", "op": "read", "args": {"path": "a"}}
    base.update(over)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def code_of(data: bytes, expected_id: int = 1) -> str:
    with pytest.raises(ChannelViolation) as info:
        decode_request(data, expected_id=expected_id, ops=BASE_OPS)
    return info.value.code


def test_a_valid_frame_yields_its_op_model() -> None:
    req, args = decode_request(frame(cap="tok"), expected_id=1, ops=BASE_OPS)
    assert (req.gw, req.op, req.cap) == ("fs", "read", "tok")
    assert args == FsPathArgs(path="a")


def test_bootstrap_repeats_the_channel_caps() -> None:
    assert (bootstrap.MAX_FRAME, bootstrap.MAX_KERNEL_FRAME) == (MAX_FRAME, MAX_KERNEL_FRAME)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{" + b" " * MAX_FRAME + b"}", "POD.FRAME.TOO_LARGE"),
        (b"\xff\xfe", "POD.FRAME.MALFORMED"),
        (b"[1, 2]", "POD.FRAME.MALFORMED"),
        (
            b'{"v":1,"id":1,"gw":"fs","op":"read","args":{"path":"a"}} trailing',
            "POD.FRAME.MALFORMED",
        ),
        (frame(gw="kernel"), "POD.FRAME.UNKNOWN_GATEWAY"),
        (frame(gw=7), "POD.FRAME.MALFORMED"),
        (frame(v=2), "POD.FRAME.MALFORMED"),
        (frame(id="1"), "POD.FRAME.MALFORMED"),
        (frame(id=True), "POD.FRAME.MALFORMED"),
        (frame(id=1.0), "POD.FRAME.MALFORMED"),
        (frame(id=0), "POD.FRAME.MALFORMED"),
        (frame(id=2**53), "POD.FRAME.MALFORMED"),
        (frame(args=...), "POD.FRAME.MALFORMED"),
        (frame(args=[]), "POD.FRAME.MALFORMED"),
        (frame(agent_id="agent-root"), "POD.FRAME.MALFORMED"),
        (frame(op="Read"), "POD.FRAME.MALFORMED"),
        (frame(op="write"), "POD.FRAME.MALFORMED"),
        (frame(op="format"), "POD.FRAME.UNKNOWN_OP"),
        (frame(args={"path": "a", "agent_id": "agent-root"}), "POD.FRAME.MALFORMED"),
        (frame(args={"path": 1}), "POD.FRAME.MALFORMED"),
        (frame(cap=12), "POD.FRAME.MALFORMED"),
        (
            frame(args={"path": "x"}).replace(b'"x"', b"[" * 1000 + b"]" * 1000),
            "POD.FRAME.MALFORMED",
        ),
        (b"[" * 5000 + b"]" * 5000, "POD.FRAME.MALFORMED"),
    ],
)
def test_the_sanitizer_refuses(data: bytes, code: str) -> None:
    assert code_of(data) == code


def test_ids_must_be_exactly_the_next_one() -> None:
    assert code_of(frame(id=3), expected_id=4) == "POD.FRAME.REPLAY"
    assert code_of(frame(id=5), expected_id=4) == "POD.FRAME.SEQUENCE_GAP"


def test_violation_details_never_echo_the_pods_values() -> None:
    with pytest.raises(ChannelViolation) as info:
        decode_request(frame(args={"path": 1, "x": "SECRET"}), expected_id=1, ops=BASE_OPS)
    assert "SECRET" not in repr(info.value.to_dict())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_violations(data: bytes) -> None:
    with contextlib.suppress(ChannelViolation):
        decode_request(data, expected_id=1, ops=BASE_OPS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": json_values,
            "id": st.integers(-2, 3) | json_values,
            "gw": st.sampled_from(["fs", "api", "admin", "x"]) | json_values,
            "op": st.sampled_from(["read", "request", "heartbeat"]) | json_values,
            "args": st.dictionaries(st.sampled_from(["path", "content", "url"]), json_values),
            "cap": json_values,
        },
    )
)
def test_arbitrary_objects_are_accepted_or_refused_never_crash(obj: dict[str, object]) -> None:
    try:
        req, _ = decode_request(json.dumps(obj).encode(), expected_id=1, ops=BASE_OPS)
    except ChannelViolation:
        return
    assert req.id == 1 and req.v == 1


async def _pair(agent_id: str = "agent-a") -> tuple[PodChannel, socket.socket, list[str]]:
    kernel_end, pod_end = channel_pair()
    seen: list[str] = []
    chan = PodChannel(
        kernel_end, agent_id, ops=BASE_OPS, on_violation=lambda v: seen.append(v.code)
    )
    return chan, pod_end, seen


def test_recv_binds_the_channels_identity_and_send_replies() -> None:
    async def main() -> None:
        chan, pod_end, _ = await _pair("agent-a")
        pod_end.send(frame(cap="token-of-agent-b"))
        got = await chan.recv()
        assert (got.agent_id, got.id, got.cap) == ("agent-a", 1, "token-of-agent-b")
        await chan.send(Reply(id=1, ok=True, result={"n": 1}))
        assert orjson.loads(pod_end.recv(MAX_KERNEL_FRAME))["result"] == {"n": 1}
        pod_end.close()
        with pytest.raises(ChannelClosed):
            await chan.recv()
        chan.close()

    asyncio.run(main())


def test_the_first_violation_poisons_the_channel_and_is_reported_once() -> None:
    async def main() -> None:
        chan, pod_end, seen = await _pair()
        pod_end.send(b"nope")
        pod_end.send(frame())
        for _ in range(2):
            with pytest.raises(ChannelViolation):
                await chan.recv()
        assert seen == ["POD.FRAME.MALFORMED"]
        pod_end.close()
        chan.close()

    asyncio.run(main())


def test_closing_wakes_a_pending_recv() -> None:
    async def main() -> None:
        chan, pod_end, _ = await _pair()
        waiter = asyncio.create_task(chan.recv())
        await asyncio.sleep(0)
        chan.close()
        with pytest.raises(ChannelClosed):
            await waiter
        pod_end.close()

    asyncio.run(main())


def test_the_largest_allowed_frame_fits_through_the_socket() -> None:
    async def main() -> None:
        chan, pod_end, _ = await _pair()
        pad = "x" * (MAX_FRAME - len(frame(args={"path": ""})))
        data = frame(args={"path": "a"}, op="list").replace(b'"a"', orjson.dumps(pad[:4000]))
        pod_end.send(data)
        assert (await chan.recv()).op == "list"
        pod_end.send(b"{" + b" " * MAX_FRAME + b"}")
        with pytest.raises(ChannelViolation) as info:
            await chan.recv()
        assert info.value.code == "POD.FRAME.TOO_LARGE"
        pod_end.close()
        chan.close()

    asyncio.run(main())
