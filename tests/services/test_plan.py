"""Plan files: strict validation with stable codes and the field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maos.services.plan import PlanError, load_plan, parse_plan

EXAMPLE = Path(__file__).parents[2] / "examples" / "plans" / "report.yaml"


def plan(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "task": "t1",
        "prompt": "Write the report.",
        "agents": {"a": {"script": "hello"}, "b": {"script": "hello", "ring": 2}},
        "steps": {
            "one": {"agent": "a", "grants": ["fs.write|*"]},
            "two": {"agent": "b", "needs": ["one"], "grants": ["fs.read|x.txt|0"]},
        },
    }
    raw.update(changes)
    return raw


def code_of(raw: object) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan(raw)
    return info.value


def test_the_shipped_example_is_valid_and_ordered() -> None:
    loaded = load_plan(EXAMPLE)
    assert loaded.order() == ["draft", "publish"]
    assert all(Path(a.script).is_file() for a in loaded.agents.values())


def test_a_missing_field_is_invalid_with_its_path() -> None:
    raw = plan()
    del raw["prompt"]
    err = code_of(raw)
    assert err.code == "PLAN.INVALID" and err.fields["path"] == "prompt"
    assert "required" in err.message


def test_an_unknown_field_is_refused_not_ignored() -> None:
    raw = plan()
    raw["steps"]["one"]["retry"] = 2
    err = code_of(raw)
    assert err.code == "PLAN.INVALID" and err.fields["path"] == "steps.one.retry"


def test_values_are_not_coerced() -> None:
    raw = plan()
    raw["steps"]["one"]["retries"] = "2"
    assert code_of(raw).fields["path"] == "steps.one.retries"
    assert code_of(plan(agents={"a": {"script": "hello", "ring": 1}})).code == "PLAN.INVALID"


def test_a_dependency_cycle_is_named() -> None:
    raw = plan()
    raw["steps"]["one"]["input_from"] = ["two"]
    err = code_of(raw)
    assert err.code == "PLAN.CYCLE" and err.fields["steps"] == ["one", "two"]


def test_a_dependency_on_a_missing_step() -> None:
    raw = plan()
    raw["steps"]["two"]["needs"] = ["zero"]
    err = code_of(raw)
    assert err.code == "PLAN.UNKNOWN_STEP" and err.fields["path"] == "steps.two.needs"


def test_a_step_of_a_missing_agent() -> None:
    raw = plan()
    raw["steps"]["two"]["agent"] = "c"
    assert code_of(raw).code == "PLAN.UNKNOWN_AGENT"


@pytest.mark.parametrize(
    "grant", ["fs.write", "fs.write|a|b|c", "fs.write|*x", "bad op|*", "x|y|-1"]
)
def test_a_grant_the_kernel_would_refuse_stops_the_plan(grant: str) -> None:
    raw = plan()
    raw["steps"]["one"]["grants"] = [grant]
    err = code_of(raw)
    assert err.code == "PLAN.INVALID" and err.fields["path"] == "steps.one.grants.0"


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    assert code_of(["task"]).code == "PLAN.INVALID"
    bad = tmp_path / "p.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(PlanError) as info:
        load_plan(bad)
    assert info.value.code == "PLAN.INVALID"
