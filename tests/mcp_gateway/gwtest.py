"""Helpers: a gateway.yaml over the test upstreams, the gateway as a real process, and what
the upstreams saw (imported by the tests; the fixture is in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from maos.pod.isolation.home import pod_uid
from maos.pod.upstream_runtime import Runtime

UPSTREAMS = Path(__file__).with_name("upstreams.py")
SRC = str(Path(__file__).parents[2] / "src")
MAOS = [sys.executable, "-c", "from maos.cli import main; main()"]


@dataclass
class Setup:
    root: Path
    policy: Path
    data_dir: Path
    records: Path
    """Where the sandboxed upstreams write what they saw: the pods' uid owns it."""

    def record(self, upstream: str) -> Path:
        return self.records / f"{upstream}.jsonl"

    def calls(self, upstream: str, tool: str | None = None) -> list[dict[str, Any]]:
        path = self.record(upstream)
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in lines if "tool" in e and (tool is None or e["tool"] == tool)]

    def starts(self, upstream: str) -> list[dict[str, Any]]:
        path = self.record(upstream)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in lines if "start" in e]

    def write(self, **changes: Any) -> None:
        raw = yaml.safe_load(self.policy.read_text())
        raw.update(changes)
        self.policy.write_text(yaml.safe_dump(raw))

    def gateway_command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-c",
            "from maos.cli import main; main()",
            "mcp-gateway",
            "--policy",
            str(self.policy),
            "--data-dir",
            str(self.data_dir),
            *extra,
        ]

    @contextlib.asynccontextmanager
    async def client(
        self, mode: str = "legacy", errlog: TextIO | None = None
    ) -> AsyncIterator[Client]:
        """The SDK's own client, driving the gateway as a child process over stdio
        (its stderr into ``errlog``, as a client such as Claude Desktop keeps it)."""
        cmd = self.gateway_command()
        params = StdioServerParameters(
            command=cmd[0], args=cmd[1:], env={"PYTHONPATH": SRC, "MAOS_TEST_SECRET": "s3cret"}
        )
        transport = stdio_client(params, errlog=errlog or sys.stderr)
        async with Client(transport, mode=mode, read_timeout_seconds=60) as client:
            yield client


def upstream(kind: str, records: Path, **env: str) -> dict[str, Any]:
    """A test server as a level-2 pod: the runtime's python, its script copied in, and
    the record directory its only writable host path."""
    return {
        "command": "python",
        "args": [str(UPSTREAMS), kind],
        "env": {"RECORD": str(records / f"{kind}.jsonl"), **env},
        "sandbox": {
            "runtime": {"python": ["mcp==2.3.0"]},
            "files": [str(UPSTREAMS)],
            "writable": [str(records)],
        },
        "timeout_s": 30,
    }


def unsandboxed(kind: str, records: Path, **env: str) -> dict[str, Any]:
    """The same server as a plain child of the gateway (``sandbox: {level: none}``)."""
    return {
        "command": sys.executable,
        "args": [str(UPSTREAMS), kind],
        "env": {"RECORD": str(records / f"{kind}.jsonl"), "PYTHONPATH": os.pathsep.join(sys.path)}
        | env,
        "sandbox": {"level": "none"},
        "timeout_s": 30,
    }


def make_setup(tmp_path: Path, runtime: Runtime) -> Setup:
    records = Path(tempfile.mkdtemp(prefix="maos-mcp-records-"))
    records.chmod(0o755)
    os.chown(records, pod_uid(), pod_uid())
    s = Setup(tmp_path, tmp_path / "gateway.yaml", tmp_path / "data", records)
    (records / "desc").write_text("Send an e-mail.")
    policy = {
        "name": "reports",
        "task": "Read the Q3 report and mail a summary to boss@example.com.",
        "effects": ["read", "send"],
        "default": "refuse",
        "on_pending": {"mode": "return"},
        "runtime_cache": str(runtime.root.parent),
        "upstreams": {
            "mail": upstream("mail", records, DESCRIPTION_FILE=str(records / "desc")),
            "files": {**upstream("files", records), "max_result_bytes": 4096},
            "fetch": upstream("fetch", records),
        },
        "tools": {
            "mail": {
                "send_mail": {
                    "effect": "send",
                    "targets": {"to": "recipient"},
                    "accepts": "internal",
                },
                "list_inbox": {"effect": "read"},
                "send_bulk": {"effect": "send", "targets": {"to": "recipient"}},
            },
            "files": {
                "read_file": {
                    "effect": "read",
                    "external": False,
                    "args": {"path": {"under": "/srv/reports"}},
                },
                "hang": {"effect": "read", "timeout_s": 1},
                "die": {"effect": "read"},
                "flood": {"effect": "read"},
            },
            "fetch": {
                "fetch_page": {
                    "effect": "read",
                    "result_label": {"conf": "public", "integrity": "untrusted"},
                }
            },
        },
    }
    s.policy.write_text(yaml.safe_dump(policy))
    return s


def text(result: Any) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


def assert_log_whole(setup: Setup) -> None:
    """The log verifies (``maos wal verify``) and every intent that was prepared was
    also decided: committed, failed or in doubt - nothing lost mid-way."""
    import subprocess

    from maos.kernel.wal import Wal

    done = subprocess.run(
        [*MAOS, "wal", "verify", "--data-dir", str(setup.data_dir)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wal = Wal(setup.data_dir / "wal.sqlite3")
    try:
        prepared = {r.intent_id for r in wal.read(kinds=("intent.prepared",))}
        ended = {
            r.intent_id
            for r in wal.read(kinds=("intent.committed", "intent.failed", "intent.in_doubt"))
        }
    finally:
        wal.close()
    assert prepared and prepared <= ended, prepared - ended
