"""What the kernel knows about agents and tasks, rebuilt from the log at every boot.

Nothing here is configured by editing state in place: each change is a WAL record
written by a trusted principal (the Commander, the kernel itself), and `apply` is the
only way state moves. Replaying the same records therefore gives the same state, in
this process or in the CLI's, and a kernel restart loses no decision.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from maos.kernel.dsc.base import AgentStatus, AgentView, TaskView
from maos.kernel.errors import InputError, StateError
from maos.kernel.labels import BOTTOM, Conf, Integrity, Label
from maos.kernel.manifest import ToolManifest, parse_manifest
from maos.kernel.modes import KIND as MODE_KIND
from maos.kernel.modes import Mode, ModeDemands
from maos.kernel.ops import OPS, TOOL_PREFIX, OpSpec, tool_spec
from maos.kernel.overrides import OverrideBook
from maos.kernel.stages import Stage, stage_for_status, stage_report
from maos.kernel.types import EffectClass

__all__ = ["AgentRecord", "LabelRule", "Registry", "TaskRecord", "ToolRecord", "check_principal"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

COMMANDER = "commander"
"""The principal of the human at the console; the CLI acts as it."""


def workspace_key(path: str) -> str:
    """One spelling per workspace file (``./a/../b.txt`` is ``b.txt``) for its label."""
    return posixpath.normpath(path).lstrip("/") if path else path


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


FEVER_QUARANTINED = 2
"""Quarantined agents at which Security Fever begins."""


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
    stage: Stage = Stage.NORMAL
    """Where the agent is in the quarantine cascade (`maos.kernel.cascade`)."""
    stage_at: float = 0.0
    """When it entered that stage (the kernel's clock): windows count from here."""
    stage_cause: str = ""
    danger: float = 0.0
    """The danger score that moved it there (the Security Agent's, at that moment)."""
    evidence: tuple[Mapping[str, Any], ...] = ()
    """The signals behind the score, newest last."""
    replaced_by: str | None = None
    """The clean replacement that healed this agent, once it was eliminated."""

    def view(self) -> AgentView:
        return AgentView(self.agent_id, self.ring, self.status)

    @property
    def observed(self) -> bool:
        """In the cascade's observation stage: every effect goes to the SSE (or the
        heuristic evaluator), nothing is restricted."""
        return self.stage is Stage.OBSERVATION


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    workspace: str = ""
    trusted_targets: frozenset[str] = field(default_factory=frozenset)
    declassified_to: Conf | None = None
    label_rules: tuple[LabelRule, ...] = ()
    budgets: Mapping[str, int] = field(default_factory=dict)
    """Limits for the task as a whole: ``tokens``, ``api_calls``, ``money_cents``."""
    effect_classes: frozenset[EffectClass] | None = None
    trusted_amounts: frozenset[int] = field(default_factory=frozenset)
    paid: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    """(target, cents) of every payment the task made (``task.paid``)."""
    written: Mapping[str, Label] = field(default_factory=dict)
    """Workspace path -> the join of its writers' context labels (``fs.labelled``)."""

    def view(self, root: str) -> TaskView:
        """What the checks see; ``root`` is the directory holding every task's workspace."""
        return TaskView(
            self.task_id,
            f"{root}/{self.workspace}",
            self.trusted_targets,
            self.declassified_to,
            trusted_amounts=self.trusted_amounts,
            paid=self.paid,
            effect_classes=self.effect_classes,
        )

    def label_for_path(self, path: str) -> Label:
        """Workspace files are internal and trusted unless a rule of the plan says otherwise,
        and never less than what their writers held: a file cannot launder a label (an
        agent holding a secret writes it into ``public/``; the file reads back secret)."""
        key = workspace_key(path)
        base = Label(Conf.INTERNAL, Integrity.TRUSTED, frozenset({f"fs:{path}"}))
        for rule in self.label_rules:
            if path.startswith(rule.prefix) or key.startswith(rule.prefix):
                base = Label(rule.conf, rule.integrity, frozenset({f"fs:{path}"}))
                break
        written = self.written.get(key)
        return base if written is None else base.join(written)


@dataclass(frozen=True, slots=True)
class ToolRecord:
    """A registered tool as the kernel checks it: its validated manifest, and its code."""

    manifest: ToolManifest
    module: str | None = None
    """The file its host runs, so a later process can start it again (approvals)."""
    module_sha256: str | None = None
    """The SHA-256 of that file's code when it was registered: a later host must run it."""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def effect_class(self) -> EffectClass:
        """The most severe of its classes (`ToolManifest.effect_classes` has them all)."""
        return self.manifest.effect_class

    @property
    def targets(self) -> Mapping[str, str]:
        """Target path -> kind, for people (the manifest has the full specs)."""
        return {t.path: t.kind for t in self.manifest.targets}

    @property
    def result_label(self) -> Label:
        return self.manifest.result_label

    @property
    def parameters(self) -> Mapping[str, Any]:
        """JSON schema of the arguments; a call that does not fit never reaches the log."""
        return self.manifest.parameters

    @property
    def description(self) -> str:
        return self.manifest.description


TOOL_RECORD_EXTRAS = ("module", "module_sha256", "principal", "manifest_sha256")
"""Keys of a ``tool.registered`` body that are not the manifest."""


class Registry:
    """Agents, tasks, tools and agents' context labels; mutated only through `apply`."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentRecord] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.tools: dict[str, ToolRecord] = {}
        self.ops: dict[str, OpSpec] = dict(OPS)
        """The op catalogue the DSC checks against: the built-in ops and registered tools."""
        self.safe_state: Mapping[str, Any] | None = None
        """The Commander's Minimal Safe State record while it lasts (R8); None: normal."""
        self.overrides = OverrideBook()
        """The Commander's second factor and overrides (`maos.kernel.overrides`)."""
        self.quarantined: set[str] = set()
        """Agents in quarantine now (soft or hard isolation): two or more make Security
        Fever (`fever`)."""
        self.modes = ModeDemands()
        """The degradation mode each source demands (`maos.kernel.modes`)."""

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

    @property
    def fever(self) -> bool:
        """Security Fever (seed: "2+ agents in quarantine"): the system is stricter."""
        return len(self.quarantined) >= FEVER_QUARANTINED

    @property
    def mode(self) -> Mode:
        """The effective degradation mode: the most severe demand, MSS in safe state."""
        return Mode.MSS if self.safe_state is not None else self.modes.effective

    def agents_report(self) -> dict[str, dict[str, Any]]:
        """Every agent as status reports show it: ring, status, context label and its
        place in the quarantine cascade (stage, cause, score, evidence)."""
        return {
            a.agent_id: {
                "ring": a.ring,
                "status": a.status.value,
                "context": a.context.to_dict(),
                **stage_report(a),
            }
            for a in self.agents.values()
        }

    def fever_report(self) -> dict[str, Any]:
        """The fever as status reports show it: on or off, and who is in quarantine."""
        return {"on": self.fever, "quarantined": sorted(self.quarantined)}

    def apply(self, kind: str, body: Mapping[str, Any]) -> None:
        """Fold one log record into the state; unknown kinds belong to other owners."""
        self.overrides.apply(kind, body)
        if kind == "agent.registered":
            fresh = AgentRecord(
                agent_id=body["agent_id"],
                ring=int(body["ring"]),
                rate_per_s=float(body.get("rate_per_s", 50.0)),
                burst=int(body.get("burst", 100)),
            )
            known = self.agents.get(fresh.agent_id)
            if known is not None:  # new limits; what the Commander and the agent's reads set stays
                fresh = replace(
                    known, ring=fresh.ring, rate_per_s=fresh.rate_per_s, burst=fresh.burst
                )
            self.agents[fresh.agent_id] = fresh
        elif kind == "agent.status":
            rec = self.agents.get(body["agent_id"])
            if rec is not None:
                status = AgentStatus(body["status"])
                stage = stage_for_status(status, rec.stage)
                moved = stage is not rec.stage
                self._set_status(
                    replace(
                        rec,
                        status=status,
                        stage=stage,
                        stage_cause=f"{body.get('principal', '?')}: {status.value}"
                        if moved
                        else rec.stage_cause,
                        stage_at=float(body.get("at", rec.stage_at)) if moved else rec.stage_at,
                    )
                )
        elif kind == "agent.stage":
            rec = self.agents.get(body["agent_id"])
            if rec is not None:
                self._set_status(
                    replace(
                        rec,
                        status=AgentStatus(body["status"]),
                        stage=Stage(body["stage"]),
                        stage_at=float(body.get("at", 0.0)),
                        stage_cause=str(body.get("cause", "")),
                        danger=float(body.get("score", 0.0)),
                        evidence=tuple(body.get("evidence", ())),
                        replaced_by=body.get("replaced_by", rec.replaced_by),
                    )
                )
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
                effect_classes=None
                if body.get("effect_classes") is None
                else frozenset(EffectClass(c) for c in body["effect_classes"]),
                trusted_amounts=frozenset(int(c) for c in body.get("trusted_amounts", ())),
            )
        elif kind == "kernel.safe_state":
            self.safe_state = dict(body) if body.get("on") else None
        elif kind == MODE_KIND:
            self.modes.apply(body)
        elif kind == "task.paid":
            task = self.tasks.get(body["task_id"])
            if task is not None:
                done = (str(body["target"]), int(body["amount_cents"]))
                self.tasks[task.task_id] = replace(task, paid=task.paid | {done})
        elif kind == "fs.labelled":
            task = self.tasks.get(body["task_id"])
            if task is not None:
                key = workspace_key(body["path"])
                label = Label.from_dict(body["label"])
                before = task.written.get(key)
                written = {**task.written, key: label if before is None else before.join(label)}
                self.tasks[task.task_id] = replace(task, written=written)
        elif kind == "tool.registered":
            self._tool(body)
        elif kind == "task.declassified":
            task = self.tasks.get(body["task_id"])
            if task is not None:
                self.tasks[task.task_id] = replace(task, declassified_to=Conf[body["to"].upper()])
        elif kind == "task.targets_named":
            task = self.tasks.get(body["task_id"])
            if task is not None:
                named = task.trusted_targets | frozenset(body["targets"])
                self.tasks[task.task_id] = replace(task, trusted_targets=named)

    def _set_status(self, rec: AgentRecord) -> None:
        self.agents[rec.agent_id] = rec
        if rec.status in (AgentStatus.ISOLATED, AgentStatus.QUARANTINED):
            self.quarantined.add(rec.agent_id)
        else:
            self.quarantined.discard(rec.agent_id)

    def _tool(self, body: Mapping[str, Any]) -> None:
        """Records before issue 8 had one ``effect_class``, kinds as strings and an
        ``amount_param``; `parse_manifest` reads both forms, so old logs replay."""
        raw = {k: v for k, v in body.items() if k not in TOOL_RECORD_EXTRAS}
        if "result_label" in raw:  # older records carried the label's sources too
            raw["result_label"] = {k: raw["result_label"][k] for k in ("conf", "integrity")}
        tool = ToolRecord(parse_manifest(raw), body.get("module"), body.get("module_sha256"))
        self.tools[tool.name] = tool
        self.ops[TOOL_PREFIX + tool.name] = tool_spec(tool.manifest)

    def replay(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for kind, body in records:
            self.apply(kind, body)
