"""Grants by effect class, tool targets of several kinds, and R7 for classes a plan names.

Tools are ops catalogued at registration (`tool_spec`); the checks read the catalogue
they are given, so these tests build one with a payment tool and a password tool.
"""

from __future__ import annotations

import pytest
from dsc_support import UNTRUSTED_WEB, code_of, make_input, manifest, tool_input

from maos.kernel.dsc.base import TaskView
from maos.kernel.dsc.ifc import IfcCheck, is_trusted_target
from maos.kernel.dsc.rules import RulesCheck
from maos.kernel.identifiers import extract_amounts
from maos.kernel.ops import OPS, tool_spec
from maos.kernel.types import EffectClass, Pending

E = EffectClass
PAY = manifest("pay", "pay", {"iban": "account"}, params={"cents": "integer"}, amount="cents")
SET_PASSWORD = manifest("set_password", "credentials", {}, external=False)
NOTIFY = manifest("notify", "send", {"to": "recipient", "phone": "phone"})
CANCEL = manifest("cancel_event", ["delete", "send"], {"attendees[].email": "recipient"})
CATALOGUE = {**OPS, **{f"tool.{m.name}": tool_spec(m) for m in (PAY, SET_PASSWORD, NOTIFY, CANCEL)}}
rules = RulesCheck(ops=CATALOGUE)
ifc = IfcCheck(CATALOGUE)
IBAN = "DE89370400440532013000"


@pytest.mark.parametrize(
    ("op", "target", "params", "classes", "code"),
    [
        ("fs.delete", "ledger.csv", {}, [E.READ, E.WRITE], "RULE.R2.EFFECT_CLASS_NOT_GRANTED"),
        ("fs.write", "a.txt", {}, [E.READ], "RULE.R2.EFFECT_CLASS_NOT_GRANTED"),
        ("fs.write", "a.txt", {}, [E.WRITE], "ALLOW"),
        ("fs.read", "a.txt", {}, [], "ALLOW"),  # reading is never a class to ask for
        ("email.send", "boss@example.com", {}, [E.READ], "RULE.R2.EFFECT_CLASS_NOT_GRANTED"),
        ("http.request", "https://a.example/x", {"method": "GET"}, [E.READ], "ALLOW"),
        (
            "http.request",
            "https://a.example/x",
            {"method": "POST"},
            [E.READ],
            "RULE.R2.EFFECT_CLASS_NOT_GRANTED",
        ),
        ("msg.send", "a2", {}, [], "ALLOW"),  # stays inside MAOS
        ("llm.complete", "default", {}, [], "ALLOW"),
    ],
)
def test_a_task_refuses_classes_its_plan_did_not_ask_for(
    op: str, target: str, params: dict[str, str], classes: list[EffectClass], code: str
) -> None:
    trusted = ["boss@example.com", "https://a.example/x", IBAN]
    inp = make_input(op, target, params=params, effect_classes=classes, trusted=trusted)
    assert code_of(rules(inp)) == code


@pytest.mark.parametrize(
    ("tool", "args", "classes", "code"),
    [
        (SET_PASSWORD, {}, [E.READ, E.SEND], "RULE.R2.EFFECT_CLASS_NOT_GRANTED"),
        (PAY, {"iban": IBAN, "cents": 1}, [E.READ, E.SEND], "RULE.R2.EFFECT_CLASS_NOT_GRANTED"),
        (CANCEL, {"attendees": [{"email": "boss@example.com"}]}, [E.DELETE], "RULE.R2."),
        (CANCEL, {"attendees": [{"email": "boss@example.com"}]}, [E.SEND], "RULE.R2."),
        (CANCEL, {"attendees": [{"email": "boss@example.com"}]}, [E.SEND, E.DELETE], "ALLOW"),
    ],
)
def test_a_tool_call_needs_every_class_of_its_manifest_granted_issue_8(
    tool: object, args: dict[str, object], classes: list[EffectClass], code: str
) -> None:
    inp = tool_input(tool, args, effect_classes=classes, trusted=["boss@example.com", IBAN])  # type: ignore[arg-type]
    assert code_of(rules(inp)).startswith(code)


def test_without_effect_classes_high_impact_always_asks() -> None:
    inp = tool_input(PAY, {"iban": IBAN, "cents": 5}, trusted=[IBAN])
    decision = rules(inp)
    assert isinstance(decision, Pending) and decision.code == "RULE.R7.APPROVAL_REQUIRED"


def test_a_class_the_plan_names_asks_only_for_unnamed_targets() -> None:
    named = tool_input(PAY, {"iban": IBAN, "cents": 5}, trusted=[IBAN], effect_classes=[E.PAY])
    assert code_of(rules(named)) == "ALLOW"
    foreign = tool_input(
        PAY,
        {"iban": "GB33BUKB20201555555555", "cents": 5},
        trusted=[IBAN],
        effect_classes=[E.PAY],
    )
    decision = rules(foreign)
    assert isinstance(decision, Pending)
    assert list(decision.details["targets"]) == ["GB33BUKB20201555555555"]


def test_each_tool_target_is_checked_by_its_own_kind() -> None:
    # notify(to=recipient, phone=phone): the recipient is named, the phone is not.
    args = {"to": "boss@example.com", "phone": "+44 20 7946 0000"}
    inp = tool_input(
        NOTIFY, args, trusted=["boss@example.com"], context=UNTRUSTED_WEB, effect_classes=[E.SEND]
    )
    decision = ifc(inp)
    assert isinstance(decision, Pending) and decision.code == "RULE.R10.UNTRUSTED_TARGET"
    assert list(decision.details["targets"]) == ["+44 20 7946 0000"]
    trusted = ["boss@example.com", "+442079460000"]
    named = tool_input(NOTIFY, args, trusted=trusted, context=UNTRUSTED_WEB)
    assert code_of(ifc(named)) == "ALLOW"


def test_a_tool_intent_without_kinds_matches_only_exact_names_and_is_refused() -> None:
    args = {"iban": "DE89 3704 0044 0532 0130 00", "cents": 5}
    inp = tool_input(PAY, args, trusted=[IBAN], context=UNTRUSTED_WEB, target_kinds=[])
    assert isinstance(ifc(inp), Pending)  # no kinds: "unknown", so no spacing-free match
    assert code_of(rules(inp)) == "TOOL.TARGET_MISMATCH"  # issue 8: and the rules refuse it


@pytest.mark.parametrize(
    ("kind", "target", "trusted"),
    [
        ("account", "DE89 3704 0044 0532 0130 00", True),
        ("account", "de89370400440532013000", True),
        ("account", "DE89370400440532013001", False),
        ("account", "DE89-3704", False),
        ("phone", "+44 (20) 7946-0000", True),
        ("phone", "+44 20 7946 0001", False),
        ("phone", "call +442079460000", False),
        ("none", "", True),
    ],
)
def test_account_and_phone_matching(kind: str, target: str, trusted: bool) -> None:
    task = TaskView("t1", trusted_targets=frozenset({IBAN, "+442079460000"}))
    assert is_trusted_target(kind, target, task) is trusted


def test_untrusted_content_cannot_choose_a_sum_when_the_task_named_one() -> None:
    def pay(cents: int, **kw: object) -> object:
        return ifc(tool_input(PAY, {"iban": IBAN, "cents": cents}, trusted=[IBAN], **kw))

    assert code_of(pay(125_000, context=UNTRUSTED_WEB, amounts=[125_000])) == "ALLOW"
    inflated = pay(390_000, context=UNTRUSTED_WEB, amounts=[125_000])
    assert isinstance(inflated, Pending) and inflated.code == "RULE.R10.UNTRUSTED_AMOUNT"
    assert inflated.details["amount_cents"] == 390_000
    assert code_of(pay(390_000, amounts=[125_000])) == "ALLOW"  # trusted context: its own
    assert code_of(pay(390_000, context=UNTRUSTED_WEB)) == "ALLOW"  # no sum was named
    assert code_of(pay(390_000, context=UNTRUSTED_WEB, amounts=[1], approved=True)) == "ALLOW"
    again = pay(125_000, context=UNTRUSTED_WEB, amounts=[125_000], paid=[(IBAN, 125_000)])
    assert isinstance(again, Pending) and "already paid" in again.reason
    # issue 8: the same account spelled otherwise was paid all the same
    spaced = ifc(
        tool_input(
            PAY,
            {"iban": "DE89 3704 0044 0532 0130 00", "cents": 125_000},
            trusted=[IBAN],
            context=UNTRUSTED_WEB,
            amounts=[125_000],
            paid=[(IBAN, 125_000)],
        )
    )
    assert isinstance(spaced, Pending) and "already paid" in spaced.reason


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("Pay 1250.00 EUR to ACME", (125_000,)),
        ("pay €1.250,00 today", (125_000,)),
        ("a deposit of 500.00 EUR and then EUR 3 900", (50_000, 390_000)),
        ("12,000 EUR for 40 units", (1_200_000,)),
        ("$12.5 or USD 12", (1_250, 1_200)),
        ("IBAN DE89 3704 0044 0532 0130 00, ref 2026-117", ()),
        ("version 1.2.3 EUR", ()),
    ],
)
def test_amounts_named_in_text(text: str, cents: tuple[int, ...]) -> None:
    assert extract_amounts(text) == cents


def test_a_mail_whose_cc_differs_from_its_checked_targets_is_refused_issue_8() -> None:
    """The adapter mails params.cc; the checks read extra_targets: they must agree."""
    forged = make_input("email.send", "boss@example.com", params={"cc": ["eve@evil.example"]})
    assert code_of(rules(forged)) == "RULE.R11.TARGET_MISMATCH"
    extra = make_input("email.send", "boss@example.com", extra_targets=["eve@evil.example"])
    assert code_of(rules(extra)) == "RULE.R11.TARGET_MISMATCH"
    honest = make_input(
        "email.send",
        "boss@example.com",
        params={"cc": ["eve@evil.example"]},
        extra_targets=["eve@evil.example"],
        trusted=["boss@example.com"],
    )
    decision = rules(honest)
    assert isinstance(decision, Pending) and list(decision.details["targets"]) == [
        "eve@evil.example"
    ]
