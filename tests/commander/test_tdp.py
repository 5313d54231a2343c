"""Issue 10 §3: the Trusted Display Path - its own process, the log's own truth.

A real kernel writes the data dir (agents, a parked R10 mail); the TDP runs as the
separate process `maos tdp` starts (``python -m maos.commander.tdp``), reads it read-only
and must agree with the kernel's fold; a byte changed in the log is named on its screen.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import maos.commander.tdp as tdp_module
from maos.commander.tdp import TrustedView
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import intent_frame, task_with_untrusted_mail

STRANGER = "stranger@evil.example"


def _populate(config: KernelConfig) -> dict[str, object]:
    """Two agents (one paused) and one mail parked under R10; the kernel's own view."""
    config.save()

    async def go() -> dict[str, object]:
        async with await Kernel.boot(config, follow=False) as kernel:
            token = await task_with_untrusted_mail(
                kernel, [Grant("fs.read", "*"), Grant("email.send", "*")]
            )
            await kernel.register_agent("a2", ring=2)
            await kernel.set_agent_status("a2", AgentStatus.PAUSED)
            read = await kernel.submit(
                intent_frame(token, "fs.read", "inbox/mail.txt", "r1"), agent_id="a1"
            )
            assert read.status is OutcomeStatus.COMMITTED
            mail = await kernel.submit(
                intent_frame(token, "email.send", STRANGER, "m1", subject="hi", body="hi"),
                agent_id="a1",
            )
            assert mail.status is OutcomeStatus.PENDING, mail
            return kernel.status()

    return asyncio.run(go())


def _tdp(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "maos.commander.tdp", "-d", str(data), "--once", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_the_tdp_shows_what_the_kernel_folded(config: KernelConfig) -> None:
    status = _populate(config)
    screen = TrustedView(config.data_dir).look()
    assert screen.verdict.ok, screen.verdict
    agents = {a["agent_id"]: a for a in screen.agents}
    kernel_agents = status["agents"]
    assert isinstance(kernel_agents, dict)
    assert {k: {f: v for f, v in a.items() if f != "agent_id"} for k, a in agents.items()} == (
        kernel_agents
    )
    pending = status["pending_approvals"]
    assert isinstance(pending, list)
    assert [p["approval_id"] for p in screen.pending] == [p["approval_id"] for p in pending]
    [parked] = screen.pending
    assert parked["targets"] == [STRANGER]
    assert parked["first_seen"] == {STRANGER: "untrusted_content from fs:inbox/mail.txt"}


def test_the_tdp_process_prints_agents_and_waiting_decisions(config: KernelConfig) -> None:
    _populate(config)
    shown = _tdp(config.data_dir)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "log verified" in shown.stdout
    assert STRANGER in shown.stdout and "untrusted_content" in shown.stdout
    assert "paused" in shown.stdout


def test_a_tampered_log_is_named_on_the_tdp_screen(config: KernelConfig) -> None:
    _populate(config)
    with sqlite3.connect(config.wal_path) as conn:
        (seq,) = conn.execute("SELECT seq FROM records WHERE kind = 'approval.pending'").fetchone()
        conn.execute(
            "UPDATE records SET body = replace(body, ?, ?) WHERE seq = ?",
            (STRANGER, "boss@example.com", seq),
        )
    shown = _tdp(config.data_dir)
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "LOG NOT TRUSTED" in shown.stdout
    assert f"at record {seq}" in shown.stdout
    # the approval is still parked: a screen that cannot trust the log gives no all-clear
    assert "nothing waits for a decision" not in shown.stdout
    assert "not known" in shown.stdout and "error WAL." in shown.stdout


def test_a_log_that_is_not_a_database_gets_an_error_and_no_all_clear(tmp_path: Path) -> None:
    (tmp_path / "wal.sqlite3").write_bytes(b"not a database" * 300)
    shown = _tdp(tmp_path)
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "error WAL.UNREADABLE" in shown.stdout
    assert "nothing waits for a decision" not in shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr


def test_a_data_dir_without_a_log_is_a_clear_error(tmp_path: Path) -> None:
    shown = _tdp(tmp_path)
    assert shown.returncode == 1
    assert "error STATE.NO_LOG" in shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr


FORBIDDEN = (
    "maos.commander.web",
    "maos.kernel.kernel",
    "maos.kernel.wal",
    "maos.kernel.commit",
    "starlette",
    "uvicorn",
    "httpx",
)


def test_the_tdp_imports_neither_the_dashboard_nor_the_write_path() -> None:
    probe = (
        "import sys, maos.commander.tdp\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {{'starlette','uvicorn','httpx'}}"
        f" or m in {list(FORBIDDEN)!r}]\n"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_the_tdp_stays_small() -> None:
    """Seed §43: the TDP is under 500 lines, so a person can read all of it."""
    lines = Path(tdp_module.__file__).read_text().count("\n")
    assert lines < 500, lines


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--interval", "nan"]])
def test_bad_intervals_are_refused(config: KernelConfig, argv: list[str]) -> None:
    _populate(config)
    shown = subprocess.run(
        [sys.executable, "-m", "maos.commander.tdp", "-d", str(config.data_dir), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 1
    assert "error BAD_INPUT.INTERVAL" in shown.stdout
