"""Provenance of values (DESIGN.md): where each identifier first reached a task.

The kernel mediated every value an agent ever received, so it can say where a target
first appeared: in the Commander's words, in a trusted source, or only inside untrusted
content. `Provenance` is the fold of ``provenance.seen`` records (the kernel and the CLI
see the same answer); `ProvenanceRecorder` is the kernel's side that writes them, and
answers an R10 approval's "where did this target come from".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maos.kernel.dsc.ifc import target_kinds
from maos.kernel.identifiers import extract_targets
from maos.kernel.labels import Label
from maos.kernel.ops import TOOL_PREFIX, OpSpec
from maos.kernel.registry import Registry, TaskRecord
from maos.kernel.types import EffectClass, Intent

__all__ = ["PROVENANCE_SCAN_CHARS", "Provenance", "ProvenanceRecorder", "Sighting", "bounded_text"]

PROVENANCE_SCAN_CHARS = 64 * 1024
"""How much of a result's text the kernel scans for identifiers (provenance)."""
_TARGET_KIND_TO_IDENTIFIER = {
    "recipient": "email",
    "url": "url",
    "path": "path",
    "account": "iban",
    "phone": "phone",
}

Log = Callable[..., Awaitable[int]]
"""The kernel's ``_log(kind, body, intent_id=...)``: append, then fold."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """Where an identifier was first handed to an agent of a task."""

    kind: str
    agent_id: str
    label: Label
    """The label of the result it came in."""


class Provenance:
    """First sighting of each identifier per task, folded from ``provenance.seen`` records.

    The kernel logs a record when a result it hands an agent names identifiers the task
    has not seen yet; the first record wins, so replaying the log gives the same answer.
    """

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, Sighting]] = {}

    def apply(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind != "provenance.seen":
            return
        seen = self._seen.setdefault(str(body["task_id"]), {})
        label = Label.from_dict(body["label"])
        for ident in body["identifiers"]:
            seen.setdefault(
                str(ident["value"]), Sighting(str(ident["kind"]), str(body["agent_id"]), label)
            )

    def known(self, task_id: str) -> Mapping[str, Sighting]:
        return self._seen.get(task_id, {})

    def first_seen(self, task: TaskRecord, values: tuple[str, ...]) -> dict[str, Any]:
        """Where the target written as any of ``values`` first appeared, for a human.

        ``commander`` (the task names it), ``trusted_source`` or ``untrusted_content``
        (with the sources of the result it came in), or ``never_seen``: no result the
        kernel handed the task's agents contained it, so an agent produced it itself.
        """
        if any(v in task.trusted_targets for v in values):
            return {"first_seen": "commander"}
        seen = self.known(task.task_id)
        for value in values:
            hit = seen.get(value)
            if hit is not None:
                origin = "trusted_source" if hit.label.trusted else "untrusted_content"
                return {
                    "first_seen": origin,
                    "sources": sorted(hit.label.sources),
                    "agent_id": hit.agent_id,
                }
        return {"first_seen": "never_seen"}


class ProvenanceRecorder:
    """Writes ``provenance.seen`` for what results name, and reads it back for packets."""

    def __init__(self, provenance: Provenance, registry: Registry, log: Log) -> None:
        self._provenance = provenance
        self._registry = registry
        self._log = log

    async def record(
        self,
        intent: Intent,
        task: TaskRecord,
        label: Label,
        value: object,
        extra: Sequence[str] = (),
    ) -> None:
        """Log the identifiers in ``value`` the task has not seen before, with ``label``.

        Identifiers the agent wrote into the intent itself are its own, not received (a
        mail's result echoes its recipient; a read echoes its path), so they are left out.
        No record for a result that names nothing new: the common case costs one scan.
        """
        spec = self._registry.ops.get(intent.op)
        carries_content = intent.op.startswith(("http.", "llm.", TOOL_PREFIX)) or (
            spec is not None and spec.effect_class is EffectClass.READ
        )
        if not carries_content:
            return  # a receipt (a write's digest, a mail's message id) names nothing received
        own = [intent.target, *extra, intent.params]
        await self.note(task, intent.agent_id, label, value, own=own, intent_id=intent.intent_id)

    async def note(
        self,
        task: TaskRecord,
        agent_id: str,
        label: Label,
        value: object,
        *,
        own: Sequence[object],
        intent_id: str | None,
    ) -> None:
        """Log the identifiers in ``value`` new to the task, less those in ``own``."""
        text = bounded_text(value)
        if not text:
            return
        known = self._provenance.known(task.task_id)
        fresh = [t for t in extract_targets(text) if t.value not in known]
        if not fresh:
            return
        own_text = bounded_text(list(own))
        mine = {t.value for t in extract_targets(own_text)} if own_text else set()
        fresh = [t for t in fresh if t.value not in mine]
        if not fresh:
            return
        await self._log(
            "provenance.seen",
            {
                "task_id": task.task_id,
                "agent_id": agent_id,
                "identifiers": [{"kind": t.kind, "value": t.value} for t in fresh],
                "label": label.to_dict(),
            },
            intent_id=intent_id,
        )

    def first_seen(
        self, intent: Intent, spec: OpSpec | None, flagged: Sequence[str]
    ) -> dict[str, Any]:
        """For each flagged target, where it first reached the task (for the approval)."""
        task = self._registry.task(intent.task_id)
        kinds = dict(zip(intent.targets, target_kinds(intent, spec), strict=True)) if spec else {}
        out: dict[str, Any] = {}
        for target in flagged:
            kind = _TARGET_KIND_TO_IDENTIFIER.get(kinds.get(target, ""))
            forms = [target]
            forms.extend(t.value for t in extract_targets(target[:4096]) if t.kind == kind)
            out[target] = self._provenance.first_seen(task, tuple(forms))
        return out


def bounded_text(value: object, limit: int = PROVENANCE_SCAN_CHARS) -> str:
    """The strings in ``value`` (keys too), newline-joined, at most ``limit`` characters."""
    parts: list[str] = []
    size = 0
    stack: list[object] = [value]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item[: limit - size])
            size += len(parts[-1]) + 1
        elif isinstance(item, Mapping):
            for key, val in reversed(list(item.items())):
                stack.extend((val, key))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
    return "\n".join(parts)
