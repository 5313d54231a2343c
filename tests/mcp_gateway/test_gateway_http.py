"""The MCP gateway over streamable HTTP, in front of an upstream that is itself reached over
HTTP, driven by the SDK's client in both protocol generations (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gwtest import SRC, UPSTREAMS, Setup, text
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def http_gateway(setup: Setup) -> Iterator[tuple[str, str]]:
    """The mail upstream over HTTP, and the gateway over HTTP in front of it."""
    upstream_port, gateway_port = _free_port(), _free_port()
    mail = subprocess.Popen(
        [sys.executable, str(UPSTREAMS), "mail", "--http", str(upstream_port)],
        env={"RECORD": str(setup.record("mail")), "PYTHONPATH": ":".join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    setup.write(upstreams={"mail": {"url": f"http://127.0.0.1:{upstream_port}/mcp"}})
    setup.write(tools={"mail": {"send_mail": {"effect": "send", "targets": {"to": "recipient"}}}})
    gateway = subprocess.Popen(
        setup.gateway_command("--http", f"127.0.0.1:{gateway_port}"),
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(upstream_port, mail)
        _wait_port(gateway_port, gateway)
        token = (setup.data_dir / "mcp-gateway.token").read_text().strip()
        yield f"http://127.0.0.1:{gateway_port}/mcp", token
    finally:
        for proc in (gateway, mail):
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_issue_13_http_gateway_mediates_calls_in_both_generations(
    setup: Setup, http_gateway: tuple[str, str], mode: str
) -> None:
    url, token = http_gateway

    async def go() -> tuple[str, Any, Any]:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        transport = streamable_http_client(url, http_client=http)
        async with http, Client(transport, mode=mode) as client:
            sent = await client.call_tool(
                "send_mail", {"to": "boss@example.com", "subject": "s", "body": "b"}
            )
            refused = await client.call_tool("delete_mail", {"subject": "s"})
            return client.protocol_version, sent, refused

    version, sent, refused = asyncio.run(go())
    assert version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    assert not sent.is_error and text(sent) == "sent to boss@example.com"
    assert refused.is_error and "MCP.TOOL.UNDECLARED" in text(refused)
    assert [c["tool"] for c in setup.calls("mail")] == ["send_mail"]


def test_issue_13_http_gateway_wants_its_bearer_token(
    setup: Setup, http_gateway: tuple[str, str]
) -> None:
    url, token = http_gateway
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        answer = httpx.post(url, json=body, headers=auth, timeout=30)
        assert answer.status_code == 401, auth
        assert "MCP.AUTH.TOKEN" in answer.text
    assert (setup.data_dir / "mcp-gateway.token").stat().st_mode & 0o777 == 0o600
    assert setup.calls("mail") == []


def test_issue_13_http_gateway_answers_malformed_and_oversized_bodies(
    setup: Setup, http_gateway: tuple[str, str]
) -> None:
    url, token = http_gateway
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    bodies = {
        "MCP.BAD_MESSAGE.JSON": b"this is not json",
        "MCP.BAD_MESSAGE.SHAPE": b'{"jsonrpc": "2.0", "id": 7, "method": 5}',
        "MCP.BAD_MESSAGE.TOO_LARGE": b'{"jsonrpc": "2.0", "id": 8, "method": "tools/list", '
        b'"params": {"pad": "' + b"a" * (5 * 1024 * 1024) + b'"}}',
    }
    for code, body in bodies.items():
        answer = httpx.post(url, content=body, headers=headers, timeout=60)
        assert answer.status_code in (400, 413), (code, answer.status_code)
        assert answer.json()["error"]["message"].startswith(code + ":"), answer.text[:300]

    async def still_serves() -> Any:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        transport = streamable_http_client(url, http_client=http)
        async with http, Client(transport, mode="legacy") as client:
            return await client.call_tool(
                "send_mail", {"to": "boss@example.com", "subject": "s", "body": "after"}
            )

    after = asyncio.run(still_serves())
    assert not after.is_error and text(after) == "sent to boss@example.com"
    assert [c["args"]["body"] for c in setup.calls("mail")] == ["after"]
