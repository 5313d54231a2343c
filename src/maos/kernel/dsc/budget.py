"""Check 3: token, API-call and money budgets per agent and per task.

The check *reserves* an allowed intent's declared cost, so a burst of in-flight intents
cannot together overspend: each sees the others' reservations. The kernel settles every
decided intent exactly once, whatever the decision (`BudgetLedger.settle`): committed
reservations become spending, everything else is released. Settling an intent that holds
no reservation is a no-op, so the kernel need not know which check denied.

R11: an agent or task without a configured budget is denied, never unlimited.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maos.kernel.dsc.base import CheckInput
from maos.kernel.types import Allow, Cost, Decision, Deny

__all__ = [
    "Budget",
    "BudgetCheck",
    "BudgetLedger",
    "Usage",
    "estimate_prompt_tokens",
    "reserve_tokens",
]

_FIELDS = ("tokens", "api_calls", "money_cents")

_PER_MESSAGE = 4
"""Chat formats wrap every turn in a few tokens of role markers."""
_CHARS_PER_TOKEN = 3
"""Conservative for English under BPE tokenizers (about 4); denser scripts cost more."""


def estimate_prompt_tokens(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
) -> int:
    """A deterministic, tokenizer-free estimate of a prompt's size in tokens."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    chars += sum(len(str(c)) for m in messages for c in m.get("tool_calls") or ())
    chars += sum(len(str(t)) for t in tools)
    return math.ceil(chars / _CHARS_PER_TOKEN) + _PER_MESSAGE * len(messages)


def reserve_tokens(params: Mapping[str, Any]) -> int:
    """What an ``llm.complete`` intent declares as ``cost.tokens``: cap + prompt estimate.

    Here, below both, so a pod's LLM gateway and the callers of the ``llm`` adapter
    reserve by one rule."""
    return int(params.get("max_tokens", 0)) + estimate_prompt_tokens(
        params.get("messages") or (), params.get("tools") or ()
    )


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
    """One agent's or task's limit, spending and reservations as nine plain slots.

    Slots rather than lists or tuples: deciding for many agents in turn touches one
    small object per account instead of four (object, limit tuple, two lists), and on
    the hot path the cache misses cost more than the arithmetic.
    """

    __slots__ = (
        "held_calls",
        "held_cents",
        "held_tokens",
        "limit",
        "max_calls",
        "max_cents",
        "max_tokens",
        "spent_calls",
        "spent_cents",
        "spent_tokens",
    )

    def __init__(self) -> None:
        self.limit: Budget | None = None
        """None until configured: R11 denies an account without limits."""
        self.max_tokens = self.max_calls = self.max_cents = 0
        self.spent_tokens = self.spent_calls = self.spent_cents = 0
        self.held_tokens = self.held_calls = self.held_cents = 0

    def set_limit(self, budget: Budget) -> None:
        self.limit = budget
        self.max_tokens, self.max_calls, self.max_cents = (
            budget.tokens,
            budget.api_calls,
            budget.money_cents,
        )

    def shortfall(self, ask: tuple[int, int, int]) -> str:
        """Why an ask does not fit, naming the first field over its limit."""
        spent = (self.spent_tokens, self.spent_calls, self.spent_cents)
        held = (self.held_tokens, self.held_calls, self.held_cents)
        limit = (self.max_tokens, self.max_calls, self.max_cents)
        i = next(i for i in range(3) if spent[i] + held[i] + ask[i] > limit[i])
        return f"{_FIELDS[i]}: {spent[i]} spent + {held[i]} reserved + {ask[i]} asked > {limit[i]}"

    def spend(self, tokens: int, api_calls: int, money_cents: int) -> None:
        self.spent_tokens += tokens
        self.spent_calls += api_calls
        self.spent_cents += money_cents


class BudgetLedger:
    """Limits, spending and in-flight reservations; the kernel's single source of truth.

    Not thread-safe: the kernel decides and settles on its event loop.
    """

    __slots__ = ("_agents", "_reservations", "_tasks")

    def __init__(self) -> None:
        self._agents: dict[str, _Account] = {}
        self._tasks: dict[str, _Account] = {}
        self._reservations: dict[str, tuple[_Account, _Account, int, int, int]] = {}
        """Intent id to (agent account, task account, tokens, api calls, cents) held."""

    def set_limits(
        self, budget: Budget, *, agent_id: str | None = None, task_id: str | None = None
    ) -> None:
        """Set an agent's and/or a task's limits; spending so far is kept."""
        if agent_id is None and task_id is None:
            raise ValueError("set_limits needs an agent_id, a task_id or both")
        if agent_id is not None:
            self._account(self._agents, agent_id).set_limit(budget)
        if task_id is not None:
            self._account(self._tasks, task_id).set_limit(budget)

    def limits_of(self, agent_id: str) -> dict[str, int]:
        """An agent's budget limits as `Kernel.register_agent` takes them ({} for none):
        what a replacement identity of it starts with (healing, promotion)."""
        usage = self.usage(agent_id=agent_id)
        if usage is None or usage.limit is None:
            return {}
        limit = usage.limit
        return {
            "tokens": limit.tokens,
            "api_calls": limit.api_calls,
            "money_cents": limit.money_cents,
        }

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
            limit=account.limit,
            spent=Cost(account.spent_tokens, account.spent_calls, account.spent_cents),
            reserved=Cost(account.held_tokens, account.held_calls, account.held_cents),
        )

    def charge(self, agent_id: str, task_id: str, cost: Cost) -> None:
        """Record spending no reservation covered (e.g. LLM tokens metered by the gateway)."""
        amounts = _amounts(cost)
        self._account(self._agents, agent_id).spend(*amounts)
        self._account(self._tasks, task_id).spend(*amounts)

    def settle(self, intent_id: str, *, committed: bool, actual: Cost | None = None) -> None:
        """End an intent's reservation: spend it (or ``actual``) if committed, else release."""
        held = self._reservations.pop(intent_id, None)
        if held is None:
            return
        agent, task, tokens, api_calls, money_cents = held
        # Inline: every decided intent is settled, so this is on the hot path too.
        agent.held_tokens -= tokens
        agent.held_calls -= api_calls
        agent.held_cents -= money_cents
        task.held_tokens -= tokens
        task.held_calls -= api_calls
        task.held_cents -= money_cents
        if committed:
            spend = (tokens, api_calls, money_cents) if actual is None else _amounts(actual)
            agent.spend(*spend)
            task.spend(*spend)

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
        # Hot path: the fit test and the hold are spelled out inline, a method call costs
        # as much as the arithmetic; `shortfall` runs only to word a deny.
        intent = inp.intent
        ledger = self.ledger
        agent = ledger._agents.get(intent.agent_id)
        task = ledger._tasks.get(intent.task_id)
        if agent is None or agent.limit is None:
            return self._no_budget(f"agent {intent.agent_id}")
        if task is None or task.limit is None:
            return self._no_budget(f"task {intent.task_id}")
        reservations = ledger._reservations
        intent_id = intent.intent_id
        if intent_id in reservations:  # decided again, e.g. once approved
            ledger.settle(intent_id, committed=False)
        cost = intent.cost
        tokens, api_calls, money_cents = cost.tokens, cost.api_calls, cost.money_cents
        if not (
            agent.spent_tokens + agent.held_tokens + tokens <= agent.max_tokens
            and agent.spent_calls + agent.held_calls + api_calls <= agent.max_calls
            and agent.spent_cents + agent.held_cents + money_cents <= agent.max_cents
        ):
            short = agent.shortfall((tokens, api_calls, money_cents))
            return self._exceeded(f"agent {intent.agent_id}", short)
        if not (
            task.spent_tokens + task.held_tokens + tokens <= task.max_tokens
            and task.spent_calls + task.held_calls + api_calls <= task.max_calls
            and task.spent_cents + task.held_cents + money_cents <= task.max_cents
        ):
            short = task.shortfall((tokens, api_calls, money_cents))
            return self._exceeded(f"task {intent.task_id}", short)
        if tokens != 0 or api_calls != 0 or money_cents != 0:
            agent.held_tokens += tokens
            agent.held_calls += api_calls
            agent.held_cents += money_cents
            task.held_tokens += tokens
            task.held_calls += api_calls
            task.held_cents += money_cents
            reservations[intent_id] = (agent, task, tokens, api_calls, money_cents)
        return self._allow

    def _exceeded(self, scope: str, shortfall: str) -> Deny:
        return Deny("DSC.BUDGET.EXCEEDED", f"{scope} budget: {shortfall}", check=self.name)

    def _no_budget(self, scope: str) -> Deny:
        return Deny("RULE.R11.NO_BUDGET", f"{scope} has no budget configured", check=self.name)
