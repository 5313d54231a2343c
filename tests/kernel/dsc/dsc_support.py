"""Builders for the DSC tests: inputs go through the real Input Sanitizer, as in the kernel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from maos.kernel.dsc.base import AgentStatus, AgentView, CheckInput, TaskView
from maos.kernel.intents import parse_intent
from maos.kernel.labels import BOTTOM, Conf, Integrity, Label
from maos.kernel.manifest import ToolManifest, parse_manifest
from maos.kernel.types import Allow, Decision, EffectClass

NOW = 1_750_000_000.0
WORKSPACE = "/srv/maos/workspaces/t1"
DATA_DIR = "/srv/maos"
UNTRUSTED_WEB = Label(Conf.PUBLIC, Integrity.UNTRUSTED, frozenset({"https://evil.example/page"}))


def make_input(
    op: str = "fs.write",
    target: str = "notes.txt",
    *,
    agent_id: str = "a1",
    task_id: str = "t1",
    intent_id: str = "i-1",
    token: str = "",
    params: Mapping[str, Any] | None = None,
    cost: Mapping[str, int] | None = None,
    expected_version: int | None = None,
    extra_targets: Iterable[str] = (),
    target_kinds: Iterable[str] = (),
    effect_classes: Iterable[EffectClass] | None = None,
    amounts: Iterable[int] = (),
    paid: Iterable[tuple[str, int]] = (),
    status: AgentStatus = AgentStatus.ACTIVE,
    workspace: str = WORKSPACE,
    trusted: Iterable[str] = (),
    declassified_to: Conf | None = None,
    context: Label = BOTTOM,
    approved: bool = False,
    now: float = NOW,
) -> CheckInput:
    frame: dict[str, Any] = {
        "task_id": task_id,
        "op": op,
        "target": target,
        "idempotency_key": f"k-{intent_id}",
        "token": token,
        "params": dict(params or {}),
        "cost": dict(cost or {}),
        "expected_version": expected_version,
        "extra_targets": list(extra_targets),
        "target_kinds": list(target_kinds),
    }
    classes = None if effect_classes is None else frozenset(effect_classes)
    return CheckInput(
        intent=parse_intent(frame, agent_id=agent_id, intent_id=intent_id),
        agent=AgentView(agent_id, ring=3, status=status),
        task=TaskView(
            task_id,
            workspace,
            frozenset(trusted),
            declassified_to,
            trusted_amounts=frozenset(amounts),
            paid=frozenset(paid),
            effect_classes=classes,
        ),
        now=now,
        node_id="node-test",
        context=context,
        approved=approved,
    )


def tool_input(manifest: ToolManifest, args: Mapping[str, Any], **kw: Any) -> CheckInput:
    """A call of ``manifest``'s tool as the gateway builds it: targets, kinds and cents
    from the manifest (``kw`` may override any of them, to build a forged intent)."""
    found = manifest.targets_of(args)
    targets = [t.value for t in found] or [""]
    frame: dict[str, Any] = {
        "target": targets[0],
        "extra_targets": targets[1:],
        "target_kinds": [t.kind for t in found] or ["none"],
        "params": {"args": dict(args), "manifest_sha256": manifest.manifest_sha256},
        "cost": {"money_cents": manifest.amount_cents(args)},
    }
    frame.update(kw)
    return make_input(f"tool.{manifest.name}", **frame)


def manifest(name: str, effect: Any, targets: Mapping[str, Any], **kw: Any) -> ToolManifest:
    """A validated manifest whose parameters are the targets' params (strings or lists)
    plus ``kw``'s ``params`` (name -> JSON type)."""
    params: dict[str, Any] = {p.split(".")[0].split("[")[0]: {} for p in targets}
    params.update({k: {"type": v} for k, v in kw.pop("params", {}).items()})
    raw = {
        "name": name,
        "parameters": {"type": "object", "properties": params},
        "effect_classes": effect,
        "targets": dict(targets),
        "result_label": {"conf": "internal", "integrity": "untrusted"},
        **kw,
    }
    return parse_manifest(raw)


def code_of(decision: Decision) -> str:
    """``ALLOW`` or the decision's code: one comparable value with a readable failure."""
    return "ALLOW" if isinstance(decision, Allow) else decision.code
