"""``maos agent run --frameworks`` (issue 13, item 5): a framework agent from the console.

The user's path: the OpenAI Agents SDK example, the kernel's LLM gateway configured from
the environment (a real loopback model server), the frameworks' runtime mounted into a
real level-2 pod. Without ``--frameworks`` the pod has no framework at all: the kernel's
own environment never reaches it.
"""

from __future__ import annotations

from pathlib import Path

from framework_scenario import EXAMPLES
from typer.testing import CliRunner

from maos.cli import app
from maos.pod.upstream_runtime import Runtime
from maos.testing import loopback_openai
from maos.testing.obedient import ObedientModel

EXAMPLE = str(EXAMPLES / "openai_agents_agent.py")
GRANTS = ["--grant", "llm.complete|*", "--grant", "fs.read|*"]


def _run(tmp_path: Path, *extra: str) -> tuple[int, str, int]:
    with loopback_openai(policy=ObedientModel({}, answer="Nothing to do.")) as server:
        result = CliRunner().invoke(
            app,
            ["agent", "run", EXAMPLE, *GRANTS, *extra, "-d", str(tmp_path / "d")],
            env={"MAOS_LLM_BASE_URL": server.url, "MAOS_LLM_MODEL": "m"},
        )
        return result.exit_code, result.output, len(server.requests)


def test_issue_13_agent_run_with_frameworks_thinks_through_the_configured_llm(
    tmp_path: Path, frameworks: Runtime
) -> None:
    code, out, asked = _run(tmp_path, "--frameworks")
    assert code == 0, out
    assert "committed  llm.complete" in out
    assert 'MAOS_RESULT {"answer": "Nothing to do.", "calls": []}' in out
    assert asked == 1


def test_without_frameworks_the_pod_has_none(tmp_path: Path, frameworks: Runtime) -> None:
    code, out, asked = _run(tmp_path)
    assert code == 1
    assert "ModuleNotFoundError: No module named 'agents'" in out
    assert asked == 0
