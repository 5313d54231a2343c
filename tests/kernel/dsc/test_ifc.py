"""Check 4: R6 (no down-flow without declassification) and R10 (untrusted data never picks
a target), and the target matching both R10 and R7 rely on."""

from __future__ import annotations

import pytest
from dsc_support import UNTRUSTED_WEB, WORKSPACE, code_of, make_input

from maos.kernel.dsc.base import TaskView
from maos.kernel.dsc.ifc import IfcCheck, is_trusted_target
from maos.kernel.labels import Conf, Integrity, Label
from maos.kernel.types import Pending

ifc = IfcCheck()
SECRET = Label(Conf.SECRET, Integrity.TRUSTED, frozenset({"vault:passport"}))


def test_r6_secret_context_cannot_flow_to_email() -> None:
    decision = ifc(make_input("email.send", "cfo@example.com", context=SECRET))
    assert code_of(decision) == "RULE.R6.IFC_DOWNFLOW"
    assert "SECRET" in decision.reason  # type: ignore[union-attr]


def test_r6_confidential_context_cannot_flow_to_http() -> None:
    context = Label(Conf.CONFIDENTIAL)
    decision = ifc(make_input("http.request", "https://api.example.com/", context=context))
    assert code_of(decision) == "RULE.R6.IFC_DOWNFLOW"


def test_r6_workspace_accepts_confidential_but_not_secret() -> None:
    assert code_of(ifc(make_input("fs.write", "a.txt", context=Label(Conf.CONFIDENTIAL)))) == (
        "ALLOW"
    )
    assert code_of(ifc(make_input("fs.write", "a.txt", context=SECRET))) == "RULE.R6.IFC_DOWNFLOW"


def test_r6_public_data_flows_anywhere() -> None:
    assert code_of(ifc(make_input("email.send", "cfo@example.com"))) == "ALLOW"


@pytest.mark.parametrize(
    ("declassified_to", "op", "target", "expected"),
    [
        (Conf.PUBLIC, "email.send", "cfo@example.com", "ALLOW"),
        (Conf.INTERNAL, "email.send", "cfo@example.com", "RULE.R6.IFC_DOWNFLOW"),
        (Conf.INTERNAL, "fs.write", "a.txt", "ALLOW"),
        (Conf.CONFIDENTIAL, "fs.write", "a.txt", "ALLOW"),
        (Conf.SECRET, "fs.write", "a.txt", "RULE.R6.IFC_DOWNFLOW"),
    ],
)
def test_r6_declassification_to_a_level_releases_to_sinks_at_or_above_it(
    declassified_to: Conf, op: str, target: str, expected: str
) -> None:
    inp = make_input(op, target, context=SECRET, declassified_to=declassified_to)
    assert code_of(ifc(inp)) == expected


def test_r6_ops_without_a_sink_carry_no_data() -> None:
    assert code_of(ifc(make_input("fs.read", "a.txt", context=SECRET))) == "ALLOW"


def test_r10_untrusted_context_cannot_choose_email_recipient() -> None:
    inp = make_input(
        "email.send",
        "attacker@evil.example",
        extra_targets=["cfo@example.com"],
        trusted=["cfo@example.com"],
        context=UNTRUSTED_WEB,
    )
    decision = ifc(inp)
    assert isinstance(decision, Pending)
    assert (decision.code, decision.rule) == ("RULE.R10.UNTRUSTED_TARGET", "R10")
    assert decision.details["targets"] == ["attacker@evil.example"]
    assert decision.details["context_sources"] == ["https://evil.example/page"]


def test_r10_targets_named_by_the_task_still_work_in_untrusted_context() -> None:
    inp = make_input(
        "email.send", "CFO@Example.COM", trusted=["CFO@example.com"], context=UNTRUSTED_WEB
    )
    assert code_of(ifc(inp)) == "ALLOW"


def test_r10_commander_approval_satisfies_it() -> None:
    inp = make_input("email.send", "new@evil.example", context=UNTRUSTED_WEB, approved=True)
    assert code_of(ifc(inp)) == "ALLOW"


def test_r10_trusted_context_is_not_asked() -> None:
    assert code_of(ifc(make_input("email.send", "new@example.com"))) == "ALLOW"


def test_r10_paths_outside_the_workspace_are_flagged() -> None:
    for target in ("/etc/passwd", "../other-task/secret.txt", "~/.ssh/id_rsa"):
        decision = ifc(make_input("fs.read", target, context=UNTRUSTED_WEB))
        assert code_of(decision) == "RULE.R10.UNTRUSTED_TARGET", target
    for target in ("notes.txt", "sub/../notes.txt", f"{WORKSPACE}/notes.txt", WORKSPACE, ""):
        assert code_of(ifc(make_input("fs.read", target, context=UNTRUSTED_WEB))) == "ALLOW"


def test_r10_url_with_userinfo_is_not_the_trusted_host() -> None:
    inp = make_input(
        "http.request",
        "https://api.example.com@evil.example/x",
        trusted=["api.example.com"],
        context=UNTRUSTED_WEB,
    )
    assert code_of(ifc(inp)) == "RULE.R10.UNTRUSTED_TARGET"


TASK = TaskView(
    "t1",
    WORKSPACE,
    frozenset(
        {
            "api.example.com",
            "https://files.example.com/reports/",
            "cfo@example.com",
            "/srv/shared/",
            "/srv/inbox.txt",
        }
    ),
)


@pytest.mark.parametrize(
    ("kind", "target", "trusted"),
    [
        ("url", "https://api.example.com/v1/users?id=3", True),
        ("url", "HTTPS://API.EXAMPLE.COM./v1", True),
        ("url", "https://api.example.com:443/", True),
        ("url", "https://api.example.com:8443/", False),
        ("url", "http://api.example.com/", True),
        ("url", "https://api.example.com.evil.example/", False),
        ("url", "https://api.example.com@evil.example/", False),
        ("url", "https://evil.example\\@api.example.com/", False),
        ("url", "https://evil.example/api.example.com", False),
        ("url", "ftp://api.example.com/", False),
        ("url", "https://files.example.com/reports/q3.pdf", True),
        ("url", "https://files.example.com/reports/../admin", False),
        ("url", "https://files.example.com/reports/%2e%2e/admin", False),
        ("url", "https://files.example.com/other/q3.pdf", False),
        ("url", "https://files.example.com/reportsX/q3.pdf", False),
        ("url", "https://[::1", False),
        ("recipient", "cfo@example.com", True),
        ("recipient", "cfo@EXAMPLE.com", True),
        ("recipient", "CFO@example.com", True),  # issue 8: one spelling per address
        ("recipient", "Evil <attacker@evil.example> cfo@example.com", False),
        ("recipient", "cfo@example.com,attacker@evil.example", False),
        ("recipient", '"cfo@example.com"@evil.example', False),
        ("path", "reports/q3.md", True),
        ("path", "", True),
        ("path", "/srv/shared/data.csv", True),
        ("path", "/srv/shared/../secrets/key", False),
        ("path", "/srv/inbox.txt", True),
        ("path", "/srv/inbox.txt.bak", False),
        ("path", "..\\..\\etc\\passwd", False),
        ("path", "C:/Windows", False),
    ],
)
def test_target_matching(kind: str, target: str, trusted: bool) -> None:
    assert is_trusted_target(kind, target, TASK) is trusted
