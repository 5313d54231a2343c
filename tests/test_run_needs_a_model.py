"""A plan step that needs a model says so before it starts when there is none (issue 9:
30 s of silence, then "clerk exited with status 75" and an empty cause). Real `maos run`,
real data dir; the unreachable provider is a real closed loopback port."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from maos.cli import app
from maos.testing import ChatReply, loopback_openai

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")

PLAN = {
    "task": "think",
    "prompt": "Say hello.",
    "agents": {"clerk": {"script": "cell", "ring": 3}},
    "steps": {"answer": {"agent": "clerk", "grants": ["fs.read|notes/*"], "timeout_s": 60}},
}


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "think.yaml"
    path.write_text(yaml.safe_dump(PLAN))
    return path


def started(data: Path) -> list[str]:
    db = sqlite3.connect(data / "wal.sqlite3")
    try:
        rows = db.execute("SELECT kind FROM records WHERE kind LIKE 'plan.step.%'").fetchall()
    finally:
        db.close()
    return [kind for (kind,) in rows]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_model_configured_is_said_before_the_step_starts(
    tmp_path: Path, plan_file: Path
) -> None:
    data = tmp_path / "data"
    env = {"MAOS_LLM_BASE_URL": "", "MAOS_LLM_MODEL": ""}
    out = CliRunner().invoke(app, ["run", str(plan_file), "-d", str(data)], env=env)
    assert out.exit_code == 1, out.output
    assert "PLAN.STEP.NO_MODEL" in out.output and "none is configured" in out.output
    for name in ("MAOS_LLM_BASE_URL", "MAOS_LLM_MODEL", "config.json", "'llm' section"):
        assert name in out.output
    assert "plan.step.started" not in started(data)  # no pod ever waited for a model


def test_a_configured_model_nobody_answers_for_is_named(tmp_path: Path, plan_file: Path) -> None:
    data = tmp_path / "data"
    url = f"http://127.0.0.1:{closed_port()}/v1"
    env = {"MAOS_LLM_BASE_URL": url, "MAOS_LLM_MODEL": "m"}
    out = CliRunner().invoke(app, ["run", str(plan_file), "-d", str(data)], env=env)
    assert out.exit_code == 1, out.output
    assert "PLAN.STEP.NO_MODEL" in out.output and "no configured provider answers" in out.output
    assert url in out.output and "MAOS_LLM_BASE_URL" in out.output
    assert "plan.step.started" not in started(data)


def test_a_reachable_model_runs_the_step(tmp_path: Path, plan_file: Path) -> None:
    data = tmp_path / "data"
    with loopback_openai([ChatReply(content="Hello.")]) as server:
        env = {"MAOS_LLM_BASE_URL": server.url, "MAOS_LLM_MODEL": "m"}
        out = CliRunner().invoke(app, ["run", str(plan_file), "-d", str(data)], env=env)
    assert out.exit_code == 0, out.output
    assert "plan.step.done" in started(data)
    assert "NO_MODEL" not in out.output
