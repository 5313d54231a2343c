"""Bad input through the gateway, with real processes (issue 13): an upstream killed with
SIGKILL mid-call, one that floods notifications or output, a client sending oversized
messages. Each gets a clear MCP error with a MAOS code, the gateway goes on, and the log
verifies with every prepared intent decided."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml
from gwtest import SRC, UPSTREAMS, Setup, assert_log_whole, text


def _server_pids(setup: Setup, kind: str) -> list[int]:
    """Host pids of this test's sandboxed server ``kind`` (its interpreter, not bwrap)."""
    found = []
    mine = f"RECORD={setup.record(kind)}".encode()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [str(UPSTREAMS).encode(), kind.encode()] and mine in env:
            found.append(int(entry.name))
    return found


def _declare(setup: Setup, **tools: dict[str, Any]) -> None:
    raw = yaml.safe_load(setup.policy.read_text())
    raw["tools"]["files"].update(tools)
    setup.policy.write_text(yaml.safe_dump(raw))


def test_issue_13_upstream_killed_mid_call_is_a_clear_error_and_comes_back(
    setup: Setup,
) -> None:
    _declare(setup, slow={"effect": "read", "timeout_s": 120})

    async def go() -> tuple[Any, Any, list[int]]:
        async with setup.client() as client:
            call = asyncio.create_task(client.call_tool("slow", {"seconds": 90}))
            while not setup.calls("files", "slow"):  # the call reached the server
                assert not call.done(), call
                await asyncio.sleep(0.05)
            pids = _server_pids(setup, "files")
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed = await call
            after = await client.call_tool("read_file", {"path": "/srv/reports/q3"})
            return killed, after, pids

    killed, after, pids = asyncio.run(go())
    assert len(pids) == 1  # control: the server really ran, and it alone was killed
    assert killed.is_error and text(killed).startswith("failed MCP.UPSTREAM.DIED:"), text(killed)
    assert killed.meta["maos"]["code"] == "MCP.UPSTREAM.DIED"
    assert not after.is_error and text(after) == "contents of /srv/reports/q3"
    assert len(setup.starts("files")) == 2  # a fresh server for the next call
    assert_log_whole(setup)


def test_issue_13_flooding_upstream_neither_stalls_nor_breaks_the_gateway(
    setup: Setup,
) -> None:
    _declare(setup, chatter={"effect": "read", "timeout_s": 120})

    async def go() -> tuple[Any, Any, Any]:
        async with setup.client() as client:
            chatty = await client.call_tool("chatter", {"count": 2000})
            huge = await client.call_tool("flood", {"size": 8_000_000})
            after = await client.call_tool("read_file", {"path": "/srv/reports/q3"})
            return chatty, huge, after

    chatty, huge, after = asyncio.run(go())
    assert not chatty.is_error and text(chatty) == "chattered 2000"
    assert huge.is_error and huge.meta["maos"]["code"] == "MCP.UPSTREAM.TOO_LARGE"
    assert "over 4096" in text(huge)
    assert not after.is_error
    assert_log_whole(setup)


def test_issue_13_oversized_and_malformed_stdio_messages_are_answered(setup: Setup) -> None:
    """Raw JSON-RPC lines on the gateway's stdin, as a broken client would send them."""
    proc = subprocess.Popen(
        setup.gateway_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def send(message: Any) -> None:
        assert proc.stdin is not None
        proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        proc.stdin.flush()

    def answer() -> dict[str, Any]:
        assert proc.stdout is not None
        got: dict[str, Any] = json.loads(proc.stdout.readline())
        return got

    call = {"jsonrpc": "2.0", "method": "tools/call"}
    try:
        send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            }
        )
        assert answer()["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        big = {"path": "/srv/reports/" + "a" * 6_000_000}
        send({**call, "id": 2, "params": {"name": "read_file", "arguments": big}})
        oversized = answer()
        send({**call, "id": 3, "params": {"name": "read_file", "arguments": "not an object"}})
        wrong = answer()
        send('{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": ')
        broken = answer()
        fine = {"name": "read_file", "arguments": {"path": "/srv/reports/a"}}
        send({**call, "id": 5, "params": fine})
        good = answer()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert oversized["id"] == 2 and oversized["result"]["isError"], oversized
    refusal = oversized["result"]["content"][0]["text"]
    assert refusal.startswith("refused "), refusal[:300]
    assert wrong["id"] == 3 and wrong["error"]["message"].startswith("MCP.BAD_MESSAGE.PARAMS: ")
    assert broken["id"] is None and broken["error"]["message"].startswith("MCP.BAD_MESSAGE.JSON:")
    assert good["id"] == 5 and not good["result"]["isError"], good
    assert [c["args"]["path"] for c in setup.calls("files", "read_file")] == ["/srv/reports/a"]
    assert proc.returncode == 0
    assert_log_whole(setup)
