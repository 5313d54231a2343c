"""Danger signals, folded from the log into one score per agent (seed §37.11).

Every part of MAOS that sees an agent misbehave already writes it down: the Sentry's
fingerprint (``sentry.danger``), the DSC's denials by code (``intent.denied``: the
injection pre-filter, the rules, capability and rate checks, the aggregate figures), the
SSE's vetoes, Fast Apoptosis (``pod.violation``), the immune memory's matches
(``memory.match``). Each is a signal with a weight (``config.json``'s
``security.weights``), and an agent's danger score is the sum of its signals' weights,
each halving every ``half_life`` seconds of the log's own time: a burst counts, one
slip last week does not. The score is a fold of the log, so the Security Agent, the
console and a replay all compute the same number.

A signal the mapping does not know is no signal: codes that say nothing about intent
(a lock held, a budget spent, an approval asked for) must not push an agent toward
isolation.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from maos.kernel.aggregate import AGGREGATE_CODE
from maos.kernel.wal import WalRecord

__all__ = ["KINDS", "DangerBook", "Signal", "signal_of"]

KINDS = ("sentry.danger", "intent.denied", "pod.violation", "memory.match")
"""The records that carry danger signals."""
EVIDENCE_KEPT = 8
"""Signals kept per agent as evidence (the newest)."""

_DENY_KINDS: tuple[tuple[str, str], ...] = (
    (AGGREGATE_CODE, "aggregate"),
    ("DSC.PREFILTER.LEARNED", "memory_match"),
    ("DSC.PREFILTER.", "prefilter"),
    ("SENTRY.PAYLOAD.", "prefilter"),
    ("RULE.R4.", "rule_violation"),
    ("RULE.R6.", "rule_violation"),
    ("RULE.R10.", "rule_violation"),
    ("RULE.R8.AGENT_ISOLATED", "isolated_attempt"),
    ("RULE.R8.AGENT_QUARANTINED", "isolated_attempt"),
    ("DSC.CAPABILITY.", "capability"),
    ("DSC.RATE.", "rate"),
    ("SENTRY.TRAFFIC.", "rate"),
    ("SSE.MEMORY_MATCH", "memory_match"),
    ("SSE.", "sse_deny"),
)
"""Deny code prefix -> signal kind, first match wins."""


@dataclass(frozen=True, slots=True)
class Signal:
    agent_id: str
    kind: str
    """A key of ``security.weights``."""
    code: str
    seq: int
    ts: float

    def evidence(self, weight: float) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "code": self.code, "weight": weight}


def signal_of(rec: WalRecord) -> Signal | None:
    """The danger signal a record carries, if any."""
    body = rec.body
    agent = body.get("agent_id")
    if not isinstance(agent, str) or not agent:
        return None
    if rec.kind == "intent.denied":
        code = str(body.get("code", ""))
        kind = next((k for prefix, k in _DENY_KINDS if code.startswith(prefix)), None)
        return None if kind is None else Signal(agent, kind, code, rec.seq, rec.ts)
    if rec.kind == "sentry.danger":
        return Signal(agent, "sentry_anomaly", "SENTRY.ANOMALY", rec.seq, rec.ts)
    if rec.kind == "pod.violation":
        return Signal(agent, "pod_violation", str(body.get("code", "")), rec.seq, rec.ts)
    if rec.kind == "memory.match":
        return Signal(agent, "memory_match", str(body.get("code", "")), rec.seq, rec.ts)
    return None


@dataclass(slots=True)
class _Account:
    score: float = 0.0
    at: float = 0.0
    """The time ``score`` is valid at."""
    last_signal: float = 0.0
    evidence: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVIDENCE_KEPT))


class DangerBook:
    """Each agent's decayed score, its last signal's time and its newest evidence.

    A running value per agent (score and its time), decayed on read: adding a signal or
    reading a score is O(1), whatever the history.
    """

    def __init__(self, weights: Mapping[str, float], *, half_life_s: float) -> None:
        self._weights = dict(weights)
        self._decay = math.log(2) / half_life_s
        self._agents: dict[str, _Account] = {}

    def add(self, signal: Signal) -> float:
        """Fold one signal; returns the agent's score after it."""
        weight = self._weights.get(signal.kind, 0.0)
        account = self._agents.get(signal.agent_id)
        if account is None:
            account = self._agents[signal.agent_id] = _Account()
        account.score = self._at(account, signal.ts) + weight
        account.at = max(account.at, signal.ts)
        account.last_signal = max(account.last_signal, signal.ts)
        account.evidence.append(signal.evidence(weight))
        return account.score

    def fold(self, records: Iterable[WalRecord]) -> list[Signal]:
        """Fold records; returns the signals they carried, in order."""
        found = []
        for rec in records:
            signal = signal_of(rec)
            if signal is not None:
                self.add(signal)
                found.append(signal)
        return found

    def score(self, agent_id: str, now: float) -> float:
        account = self._agents.get(agent_id)
        return 0.0 if account is None else self._at(account, now)

    def last_signal(self, agent_id: str) -> float | None:
        account = self._agents.get(agent_id)
        return None if account is None else account.last_signal

    def evidence(self, agent_id: str) -> list[dict[str, Any]]:
        account = self._agents.get(agent_id)
        return [] if account is None else list(account.evidence)

    def forget(self, agent_id: str) -> None:
        """The Commander released the agent: it starts again from zero."""
        self._agents.pop(agent_id, None)

    def _at(self, account: _Account, now: float) -> float:
        elapsed = now - account.at
        return account.score if elapsed <= 0 else account.score * math.exp(-self._decay * elapsed)
