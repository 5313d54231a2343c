"""Upstream servers as level-2 pods (issue 13, item 2): real processes in real sandboxes.

Each test runs a real Python process through the command line `sandboxed_command`
returns, spawned the way an MCP client spawns a stdio server, and checks what it could
do against a host-side control showing the thing really exists and is reachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maos.pod.isolation import IsolationUnavailable, PodHome, SandboxError, detect
from maos.pod.isolation.level1 import PYTHON
from maos.pod.upstream import upstream_pod

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


def run_sandboxed(home: PodHome, probe: Path, *args: str, **kwargs: Any) -> dict[str, Any]:
    """Spawn the probe sandboxed, as a client that passes its *whole* environment would."""

    async def go() -> dict[str, Any]:
        files = [probe, *kwargs.pop("files", [])]
        async with upstream_pod(PYTHON, [str(probe), *args], home=home, files=files, **kwargs) as c:
            proc = await asyncio.create_subprocess_exec(
                c.command,
                *c.args,
                env={**os.environ, **c.env},
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
        asyncio.run(start(PYTHON, env={}, files=[Path("/root/.bashrc")]))
    assert err.value.code == "POD.UPSTREAM.UNREACHABLE"
    with pytest.raises(SandboxError) as err:
        asyncio.run(start(PYTHON, env={}, egress=["127.0.0.1:1"]))
    assert err.value.code == "POD.UPSTREAM.UNLOGGED"
    with pytest.raises(IsolationUnavailable):
        asyncio.run(start(PYTHON, env={}, level=1))
