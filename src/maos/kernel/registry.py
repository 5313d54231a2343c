"""What the kernel knows about agents and tasks, rebuilt from the log at every boot.

Nothing here is configured by editing state in place: each change is a WAL record
written by a trusted principal (the Commander, the kernel itself), and `apply` is the
only way state moves. Replaying the same records therefore gives the same state, in
this process or in the CLI's, and a kernel restart loses no decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from maos.kernel.dsc.base import AgentStatus, AgentView, TaskView
from maos.kernel.errors import InputError, StateError
from maos.kernel.labels import BOTTOM, Conf, Integrity, Label

__all__ = ["AgentRecord", "LabelRule", "Registry", "TaskRecord", "check_principal"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

COMMANDER = "commander"
"""The principal of the human at the console; the CLI acts as it."""


def check_id(kind: str, value: object) -> str:
    """Ids end up in logs, paths and tokens: keep them to a boring alphabet."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InputError(
            "BAD_INPUT.BAD_ID",
            f"{kind} id must be 1-64 chars of letters, digits, '.', '_', ':' or '-'",
            value=str(value)[:80],
        )
    return value


def check_principal(principal: str, registry: Registry) -> str:
    """Only the Commander (``commander`` or ``commander:<name>``) decides; never an agent."""
    if principal in registry.agents or principal.startswith("agent:"):
        raise StateError("STATE.NOT_COMMANDER", f"{principal!r} is an agent, not the Commander")
    if principal != COMMANDER and not principal.startswith(COMMANDER + ":"):
        raise StateError(
            "STATE.NOT_COMMANDER", f"{principal!r} is not a Commander principal (commander[:name])"
        )
    return principal


@dataclass(frozen=True, slots=True)
class LabelRule:
    """Files matching ``prefix`` (workspace-relative) read back with this label."""

    prefix: str
    conf: Conf
    integrity: Integrity


@dataclass(frozen=True, slots=True)
class AgentRecord:
    agent_id: str
    ring: int
    status: AgentStatus = AgentStatus.ACTIVE
    rate_per_s: float = 50.0
    """Steady request rate (check 2)."""
    burst: int = 100
    context: Label = BOTTOM
    """Join of every label handed to this agent (IFC)."""

    def view(self) -> AgentView:
        return AgentView(self.agent_id, self.ring, self.status)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    workspace: str = ""
    trusted_targets: frozenset[str] = field(default_factory=frozenset)
    declassified_to: Conf | None = None
    label_rules: tuple[LabelRule, ...] = ()
    budgets: Mapping[str, int] = field(default_factory=dict)
    """Limits for the task as a whole: ``tokens``, ``api_calls``, ``money_cents``."""

    def view(self) -> TaskView:
        return TaskView(self.task_id, self.workspace, self.trusted_targets, self.declassified_to)

    def label_for_path(self, path: str) -> Label:
        """Workspace files are internal and trusted unless a rule of the plan says otherwise."""
        for rule in self.label_rules:
            if path.startswith(rule.prefix):
                return Label(rule.conf, rule.integrity, frozenset({f"fs:{path}"}))
        return Label(Conf.INTERNAL, Integrity.TRUSTED, frozenset({f"fs:{path}"}))


class Registry:
    """Agents, tasks and agents' context labels; mutated only through `apply`."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentRecord] = {}
        self.tasks: dict[str, TaskRecord] = {}

    def agent(self, agent_id: str) -> AgentRecord:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise StateError(
                "STATE.UNKNOWN_AGENT", f"no agent {agent_id!r} is registered"
            ) from None

    def task(self, task_id: str) -> TaskRecord:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise StateError("STATE.UNKNOWN_TASK", f"no task {task_id!r} is open") from None

    def apply(self, kind: str, body: Mapping[str, Any]) -> None:
        """Fold one log record into the state; unknown kinds belong to other owners."""
        if kind == "agent.registered":
            fresh = AgentRecord(
                agent_id=body["agent_id"],
                ring=int(body["ring"]),
                rate_per_s=float(body.get("rate_per_s", 50.0)),
                burst=int(body.get("burst", 100)),
            )
            known = self.agents.get(fresh.agent_id)
            if known is not None:  # new limits; what the Commander and the agent's reads set stays
                fresh = replace(fresh, status=known.status, context=known.context)
            self.agents[fresh.agent_id] = fresh
        elif kind == "agent.status":
            rec = self.agents.get(body["agent_id"])
            if rec is not None:
                self.agents[rec.agent_id] = replace(rec, status=AgentStatus(body["status"]))
        elif kind == "agent.context":
            rec = self.agents.get(body["agent_id"])
            if rec is not None:
                self.agents[rec.agent_id] = replace(rec, context=Label.from_dict(body["label"]))
        elif kind == "task.opened":
            self.tasks[body["task_id"]] = TaskRecord(
                task_id=body["task_id"],
                workspace=body.get("workspace", ""),
                trusted_targets=frozenset(body.get("trusted_targets", ())),
                label_rules=tuple(
                    LabelRule(
                        r["prefix"], Conf[r["conf"].upper()], Integrity[r["integrity"].upper()]
                    )
                    for r in body.get("label_rules", ())
                ),
                budgets=dict(body.get("budgets", {})),
            )
        elif kind == "task.declassified":
            task = self.tasks.get(body["task_id"])
            if task is not None:
                self.tasks[task.task_id] = replace(task, declassified_to=Conf[body["to"].upper()])
        elif kind == "task.targets_named":
            task = self.tasks.get(body["task_id"])
            if task is not None:
                named = task.trusted_targets | frozenset(body["targets"])
                self.tasks[task.task_id] = replace(task, trusted_targets=named)

    def replay(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for kind, body in records:
            self.apply(kind, body)
