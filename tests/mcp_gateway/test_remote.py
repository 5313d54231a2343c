"""A remote (``url``) upstream is reached only at its URL's host and port, as the HTTP
effect reads an allowlist (issue 13): the gateway's client for it refuses any other."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest

from maos.mcp.policy import Upstream
from maos.mcp.upstream import UpstreamError, remote_client


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    """Two real HTTP servers on loopback: the upstream's and another."""
    made = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello) for _ in range(2)]
    for server in made:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield made[0].server_address[1], made[1].server_address[1]
    for server in made:
        server.shutdown()
        server.server_close()


def test_issue_13_remote_upstream_client_reaches_only_its_own_host_and_port(
    servers: tuple[int, int],
) -> None:
    mine, other = servers
    spec = Upstream(url=f"http://127.0.0.1:{mine}/mcp")

    async def go() -> tuple[bytes, str, bytes]:
        async with remote_client(spec) as client:
            ok = (await client.get(f"http://127.0.0.1:{mine}/anything")).content
            with pytest.raises(UpstreamError) as refused:
                await client.get(f"http://127.0.0.1:{other}/")
        async with remote_client(Upstream(url=f"http://127.0.0.1:{other}/mcp")) as control:
            reached = (await control.get(f"http://127.0.0.1:{other}/")).content
        return ok, refused.value.code, reached

    ok, code, reached = asyncio.run(go())
    assert ok == b"hi" and reached == b"hi"  # control: the other server answers its own
    assert code == "MCP.UPSTREAM.NOT_ALLOWED"
