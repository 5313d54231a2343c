"""``maos agent-runtime build`` (issue 13, item 5): the frameworks' read-only runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from maos.cli import app
from maos.pod.agent_runtime import requirements
from maos.pod.upstream_runtime import Runtime


def test_every_framework_package_is_pinned_exactly() -> None:
    pins = requirements()
    assert pins and all(p.count("==") == 1 and ";" not in p for p in pins)
    names = {p.split("==")[0].lower() for p in pins}
    assert {"openai-agents", "langgraph", "langchain-openai", "pydantic-ai-slim"} <= names


def test_issue_13_a_cache_others_may_write_is_refused_before_anything_is_built(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # a /var/tmp-like directory anyone could have planted a runtime in
    result = CliRunner().invoke(app, ["agent-runtime", "build", "--out", str(shared)])
    assert result.exit_code == 2
    assert "error POD.RUNTIME.UNSAFE_CACHE:" in result.output
    assert list(shared.iterdir()) == []


def test_the_built_runtime_is_found_again_and_world_readable(frameworks: Runtime) -> None:
    result = CliRunner().invoke(app, ["agent-runtime", "build", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["root"] == str(frameworks.root)
    agents = next(frameworks.root.glob("lib/python3*/site-packages/agents/__init__.py"))
    assert os.stat(agents).st_mode & 0o004  # pods run as nobody
