"""DSC check 1 against real tokens: the intent, not only the token, must fit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from maos.kernel.dsc.base import AgentView, Check, CheckInput, TaskView
from maos.kernel.dsc.capability import CapabilityCheck
from maos.kernel.tokens import Grant, TokenAuthority
from maos.kernel.types import Allow, Cost, Deny, Intent

NOW = 1_750_000_000.0
NODE = "node-a"


@pytest.fixture
def authority(tmp_path: Path) -> TokenAuthority:
    return TokenAuthority(tmp_path / "keys", NODE)


@pytest.fixture
def check(authority: TokenAuthority) -> Check:
    return CapabilityCheck(authority)


def intent_input(authority: TokenAuthority, **intent_fields: object) -> CheckInput:
    token = authority.mint(
        agent_id="mailer",
        task_id="q3-report",
        grants=[
            Grant("email.send", "cfo@example.com"),
            Grant("email.send", "board@example.com"),
            Grant("pay.transfer", "DE89*", 10_000),
        ],
        now=NOW,
    )
    fields: dict[str, object] = {
        "intent_id": "i-1",
        "agent_id": "mailer",
        "task_id": "q3-report",
        "op": "email.send",
        "target": "cfo@example.com",
        "idempotency_key": "k-1",
        "token": token,
    }
    intent = Intent(**(fields | intent_fields))  # type: ignore[arg-type]
    return CheckInput(
        intent=intent,
        agent=AgentView(intent.agent_id, ring=2),
        task=TaskView(intent.task_id),
        now=NOW + 1,
        node_id=NODE,
    )


def code(decision: object) -> str:
    assert isinstance(decision, Deny)
    assert decision.check == "capability"
    return decision.code


def test_covered_intent_is_allowed(authority: TokenAuthority, check: Check) -> None:
    assert check(intent_input(authority)) == Allow(check="capability")
    assert check.name == "capability"


def test_every_extra_target_must_be_covered(authority: TokenAuthority, check: Check) -> None:
    named = intent_input(authority, extra_targets=("board@example.com",))
    assert isinstance(check(named), Allow)
    smuggled = intent_input(authority, extra_targets=("board@example.com", "x@evil.example"))
    assert code(check(smuggled)) == "DSC.CAPABILITY.NOT_COVERED"


def test_money_above_the_grant_cap_is_not_covered(authority: TokenAuthority, check: Check) -> None:
    paying = {"op": "pay.transfer", "target": "DE89370400440532013000"}
    assert isinstance(
        check(intent_input(authority, **paying, cost=Cost(money_cents=10_000))), Allow
    )
    too_much = intent_input(authority, **paying, cost=Cost(money_cents=10_001))
    assert code(check(too_much)) == "DSC.CAPABILITY.NOT_COVERED"


def test_token_of_another_task_is_refused(authority: TokenAuthority, check: Check) -> None:
    assert code(check(intent_input(authority, task_id="payroll"))) == "DSC.CAPABILITY.WRONG_TASK"


def test_token_of_another_agent_is_refused(authority: TokenAuthority, check: Check) -> None:
    assert code(check(intent_input(authority, agent_id="intruder"))) == (
        "DSC.CAPABILITY.WRONG_HOLDER"
    )


def test_check_input_for_another_node_is_refused(authority: TokenAuthority, check: Check) -> None:
    other_node = replace(intent_input(authority), node_id="node-b")
    assert code(check(other_node)) == "DSC.CAPABILITY.WRONG_AUDIENCE"


def test_intent_without_token_is_refused(authority: TokenAuthority, check: Check) -> None:
    assert code(check(intent_input(authority, token=""))) == "DSC.CAPABILITY.MISSING"


def test_expired_token_is_refused(authority: TokenAuthority, check: Check) -> None:
    late = replace(intent_input(authority), now=NOW + 3600)
    assert code(check(late)) == "DSC.CAPABILITY.EXPIRED"
