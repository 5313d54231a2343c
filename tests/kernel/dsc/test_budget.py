"""Check 3: budgets per agent and per task, with reservations for in-flight intents."""

from __future__ import annotations

import pytest
from dsc_support import code_of, make_input

from maos.kernel.dsc.budget import Budget, BudgetCheck, BudgetLedger, Usage
from maos.kernel.types import Cost

BIG = Budget(tokens=10**9, api_calls=10**9, money_cents=10**9)


def ledger_with(agent: Budget = BIG, task: Budget = BIG) -> BudgetLedger:
    ledger = BudgetLedger()
    ledger.set_limits(agent, agent_id="a1")
    ledger.set_limits(task, task_id="t1")
    return ledger


def test_r11_agent_without_budget_is_denied() -> None:
    ledger = BudgetLedger()
    ledger.set_limits(BIG, task_id="t1")
    decision = BudgetCheck(ledger)(make_input())
    assert code_of(decision) == "RULE.R11.NO_BUDGET"
    assert "agent a1" in decision.reason  # type: ignore[union-attr]


def test_r11_task_without_budget_is_denied() -> None:
    ledger = BudgetLedger()
    ledger.set_limits(BIG, agent_id="a1")
    decision = BudgetCheck(ledger)(make_input())
    assert code_of(decision) == "RULE.R11.NO_BUDGET"
    assert "task t1" in decision.reason  # type: ignore[union-attr]


def test_cost_over_the_agent_money_budget_is_denied_naming_it() -> None:
    check = BudgetCheck(ledger_with(agent=Budget(tokens=100, api_calls=10, money_cents=500)))
    decision = check(make_input(cost={"money_cents": 501}))
    assert code_of(decision) == "DSC.BUDGET.EXCEEDED"
    assert "agent a1" in decision.reason  # type: ignore[union-attr]
    assert "money_cents" in decision.reason  # type: ignore[union-attr]


def test_task_budget_binds_even_when_the_agent_has_room() -> None:
    check = BudgetCheck(ledger_with(task=Budget(tokens=50, api_calls=10, money_cents=0)))
    decision = check(make_input(cost={"tokens": 51}))
    assert code_of(decision) == "DSC.BUDGET.EXCEEDED"
    assert "task t1" in decision.reason  # type: ignore[union-attr]


def test_exactly_the_remaining_budget_is_allowed() -> None:
    check = BudgetCheck(ledger_with(agent=Budget(tokens=0, api_calls=3, money_cents=0)))
    assert code_of(check(make_input(cost={"api_calls": 3}))) == "ALLOW"


def test_hundred_concurrent_intents_cannot_overspend() -> None:
    ledger = ledger_with(agent=Budget(tokens=0, api_calls=0, money_cents=1000))
    check = BudgetCheck(ledger)
    decisions = [
        check(make_input(intent_id=f"i-{n}", cost={"money_cents": 30})) for n in range(100)
    ]
    assert [code_of(d) for d in decisions].count("ALLOW") == 33  # 33 * 30 <= 1000 < 34 * 30
    for n in range(100):
        ledger.settle(f"i-{n}", committed=True)
    usage = ledger.usage(agent_id="a1")
    assert usage == Usage(limit=Budget(0, 0, 1000), spent=Cost(money_cents=990), reserved=Cost())


def test_settling_uncommitted_releases_the_reservation() -> None:
    ledger = ledger_with(agent=Budget(tokens=0, api_calls=1, money_cents=0))
    check = BudgetCheck(ledger)
    assert code_of(check(make_input(intent_id="i-1", cost={"api_calls": 1}))) == "ALLOW"
    assert code_of(check(make_input(intent_id="i-2", cost={"api_calls": 1}))) != "ALLOW"
    ledger.settle("i-1", committed=False)
    assert code_of(check(make_input(intent_id="i-2", cost={"api_calls": 1}))) == "ALLOW"


def test_settle_charges_the_actual_cost_when_given() -> None:
    ledger = ledger_with()
    BudgetCheck(ledger)(make_input(cost={"tokens": 500}))
    ledger.settle("i-1", committed=True, actual=Cost(tokens=120))
    assert ledger.usage(task_id="t1") == Usage(BIG, spent=Cost(tokens=120), reserved=Cost())


def test_settle_of_an_unknown_or_settled_intent_is_a_no_op() -> None:
    ledger = ledger_with()
    BudgetCheck(ledger)(make_input(cost={"tokens": 5}))
    ledger.settle("i-1", committed=True)
    ledger.settle("i-1", committed=True)
    ledger.settle("never-seen", committed=True)
    assert ledger.usage(agent_id="a1") == Usage(BIG, spent=Cost(tokens=5), reserved=Cost())


def test_re_deciding_an_intent_does_not_reserve_twice() -> None:
    ledger = ledger_with(agent=Budget(tokens=0, api_calls=0, money_cents=100))
    check = BudgetCheck(ledger)
    for _ in range(3):  # e.g. parked for approval, then decided again when approved
        assert code_of(check(make_input(cost={"money_cents": 60}))) == "ALLOW"
    usage = ledger.usage(agent_id="a1")
    assert usage is not None and usage.reserved == Cost(money_cents=60)


def test_charged_spending_counts_against_later_intents() -> None:
    ledger = ledger_with(agent=Budget(tokens=1000, api_calls=0, money_cents=0))
    ledger.charge("a1", "t1", Cost(tokens=990))
    check = BudgetCheck(ledger)
    assert code_of(check(make_input(cost={"tokens": 10}))) == "ALLOW"
    assert code_of(check(make_input(intent_id="i-2", cost={"tokens": 1}))) == (
        "DSC.BUDGET.EXCEEDED"
    )


def test_overspent_agent_is_denied_even_free_intents() -> None:
    ledger = ledger_with(agent=Budget(tokens=10, api_calls=0, money_cents=0))
    ledger.charge("a1", "t1", Cost(tokens=11))  # metered after the fact
    assert code_of(BudgetCheck(ledger)(make_input())) == "DSC.BUDGET.EXCEEDED"


def test_usage_reports_nothing_for_strangers_and_needs_one_id() -> None:
    ledger = BudgetLedger()
    assert ledger.usage(agent_id="nobody") is None
    with pytest.raises(ValueError):
        ledger.usage()
    with pytest.raises(ValueError):
        ledger.set_limits(BIG)


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_budget_limits_must_be_non_negative_ints(bad: object) -> None:
    with pytest.raises(ValueError):
        Budget(tokens=bad, api_calls=0, money_cents=0)  # type: ignore[arg-type]
