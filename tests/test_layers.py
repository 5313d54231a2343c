"""The ring boundaries hold: checked by import-linter's contracts in pyproject.toml."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_kernel_source_never_names_upper_rings() -> None:
    """Catches imports hidden from static analysis (importlib, __import__ with a literal)."""
    upper = ("maos.services", "maos.pod", "maos.sdk", "maos.llm", "maos.commander", "maos.cli")
    for path in (ROOT / "src/maos/kernel").rglob("*.py"):
        text = path.read_text()
        for name in upper:
            assert name not in text, f"{path} mentions {name}"


@pytest.mark.parametrize("package", ["sdk", "tool"])
def test_pod_packages_import_only_the_stdlib_and_themselves(package: str) -> None:
    """`maos.sdk` (agents) and `maos.tool` (the tool host) run where nothing else is."""
    for path in (ROOT / "src/maos" / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                names = [node.module]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in sys.stdlib_module_names
                assert ok or name.startswith(f"maos.{package}"), f"{path.name} imports {name}"
