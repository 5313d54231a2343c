"""Overrides: what widens authority or weakens protection needs a confirmed override.

Once the Commander enrolled a second factor (``maos commander enroll``: a TOTP secret
kept outside the log, its enrolment logged as ``hacf.enrolled``), the orders that lift a
quarantine or an isolation, let an agent down the cascade, declassify a task's data or
add an effect class to its grants, or lower another source's degraded mode are refused
here (``HACF.OVERRIDE_REQUIRED``) unless they name an override that was requested
(``hacf.override.requested``: the action, its diff, a cooling-off time) and then
confirmed out of band (``hacf.override.confirmed``: a fresh TOTP code, checked by
services/hacf.py). Each confirmation is used once: the
order carrying it folds it as done. Before enrolment these orders stay one step, as
they always were - the demo and CI never enrol implicitly.

Nothing here ever gates R8: pausing, quarantining, isolating or killing an agent and
entering Minimal Safe State are never asked for an override (`lifts` is the only test
of a status change, and only a move *out of* quarantine or isolation lifts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import StateError

__all__ = [
    "CONFIRMED",
    "ENROLLED",
    "FIELD",
    "KINDS",
    "REQUESTED",
    "REQUIRED",
    "Override",
    "OverrideBook",
    "lifts",
]

ENROLLED = "hacf.enrolled"
REQUESTED = "hacf.override.requested"
CONFIRMED = "hacf.override.confirmed"
KINDS = frozenset({ENROLLED, REQUESTED, CONFIRMED})
FIELD = "hacf_override"
"""The body field of an order carried out under an override: the override's id."""
REQUIRED = "HACF.OVERRIDE_REQUIRED"
_CONTAINED = frozenset({AgentStatus.QUARANTINED, AgentStatus.ISOLATED})


def lifts(before: AgentStatus, after: AgentStatus) -> bool:
    """Whether a status change lets a contained agent out (what Override gates)."""
    return before in _CONTAINED and after not in _CONTAINED and after is not AgentStatus.KILLED


@dataclass(frozen=True, slots=True)
class Override:
    """One override as the log has it."""

    override_id: str
    action: str
    """``release``, ``resume``, ``declassify``, ``grants`` or ``mode``."""
    subject: str
    """The agent, task or mode source it concerns."""
    to: str
    """The stage, status or level it moves the subject to."""
    diff: Mapping[str, Any]
    """Exactly what changes: field -> [before, after]."""
    principal: str
    reason: str
    requested_at: float
    not_before: float
    """The end of the cooling-off period: no confirmation is accepted before it."""
    status: str = "requested"
    """``requested``, ``confirmed`` or ``done``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "override_id": self.override_id,
            "action": self.action,
            "subject": self.subject,
            "to": self.to,
            "diff": dict(self.diff),
            "principal": self.principal,
            "reason": self.reason,
            "requested_at": self.requested_at,
            "not_before": self.not_before,
            "status": self.status,
        }


class OverrideBook:
    """Enrolment and overrides, folded from the log (`Registry.apply` calls `apply`)."""

    def __init__(self) -> None:
        self.enrolled_at: float | None = None
        self.items: dict[str, Override] = {}
        self.last_step = -1
        """The highest TOTP time step a confirmation used: a code is never accepted twice."""

    def apply(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind == ENROLLED:
            self.enrolled_at = float(body["at"])
        elif kind == REQUESTED:
            item = Override(
                str(body["override_id"]),
                str(body["action"]),
                str(body["subject"]),
                str(body["to"]),
                dict(body["diff"]),
                str(body["principal"]),
                str(body.get("reason", "")),
                float(body["requested_at"]),
                float(body["not_before"]),
            )
            self.items.setdefault(item.override_id, item)
        elif kind == CONFIRMED:
            known = self.items.get(str(body["override_id"]))
            if known is not None and known.status == "requested":
                self.items[known.override_id] = replace(known, status="confirmed")
            self.last_step = max(self.last_step, int(body["totp_step"]))
        elif FIELD in body:
            used = self.items.get(str(body[FIELD]))
            if used is not None and used.status == "confirmed":
                self.items[used.override_id] = replace(used, status="done")

    @property
    def enrolled(self) -> bool:
        return self.enrolled_at is not None

    def get(self, override_id: str) -> Override:
        try:
            return self.items[override_id]
        except KeyError:
            raise StateError("HACF.OVERRIDE_NOT_FOUND", f"no override {override_id!r}") from None

    def require(self, action: str, subject: str, to: str, override: str | None) -> dict[str, str]:
        """The field an order widening authority carries: ``{}`` before enrolment; after
        it, the id of a confirmed, unused override for exactly this action, or a refusal."""
        if not self.enrolled:
            return {}
        if override is None:
            raise StateError(
                REQUIRED,
                f"{action} {subject} -> {to} widens authority; it needs an override confirmed"
                " with your second factor",
                hint=f"maos commander override request {action} {subject} --to {to}"
                " --reason '...', then confirm it with a TOTP code after the cooling-off",
            )
        item = self.get(override)
        if item.status != "confirmed" or (item.action, item.subject, item.to) != (
            action,
            subject,
            to,
        ):
            raise StateError(
                "HACF.OVERRIDE_UNCONFIRMED",
                f"override {override} is {item.status} for {item.action} {item.subject} ->"
                f" {item.to}, not a confirmed one for {action} {subject} -> {to}",
            )
        return {FIELD: override}

    def waiting(self) -> list[Override]:
        return [o for o in self.items.values() if o.status in ("requested", "confirmed")]
