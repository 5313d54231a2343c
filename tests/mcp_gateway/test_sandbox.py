"""Upstream servers behind the gateway run as level-2 pods: only the network and the
environment their policy names, and their secrets never reach the client (issue 13)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gwtest import Setup, text
from test_gateway_stdio import kinds

from maos.pod.isolation import detect

pytestmark = pytest.mark.skipif(not detect(2).available, reason=detect(2).reason)

KEY = "sk-live-4f1c9a7e2b"


def _listener(greeting: bytes) -> tuple[socket.socket, int]:
    """A real TCP listener on the host's loopback answering each connection."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(greeting)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    inside, allowed = _listener(b"hi")
    outside, refused = _listener(b"no")
    yield allowed, refused
    inside.close()
    outside.close()


def _reach(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        return conn.recv(2)


def _with_fetch_tools(setup: Setup, **fetch: Any) -> None:
    raw = yaml.safe_load(setup.policy.read_text())
    raw["upstreams"]["fetch"].update(fetch.pop("upstream", {}))
    raw["upstreams"]["fetch"]["sandbox"].update(fetch)
    raw["tools"]["fetch"].update(
        {name: {"effect": "read"} for name in ("connect", "whoami", "fail_with_key")}
    )
    setup.policy.write_text(yaml.safe_dump(raw))


def test_issue_13_sandboxed_upstream_reaches_only_its_allowlist(
    setup: Setup, ports: tuple[int, int]
) -> None:
    allowed, refused = ports
    assert (_reach(allowed), _reach(refused)) == (b"hi", b"no")  # control: both are there
    _with_fetch_tools(setup, egress=[f"127.0.0.1:{allowed}"])

    async def go() -> list[str]:
        async with setup.client() as client:
            calls = [
                {"port": allowed},
                {"port": refused},
                {"port": allowed, "proxy": False},
                {"port": refused, "proxy": False},
            ]
            return [text(await client.call_tool("connect", c)) for c in calls]

    inside, outside, direct_in, direct_out = asyncio.run(go())
    assert inside.startswith("HTTP/1.1 200") and inside.endswith("\r\n\r\nhi"), inside
    assert "EGRESS.NOT_ALLOWED" in outside and not outside.endswith("no")
    # Straight to the host's loopback: the pod's network namespace has none of it.
    assert direct_in.startswith("failed") and direct_out.startswith("failed")
    logged = [(e["destination"], e["allowed"], e["code"]) for e in kinds(setup, "mcp.egress")]
    assert logged == [
        (f"127.0.0.1:{allowed}", True, None),
        (f"127.0.0.1:{refused}", False, "EGRESS.NOT_ALLOWED"),
    ]
    assert all(e["upstream"] == "fetch" for e in kinds(setup, "mcp.egress"))


def test_issue_13_upstream_without_egress_has_no_network(
    setup: Setup, ports: tuple[int, int]
) -> None:
    allowed, _ = ports
    _with_fetch_tools(setup)

    async def go() -> tuple[str, str]:
        async with setup.client() as client:
            proxied = text(await client.call_tool("connect", {"port": allowed}))
            direct = text(await client.call_tool("connect", {"port": allowed, "proxy": False}))
            return proxied, direct

    proxied, direct = asyncio.run(go())
    assert proxied.startswith("failed KeyError")  # no proxy is offered at all
    assert direct.startswith("failed") and _reach(allowed) == b"hi"
    assert kinds(setup, "mcp.egress") == []


def test_issue_13_an_upstreams_secret_never_reaches_the_client_or_the_log(
    setup: Setup, tmp_path: Path
) -> None:
    secret = tmp_path / "api_key"
    secret.write_text(KEY + "\n")
    secret.chmod(0o600)
    _with_fetch_tools(setup, upstream={"secrets": {"API_KEY": str(secret)}})
    errlog = tmp_path / "gateway.stderr"

    async def go() -> tuple[Any, Any, Any, list[str]]:
        with errlog.open("w") as err:
            async with setup.client(errlog=err) as client:
                names = [t.model_dump_json() for t in (await client.list_tools()).tools]
                mine = await client.call_tool("whoami", {})
                failed = await client.call_tool("fail_with_key", {})
                rpc = await client.call_tool("fail_with_key", {"rpc": True})
                return mine, failed, rpc, names

    mine, failed, rpc, names = asyncio.run(go())
    # Control: the server really held the key (it recorded the key's digest).
    (seen,) = setup.calls("fetch", "whoami")
    assert seen["sha256"] == hashlib.sha256(KEY.encode()).hexdigest()
    scrubbed = {"text": "my key is [secret API_KEY]", "key": "[secret API_KEY]"}
    assert json.loads(text(mine)) == scrubbed and mine.structured_content == scrubbed
    assert failed.is_error and "[secret API_KEY]" in text(failed)
    assert rpc.is_error and "MCP.UPSTREAM.ERROR" in text(rpc) and "[secret API_KEY]" in text(rpc)
    everything = " ".join(
        [text(mine), str(mine.structured_content), text(failed), text(rpc), *names]
    )
    assert KEY not in everything
    assert KEY not in errlog.read_text() and "my key is [secret API_KEY]" in errlog.read_text()
    wal = b"".join(p.read_bytes() for p in setup.data_dir.glob("wal.sqlite3*"))
    assert KEY.encode() not in wal and b"[secret API_KEY]" in wal
