"""Check 3: token, API-call and money budgets per agent and per task.

The check *reserves* an allowed intent's declared cost, so a burst of in-flight intents
cannot together overspend: each sees the others' reservations. The kernel settles every
decided intent exactly once, whatever the decision (`BudgetLedger.settle`): committed
reservations become spending, everything else is released. Settling an intent that holds
no reservation is a no-op, so the kernel need not know which check denied.

R11: an agent or task without a configured budget is denied, never unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass

from maos.kernel.dsc.base import CheckInput
from maos.kernel.types import Allow, Cost, Decision, Deny

__all__ = ["Budget", "BudgetCheck", "BudgetLedger", "Usage"]

_FIELDS = ("tokens", "api_calls", "money_cents")


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits for one agent or one task; each intent must fit under all three."""

    tokens: int
    api_calls: int
    money_cents: int

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"budget {name} must be a non-negative int, not {value!r}")


@dataclass(frozen=True, slots=True)
class Usage:
    """A snapshot of one account, for status pages and decision packets."""

    limit: Budget | None
    spent: Cost
    reserved: Cost


def _amounts(cost: Cost) -> tuple[int, int, int]:
    return cost.tokens, cost.api_calls, cost.money_cents


class _Account:
    """Three counters per field, unrolled: the check runs on every intent."""

    __slots__ = ("limit", "reserved", "spent")

    def __init__(self) -> None:
        self.limit: tuple[int, int, int] | None = None
        self.spent = [0, 0, 0]
        self.reserved = [0, 0, 0]

    def shortfall(self, limit: tuple[int, int, int], ask: tuple[int, int, int]) -> str | None:
        spent, reserved = self.spent, self.reserved
        if (
            spent[0] + reserved[0] + ask[0] <= limit[0]
            and spent[1] + reserved[1] + ask[1] <= limit[1]
            and spent[2] + reserved[2] + ask[2] <= limit[2]
        ):
            return None
        i = next(i for i in range(3) if spent[i] + reserved[i] + ask[i] > limit[i])
        return (
            f"{_FIELDS[i]}: {spent[i]} spent + {reserved[i]} reserved + {ask[i]} asked > {limit[i]}"
        )


def _add(into: list[int], amounts: tuple[int, int, int], sign: int = 1) -> None:
    into[0] += sign * amounts[0]
    into[1] += sign * amounts[1]
    into[2] += sign * amounts[2]


class BudgetLedger:
    """Limits, spending and in-flight reservations; the kernel's single source of truth.

    Not thread-safe: the kernel decides and settles on its event loop.
    """

    __slots__ = ("_agents", "_reservations", "_tasks")

    def __init__(self) -> None:
        self._agents: dict[str, _Account] = {}
        self._tasks: dict[str, _Account] = {}
        self._reservations: dict[str, tuple[_Account, _Account, tuple[int, int, int]]] = {}

    def set_limits(
        self, budget: Budget, *, agent_id: str | None = None, task_id: str | None = None
    ) -> None:
        """Set an agent's and/or a task's limits; spending so far is kept."""
        if agent_id is None and task_id is None:
            raise ValueError("set_limits needs an agent_id, a task_id or both")
        limit = (budget.tokens, budget.api_calls, budget.money_cents)
        if agent_id is not None:
            self._account(self._agents, agent_id).limit = limit
        if task_id is not None:
            self._account(self._tasks, task_id).limit = limit

    def usage(self, *, agent_id: str | None = None, task_id: str | None = None) -> Usage | None:
        """One account (give exactly one id); ``None`` if the ledger never heard of it."""
        if (agent_id is None) == (task_id is None):
            raise ValueError("usage takes exactly one of agent_id, task_id")
        if agent_id is not None:
            account = self._agents.get(agent_id)
        else:
            account = self._tasks.get(str(task_id))
        if account is None:
            return None
        return Usage(
            limit=None if account.limit is None else Budget(*account.limit),
            spent=Cost(*account.spent),
            reserved=Cost(*account.reserved),
        )

    def charge(self, agent_id: str, task_id: str, cost: Cost) -> None:
        """Record spending no reservation covered (e.g. LLM tokens metered by the gateway)."""
        amounts = _amounts(cost)
        _add(self._account(self._agents, agent_id).spent, amounts)
        _add(self._account(self._tasks, task_id).spent, amounts)

    def settle(self, intent_id: str, *, committed: bool, actual: Cost | None = None) -> None:
        """End an intent's reservation: spend it (or ``actual``) if committed, else release."""
        held = self._reservations.pop(intent_id, None)
        if held is None:
            return
        agent, task, amounts = held
        spend = amounts if actual is None else _amounts(actual)
        for account in (agent, task):
            _add(account.reserved, amounts, -1)
            if committed:
                _add(account.spent, spend)

    def _hold(
        self, intent_id: str, agent: _Account, task: _Account, ask: tuple[int, int, int]
    ) -> None:
        _add(agent.reserved, ask)
        _add(task.reserved, ask)
        self._reservations[intent_id] = (agent, task, ask)

    @staticmethod
    def _account(accounts: dict[str, _Account], key: str) -> _Account:
        account = accounts.get(key)
        if account is None:
            account = accounts[key] = _Account()
        return account


class BudgetCheck:
    """Check 3: denies what would exceed a budget, reserves what it allows."""

    __slots__ = ("_allow", "ledger", "name")

    def __init__(self, ledger: BudgetLedger) -> None:
        self.name = "budget"
        self.ledger = ledger
        self._allow = Allow(check=self.name)

    def __call__(self, inp: CheckInput) -> Decision:
        intent = inp.intent
        ledger = self.ledger
        agent = ledger._agents.get(intent.agent_id)
        task = ledger._tasks.get(intent.task_id)
        if agent is None or agent.limit is None:
            return self._no_budget(f"agent {intent.agent_id}")
        if task is None or task.limit is None:
            return self._no_budget(f"task {intent.task_id}")
        if intent.intent_id in ledger._reservations:  # decided again, e.g. once approved
            ledger.settle(intent.intent_id, committed=False)
        cost = intent.cost
        ask = (cost.tokens, cost.api_calls, cost.money_cents)
        short = agent.shortfall(agent.limit, ask)
        if short is not None:
            return self._exceeded(f"agent {intent.agent_id}", short)
        short = task.shortfall(task.limit, ask)
        if short is not None:
            return self._exceeded(f"task {intent.task_id}", short)
        if ask != (0, 0, 0):
            ledger._hold(intent.intent_id, agent, task, ask)
        return self._allow

    def _exceeded(self, scope: str, shortfall: str) -> Deny:
        return Deny("DSC.BUDGET.EXCEEDED", f"{scope} budget: {shortfall}", check=self.name)

    def _no_budget(self, scope: str) -> Deny:
        return Deny("RULE.R11.NO_BUDGET", f"{scope} has no budget configured", check=self.name)
