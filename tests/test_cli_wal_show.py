"""`maos wal show` with filters and ``--follow`` (issue 10 §5): the follower is a real
`maos` process, the records come from a kernel serving in another process, Ctrl-C is a
real SIGINT."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.logfilter import RecordFilter
from maos.kernel.wal import WalRecord
from maos.testing import Mailbox, with_kernel

runner = CliRunner()

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from maos.kernel.kernel import Kernel, KernelConfig
    from maos.kernel.tokens import Grant
    from maos.testing import intent_frame

    async def main() -> None:
        k = await Kernel.boot(KernelConfig.load(Path(sys.argv[1])))
        try:
            if sys.argv[2:] == ["again"]:  # a second run, while the follower follows
                token = k.mint("a1", "t1", [Grant("fs.read", "*")])
                await k.submit(intent_frame(token, "fs.delete", "z", "k4"), agent_id="a1")
                return
            for agent in ("a1", "a2"):
                await k.register_agent(agent, ring=3, budgets={"api_calls": 10})
            await k.open_task("t1", budgets={"api_calls": 10})
            tokens = {a: k.mint(a, "t1", [Grant("fs.read", "*")]) for a in ("a1", "a2")}
            await k.submit(intent_frame(tokens["a2"], "fs.delete", "x", "k1"), agent_id="a2")
            await k.submit(intent_frame(tokens["a1"], "fs.read", "nothing", "k2"), agent_id="a1")
            await k.submit(intent_frame(tokens["a1"], "fs.delete", "y", "k3"), agent_id="a1")
        finally:
            await k.close()

    asyncio.run(main())
    """
)


def _maos(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("maos")), *args]


def _data_dir(tmp_path: Path, mailbox: Mailbox) -> Path:
    config = KernelConfig(data_dir=tmp_path / "data")
    config.save()

    async def nothing(kernel: Kernel) -> None:
        pass

    with_kernel(config, nothing)  # a log holding kernel.boot, as a fresh `maos up` leaves it
    return config.data_dir


def _write(data_dir: Path, *args: str) -> None:
    """Records appended by a kernel in a process of its own."""
    argv = [sys.executable, "-c", WRITER, str(data_dir), *args]
    writer = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert writer.returncode == 0, writer.stderr


def _lines(proc: subprocess.Popen[str], n: int, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    got: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0 and sel.select(left), f"only {got} within {timeout}s"
        line = proc.stdout.readline()
        assert line, f"the follower ended after {got}"
        got.append(line)
    return got


def test_issue_10_follow_prints_what_a_kernel_in_another_process_appends_filtered(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    data_dir = _data_dir(tmp_path, mailbox)
    follow = _maos(
        "wal", "show", "-d", str(data_dir), "--follow", "--agent", "a1", "--code", "DSC.*"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        follow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            _write(data_dir)
            [line] = _lines(proc, 1)  # the follower runs: what it prints next is followed
            _write(data_dir, "again")
            [again] = _lines(proc, 1)
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert proc.wait(timeout=30) == 0
            rest, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    record = json.loads(line)
    assert (record["kind"], record["agent_id"], record["op"]) == (
        "intent.denied",
        "a1",
        "fs.delete",
    )
    assert record["code"].startswith("DSC.")
    followed = json.loads(again)
    assert (followed["agent_id"], followed["seq"] > record["seq"]) == ("a1", True)
    assert rest == ""  # a2's denial and a1's failed read were filtered out
    assert "Traceback" not in err


def test_issue_10_filters_select_by_task_op_kind_and_since(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    data_dir = _data_dir(tmp_path, mailbox)
    _write(data_dir)

    def shown(*args: str) -> list[dict[str, object]]:
        result = runner.invoke(app, ["wal", "show", "-d", str(data_dir), *args])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    everything = shown()
    assert [r["seq"] for r in everything] == list(range(1, len(everything) + 1))
    deletes = shown("--op", "fs.del*")
    assert {(r["kind"], r["agent_id"]) for r in deletes} == {
        ("intent.denied", "a2"),
        ("intent.denied", "a1"),
    }
    assert {r["kind"] for r in shown("--kind", "task.*")} == {"task.opened"}
    assert {r["kind"] for r in shown("--kind", "intent.prepared", "--kind", "intent.failed")} == {
        "intent.prepared",
        "intent.failed",
    }
    tasks = shown("--task", "t1")
    assert tasks and all(r["task_id"] == "t1" for r in tasks)
    last = everything[-1]["seq"]
    assert [r["seq"] for r in shown("--since", str(last - 1))] == [last]
    assert len(shown("--since", "1h")) == len(everything)
    assert shown("--since", "2999-01-01T00:00:00Z") == []
    assert shown("--agent", "a1", "--code", "DSC.CAPABILITY.NOT_COVERED") == [
        r for r in deletes if r["agent_id"] == "a1"
    ]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--code", "dsc.lower"], "--code"),
        (["--code", "DSC.*.X"], "--code"),
        (["--op", "FS.READ"], "--op"),
        (["--kind", "intent denied"], "--kind"),
        (["--agent", "../etc"], "--agent"),
        (["--task", ""], "--task"),
        (["--since", "yesterday"], "--since"),
        (["--since", "-5"], "--since"),
    ],
)
def test_issue_10_a_filter_it_cannot_read_is_refused_with_its_code(
    tmp_path: Path, mailbox: Mailbox, args: list[str], option: str
) -> None:
    data_dir = _data_dir(tmp_path, mailbox)
    result = runner.invoke(app, ["wal", "show", "-d", str(data_dir), "--follow", *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error BAD_INPUT.FILTER: {option} "), result.output
    assert "Traceback" not in result.output


def test_issue_10_a_record_without_the_field_does_not_match_a_filter_on_it() -> None:
    def rec(kind: str, **body: object) -> WalRecord:
        return WalRecord(1, 1000.0, kind, None, None, body, b"", b"")

    any_code = RecordFilter.parse(now=0.0, codes=["*"])
    assert any_code.matches(rec("intent.denied", code="DSC.X"))
    assert not any_code.matches(rec("intent.committed", op="fs.read"))
    parked = rec("approval.pending", intent={"op": "email.send"}, agent_id="a1")
    assert RecordFilter.parse(now=0.0, ops=["email.*"], agent="a1").matches(parked)
    assert not RecordFilter.parse(now=0.0, agent="a2").matches(parked)
    assert not RecordFilter.parse(now=2000.0, since="10m").matches(parked)  # 1000 < 1400
