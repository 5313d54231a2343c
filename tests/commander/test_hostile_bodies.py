"""Issue 9: request bodies that are too big or say two things, against a real `maos up`
server (uvicorn on loopback) and a real kernel; what changed is read from the log."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from maos.boot import PlanQueue
from maos.commander.web import Dashboard, load_or_create_token
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
task: bomb
prompt: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""
"""300-odd bytes that expand to 9**7 strings once anything walks them."""


@contextlib.asynccontextmanager
async def _served(config: KernelConfig) -> AsyncIterator[tuple[Kernel, Dashboard, str]]:
    kernel = await Kernel.boot(config)
    token = load_or_create_token(config.data_dir)
    plans = PlanQueue(kernel, echo=lambda line: None)
    dashboard = Dashboard(kernel, token, submit_plan=plans.submit)
    server = asyncio.create_task(dashboard.serve())
    try:
        await asyncio.wait_for(dashboard.started(), 30)
        await kernel.register_agent("a1", ring=3)
        yield kernel, dashboard, token
    finally:
        dashboard.stop()
        await server
        await kernel.close()


def _run(config: KernelConfig, body: Callable[[Kernel, Dashboard, str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with _served(config) as served:
            seq = served[0].wal.tail_seq()
            await body(*served)
            assert served[0].wal.tail_seq() == seq, "a refused request wrote to the log"
            assert served[0].registry.agent("a1").status is AgentStatus.ACTIVE

    return asyncio.run(main())


def _client(dashboard: Dashboard, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=dashboard.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_issue9_a_duplicate_key_in_a_body_is_refused_and_does_not_kill(
    config: KernelConfig,
) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async with _client(dashboard, token) as client:
            answer = await client.post(
                "api/agents/a1/status", content=b'{"status":"active","status":"killed"}'
            )
        assert answer.status_code == 400
        assert answer.json()["error"] == "BAD_INPUT.DUPLICATE_KEY"

    _run(config, body)


def test_issue9_an_oversized_body_is_refused_on_its_content_length_before_it_is_read(
    config: KernelConfig,
) -> None:
    """The body never comes: a server that reads before it refuses waits for it forever
    (the socket's timeout fails the test); one that checks Content-Length answers now."""

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        def ask() -> bytes:
            with socket.create_connection(("127.0.0.1", dashboard.port), timeout=20) as sock:
                sock.sendall(
                    b"POST /api/agents/a1/status HTTP/1.1\r\n"
                    + f"Host: 127.0.0.1:{dashboard.port}\r\n".encode()
                    + f"Authorization: Bearer {token}\r\n".encode()
                    + b"Content-Type: application/json\r\n"
                    + b"Content-Length: 20000000\r\n\r\n"
                    + b'{"status": "killed", "pad": "'
                )
                answer = b""
                while b"\r\n\r\n{" not in answer or not answer.endswith(b"}"):
                    more = sock.recv(65536)
                    if not more:
                        break
                    answer += more
                return answer

        head = await asyncio.to_thread(ask)
        assert head.startswith(b"HTTP/1.1 413")
        assert b"BAD_INPUT.TOO_LARGE" in head

    _run(config, body)


def test_issue9_a_chunked_body_is_counted_as_it_streams_in(config: KernelConfig) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"status": "killed", "pad": "'
        for _ in range(256):  # 1 MiB: far over any cap for a note or a status
            yield b"x" * 4096
        yield b'"}'

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async with _client(dashboard, token) as client:
            answer = await client.post("api/agents/a1/status", content=chunks())
        assert answer.request.headers.get("transfer-encoding") == "chunked"
        assert (answer.status_code, answer.json()["error"]) == (413, "BAD_INPUT.TOO_LARGE")

    _run(config, body)


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (BOMB, 400, "BAD_INPUT.YAML_ALIASES"),
        ("task: big\nprompt: " + "x" * (2 * 1024 * 1024) + "\n", 413, "BAD_INPUT.TOO_LARGE"),
    ],
)
def test_issue9_post_api_plans_refuses_a_hostile_plan_file(
    config: KernelConfig, tmp_path: Path, content: str, status: int, code: str
) -> None:
    plan = tmp_path / "hostile.yaml"
    plan.write_text(content)

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async with _client(dashboard, token) as client:
            answer = await client.post("api/plans", json={"path": str(plan)})
        assert (answer.status_code, answer.json()["error"]) == (status, code)

    _run(config, body)
