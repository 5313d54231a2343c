"""Provenance of values (DESIGN.md): where each value first reached a task, down to the
tool and the field.

The kernel mediated every value an agent ever received, so it can say where a target
first appeared: in the Commander's words, in a trusted source, or only inside untrusted
content - and in which result and where in it (``{"source": "tool:read_inbox", "field":
"messages[2].from"}``, with the intent that fetched it). `Provenance` is the fold of
``provenance.seen`` records (the kernel and the CLI see the same answer);
`ProvenanceRecorder` is the kernel's side that writes them, and answers a decision
packet's "where did this target come from".

What is recorded, per string in a result (its keys too): every identifier in it
(`extract_targets`, an IBAN with its checksum verdict), and the string itself when it is
short enough to be a value someone could aim at (`VALUE_CHARS`: a venue's name, a
channel's, a sender's) - under its `normalise`d spelling as a name, which is how a name,
channel or handle target is looked up.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maos.kernel.dsc.ifc import target_kinds
from maos.kernel.identifiers import IDENTIFIER_KINDS, TAGGED_KINDS, extract_targets, normalise
from maos.kernel.labels import Label
from maos.kernel.ops import TOOL_PREFIX, OpSpec
from maos.kernel.registry import Registry, TaskRecord
from maos.kernel.types import EffectClass, Intent

__all__ = [
    "PROVENANCE_SCAN_CHARS",
    "VALUE_CHARS",
    "Provenance",
    "ProvenanceRecorder",
    "Sighting",
    "bounded_leaves",
    "spellings",
]

PROVENANCE_SCAN_CHARS = 64 * 1024
"""How much of a result's text the kernel scans for identifiers (provenance)."""
VALUE_CHARS = 200
"""A string this short (on one line) is recorded as a value in its own right."""
MAX_SIGHTINGS = 512
"""New values one result may record; a result naming more is recorded in part."""

Log = Callable[..., Awaitable[int]]
"""The kernel's ``_log(kind, body, intent_id=...)``: append, then fold."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """Where a value was first handed to an agent of a task."""

    kind: str
    """An identifier's kind (``email``, ``iban``, ``name``...), or ``value``: a short
    string recorded whole."""
    agent_id: str
    label: Label
    """The label of the result it came in."""
    source: str = ""
    """What produced the result: ``tool:<name>``, or the op and its target
    (``fs.read:inbox/a.eml``, ``http.request:https://...``), or a service's hand-over."""
    field: str = ""
    """Where in the result: a JSON path (``messages[2].from``; ``""`` is the whole)."""
    intent_id: str | None = None
    """The intent whose result it was."""
    checksum: bool | None = None
    """For an IBAN, whether it passes mod 97."""

    def facts(self) -> dict[str, Any]:
        """The where of it, for a packet."""
        out: dict[str, Any] = {"source": self.source, "field": self.field}
        if self.intent_id is not None:
            out["intent_id"] = self.intent_id
        if self.checksum is not None:
            out["checksum"] = self.checksum
        return out


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
        agent, source, intent = str(body["agent_id"]), str(body.get("source", "")), None
        if body.get("intent_id") is not None:
            intent = str(body["intent_id"])
        for ident in body["identifiers"]:
            checksum = ident.get("checksum")
            seen.setdefault(
                str(ident["value"]),
                Sighting(
                    str(ident["kind"]),
                    agent,
                    label,
                    source,
                    str(ident.get("field", "")),
                    intent,
                    None if checksum is None else bool(checksum),
                ),
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
                    **hit.facts(),
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
        """Log the values in ``value`` the task has not seen before, with ``label`` and
        where they are.

        Values the agent wrote into the intent itself are its own, not received (a mail's
        result echoes its recipient; a read echoes its path), so they are left out. No
        record for a result that names nothing new: the common case costs one scan.
        """
        spec = self._registry.ops.get(intent.op)
        carries_content = intent.op.startswith(("http.", "llm.", TOOL_PREFIX)) or (
            spec is not None and spec.effect_class is EffectClass.READ
        )
        if not carries_content:
            return  # a receipt (a write's digest, a mail's message id) names nothing received
        own = [intent.target, *extra, intent.params]
        if intent.op.startswith(TOOL_PREFIX):
            source = "tool:" + intent.op[len(TOOL_PREFIX) :]
        else:
            source = f"{intent.op}:{intent.target[:200]}"
        await self.note(
            task,
            intent.agent_id,
            label,
            value,
            own=own,
            intent_id=intent.intent_id,
            source=source,
        )

    async def note(
        self,
        task: TaskRecord,
        agent_id: str,
        label: Label,
        value: object,
        *,
        own: Sequence[object],
        intent_id: str | None,
        source: str = "",
    ) -> None:
        """Log the values in ``value`` new to the task, less those in ``own``."""
        known = self._provenance.known(task.task_id)
        mine: set[str] | None = None
        fresh: dict[str, dict[str, Any]] = {}
        for field, text in bounded_leaves(value):
            for key, found in _values(field, text):
                if key in known or key in fresh:
                    continue
                if mine is None:
                    mine = {k for f, t in bounded_leaves(list(own)) for k, _ in _values(f, t)}
                if key not in mine:
                    fresh[key] = found
            if len(fresh) >= MAX_SIGHTINGS:
                break
        if not fresh:
            return
        await self._log(
            "provenance.seen",
            {
                "task_id": task.task_id,
                "agent_id": agent_id,
                "intent_id": intent_id,
                "source": source,
                "identifiers": list(fresh.values()),
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
            out[target] = self._provenance.first_seen(
                task, spellings(kinds.get(target, ""), target)
            )
        return out


def spellings(kind: str, target: str) -> tuple[str, ...]:
    """Every key a target of ``kind`` may have been recorded (or named) under: as written,
    in its kind's normalisation, as the identifiers in it, as a short value, and as the
    tagged entry the Commander's words would have given it."""
    forms = [target]
    identifier = IDENTIFIER_KINDS.get(kind)
    normal = normalise(kind, target) if kind else None
    if normal is not None:
        forms.append(normal)
        if kind in TAGGED_KINDS:
            forms.append(f"{kind}:{normal}")
    forms.extend(t.value for t in extract_targets(target[:4096]) if t.kind == identifier)
    as_value = normalise("name", target)
    if as_value is not None:
        forms.append(as_value)
    return tuple(dict.fromkeys(forms))


def _values(field: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    """The keys one string of a result is recorded under, with what is recorded."""
    out: list[tuple[str, dict[str, Any]]] = []
    for t in extract_targets(text):
        found: dict[str, Any] = {"kind": t.kind, "value": t.value, "field": field}
        if t.checksum is not None:
            found["checksum"] = t.checksum
        out.append((t.value, found))
    if len(text) <= VALUE_CHARS and "\n" not in text:
        whole = normalise("name", text)
        if whole is not None and len(whole) > 1:
            out.append((whole, {"kind": "value", "value": whole, "field": field}))
    return out


def bounded_leaves(value: object, limit: int = PROVENANCE_SCAN_CHARS) -> list[tuple[str, str]]:
    """(JSON path, string) for the strings in ``value`` - a key's path ends in
    ``(key)`` - in document order, at most ``limit`` characters in all."""
    out: list[tuple[str, str]] = []
    size = 0
    stack: list[tuple[str, object]] = [("", value)]
    while stack and size < limit:
        path, item = stack.pop()
        if isinstance(item, str):
            out.append((path, item[: limit - size]))
            size += len(out[-1][1]) + 1
        elif isinstance(item, Mapping):
            for key, val in reversed(list(item.items())):
                inner = _child(path, str(key))
                stack.extend(((inner, val), (f"{inner}(key)", str(key))))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return out


def _child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)[:80]}]"
