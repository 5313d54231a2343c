"""`maos mcp-runtime build` (issue 13, item 2): the read-only runtime of upstream pods."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.pod.upstream_runtime import runtime_key

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="checks what uid nobody can use")


@pytest.fixture
def cache() -> Iterator[Path]:
    """A world-traversable directory (pytest's tmp_path is 0700: nobody cannot mount it)."""
    path = Path(tempfile.mkdtemp(prefix="maos-rt-test-"))
    path.chmod(0o755)
    yield path / "runtimes"
    shutil.rmtree(path, ignore_errors=True)


def build(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["mcp-runtime", "build", *args])
    return result.exit_code, result.output


def test_runtime_is_built_once_world_readable_and_runs_as_nobody(cache: Path) -> None:
    umask = os.umask(0o077)  # a kernel started with a strict umask still builds for nobody
    try:
        code, out = build("--out", str(cache), "--json")
    finally:
        os.umask(umask)
    assert code == 0, out
    info = json.loads(out)
    root = Path(info["root"])
    assert root == cache / runtime_key([])
    marker = (root / ".complete").stat().st_mtime_ns
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            assert path.stat().st_mode & stat.S_IROTH, path
    ran = subprocess.run(
        [info["python"], "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        user=65534,
        check=True,
    )
    assert ran.stdout.strip() == str(root)  # the venv, on Debian's interpreter, as nobody
    code, out = build("--out", str(cache), "--json")
    assert code == 0 and json.loads(out)["root"] == str(root)
    assert (root / ".complete").stat().st_mtime_ns == marker  # cached, not rebuilt


def test_a_half_built_runtime_is_rebuilt(cache: Path) -> None:
    root = cache / runtime_key([])
    root.mkdir(parents=True)
    (root / "left-by-a-killed-build").write_text("")
    code, out = build("--out", str(cache))
    assert code == 0, out
    assert not (root / "left-by-a-killed-build").exists()
    assert (root / ".complete").exists()


def test_runtime_refuses_a_cache_nobody_cannot_reach(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    code, out = build("--out", str(tmp_path / "rt"))
    assert code == 2
    assert "error POD.RUNTIME.UNREACHABLE" in out


def test_runtime_reports_a_failed_build_and_leaves_nothing(cache: Path) -> None:
    code, out = build("--out", str(cache), "-p", "not a requirement!!")
    assert code == 2
    assert "error POD.RUNTIME.BUILD_FAILED" in out
    assert not (cache / runtime_key(["not a requirement!!"])).exists()
