"""Issue 9: every misuse a user can make gets ``error CODE: sentence`` and a hint, a
non-zero exit, no traceback, and leaves the data dir exactly as it was.

Each case goes through the real command line (typer's runner, in this process, or the
`maos` entry point in a subprocess where a mount namespace or a serving kernel is needed)
and hashes every file of the data dir before and after.

The read-only cases need a directory that is really read-only for the test's user. CI
runs as root, and root ignores file modes, so ``chmod a-w`` proves nothing; the commands
run instead in a private mount namespace (``unshare -m``) where the data dir is bind-
mounted read-only, so even root gets EROFS.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.testing import MAOS
from maos.testing import serving as serve_up

runner = CliRunner()


@pytest.fixture(scope="module")
def _seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data dir with an agent, a task, a parked intent's worth of log; and a token."""
    data = tmp_path_factory.mktemp("seed") / "data"

    async def setup() -> str:
        kernel = await Kernel.boot(KernelConfig(data_dir=data), follow=False)
        try:
            await kernel.register_agent("a1", ring=3)
            await kernel.open_task("t1")
            return kernel.mint("a1", "t1", [Grant("fs.read", "*")])
        finally:
            await kernel.close()

    return data, asyncio.run(setup())


@pytest.fixture
def data_dir(_seeded: tuple[Path, str], tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(_seeded[0], copy)
    return copy


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the SHA-256 of its bytes (directories as 'dir')."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(args: list[str], code: str, *, watch: Path) -> str:
    """Run ``maos args``; assert the refusal's shape and that ``watch`` did not change."""
    before = snapshot(watch) if watch.is_dir() else watch.read_bytes()
    result = runner.invoke(app, args)
    out = result.output
    assert result.exit_code not in (0, None), out
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in out
    assert f"error {code}:" in out, out
    assert len(out.strip().splitlines()) >= 2, f"no hint on what to do: {out}"
    after = snapshot(watch) if watch.is_dir() else watch.read_bytes()
    assert after == before, "the refusal changed the data dir"
    return out


# -- the demo ---------------------------------------------------------------------------


def test_issue9_the_demo_refuses_a_used_data_dir_and_writes_nothing(data_dir: Path) -> None:
    out = refused(["demo", "-d", str(data_dir)], "STATE.DATA_DIR_USED", watch=data_dir)
    assert "--data-dir" in out


@pytest.fixture
def serving(data_dir: Path) -> Iterator[Path]:
    """`maos up` serving ``data_dir`` in its own process, until SIGINT."""
    with serve_up(data_dir):
        yield data_dir


def test_issue9_the_demo_never_overwrites_the_config_of_a_serving_kernel(serving: Path) -> None:
    (serving / "config.json").write_text(json.dumps({"node_id": "live", "sse": {}}))
    out = refused(["demo", "-d", str(serving)], "STATE.DATA_DIR_USED", watch=serving)
    assert "a kernel serves it" in out
    assert json.loads((serving / "config.json").read_text()) == {"node_id": "live", "sse": {}}


# -- a file where a data dir belongs ----------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "command",
    [
        ["run", str(EXAMPLES / "plans" / "report.yaml")],
        ["demo"],
        ["agent", "run", str(Path(__file__).resolve().parents[1] / "src/maos/agents/hello.py")],
        ["up", "--port", "0"],
        ["status"],
    ],
    ids=lambda c: c[0] if c[0] != "agent" else "agent-run",
)
def test_issue9_a_file_as_data_dir_is_refused_by_name(tmp_path: Path, command: list[str]) -> None:
    file = tmp_path / "not-a-dir"
    file.write_text("mine\n")
    out = refused([*command, "-d", str(file)], "STATE.NOT_A_DIRECTORY", watch=file)
    assert str(file) in out


# -- ports, plans ---------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_issue9_up_refuses_a_port_out_of_range_before_booting(data_dir: Path, port: str) -> None:
    refused(["up", "-d", str(data_dir), "--port", port], "BAD_INPUT.PORT", watch=data_dir)


@pytest.mark.parametrize("kind", ["not-utf8", "fifo", "huge"])
def test_an_agent_script_that_is_not_a_script_is_refused_before_the_kernel_boots(
    data_dir: Path, tmp_path: Path, kind: str
) -> None:
    script = tmp_path / "agent.py"
    if kind == "fifo":
        os.mkfifo(script)  # no writer: a plain open would wait forever
    else:
        script.write_bytes(b"print('\xff')\n" if kind == "not-utf8" else b"#" * (2 << 20))
    out = refused(
        ["agent", "run", str(script), "-d", str(data_dir)], "POD.SPAWN.BAD_SCRIPT", watch=data_dir
    )
    assert str(script) in out


def test_issue9_a_missing_tool_module_is_named_as_one(data_dir: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "task: t\nprompt: hi\ntool_modules: [no_such_module]\n"
        "agents: {a: {script: hello}}\nsteps: {s: {agent: a, grants: ['fs.read|*']}}\n"
    )
    out = refused(["run", str(plan), "-d", str(data_dir)], "PLAN.INVALID", watch=data_dir)
    assert "no shipped tool module named 'no_such_module'" in out


# -- config.json: one strict reading for every command -----------------------------------------

COMMANDS = [
    ["status"],
    ["wal", "verify"],
    ["wal", "show"],
    ["approvals", "list"],
    ["agent", "list"],
    ["token", "inspect", "not-a-token"],
    ["up", "--port", "0"],
    ["run", str(EXAMPLES / "plans" / "report.yaml")],
]


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ('{"node_id": "local", "bogus": 1}', "BAD_INPUT.CONFIG"),
        ('{"node_id": 5}', "BAD_INPUT.CONFIG"),
        ('{"smtp": {"host": "127.0.0.1", "port": "25"}}', "BAD_INPUT.CONFIG"),
        ('{"node_id": "a", "node_id": "b"}', "BAD_INPUT.DUPLICATE_KEY"),
        ('{"node_id": "local",', "BAD_INPUT.CONFIG"),
        ('{"security": {"bogus": 1}}', "BAD_INPUT.CONFIG"),
        (
            '{"smtp": {"host": "127.0.0.1", "port": 25, "sender": "not an address"}}',
            "BAD_INPUT.CONFIG",
        ),
    ],
    ids=["unknown-key", "int-node-id", "str-port", "duplicate", "not-json", "security", "sender"],
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[:2]).split("/")[0])
def test_issue9_every_command_refuses_the_same_bad_config(
    data_dir: Path, config: str, code: str, command: list[str]
) -> None:
    (data_dir / "config.json").write_text(config)
    refused([*command, "-d", str(data_dir)], code, watch=data_dir)


def test_issue9_a_config_over_the_size_limit_is_refused_before_it_is_read(data_dir: Path) -> None:
    (data_dir / "config.json").write_text('{"node_id": "local"' + " " * (2 << 20) + "}")
    refused(["status", "-d", str(data_dir)], "BAD_INPUT.TOO_LARGE", watch=data_dir)


def test_issue9_the_wal_section_is_known(data_dir: Path) -> None:
    (data_dir / "config.json").write_text('{"wal": {"checkpoint_every": 1000}}')
    result = runner.invoke(app, ["status", "-d", str(data_dir)])
    assert result.exit_code == 0, result.output
    (data_dir / "config.json").write_text('{"wal": {"checkpoint_every": 0}}')
    refused(["status", "-d", str(data_dir)], "BAD_INPUT.CONFIG", watch=data_dir)


# -- a damaged log ----------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 0.5])
def test_issue9_status_on_a_truncated_log_is_an_error_not_a_traceback(
    data_dir: Path, keep: float
) -> None:
    wal = data_dir / "wal.sqlite3"
    size = wal.stat().st_size
    with wal.open("r+b") as f:
        f.truncate(int(size * keep))
    out = refused(["status", "-d", str(data_dir)], "WAL.READ_FAILED", watch=data_dir)
    assert "maos wal verify" in out


# -- a read-only data dir ----------------------------------------------------------------------


def _read_only(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``maos args`` with ``data_dir`` bind-mounted read-only in a private mount namespace."""
    d = shlex.quote(str(data_dir))
    script = f"mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec " + shlex.join(
        [*MAOS, *args]
    )
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def read_only_ok(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only bind mount needs root and unshare (CI has both)")
    probe = tmp_path / "probe"
    probe.mkdir()
    touch = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && touch {probe}/x"
    done = subprocess.run(["unshare", "-m", "sh", "-c", touch], capture_output=True, text=True)
    if "Read-only file system" not in done.stderr:
        pytest.skip(f"this host cannot make a read-only bind mount: {done.stderr.strip()}")


@pytest.mark.usefixtures("read_only_ok")
@pytest.mark.parametrize(
    "command",
    [["status"], ["wal", "show"], ["wal", "verify"], ["approvals", "list"], ["token", "inspect"]],
    ids=lambda c: "-".join(c),
)
def test_issue9_reading_commands_work_on_a_read_only_data_dir(
    _seeded: tuple[Path, str], data_dir: Path, command: list[str]
) -> None:
    args = [*command, _seeded[1]] if command[0] == "token" else command
    before = snapshot(data_dir)
    done = _read_only(data_dir, *args, "-d", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(data_dir) == before


@pytest.mark.usefixtures("read_only_ok")
@pytest.mark.parametrize(
    "command",
    [
        ["safe-state", "on", "--reason", "x"],
        ["agent", "pause", "a1"],
        ["run", str(EXAMPLES / "plans" / "report.yaml")],
    ],
    ids=lambda c: c[0],
)
def test_issue9_writing_commands_refuse_a_read_only_data_dir_clearly(
    data_dir: Path, command: list[str]
) -> None:
    before = snapshot(data_dir)
    done = _read_only(data_dir, *command, "-d", str(data_dir))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "error STATE.READ_ONLY:" in done.stderr, done.stderr
    assert snapshot(data_dir) == before


def test_issue9_after_the_demo_its_data_dir_serves_and_a_second_demo_is_refused(
    tmp_path: Path,
) -> None:
    """The README's `maos demo -d D && maos up -d D`: the demo's loopback SMTP port dies
    with it, so it must not be left in config.json for `maos up` to mail into."""
    demo = tmp_path / "demo"
    first = runner.invoke(app, ["demo", "-d", str(demo)])
    assert first.exit_code == 0, first.output
    assert KernelConfig.load(demo).smtp is None
    refused(["demo", "-d", str(demo)], "STATE.DATA_DIR_USED", watch=demo)
    with subprocess.Popen(
        [*MAOS, "up", "-d", str(demo), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert first_line.startswith("MAOS Commander on"), first_line + rest
