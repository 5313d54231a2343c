"""`maos agent run`: an agent script end to end from the console, in a real pod."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.agents import script
from maos.cli import app
from maos.kernel.view import KernelLock

runner = CliRunner()
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")


def maos(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_help_teaches_agent_run_with_an_example() -> None:
    code, out = maos("agent", "run", "--help")
    assert code == 0
    assert "maos agent run my_agent.py --ring 3 --grant" in out
    assert "from maos import sdk" in out


def test_the_hello_agent_runs_in_a_level2_pod_with_the_default_grants(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = maos("agent", "run", str(script("hello")), "--data-dir", str(data))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "started    hello (ring 3) at level 2"
    assert lines[1].split() == ["committed", "fs.write", "hello.txt"]
    assert lines[2].split() == ["committed", "fs.read", "hello.txt"]
    assert lines[3].split() == ["exit", "exited,", "status", "0"]
    assert lines[-1] == "Hello from a pod. (labelled internal, trusted)"
    assert (data / "workspaces" / "run-hello" / "hello.txt").read_text() == "Hello from a pod.\n"
    code, out = maos("wal", "verify", "--data-dir", str(data))
    assert code == 0, out


def test_denials_are_streamed_and_the_agents_exit_status_is_the_commands(tmp_path: Path) -> None:
    agent = tmp_path / "mailer.py"
    agent.write_text(
        textwrap.dedent(
            """
            from maos import sdk
            try:
                sdk.email.send("alice@example.com", "hi", "hello")
            except sdk.Denied as no:
                raise SystemExit(3)
            """
        )
    )
    data = str(tmp_path / "data")
    code, out = maos("agent", "run", str(agent), "--grant", "fs.read|*", "--data-dir", data)
    assert code == 3, out
    denied = out.splitlines()[1].split()
    assert denied[:3] == ["denied", "email.send", "alice@example.com"]
    assert denied[3].startswith("DSC.CAPABILITY.")
    code, out = maos("agent", "run", str(agent), "--ring", "2", "--data-dir", data)
    assert code == 2 and "STATE.RING_MISMATCH" in out  # no promotion by re-running (R5)


def test_a_serving_kernel_or_an_unavailable_level_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    hello = str(script("hello"))
    lock = KernelLock(data)
    assert lock.try_acquire()
    try:
        code, out = maos("agent", "run", hello, "--data-dir", str(data))
    finally:
        lock.release()
    assert code == 2 and "STATE.KERNEL_RUNNING" in out
    code, out = maos("agent", "run", hello, "--level", "5", "--data-dir", str(data))
    assert code == 2 and "POD.ISOLATION.UNAVAILABLE" in out


def test_the_demo_runs_the_agents_in_pods_and_stops_every_attack(tmp_path: Path) -> None:
    code, out = maos("demo", "--data-dir", str(tmp_path / "demo"))
    assert code == 0, out
    assert "Mail delivered to: boss@example.com, cfo@example.com\n" in out
    # Act 1: the plan completes, the injected mail and payment are parked with their
    # provenance and refused, the deletion is outside the task's effect classes.
    assert "plan acme-offer: done" in out
    assert "COMMITTED  writer  tool.pay_invoice DE89370400440532013000" in out
    assert "PENDING    writer  tool.pay_invoice GB33BUKB20201555555555" in out
    assert "audit@evil.example first seen: untrusted_content (fs:inbox/offer.txt)" in out
    assert "DENIED     reader  fs.delete finance/payroll.csv" in out
    assert "RULE.R2.EFFECT_CLASS_NOT_GRANTED" in out
    for stopped in (
        "RULE.R10.UNTRUSTED_TARGET",
        "APPROVAL.DENIED",
        "SENTRY.PAYLOAD.INJECTION",
        "DSC.CAPABILITY.NOT_COVERED",
        "RULE.R6.IFC_DOWNFLOW",
        "DSC.CAPABILITY.FORGED",
        "SENTRY.MAC.FS",
    ):
        assert stopped in out
    assert "COMMITTED    restarted from its clean image, the analyst ends itself (R9)" in out
    # Act 3 (issue 12): both documents' injections were learned; a fresh agent is stopped
    # at each read.
    assert "learned m-" in out and "email.send to audit@evil.example" in out
    act3 = out[out.index("Act 3") :]
    assert act3.count("DENIED     ") == 2 and act3.count("MEMORY.KNOWN_INJECTION") == 2, act3
    assert "hash chain intact" in out


def test_an_agent_run_from_the_console_reaches_the_configured_llm(tmp_path: Path) -> None:
    from maos.testing import ChatReply, loopback_openai

    agent = tmp_path / "thinker.py"
    agent.write_text(
        "from maos import sdk\n"
        "reply = sdk.llm.complete('Say hi.', max_tokens=16).value\n"
        "print('model says:', reply['message']['content'])\n"
    )
    with loopback_openai([ChatReply(content="hi from the model")]) as server:
        result = runner.invoke(
            app,
            ["agent", "run", str(agent), "--grant", "llm.complete|*", "-d", str(tmp_path / "d")],
            env={"MAOS_LLM_BASE_URL": server.url, "MAOS_LLM_MODEL": "m"},
        )
    assert result.exit_code == 0, result.output
    assert "committed  llm.complete" in result.output
    assert "model says: hi from the model" in result.output
    assert server.requests[0][1]["messages"] == [{"role": "user", "content": "Say hi."}]
