"""Check 3: budgets per agent and per task, with reservations for in-flight intents."""

from __future__ import annotations

from typing import Any

import pytest
from dsc_support import code_of, make_input
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- the unrolled ledger against a plain model of the same rules ---------------------------

FIELDS = ("tokens", "api_calls", "money_cents")
amounts = st.tuples(*(st.sampled_from([0, 0, 1, 2, 5, 9]) for _ in FIELDS))
limits = st.tuples(*(st.sampled_from([0, 3, 10]) for _ in FIELDS))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), st.sampled_from(["i-1", "i-2", "i-3"]), amounts),
        st.tuples(st.just("settle"), st.sampled_from(["i-1", "i-2", "i-3"]), st.booleans()),
        st.tuples(st.just("settle_actual"), st.sampled_from(["i-1", "i-2"]), amounts),
        st.tuples(st.just("charge"), st.sampled_from(["a1", "a2"]), amounts),
    ),
    max_size=25,
)


class Model:
    """Budgets as the module docstring states them, with no attention paid to speed."""

    def __init__(self, limit: dict[str, tuple[int, ...]]) -> None:
        self.limit = limit
        self.spent = {key: [0, 0, 0] for key in limit}
        self.held = {key: [0, 0, 0] for key in limit}
        self.reservations: dict[str, tuple[str, str, tuple[int, ...]]] = {}

    def decide(self, intent_id: str, agent: str, task: str, ask: tuple[int, ...]) -> str:
        self.settle(intent_id, committed=False, actual=None)
        for key in (agent, task):
            if any(
                self.spent[key][i] + self.held[key][i] + ask[i] > self.limit[key][i]
                for i in range(3)
            ):
                return "DSC.BUDGET.EXCEEDED"
        if any(ask):
            for key in (agent, task):
                self.held[key] = [h + a for h, a in zip(self.held[key], ask, strict=True)]
            self.reservations[intent_id] = (agent, task, ask)
        return "ALLOW"

    def settle(self, intent_id: str, *, committed: bool, actual: tuple[int, ...] | None) -> None:
        if intent_id not in self.reservations:
            return
        agent, task, ask = self.reservations.pop(intent_id)
        for key in (agent, task):
            self.held[key] = [h - a for h, a in zip(self.held[key], ask, strict=True)]
            if committed:
                spend = ask if actual is None else actual
                self.spent[key] = [s + a for s, a in zip(self.spent[key], spend, strict=True)]

    def charge(self, agent: str, task: str, cost: tuple[int, ...]) -> None:
        for key in (agent, task):
            self.spent[key] = [s + a for s, a in zip(self.spent[key], cost, strict=True)]


@settings(max_examples=300, deadline=None)
@given(agent_limit=limits, task_limit=limits, steps=steps)
def test_ledger_and_check_agree_with_a_plain_model(
    agent_limit: tuple[int, int, int],
    task_limit: tuple[int, int, int],
    steps: list[tuple[str, str, Any]],
) -> None:
    ledger = BudgetLedger()
    ledger.set_limits(Budget(*agent_limit), agent_id="a1")
    ledger.set_limits(Budget(*agent_limit), agent_id="a2")
    ledger.set_limits(Budget(*task_limit), task_id="t1")
    check = BudgetCheck(ledger)
    model = Model({"a1": agent_limit, "a2": agent_limit, "t1": task_limit})
    for kind, key, arg in steps:
        if kind == "decide":
            agent = "a1" if key != "i-3" else "a2"
            cost = dict(zip(FIELDS, arg, strict=True))
            decided = check(make_input(agent_id=agent, intent_id=key, cost=cost))
            assert code_of(decided) == model.decide(key, agent, "t1", arg)
        elif kind == "settle":
            ledger.settle(key, committed=arg)
            model.settle(key, committed=arg, actual=None)
        elif kind == "settle_actual":
            ledger.settle(key, committed=True, actual=Cost(*arg))
            model.settle(key, committed=True, actual=arg)
        else:
            ledger.charge(key, "t1", Cost(*arg))
            model.charge(key, "t1", arg)
        for account, limit in (("a1", agent_limit), ("a2", agent_limit), ("t1", task_limit)):
            ids = {"task_id": account} if account == "t1" else {"agent_id": account}
            assert ledger.usage(**ids) == Usage(
                Budget(*limit), Cost(*model.spent[account]), Cost(*model.held[account])
            )
