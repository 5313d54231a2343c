"""Issue 9: plan files that are bombs, too big, or name what does not exist."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from maos.services.plan import PlanError, load_plan

MINIMAL = """\
task: t
prompt: {prompt}
agents: {{a: {{script: hello}}}}
steps: {{s: {{agent: a, grants: ["fs.read|*"]}}}}
"""
BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
task: bomb
prompt: *g
"""


def _code(tmp_path: Path, text: str) -> PlanError:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    return info.value


def test_issue9_a_billion_laughs_is_refused_while_composing(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        error = _code(tmp_path, BOMB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "BAD_INPUT.YAML_ALIASES" and error.fields["line"] == 1
    assert peak < 10 * 1024 * 1024


def test_issue9_an_anchor_and_a_merge_key_are_refused_too(tmp_path: Path) -> None:
    text = MINIMAL.format(prompt="hi") + "defaults: &d {retries: 1}\nother: {<<: *d}\n"
    assert _code(tmp_path, text).code == "BAD_INPUT.YAML_ALIASES"


def test_issue9_a_plan_file_over_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    error = _code(tmp_path, MINIMAL.format(prompt="x") + "#" * (2 * 1024 * 1024) + "\n")
    assert error.code == "BAD_INPUT.TOO_LARGE"


def test_issue9_an_oversized_prompt_is_refused_at_load_with_its_own_code(tmp_path: Path) -> None:
    error = _code(tmp_path, MINIMAL.format(prompt="y" * (512 * 1024)))
    assert error.code == "BAD_INPUT.TOO_LARGE" and error.fields["path"] == "prompt"


def test_issue9_a_missing_tool_module_is_called_a_tool_module(tmp_path: Path) -> None:
    error = _code(tmp_path, MINIMAL.format(prompt="hi") + "tool_modules: [no_such_module]\n")
    assert error.code == "PLAN.INVALID" and error.fields["path"] == "tool_modules[0]"
    assert "no shipped tool module named 'no_such_module'" in error.message
    assert "agent" not in error.message
