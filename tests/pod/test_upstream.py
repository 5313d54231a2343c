"""Upstream servers as level-2 pods (issue 13, item 2): real processes in real sandboxes.

Each test runs a real Python process through the command line `sandboxed_command`
returns, spawned the way an MCP client spawns a stdio server, and checks what it could
do against a host-side control showing the thing really exists and is reachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maos.pod.egress import EgressEvent
from maos.pod.isolation import IsolationUnavailable, PodHome, SandboxError, detect
from maos.pod.isolation.level1 import PYTHON
from maos.pod.upstream import upstream_pod
from maos.pod.upstream_runtime import Runtime

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="upstream pods run as nobody: needs root"),
    pytest.mark.skipif(not detect(2).available, reason=detect(2).reason),
]

PROBE = r"""
import json, os, socket, sys
open("/work/owner", "w").close()
out = {"uid": os.getuid(), "env": dict(os.environ)}
try:
    out["pid1_env"] = open("/proc/1/environ", "rb").read().decode(errors="replace")
except OSError as exc:
    out["pid1_env"] = repr(exc)
out["tcp"] = open("/proc/net/tcp").read() + open("/proc/net/tcp6").read()
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    out["direct"] = "connected"
except OSError as exc:
    out["direct"] = exc.errno
for path in sys.argv[2:]:
    try:
        out.setdefault("read", {})[path] = open(path).read()
    except OSError as exc:
        out.setdefault("read", {})[path] = exc.errno
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def served(home: PodHome) -> Path:
    """A world-readable dir in the pod home holding the probe script."""
    directory = home.root / "servers"
    directory.mkdir(mode=0o755, exist_ok=True)
    probe = directory / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o444)
    return probe


@pytest.fixture
def listener() -> Iterator[int]:
    """A real TCP listener on the host's loopback; answers each connection with 'hi'."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"hi")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def run_sandboxed(
    home: PodHome, probe: Path, *args: str, inherit_only: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """Spawn the probe sandboxed, as a client that passes its *whole* environment would
    (``inherit_only``: and none of the command's own)."""

    async def go() -> dict[str, Any]:
        files = [probe, *kwargs.pop("files", [])]
        async with upstream_pod(PYTHON, [str(probe), *args], home=home, files=files, **kwargs) as c:
            proc = await asyncio.create_subprocess_exec(
                c.command,
                *c.args,
                env=dict(os.environ) if inherit_only else {**os.environ, **c.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            result: dict[str, Any] = json.loads(out)
            result["host_owner"] = (c.workspace / "owner").stat().st_uid
        return result

    return asyncio.run(go())


def _reach(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        return conn.recv(2)


def test_upstream_without_egress_cannot_reach_host_loopback_issue_13(
    home: PodHome, served: Path, listener: int
) -> None:
    assert _reach(listener) == b"hi"  # control: the listener is really there
    seen = run_sandboxed(home, served, str(listener), env={})
    assert seen["direct"] != "connected"
    # Its own network namespace: the host's listening socket is not even visible.
    assert f":{listener:04X} " not in seen["tcp"]


def test_upstream_runs_as_nobody_inside_and_outside_issue_13(home: PodHome, served: Path) -> None:
    seen = run_sandboxed(home, served, "1", env={})
    assert seen["uid"] == 65534
    assert seen["host_owner"] == 65534  # what it creates is nobody's on the host, not root's


def test_upstream_cannot_read_a_file_outside_its_mounts_issue_13(
    home: PodHome, served: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = home.root / "data"
    data_dir.mkdir(mode=0o755)
    secret = data_dir / "wal.sqlite"
    secret.write_text("kernel-only")
    secret.chmod(0o644)
    # Control: uid nobody can read it on the host, so only the sandbox keeps it out.
    peek = subprocess.run(
        [PYTHON, "-c", f"print(open({str(secret)!r}).read())"],
        capture_output=True,
        text=True,
        user=65534,
        check=True,
    )
    assert peek.stdout.strip() == "kernel-only"
    seen = run_sandboxed(home, served, "1", str(secret), "/etc/hostname", env={})
    assert seen["read"][str(secret)] != "kernel-only"
    assert isinstance(seen["read"][str(secret)], int)
    assert isinstance(seen["read"]["/etc/hostname"], int)


def test_upstream_sees_only_the_environment_it_is_given_issue_13(
    home: PodHome, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAOS_KERNEL_SECRET", "s3cr3t-of-the-kernel")
    seen = run_sandboxed(home, served, "1", env={"UPSTREAM_API_KEY": "k-123"})
    assert seen["env"]["UPSTREAM_API_KEY"] == "k-123"
    assert "MAOS_KERNEL_SECRET" not in seen["env"]
    assert "s3cr3t-of-the-kernel" not in json.dumps(seen)  # nor in bwrap's init's environ
    assert seen["env"]["HOME"] == "/work"
    # A client that passes only what it inherited: the base is still the sandbox's own.
    seen = run_sandboxed(home, served, "1", env={"UPSTREAM_API_KEY": "k"}, inherit_only=True)
    assert "MAOS_KERNEL_SECRET" not in seen["env"] and "UPSTREAM_API_KEY" not in seen["env"]
    assert (seen["env"]["HOME"], seen["env"]["PATH"]) == ("/work", "/usr/bin:/bin")


def test_upstream_refuses_what_it_cannot_sandbox(home: PodHome, served: Path) -> None:
    async def start(command: str, **kwargs: Any) -> None:
        async with upstream_pod(command, [], home=home, **kwargs):
            pass

    with pytest.raises(SandboxError) as err:
        asyncio.run(start(PYTHON, env={"PATH": "/evil"}))
    assert err.value.code == "POD.SPAWN.BAD_ENV"
    with pytest.raises(SandboxError) as err:
        asyncio.run(start("/usr/bin/curl", env={}))
    assert err.value.code == "POD.UPSTREAM.NOT_MOUNTED"
    with pytest.raises(SandboxError) as err:
        asyncio.run(start(PYTHON, env={}, files=[Path("/root")]))
    assert err.value.code == "POD.UPSTREAM.UNREACHABLE"  # a directory is bound, not copied
    with pytest.raises(SandboxError) as err:
        asyncio.run(start(PYTHON, env={}, files=[Path("/nonexistent/server.py")]))
    assert err.value.code == "POD.UPSTREAM.NO_FILE"
    with pytest.raises(SandboxError) as err:
        asyncio.run(start(PYTHON, env={}, writable=[Path("/root")]))
    assert err.value.code == "POD.UPSTREAM.UNREACHABLE"
    with pytest.raises(SandboxError) as err:
        asyncio.run(start(PYTHON, env={}, egress=["127.0.0.1:1"]))
    assert err.value.code == "POD.UPSTREAM.UNLOGGED"
    with pytest.raises(IsolationUnavailable):
        asyncio.run(start(PYTHON, env={}, level=1))


MCP_SERVER = r'''
import os, socket
from urllib.parse import urlsplit
from mcp.server.mcpserver import MCPServer

server = MCPServer("probe")


@server.tool()
def fetch(port: int) -> str:
    """Connect to 127.0.0.1:port through the egress proxy and return what comes back."""
    proxy = urlsplit(os.environ["HTTPS_PROXY"])
    with socket.create_connection((proxy.hostname, proxy.port), timeout=5) as conn:
        conn.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return data.decode()


@server.tool()
def read(path: str) -> str:
    try:
        return open(path).read()
    except OSError as exc:
        return f"errno {exc.errno}"


@server.tool()
def env(name: str) -> str:
    return os.environ.get(name, "<unset>")


server.run("stdio")
'''


def test_real_mcp_server_in_a_pod_spoken_to_with_the_sdk_issue_13(
    home: PodHome,
    listener: int,
    mcp_runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK's own stdio client drives a real MCP server (the pinned SDK, from the
    read-only runtime) sandboxed with one allowed destination."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    closed = socket.create_server(("127.0.0.1", 0))  # a second real listener, not allowed
    closed_port = closed.getsockname()[1]
    monkeypatch.setenv("MAOS_KERNEL_SECRET", "s3cr3t-of-the-kernel")
    directory = home.root / "mcp-server"
    directory.mkdir(mode=0o755, exist_ok=True)
    script = directory / "server.py"
    script.write_text(MCP_SERVER)
    script.chmod(0o444)
    secret = home.root / "kernel-data.txt"
    secret.write_text("kernel-only")
    secret.chmod(0o644)
    events: list[EgressEvent] = []

    async def go() -> dict[str, str]:
        async with upstream_pod(
            str(mcp_runtime.python),
            [str(script)],
            env={"UPSTREAM_API_KEY": "k-123"},
            home=home,
            runtime=mcp_runtime,
            files=[script],
            egress=[f"127.0.0.1:{listener}"],
            on_connect=events.append,
        ) as cmd:
            params = StdioServerParameters(
                command=cmd.command, args=list(cmd.args), env=dict(cmd.env)
            )
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                calls = {
                    "allowed": ("fetch", {"port": listener}),
                    "other": ("fetch", {"port": closed_port}),
                    "secret": ("read", {"path": str(secret)}),
                    "key": ("env", {"name": "UPSTREAM_API_KEY"}),
                    "kernel": ("env", {"name": "MAOS_KERNEL_SECRET"}),
                }
                out = {}
                for label, (tool, arguments) in calls.items():
                    result = await session.call_tool(tool, arguments)
                    out[label] = result.content[0].text  # type: ignore[union-attr]
                return out

    seen = asyncio.run(go())
    closed.close()
    assert seen["allowed"].endswith("\r\n\r\nhi")
    assert "EGRESS.NOT_ALLOWED" in seen["other"]
    assert seen["secret"].startswith("errno")
    assert seen["key"] == "k-123"
    assert seen["kernel"] == "<unset>"
    assert [(e.destination, e.allowed) for e in events] == [
        (f"127.0.0.1:{listener}", True),
        (f"127.0.0.1:{closed_port}", False),
    ]


NODE_CLIENT = r"""
const net = require("net");
const port = Number(process.argv[1]);
const out = { uid: process.getuid(), env: Object.keys(process.env).sort() };
try { require("fs").readFileSync(process.argv[2]); out.read = "read"; }
catch (e) { out.read = e.code; }
const direct = net.connect(port, "127.0.0.1");
direct.on("error", (e) => { out.direct = e.code; proxied(); });
direct.on("connect", () => { out.direct = "connected"; direct.destroy(); proxied(); });
function proxied() {
  const s = net.connect(3128, "127.0.0.1", () =>
    s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`));
  let data = "";
  s.on("data", (d) => { data += d; });
  s.on("end", () => { out.proxy = data; console.log(JSON.stringify(out)); });
}
"""


@pytest.mark.skipif(not os.access("/usr/bin/node", os.X_OK), reason="apt-get install nodejs")
def test_node_upstream_runs_sandboxed_with_its_allowlist_issue_13(
    home: PodHome, listener: int, mcp_runtime: Runtime
) -> None:
    """Debian's node from the runtime: nobody, no kernel env, only the allowed listener."""
    secret = home.root / "node-secret.txt"
    secret.write_text("kernel-only")
    secret.chmod(0o644)
    runtime = dataclasses.replace(mcp_runtime, node=True)

    async def go() -> dict[str, Any]:
        async with upstream_pod(
            "/usr/bin/node",
            ["-e", NODE_CLIENT, str(listener), str(secret)],
            env={},
            home=home,
            runtime=runtime,
            egress=[f"127.0.0.1:{listener}"],
            on_connect=lambda event: None,
        ) as cmd:
            proc = await asyncio.create_subprocess_exec(
                cmd.command, *cmd.args, env={**os.environ, **cmd.env}, stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
        result: dict[str, Any] = json.loads(out)
        return result

    seen = asyncio.run(go())
    assert seen["uid"] == 65534
    assert seen["read"] == "ENOENT"
    assert seen["direct"] != "connected"
    assert seen["proxy"].endswith("\r\n\r\nhi")
    assert "SECRET" not in " ".join(seen["env"]) and "USER" not in seen["env"]


STUBBORN = r"""
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()  # leaves the server's session and process group
    os.execv("/usr/bin/python3", ["/usr/bin/python3", "-c", "import time; time.sleep(600)",
                                  sys.argv[1]])
print("up", flush=True)
while True:  # ignores stdin's EOF too
    time.sleep(1)
"""


def _alive_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_an_upstream_that_ignores_its_client_dies_with_all_its_children_issue_13(
    home: PodHome,
) -> None:
    """The SDK closes stdin, SIGTERMs bwrap's group, then SIGKILLs it; the sandbox's own
    pid namespace takes the server and a child that left its session with it."""
    from mcp.client.stdio import StdioServerParameters, stdio_client

    marker = f"maos-stubborn-{os.getpid()}-{id(home)}"
    directory = home.root / "stubborn"
    directory.mkdir(mode=0o755, exist_ok=True)
    script = directory / "server.py"
    script.write_text(STUBBORN)
    script.chmod(0o444)

    async def go() -> list[int]:
        async with upstream_pod(
            PYTHON, [str(script), marker], env={}, home=home, files=[script]
        ) as cmd:
            params = StdioServerParameters(
                command=cmd.command, args=list(cmd.args), env=dict(cmd.env)
            )
            async with stdio_client(params) as (read, _write):
                await read.receive()  # "up" (not JSON-RPC: an error item, still a sign of life)
                while not _alive_with(marker):
                    await asyncio.sleep(0.05)
                during = _alive_with(marker)
        for _ in range(100):  # the namespace is torn down as its init dies
            if not _alive_with(marker):
                break
            await asyncio.sleep(0.05)
        return during

    during = asyncio.run(go())
    assert during  # control: the escaped child really ran
    assert _alive_with(marker) == []


@pytest.mark.skipif(shutil.which("npm") is None, reason="apt-get install npm")
def test_the_npm_filesystem_server_in_a_pod_sees_only_its_mounts_issue_13(
    home: PodHome, npm_runtime: Runtime
) -> None:
    """The reference MCP filesystem server from npm, allowed ``/work`` and ``/tmp``: the
    kernel's file under the host's ``/tmp`` is inside what the server would serve, and
    does not exist for it (its ``/tmp`` is its own). Driven by the Python SDK's client."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    secret = home.root / "kernel-secret.txt"
    secret.write_text("kernel-only")
    secret.chmod(0o644)
    assert secret.is_relative_to("/tmp")  # the pod home is under the host's /tmp
    script = npm_runtime.node_script("mcp-server-filesystem")

    async def go() -> tuple[set[str], str, str]:
        async with upstream_pod(
            "/usr/bin/node",
            [str(script), "/work", "/tmp"],
            env={},
            home=home,
            runtime=npm_runtime,
        ) as cmd:
            params = StdioServerParameters(
                command=cmd.command, args=list(cmd.args), env=dict(cmd.env)
            )
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                tools = {tool.name for tool in (await session.list_tools()).tools}
                await session.call_tool(
                    "write_file", {"path": "/work/note.txt", "content": "from the pod"}
                )
                mine = await session.call_tool("read_text_file", {"path": "/work/note.txt"})
                theirs = await session.call_tool("read_text_file", {"path": str(secret)})
                return (
                    tools,
                    mine.content[0].text,  # type: ignore[union-attr]
                    theirs.content[0].text,  # type: ignore[union-attr]
                )

    tools, mine, theirs = asyncio.run(go())
    assert {"read_text_file", "write_file"} <= tools
    assert mine == "from the pod"
    assert "kernel-only" not in theirs and "ENOENT" in theirs
    with pytest.raises(SandboxError) as err:
        npm_runtime.node_script("../../../bin/sh")
    assert err.value.code == "POD.RUNTIME.NO_COMMAND"
