"""Hostile YAML files given to the three commands that read one a person wrote - a plan
(`maos run`), a gateway policy (`maos mcp-gateway check`), a node's config (`maos
federation status`): each gets its error code and a sentence, never a traceback or a
hang, and nothing is written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app

BOMB = "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, c in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True)
)


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "fifo.yaml")  # nobody ever writes: an open that waits would wait forever
    return d / "fifo.yaml"


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return make


HOSTILE: dict[str, Callable[[Path], Path]] = {
    "fifo": _fifo,
    "dev-zero": lambda d: Path("/dev/zero"),
    "directory": lambda d: d,
    "deep": _write("deep.yaml", b"[" * 60_000),
    "not-utf8": _write("bad.yaml", b"task: \xff\xfe\n"),
    "bomb": _write("bomb.yaml", BOMB.encode()),
    "huge": _write("huge.yaml", b"# padding\n" * 300_000),
}
READERS = {
    "plan": (["run"], "PLAN.INVALID"),
    "policy": (["mcp-gateway", "check"], "BAD_INPUT.POLICY"),
    "node": (["federation", "status", "--config"], "FED.BAD_CONFIG"),
}
OTHER_CODES = {"bomb": "BAD_INPUT.YAML_ALIASES", "huge": "BAD_INPUT.TOO_LARGE"}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_a_hostile_yaml_file_is_an_error_code_not_a_traceback_or_a_hang(
    tmp_path: Path, reader: str, hostile: str
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    path = HOSTILE[hostile](files)
    argv, code = READERS[reader]
    data = tmp_path / "data"
    extra = ["-d", str(data)] if reader == "plan" else []
    shown = CliRunner().invoke(app, [*argv, str(path), *extra])  # a hang: pytest-timeout
    out = shown.output
    assert shown.exception is None or isinstance(shown.exception, SystemExit), out
    assert "Traceback" not in out, out
    assert shown.exit_code != 0, out
    wanted = OTHER_CODES.get(hostile, code)
    if reader == "node" and hostile in OTHER_CODES:
        wanted = code  # the federation's own code; the cause is in its sentence
    assert f"error {wanted}" in out, out
    assert not data.exists()  # refused before anything was written
