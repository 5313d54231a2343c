"""Check 5: the mandatory rules decided per intent (R1, R4, R5, R7, R8)."""

from __future__ import annotations

import pytest
from dsc_support import DATA_DIR, code_of, make_input

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.dsc.rules import RULES, RulesCheck
from maos.kernel.ops import OPS, OpSpec
from maos.kernel.types import EffectClass, Pending

rules = RulesCheck(protected=(DATA_DIR, "wal.sqlite3"))


def test_every_constitutional_rule_has_a_statement() -> None:
    assert list(RULES) == [f"R{n}" for n in range(1, 12)]
    assert all(statement.endswith(".") for statement in RULES.values())


def test_r1_unknown_op_is_denied() -> None:
    decision = rules(make_input("shell.exec", "rm -rf /"))
    assert code_of(decision) == "RULE.R1.UNKNOWN_OP"
    assert "shell.exec" in decision.reason  # type: ignore[union-attr]


@pytest.mark.parametrize("op", ["admin.configure", "admin.approve", "admin.revoke", "wal.truncate"])
def test_r4_agent_cannot_configure_the_kernel(op: str) -> None:
    assert code_of(rules(make_input(op, ""))) == "RULE.R4.PROTECTED"


@pytest.mark.parametrize(
    "target",
    [
        f"{DATA_DIR}/keys/root.key",
        f"{DATA_DIR}/wal.sqlite3",
        DATA_DIR,
        "../../keys/root.key",  # from the workspace /srv/maos/workspaces/t1
        "sub/.MAOS/config.json",
        "exports/wal.sqlite3",
        "..\\..\\wal.sqlite3",
    ],
)
def test_r4_agent_cannot_touch_the_kernel_data(target: str) -> None:
    assert code_of(rules(make_input("fs.write", target))) == "RULE.R4.PROTECTED"


def test_r4_a_workspace_around_the_data_dir_does_not_expose_it() -> None:
    inp = make_input("fs.read", "keys/root.key", workspace=DATA_DIR)
    assert code_of(rules(inp)) == "RULE.R4.PROTECTED"
    inp = make_input("fs.read", "maos/keys/root.key", workspace="/srv")
    assert code_of(rules(inp)) == "RULE.R4.PROTECTED"


def test_r4_protects_maos_dirs_even_when_not_configured() -> None:
    assert code_of(RulesCheck()(make_input("fs.read", "/home/u/.maos/keys/root.key"))) == (
        "RULE.R4.PROTECTED"
    )


def test_r4_every_target_is_checked() -> None:
    decision = rules(make_input("fs.delete", "a.txt", extra_targets=[f"{DATA_DIR}/wal.sqlite3"]))
    assert code_of(decision) == "RULE.R4.PROTECTED"


def test_r4_leaves_ordinary_workspace_paths_alone() -> None:
    for target in ("notes.txt", "keys/list.md", "maos/readme.md", "/srv/maosx/file"):
        assert code_of(rules(make_input("fs.write", target))) == "ALLOW", target


@pytest.mark.parametrize("op", ["admin.promote", "ring.set", "agent.promote", "admin.set_ring"])
def test_r5_agent_cannot_promote_itself(op: str) -> None:
    assert code_of(rules(make_input(op, "a1"))) == "RULE.R5.NO_SELF_PROMOTION"


@pytest.mark.parametrize("op", ["admin.heartbeat", "lock.acquire", "lock.release"])
def test_agent_kernel_ops_are_allowed(op: str) -> None:
    assert code_of(rules(make_input(op, "report.md"))) == "ALLOW"


def test_r7_delete_needs_approval() -> None:
    decision = rules(make_input("fs.delete", "old.txt"))
    assert isinstance(decision, Pending)
    assert (decision.code, decision.rule) == ("RULE.R7.APPROVAL_REQUIRED", "R7")
    assert decision.details["effect_class"] == "delete"


def test_r7_email_to_a_recipient_the_task_never_named_needs_approval() -> None:
    decision = rules(
        make_input(
            "email.send",
            "cfo@example.com",
            params={"cc": ["new@x.example"]},
            extra_targets=["new@x.example"],
            trusted=["cfo@example.com"],
        )
    )
    assert isinstance(decision, Pending)
    assert decision.details["targets"] == ["new@x.example"]


def test_r7_http_to_a_trusted_host_and_approved_intents_pass() -> None:
    trusted_host = make_input(
        "http.request", "https://api.example.com/v1", trusted=["api.example.com"]
    )
    assert code_of(rules(trusted_host)) == "ALLOW"
    assert code_of(rules(make_input("fs.delete", "old.txt", approved=True))) == "ALLOW"
    assert code_of(rules(make_input("email.send", "new@x.example", approved=True))) == "ALLOW"


@pytest.mark.parametrize(
    "status", [AgentStatus.PAUSED, AgentStatus.QUARANTINED, AgentStatus.KILLED]
)
def test_r8_stopped_agent_is_denied_everything(status: AgentStatus) -> None:
    for op, target in (("fs.read", "a.txt"), ("admin.heartbeat", ""), ("fs.delete", "a.txt")):
        decision = rules(make_input(op, target, status=status, approved=True))
        assert code_of(decision) == f"RULE.R8.AGENT_{status.name}"


@pytest.mark.parametrize(
    ("op", "target", "expected"),
    [
        ("email.send", "boss@example.com", "RULE.R8.AGENT_ISOLATED"),
        ("http.request", "https://api.example.com/x", "RULE.R8.AGENT_ISOLATED"),
        ("msg.send", "other-agent", "RULE.R8.AGENT_ISOLATED"),
        ("shell.exec", "ls", "RULE.R8.AGENT_ISOLATED"),  # uncatalogued: outbound, fail closed
        ("fs.read", "a.txt", "ALLOW"),
        ("fs.write", "notes.txt", "ALLOW"),
        ("llm.complete", "", "ALLOW"),
        ("admin.heartbeat", "", "ALLOW"),
    ],
)
def test_r8_an_isolated_agent_keeps_working_but_nothing_goes_out(
    op: str, target: str, expected: str
) -> None:
    decision = rules(make_input(op, target, status=AgentStatus.ISOLATED, approved=True))
    assert code_of(decision) == expected


def test_r8_an_isolated_agents_external_tool_is_outbound_its_internal_one_is_not() -> None:
    ops = dict(OPS)
    ops["tool.lookup"] = OpSpec("tool.lookup", EffectClass.READ, None, True, "mixed")
    ops["tool.tidy"] = OpSpec("tool.tidy", EffectClass.WRITE, None, False, "mixed")
    check = RulesCheck(ops=ops)
    isolated = AgentStatus.ISOLATED
    assert code_of(check(make_input("tool.lookup", "q", status=isolated))) == (
        "RULE.R8.AGENT_ISOLATED"
    )
    assert code_of(check(make_input("tool.tidy", "x", status=isolated))) == "ALLOW"


def test_r8_outranks_the_other_rules() -> None:
    decision = rules(make_input("admin.promote", "", status=AgentStatus.QUARANTINED))
    assert code_of(decision) == "RULE.R8.AGENT_QUARANTINED"


def test_a_catalogue_changed_after_construction_is_what_decides() -> None:
    ops = dict(OPS)
    check = RulesCheck(ops=ops)
    assert code_of(check(make_input("fs.write", "notes.txt"))) == "ALLOW"
    ops["fs.write"] = OpSpec("fs.write", EffectClass.DELETE, None, False, "path")
    assert code_of(check(make_input("fs.write", "notes.txt"))) == "RULE.R7.APPROVAL_REQUIRED"
    ops["fs.archive"] = OpSpec("fs.archive", EffectClass.WRITE, None, False, "path")
    assert code_of(check(make_input("fs.archive", "notes.txt"))) == "ALLOW"
    assert code_of(check(make_input("fs.archive", ".maos/keys"))) == "RULE.R4.PROTECTED"
    del ops["fs.write"]
    assert code_of(check(make_input("fs.write", "notes.txt"))) == "RULE.R1.UNKNOWN_OP"
