"""Task plans: the YAML a Commander writes, validated before anything runs.

    task: q3-report
    mission_statement: Produce the Q3 report for the CFO; never send data elsewhere.
    prompt: Summarise reports/q3-data.md and mail it to cfo@example.com.
    effects: [read, write, send]      # optional: grants by effect class
    agents:
      drafter: {script: drafter, ring: 3}
      mailer: {script: agents/mailer.py}
    steps:
      draft: {agent: drafter, grants: ["fs.read|*", "fs.write|reports/*"]}
      mail:
        agent: mailer
        input_from: [draft]
        grants: ["email.send|cfo@example.com"]

Validation is strict (no coercion, unknown fields refused) and every failure is a
`PlanError` with a stable code and the field path:

    PLAN.INVALID        a field is missing, unknown, of the wrong type or out of range
    PLAN.UNKNOWN_STEP   a step needs (or takes input from) a step the plan lacks
    PLAN.UNKNOWN_AGENT  a step names an agent the plan lacks
    PLAN.CYCLE          the steps' dependencies loop

A step's dependencies are ``needs`` and ``input_from`` together. Grants are written as
``OP|RESOURCE[|MAX_CENTS]`` and parsed into kernel `Grant` values here, so a plan whose
grants the kernel would refuse never starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from maos.kernel.errors import InputError, MaosError
from maos.kernel.manifest import effect_class
from maos.kernel.textfile import read_yaml
from maos.kernel.tokens import Grant

__all__ = [
    "MAX_PLAN_BYTES",
    "MAX_PROMPT_CHARS",
    "AgentSpec",
    "Budgets",
    "CellSettings",
    "Declassification",
    "LabelRuleSpec",
    "Plan",
    "PlanError",
    "StepSpec",
    "load_plan",
    "parse_grant",
    "parse_plan",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
EffectName = Literal[
    "read",
    "write",
    "delete",
    "send",
    "pay",
    "credentials",
    "execute",
    "read-only",
    "reversible",
    "irreversible",
    "financial",
    "external-communication",
    "credential-change",
]
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
MAX_PLAN_BYTES = 1024 * 1024
"""A plan file's limit, checked before it is read."""
MAX_PROMPT_CHARS = 64 * 1024
"""The prompt (and the mission statement) reach every agent of the plan in its pod's
environment, inside a launch frame of bounded size: a longer one is refused at load."""


class PlanError(MaosError):
    """A plan file cannot run as written (codes ``PLAN.*``); ``path`` names the field."""


class AgentSpec(BaseModel):
    model_config = _STRICT

    script: str = Field(min_length=1)
    """A path (relative to the plan file) or the name of a shipped agent (``hello``)."""
    ring: Literal[2, 3] = 3
    """2 for verified agents, 3 (the default) for untrusted ones."""
    level: int | None = Field(default=None, ge=1, le=3)
    """The pod isolation level; None is the ring's default."""


class CellSettings(BaseModel):
    """How the Cognitive Cell (``script: cell``) runs this step."""

    model_config = _STRICT

    turns: int = Field(default=12, ge=1, le=100)
    """Model turns before the cell stops and reports what it has."""
    pause_s: float = Field(default=300.0, ge=0, le=86_400)
    """How long the cell waits out Rule-Based Mode before it exits 75 (retry later)."""
    approval_wait_s: float = Field(default=0.0, ge=0, le=86_400)
    """How long a call parked for the Commander is waited for; 0: report it and go on."""

    def env(self) -> dict[str, str]:
        return {
            "MAOS_CELL_TURNS": str(self.turns),
            "MAOS_CELL_PAUSE_S": str(self.pause_s),
            "MAOS_CELL_APPROVAL_WAIT_S": str(self.approval_wait_s),
        }


class StepSpec(BaseModel):
    model_config = _STRICT

    agent: str
    """The id of one of the plan's agents."""
    needs: tuple[str, ...] = ()
    """Steps that must be done before this one starts."""
    grants: tuple[str, ...] = Field(min_length=1)
    """``OP|RESOURCE[|MAX_CENTS]``: all the step's token allows (least privilege; a
    token without grants is one the kernel does not mint)."""
    timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    """One attempt's limit; the pod is killed when it is reached."""
    retries: int = Field(default=0, ge=0, le=10)
    """Further attempts after a failed one."""
    input_from: tuple[str, ...] = ()
    """Steps whose labelled values this step's agent receives (``MAOS_INPUTS``)."""
    tools: tuple[str, ...] = ()
    """Tools the step's agent is offered (``MAOS_TOOLS``): the Cognitive Cell's built-ins
    (``read_file``, ``send_email`` ...) and registered tools (`maos.tool`). Naming a
    registered tool grants it (``tool.<name>``, any target: the kernel still checks the
    targets against the task's trusted ones)."""
    cell: CellSettings = CellSettings()
    """Settings of the Cognitive Cell, for steps whose agent is ``cell``."""

    def depends_on(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.needs, *self.input_from)))

    def parsed_grants(self) -> list[Grant]:
        return [parse_grant(g) for g in self.grants]


class LabelRuleSpec(BaseModel):
    model_config = _STRICT

    prefix: str = Field(min_length=1)
    conf: Literal["public", "internal", "confidential", "secret"]
    integrity: Literal["trusted", "untrusted"]


class Declassification(BaseModel):
    """The Commander releases the task's data down to ``to`` (R6), with the reason logged."""

    model_config = _STRICT

    to: Literal["public", "internal", "confidential"]
    reason: str = Field(min_length=1, max_length=1000)


class Budgets(BaseModel):
    model_config = _STRICT

    tokens: int | None = Field(default=None, ge=0)
    api_calls: int | None = Field(default=None, ge=0)
    money_cents: int | None = Field(default=None, ge=0)

    def as_limits(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


HacfClass = Literal["read", "write", "delete", "send", "pay", "credentials", "execute"]


class Plan(BaseModel):
    """A validated plan; build it with `parse_plan` or `load_plan`, never by hand."""

    model_config = _STRICT

    task: str = Field(pattern=_ID)
    mission_statement: str = ""
    """Every agent of the plan receives it (``MAOS_MISSION``)."""
    prompt: str
    """The Commander's task text; identifiers in it become trusted targets."""
    trusted_targets: tuple[str, ...] = ()
    effects: tuple[EffectName, ...] | None = None
    """Grants by effect class: the kinds of change the task may make at all (``read``,
    ``write``, ``delete``, ``send``, ``pay``, ``credentials``, ``execute``, or the aliases
    of `maos.tool`). Left out: the tokens alone decide, and deletion, payments, credential
    changes and code execution always ask the Commander (R7)."""
    budgets: Budgets = Budgets()
    label_rules: tuple[LabelRuleSpec, ...] = ()
    declassify: Declassification | None = None
    """Released from the start: personal data the task exists to send (a passport to the
    authority the prompt names) keeps its label until a principal says so, here or with
    `maos task declassify`."""
    tool_modules: tuple[str, ...] = ()
    """Python files declaring tools (`maos.tool`), relative to the plan file, or shipped
    ones by name (``office_tools``); `maos run` starts each in a sandboxed tool host and
    registers its tools for the task."""
    hacf: dict[HacfClass, Literal["inform", "recommend", "deliberate"]] = Field(
        default_factory=dict
    )
    """HACF levels for this task's effect classes (docs/hacf.md): they raise config.json's
    ``commander.levels``, never lower them (`maos.services.hacf.level_of`)."""
    agents: dict[str, AgentSpec] = Field(min_length=1)
    steps: dict[str, StepSpec] = Field(min_length=1)

    def effect_classes(self) -> list[str] | None:
        """``effects`` with the aliases resolved (`maos.kernel.manifest.effect_class`)."""
        if self.effects is None:
            return None
        return sorted({effect_class(e).value for e in self.effects})

    def order(self) -> list[str]:
        """The steps in a dependency order (ties by id), for display and dry runs."""
        return _topological(self)


def parse_grant(text: str) -> Grant:
    """``OP|RESOURCE[|MAX_CENTS]`` -> `Grant`; `PlanError` (PLAN.INVALID) otherwise."""
    parts = text.split("|")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
        raise PlanError("PLAN.INVALID", f"{text!r}: a grant is OP|RESOURCE or OP|RESOURCE|CENTS")
    try:
        return Grant(parts[0], parts[1], int(parts[2]) if len(parts) == 3 else None)
    except MaosError as exc:
        raise PlanError("PLAN.INVALID", f"{text!r}: {exc.message}") from exc


def parse_plan(raw: object, *, base_dir: Path | None = None) -> Plan:
    """Validate plan data (from YAML); scripts are resolved against ``base_dir``."""
    try:
        text = json.dumps(raw)
    except (TypeError, ValueError) as exc:
        raise PlanError(
            "PLAN.INVALID", f"the plan holds a value that is not plain data: {exc}"
        ) from exc
    if not isinstance(raw, Mapping):
        raise PlanError("PLAN.INVALID", "a plan is a mapping with task, prompt, agents, steps")
    for field in ("prompt", "mission_statement"):
        value = raw.get(field)
        if isinstance(value, str) and len(value) > MAX_PROMPT_CHARS:
            raise PlanError(
                "BAD_INPUT.TOO_LARGE",
                f"{field}: {len(value)} characters; a plan's {field} is at most "
                f"{MAX_PROMPT_CHARS} (put long material in a workspace file the agents read)",
                path=field,
            )
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or "(plan)"
        raise PlanError("PLAN.INVALID", f"{path}: {_sentence(err)}", path=path) from None
    _check_refs(plan)
    _topological(plan)
    if base_dir is not None:
        agents = {
            aid: spec.model_copy(
                update={"script": str(_resolve(spec.script, base_dir, path=f"agents.{aid}"))}
            )
            for aid, spec in plan.agents.items()
        }
        modules = tuple(
            str(_resolve(m, base_dir, what="tool module", path=f"tool_modules[{i}]"))
            for i, m in enumerate(plan.tool_modules)
        )
        plan = plan.model_copy(update={"agents": agents, "tool_modules": modules})
    return plan


def load_plan(path: Path) -> Plan:
    """Read, parse and validate a plan file (at most `MAX_PLAN_BYTES`, checked before it
    is read; no YAML anchors or aliases: `maos.kernel.textfile`)."""
    try:
        raw = read_yaml(path, limit=MAX_PLAN_BYTES, what=f"the plan {path}", code="PLAN.INVALID")
    except InputError as exc:
        raise PlanError(exc.code, exc.message, **exc.fields) from None
    return parse_plan(raw, base_dir=path.resolve().parent)


def _sentence(err: Mapping[str, Any]) -> str:
    if err["type"] == "missing":
        return "this field is required."
    if err["type"] == "extra_forbidden":
        return "this field is not part of a plan (a typo?)."
    return f"{err['msg']}."


def _check_refs(plan: Plan) -> None:
    for ident in (*plan.agents, *plan.steps):
        if not _valid_id(ident):
            raise PlanError(
                "PLAN.INVALID",
                f"{ident!r}: ids are 1-64 letters, digits, '.', '_', ':' or '-'",
                path=ident,
            )
    for sid, step in plan.steps.items():
        if step.agent not in plan.agents:
            raise PlanError(
                "PLAN.UNKNOWN_AGENT",
                f"steps.{sid}.agent: no agent {step.agent!r} in the plan's agents",
                path=f"steps.{sid}.agent",
            )
        for field in ("needs", "input_from"):
            for dep in getattr(step, field):
                if dep not in plan.steps:
                    raise PlanError(
                        "PLAN.UNKNOWN_STEP",
                        f"steps.{sid}.{field}: no step {dep!r} in the plan",
                        path=f"steps.{sid}.{field}",
                    )
        for i, grant in enumerate(step.grants):
            try:
                parse_grant(grant)
            except PlanError as exc:
                path = f"steps.{sid}.grants.{i}"
                raise PlanError("PLAN.INVALID", f"{path}: {exc.message}", path=path) from None


def _valid_id(ident: str) -> bool:
    return re.match(_ID, ident) is not None


def _topological(plan: Plan) -> list[str]:
    indegree = {sid: len(step.depends_on()) for sid, step in plan.steps.items()}
    users: dict[str, list[str]] = {sid: [] for sid in plan.steps}
    for sid, step in plan.steps.items():
        for dep in step.depends_on():
            users[dep].append(sid)
    ready = sorted(sid for sid, n in indegree.items() if n == 0)
    order: list[str] = []
    while ready:
        sid = ready.pop(0)
        order.append(sid)
        for user in users[sid]:
            indegree[user] -= 1
            if indegree[user] == 0:
                ready.append(user)
        ready.sort()
    if len(order) < len(plan.steps):
        looped = sorted(sid for sid, n in indegree.items() if n > 0)
        raise PlanError(
            "PLAN.CYCLE",
            f"the steps {', '.join(looped)} depend on each other in a cycle",
            steps=looped,
        )
    return order


def _resolve(script: str, base_dir: Path, *, what: str = "agent", path: str) -> Path:
    """A path relative to the plan file, or the name of a shipped agent or tool module."""
    if "/" not in script and not script.endswith(".py"):
        from maos.agents import script as shipped

        try:
            return shipped(script)
        except FileNotFoundError:
            raise PlanError(
                "PLAN.INVALID",
                f"{path}: no shipped {what} named {script!r}; give a path to a .py file "
                "(relative to the plan)",
                path=path,
            ) from None
    return (base_dir / script).resolve()
