"""Check 2: token-bucket rate limits per agent and per (agent, op).

R11 makes limits mandatory: an agent the kernel never configured is denied, not given a
generous default, so a registration bug fails closed. Time comes only from
``CheckInput.now``; a clock that steps backwards refills nothing. Every attempt costs a
token, even one a later check denies: the bucket bounds how hard an agent can push on the
kernel, not how much it gets done. In Security Fever (``CheckInput.fever``) an attempt
costs two: every limit, sustained and burst, is halved without touching a bucket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from maos.kernel.dsc.base import CheckInput
from maos.kernel.ops import OPS
from maos.kernel.types import Allow, Decision, Deny

__all__ = ["DEFAULT_OP_LIMITS", "AgentRates", "RateLimit", "RateLimitCheck"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate`` intents per second sustained, ``burst`` at once."""

    rate: float = 5.0
    """Tokens added per second."""
    burst: float = 20.0
    """Bucket capacity; a fresh or idle agent may send this many at once."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive number, not {self.rate!r}")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")


DEFAULT_OP_LIMITS: Mapping[str, RateLimit] = MappingProxyType(
    {
        "email.send": RateLimit(rate=0.2, burst=5),
        "http.request": RateLimit(rate=2.0, burst=10),
        "a2a.send": RateLimit(rate=1.0, burst=10),
        "fs.delete": RateLimit(rate=0.5, burst=5),
    }
)
"""Tighter buckets for ops that leave the machine or destroy data."""


@dataclass(frozen=True, slots=True)
class AgentRates:
    """One agent's limits: its overall bucket, and a bucket per op."""

    overall: RateLimit = RateLimit(rate=10.0, burst=30)
    """All intents of the agent together."""
    per_op: Mapping[str, RateLimit] = field(default_factory=lambda: DEFAULT_OP_LIMITS)
    """Per-op buckets; ops not named here get ``op_default``."""
    op_default: RateLimit = RateLimit()

    def for_op(self, op: str) -> RateLimit:
        return self.per_op.get(op, self.op_default)


class _Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.rate = limit.rate
        self.burst = limit.burst
        self.tokens = limit.burst
        self.stamp = now


class _AgentState:
    __slots__ = ("overall", "per_op", "rates")

    def __init__(self, rates: AgentRates) -> None:
        self.rates = rates
        self.overall: _Bucket | None = None
        self.per_op: dict[str, _Bucket] = {}


class RateLimitCheck:
    """Check 2; owns the buckets. Configure every agent before its first intent."""

    __slots__ = ("_agents", "_allow", "name")

    def __init__(self, agents: Mapping[str, AgentRates] | None = None) -> None:
        self.name = "ratelimit"
        self._agents: dict[str, _AgentState] = {}
        self._allow = Allow(check=self.name)
        for agent_id, rates in (agents or {}).items():
            self.configure(agent_id, rates)

    def configure(self, agent_id: str, rates: AgentRates | None = None) -> None:
        """Set (or replace) an agent's limits; buckets restart full under the new limits."""
        self._agents[agent_id] = _AgentState(rates or AgentRates())

    def remove(self, agent_id: str) -> None:
        """Forget an agent; its next intent is denied under R11."""
        self._agents.pop(agent_id, None)

    def __call__(self, inp: CheckInput) -> Decision:
        # Hot path: the refills are inlined, a method call costs as much as the arithmetic.
        intent = inp.intent
        state = self._agents.get(intent.agent_id)
        if state is None:
            return Deny(
                "RULE.R11.NO_LIMITS",
                f"agent {intent.agent_id} has no rate limits configured",
                check=self.name,
            )
        now = inp.now
        overall = state.overall
        if overall is None:
            overall = state.overall = _Bucket(state.rates.overall, now)
        key = intent.op if intent.op in OPS else "?"  # unknown ops share one bucket
        bucket = state.per_op.get(key)
        if bucket is None:
            bucket = state.per_op[key] = _Bucket(state.rates.for_op(key), now)
        # Refill: add elapsed * rate, capped at burst; a clock stepping back adds nothing.
        elapsed = now - overall.stamp
        if elapsed > 0:
            tokens = overall.tokens + elapsed * overall.rate
            overall.tokens = tokens if tokens < overall.burst else overall.burst
            overall.stamp = now
        cost = 2 if inp.fever else 1
        if overall.tokens < cost:
            return self._exceeded(intent.agent_id, "all ops", overall, cost)
        elapsed = now - bucket.stamp
        if elapsed > 0:
            tokens = bucket.tokens + elapsed * bucket.rate
            bucket.tokens = tokens if tokens < bucket.burst else bucket.burst
            bucket.stamp = now
        if bucket.tokens < cost:
            return self._exceeded(intent.agent_id, intent.op, bucket, cost)
        overall.tokens -= cost
        bucket.tokens -= cost
        return self._allow

    def _exceeded(self, agent_id: str, scope: str, bucket: _Bucket, cost: int) -> Deny:
        fever = "; halved in Security Fever" if cost > 1 else ""
        return Deny(
            "DSC.RATE.EXCEEDED",
            f"agent {agent_id} exceeded its rate limit for {scope} "
            f"({bucket.rate / cost:g}/s, burst {bucket.burst / cost:g}{fever})",
            check=self.name,
        )
