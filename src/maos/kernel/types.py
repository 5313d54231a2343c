"""Frozen values that cross the kernel's trust boundaries.

Nothing mutable enters or leaves the kernel: intents are parsed once by
`maos.kernel.intents` into `Intent`, checks answer with a `Decision`, and the Commit
Layer answers with an `Outcome`. Adding a field to one of these changes no signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from maos.kernel.labels import BOTTOM, Label

__all__ = [
    "Allow",
    "Cost",
    "Decision",
    "Deny",
    "EffectClass",
    "Intent",
    "Outcome",
    "OutcomeStatus",
    "Pending",
    "frozen_mapping",
    "iso_time",
]


def iso_time(ts: float) -> str:
    """A log or token time as people read it: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def frozen_mapping(raw: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only copy, so a caller keeping the original cannot change what the kernel saw."""
    return MappingProxyType(dict(raw or {}))


class EffectClass(StrEnum):
    """What kind of change an operation makes to the world; grants and rule R7 speak in these."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    SEND = "send"
    PAY = "pay"
    CREDENTIALS = "credentials"
    EXECUTE = "execute"
    KERNEL = "kernel"


@dataclass(frozen=True, slots=True)
class Cost:
    """What an intent will consume from its agent's and task's budgets (check 3)."""

    tokens: int = 0
    """LLM tokens."""
    api_calls: int = 0
    """Calls to external APIs (HTTP, SMTP, LLM)."""
    money_cents: int = 0
    """Money moved or spent, in cents."""


@dataclass(frozen=True, slots=True)
class Intent:
    """One request for an effect, as validated by the Input Sanitizer."""

    intent_id: str
    """Kernel-unique id of this request."""
    agent_id: str
    """The agent asking; authenticated by its pod, never taken from the agent's own frame."""
    task_id: str
    """The task the agent works for; budgets, workspace and trusted targets hang off it."""
    op: str
    """Operation name, ``<adapter>.<verb>`` (``fs.write``, ``email.send``, ``http.request``)."""
    target: str
    """The resource acted on: a workspace path, a URL, a recipient address."""
    idempotency_key: str
    """Stable across retries of the same logical effect; the Commit Layer dedups on it."""
    token: str = ""
    """The capability token, base64url, as the agent presented it."""
    params: Mapping[str, Any] = field(default_factory=frozen_mapping)
    """Operation arguments (file content, HTTP method and body, mail subject and body)."""
    params_bytes: int = 0
    """Their size as JSON, measured by the sanitizer: what aggregate monitoring counts."""
    content: str = ""
    """All free text the intent carries, concatenated, for the injection pre-filter."""
    cost: Cost = field(default_factory=Cost)
    """Declared consumption, checked against budgets."""
    expected_version: int | None = None
    """For writes: the resource version the agent read (optimistic concurrency)."""
    extra_targets: tuple[str, ...] = ()
    """Further targets of the same effect (cc recipients), all checked like ``target``."""
    target_kinds: tuple[str, ...] = ()
    """For ops whose targets differ in kind (tools): one kind per target, in order, as the
    tool's manifest declares them; empty for every other op (the op's kind applies)."""

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target, *self.extra_targets)


@dataclass(frozen=True, slots=True)
class Allow:
    """The check passed."""

    check: str = ""


@dataclass(frozen=True, slots=True)
class Deny:
    """The check refused; ``code`` is stable, ``reason`` is a sentence for a human."""

    code: str
    reason: str
    check: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """A rule asks a human to decide before the effect may run (R7, R10)."""

    code: str
    reason: str
    rule: str
    """The rule that asked, ``R7`` or ``R10``."""
    check: str = ""
    details: Mapping[str, Any] = field(default_factory=frozen_mapping)
    """What the Commander needs to decide: flagged targets and where they came from."""


Decision = Allow | Deny | Pending


class OutcomeStatus(StrEnum):
    COMMITTED = "committed"
    DENIED = "denied"
    PENDING = "pending"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the kernel answers for an intent, always with the label of any value returned."""

    intent_id: str
    status: OutcomeStatus
    value: Any = None
    """JSON-compatible result of the effect, when committed."""
    label: Label = BOTTOM
    code: str = ""
    reason: str = ""
    approval_id: str | None = None
    """Set when ``status`` is pending: what the agent waits on."""
    wal_seq: int | None = None
    """Sequence number of the log record that holds this outcome."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent_id": self.intent_id,
            "status": self.status.value,
            "value": self.value,
            "label": self.label.to_dict(),
            "code": self.code,
            "reason": self.reason,
            "approval_id": self.approval_id,
            "wal_seq": self.wal_seq,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Outcome:
        """The inverse of `to_dict`, for outcomes read back from the log."""
        return cls(
            intent_id=str(raw["intent_id"]),
            status=OutcomeStatus(raw["status"]),
            value=raw.get("value"),
            label=Label.from_dict(raw["label"]) if raw.get("label") else BOTTOM,
            code=str(raw.get("code", "")),
            reason=str(raw.get("reason", "")),
            approval_id=raw.get("approval_id"),
            wal_seq=raw.get("wal_seq"),
        )
