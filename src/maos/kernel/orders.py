"""The Commander's orders as log records, each checked and built in one place.

An order is a record first (R8: nothing an agent does can prevent it). The kernel's own
methods log it and carry it out. When another process's kernel serves the data dir, the
console logs the same record and that kernel carries it out as it follows the log. Both
paths go through these builders, so they cannot check or write an order differently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maos.kernel import packets
from maos.kernel.aggregate import AGENT_CLASSES, THRESHOLD_KIND, AggregateLedger, limit_text
from maos.kernel.approvals import EXPIRED, ApprovalBook
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import InputError
from maos.kernel.grants import override_body
from maos.kernel.labels import Conf
from maos.kernel.modes import KIND as MODE_KIND
from maos.kernel.modes import Mode, check_demand
from maos.kernel.overrides import lifts
from maos.kernel.registry import Registry, check_principal

__all__ = [
    "Order",
    "agent_status",
    "decision",
    "declassify",
    "grants",
    "mode",
    "revocation",
    "safe_state",
    "settlement",
    "threshold",
]


@dataclass(frozen=True, slots=True)
class Order:
    """One record to append: its kind and body."""

    kind: str
    body: Mapping[str, Any]


def agent_status(
    registry: Registry,
    agent_id: str,
    status: AgentStatus,
    principal: str,
    override: str | None = None,
) -> Order:
    """Pause, resume, quarantine or kill a registered agent. Letting one out of quarantine
    or isolation needs a confirmed override once the Commander enrolled (R8 never does)."""
    check_principal(principal, registry)
    before = registry.agent(agent_id).status
    body = {"agent_id": agent_id, "status": status.value, "principal": principal}
    if lifts(before, status):
        body.update(registry.overrides.require("resume", agent_id, status.value, override))
    return Order("agent.status", body)


def safe_state(registry: Registry, on: bool, reason: str, principal: str) -> Order:
    """Enter or leave Minimal Safe State."""
    check_principal(principal, registry)
    return Order("kernel.safe_state", {"on": on, "reason": reason, "principal": principal})


def mode(
    registry: Registry,
    source: str,
    mode: object,
    cause: str,
    principal: str,
    override: str | None = None,
) -> Order:
    """A source's demand for a degradation mode (``normal`` lifts it); the Commander's
    own source takes the Commander, as every order of the Commander does. The Commander
    may also speak for any source (lift the TSCA's hand-over to MSS, R8); lowering
    another source's degraded mode weakens protection, so it is an override once a
    factor is enrolled - leaving MSS never is (docs/hacf.md)."""
    if source == "commander":
        check_principal(principal, registry)
    body = check_demand(source, mode, cause, principal, registry.agents)
    held = registry.modes.demands.get(source, Mode.NORMAL)
    by_commander = not (principal == "kernel" or principal.startswith("service:"))
    if by_commander and source != "commander" and Mode(body["mode"]) < held < Mode.MSS:
        body.update(registry.overrides.require("mode", source, body["mode"], override))
    return Order(MODE_KIND, body)


def declassify(
    registry: Registry,
    task_id: str,
    to: Conf,
    reason: str,
    principal: str,
    override: str | None = None,
) -> Order:
    """Let an open task's data flow down to ``to`` (R6), with who and why; an override
    once the Commander enrolled (it weakens protection)."""
    check_principal(principal, registry)
    registry.task(task_id)
    level = to.name.lower()
    body = {"task_id": task_id, "to": level, "reason": reason, "principal": principal}
    body.update(registry.overrides.require("declassify", task_id, level, override))
    return Order("task.declassified", body)


def grants(
    registry: Registry,
    task_id: str,
    classes: Sequence[str],
    reason: str,
    principal: str,
    override: str | None = None,
) -> Order:
    """The Commander sets a task's effect classes, replacing what its request gave; one
    that adds a class loosens the task's policy: an override once the Commander enrolled."""
    body = override_body(registry, task_id, classes, reason, principal)
    held = registry.task(task_id).effect_classes
    if held is None or not set(body["result"]) <= {c.value for c in held}:
        to = ",".join(body["result"])
        body.update(registry.overrides.require("grants", task_id, to, override))
    return Order("task.grants", body)


def threshold(
    registry: Registry,
    ledger: AggregateLedger,
    metric: str,
    limit: float | str,
    principal: str,
    override: str | None = None,
    agent_class: str | None = None,
) -> Order:
    """Set one aggregate threshold (`maos.kernel.aggregate`) for every agent, or for one
    agent class (``ring2``, ``ring3``). The ledger has the limits in force (config.json's,
    replaced by earlier orders). Tightening is one step; loosening weakens protection:
    an override once the Commander enrolled (its subject ``metric`` or ``metric@class``)."""
    check_principal(principal, registry)
    if agent_class is not None and agent_class not in AGENT_CLASSES:
        raise InputError("BAD_INPUT.AGENT_CLASS", f"an agent class is {' or '.join(AGENT_CLASSES)}")
    held = ledger.limit_of(metric, agent_class)
    if held is None:
        known = ", ".join(sorted(ledger.limits))
        raise InputError("BAD_INPUT.METRIC", f"{metric!r} is not a threshold; one of {known}")
    try:
        value = float(limit)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError("BAD_INPUT.LIMIT", f"{limit!r} is not a positive number")
    body: dict[str, Any] = {
        "metric": metric,
        "limit": value,
        "before": held.limit,
        "agent_class": agent_class,
        "principal": principal,
    }
    if value > held.limit:
        subject = metric if agent_class is None else f"{metric}@{agent_class}"
        body.update(registry.overrides.require("threshold", subject, limit_text(value), override))
    return Order(THRESHOLD_KIND, body)


def decision(
    registry: Registry,
    approvals: ApprovalBook,
    approval_id: str,
    *,
    approve: bool,
    principal: str,
    now: float,
    note: str = "",
    packet: str | None = None,
) -> Order:
    """Approve or deny an intent that still waits; an agent never decides its own, and
    nobody decides one that expired (``now`` is logged: a decision folds as expired
    when it was made after the approval's time ran out). An approval names the digest of
    the decision packet the Commander saw (``packet``); one that no longer matches the
    intent and its label context is refused (`maos.kernel.packets.check`)."""
    check_principal(principal, registry)
    item = approvals.require_pending(approval_id, principal, now)
    if approve:
        packets.check(item, registry, packet)
        body = {
            "approval_id": approval_id,
            "principal": principal,
            "decided_at": now,
            "packet_digest": packet,
        }
        return Order("approval.approved", body)
    body = {"approval_id": approval_id, "principal": principal, "note": note}
    return Order("approval.denied", body)


def revocation(registry: Registry, ids: Sequence[str], principal: str) -> Order:
    """Tokens revoked for good (the ids the authority just revoked)."""
    check_principal(principal, registry)
    return Order("token.revoked", {"revocation_ids": list(ids), "principal": principal})


def settlement(
    approvals: ApprovalBook,
    approval_ids: Sequence[str],
    keep_until: float | None,
    reason: str,
    principal: str,
) -> Order | None:
    """Settle the given approvals that still wait (None when none does): expired - each
    one's outcome becomes the denial ``APPROVAL.EXPIRED`` and it never runs - or, with
    ``keep_until``, kept until then. An approval never outlives its task silently."""
    pending = {a.approval_id for a in approvals.pending()}
    ids = [aid for aid in approval_ids if aid in pending]
    if not ids:
        return None
    body: dict[str, Any] = {"approval_ids": ids, "reason": reason, "principal": principal}
    if keep_until is None:
        return Order("approval.expired", {**body, "code": EXPIRED})
    return Order("approval.kept", {**body, "expires_at": keep_until})
