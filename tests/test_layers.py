"""The ring boundaries hold: checked by import-linter's contracts in pyproject.toml."""

import subprocess
import sys
from pathlib import Path

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
