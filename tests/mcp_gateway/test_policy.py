"""gateway.yaml: the shipped schema is the models', bad policies are refused by field, and
the operator's rules refuse what they cannot judge (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maos.kernel.errors import InputError
from maos.mcp.policy import SCHEMA_PATH, ToolPolicy, load_policy, policy_schema
from maos.mcp.rules import compile_rules


def test_issue_13_shipped_schema_is_the_models_schema() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == policy_schema()


GOOD = """
task: "Mail boss@example.com"
effects: [send]
upstreams:
  mail: {command: /bin/true}
"""


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD + "surprise: 1\n", "surprise"),
        (GOOD.replace("[send]", "[launch]"), "effects.0"),
        (GOOD + "default: allow\n", "default"),
        (GOOD + "tools: {mail: {send: {effect: send, targets: {to: email}}}}\n", "targets"),
        (GOOD + "tools: {other: {send: {effect: send}}}\n", "(top level)"),
        (GOOD.replace("{command: /bin/true}", "{command: /bin/true, url: http://x}"), "mail"),
        (GOOD + "tools: {mail: {send: {effect: send, args: {p: {}}}}}\n", "args.p"),
        (GOOD.replace("/bin/true}", "/bin/true, sandbox: {egress: [127.1:80]}}"), "sandbox"),
        (GOOD.replace("/bin/true}", "/bin/true, sandbox: {egress: ['a.com']}}"), "sandbox"),
        (GOOD.replace("/bin/true}", "/bin/true, env: {PATH: /evil}}"), "mail"),
        (GOOD.replace("/bin/true}", "/bin/true, env: {api_key: x}}"), "mail"),
        (GOOD.replace("/bin/true}", "/bin/true, sandbox: {level: 1}}"), "sandbox.level"),
        (GOOD.replace("/bin/true}", "/bin/true, sandbox: {level: none, files: [/x]}}"), "sandbox"),
        (GOOD.replace("/bin/true}", "/bin/true, sandbox: {files: [x.py]}}"), "sandbox"),
        (GOOD.replace("/bin/true}", "/bin/true, cwd: /srv}"), "mail"),
        (GOOD.replace("/bin/true}", "/bin/true, env: {K: a}, secrets: {K: /k}}"), "mail"),
        (GOOD.replace("{command: /bin/true}", "{url: 'http://x/mcp', sandbox: {}}"), "mail"),
    ],
)
def test_issue_13_bad_policy_is_refused_naming_the_field(
    tmp_path: Path, text: str, where: str
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_policy(path)
    assert err.value.code == "BAD_INPUT.POLICY"
    assert where in err.value.message


def test_issue_13_good_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD)
    assert load_policy(path).upstreams["mail"].command == "/bin/true"


def test_issue_13_argument_rules_refuse_what_they_cannot_judge() -> None:
    tool = ToolPolicy.model_validate(
        {
            "effect": "pay",
            "args": {"path": {"under": "/srv/reports"}, "amount": {"max": 500}},
        }
    )
    rules = compile_rules(tool)
    ok = {"path": "/srv/reports/q3.txt", "amount": "499.99"}
    assert rules.check(ok) is None
    for bad in (
        {"path": "/srv/reports/../secrets", "amount": 1},
        {"path": "reports/q3.txt", "amount": 1},
        {"path": "/srv/reportsX/q3", "amount": 1},
        {"path": "/srv/reports/q3", "amount": 500.01},
        {"path": "/srv/reports/q3", "amount": "NaN"},
        {"path": "/srv/reports/q3", "amount": True},
        {"path": "/srv/reports/q3"},
    ):
        refusal = rules.check(bad)
        assert refusal is not None and refusal.code == "MCP.RULE.ARG", bad


def test_issue_13_rate_and_call_count_rules() -> None:
    now = [0.0]
    tool = ToolPolicy.model_validate(
        {"effect": "read", "rate": {"per_s": 1, "burst": 2}, "max_calls": 3}
    )
    rules = compile_rules(tool, calls=1)
    rules.clock = lambda: now[0]
    rules._stamp = 0.0
    assert rules.check({}) is None
    assert rules.check({}) is None
    refusal = rules.check({})
    assert refusal is not None and refusal.code == "MCP.RULE.RATE"
    now[0] = 5.0
    rules.committed()
    rules.committed()
    refusal = rules.check({})
    assert refusal is not None and refusal.code == "MCP.RULE.MAX_CALLS"


def test_issue_13_relative_paths_are_the_policy_files_own(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "gateway.yaml"
    path.parent.mkdir()
    path.write_text(
        GOOD.replace(
            "{command: /bin/true}",
            "{command: ./srv.py, args: [./srv.py, -v, x/y], secrets: {K: ../k},"
            " sandbox: {files: [./srv.py], writable: [./data]}}",
        )
        + "runtime_cache: ./rt\n"
    )
    policy = load_policy(path)
    up = policy.upstreams["mail"]
    here = str(path.parent)
    assert up.command == f"{here}/srv.py" and up.args == [f"{here}/srv.py", "-v", "x/y"]
    assert up.secrets == {"K": f"{tmp_path}/k"}
    assert (up.sandbox.files, up.sandbox.writable) == ([f"{here}/srv.py"], [f"{here}/data"])
    assert policy.runtime_cache == f"{here}/rt"
    assert up.sandbox.level == 2  # the default: a pod


def test_issue_13_the_shipped_example_policy_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "mcp" / "gateway.yaml"
    policy = load_policy(example)
    assert policy.tools["notes"]["read_note"].effect == "read"
    notes = policy.upstreams["notes"]
    assert notes.sandbox.level == 2 and Path(notes.sandbox.files[0]).is_file()
