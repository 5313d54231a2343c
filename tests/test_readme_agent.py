"""The README's own agent example works as printed (issue 9: it failed on a missing
inbox/note.txt, then R6, then STATE.TASK_OPEN on a rerun). The snippet and the command
are parsed out of README.md, so this breaks when the README drifts from what works."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.testing import Mailbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")
README = Path(__file__).parents[1] / "README.md"


def example() -> tuple[str, list[str]]:
    """The agent's code and the `maos agent run` arguments, as the README prints them."""
    section = README.read_text().split("## Writing an agent", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    command = re.search(r"```sh\n(.*?)```", section, re.S)
    assert code is not None and command is not None
    words = shlex.split(command.group(1).replace("\\\n", " "))
    assert words[:3] == ["maos", "agent", "run"]
    return code.group(1), words[1:]


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with nothing in it but the README's my_agent.py; the default data dir."""
    code, args = example()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAOS_DATA_DIR", raising=False)
    (tmp_path / args[2]).write_text(code)
    return tmp_path


def test_the_readme_agent_runs_as_printed_on_a_fresh_data_dir(fresh: Path) -> None:
    _, args = example()
    code, out = run(args)
    assert code == 0, out
    lines = [line.split() for line in out.splitlines()]
    assert ["committed", "fs.write", "reports/answer.md"] in lines
    assert ["failed", "email.send", "alice@example.com", "EFFECT.NO_ADAPTER"] in lines
    assert ["committed", "fs.read", "reports/answer.md"] in lines
    assert "42 Label(conf='internal'" in out  # what it read back, with its label
    workspace = fresh / ".maos" / "workspaces" / "run-my-agent"
    assert (workspace / "reports" / "answer.md").read_text() == "42"

    # Run it again: refused with what to do, nothing run.
    code, out = run(args)
    assert code == 2 and "STATE.TASK_OPEN" in out and "--resume" in out and "--new-task" in out
    # --resume runs again in the same task; the agent's context remembers its read (R6).
    code, out = run([*args, "--resume"])
    assert code == 0, out
    assert "denied     email.send    alice@example.com  RULE.R6.IFC_DOWNFLOW" in out
    # --new-task starts afresh, in a task of its own.
    code, out = run([*args, "--new-task"])
    assert code == 0, out
    assert "task       run-my-agent-2 (new)" in out
    assert (fresh / ".maos" / "workspaces" / "run-my-agent-2" / "reports" / "answer.md").exists()


def test_with_a_relay_the_readme_agent_mails_alice(fresh: Path, mailbox: Mailbox) -> None:
    (fresh / ".maos").mkdir()
    smtp = {"host": "127.0.0.1", "port": mailbox.port, "sender": "maos@test.local"}
    (fresh / ".maos" / "config.json").write_text(json.dumps({"smtp": smtp}))
    _, args = example()
    code, out = run(args)
    assert code == 0, out
    assert "committed  email.send    alice@example.com" in out
    assert mailbox.recipients() == ["alice@example.com"]
