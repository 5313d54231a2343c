"""What the Commander's request covers beyond its effect classes (issue 8, items 6 and 7).

Two deterministic rules read the ``task.grants`` record the request left (docs/rules.md):

**G3 - one high-impact effect per verb.** A high-impact class the words asked for
(``delete the newsletter``, ``cancel the lunch``, ``pay the bill``) covers as many
effects as the request has verbs for it; a quantifier in the verb's words (``all``,
``every``, ``each``, ``both``, ``them``, a number) lifts the count. One more such effect
goes to the Commander (``RULE.R7.GRANT_USED``). It stops the injected "delete that one
too" in a task that asked to delete once; it costs a human for a request that does the
same high-impact thing twice without saying so.

**C1 - one pinned target from the source the request points at.** A target no trusted
principal named (R10/R7 would park it) is admitted for one effect when all hold: the
effect is of a class the words asked for and the target's kind is one that class aims at
(`NEEDS`); it is among the identifiers that the results of the sources the request points
at handed over (``the invoice in inbox/``, ``the latest mail``, a URL it names) - every
identifier of every such result is logged, ``task.candidates``; and among those of its
kind it is the only *pinned* one. Pinned is what the content's author cannot forge: the
result came from a trusted source, or the target is a mail address or URL on a domain
the Commander wrote (mail to ``sales@acme.example`` reaches ACME whoever wrote the
address on the page). An attacker who adds a second pinned candidate gets nothing
admitted; one who replaces the only one can at most choose another mailbox of the
organisation the Commander named; accounts, names, users and channels from content are
never pinned, so they always go to the Commander with the packet (docs/rules.md).

Both are folded from the log (`ScopeFold`), so a restarted kernel and the CLI agree.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from maos.kernel.dsc.base import CheckInput
from maos.kernel.dsc.budget import BudgetLedger
from maos.kernel.dsc.ifc import target_kinds
from maos.kernel.dsc.pipeline import Pipeline
from maos.kernel.grants import Pointer, lemma, source_matches
from maos.kernel.identifiers import extract_targets
from maos.kernel.labels import Label
from maos.kernel.ops import HIGH_IMPACT
from maos.kernel.provenance import bounded_leaves
from maos.kernel.registry import Registry, TaskRecord
from maos.kernel.types import Allow, Decision, Deny, EffectClass, Intent, Pending, frozen_mapping

__all__ = ["NEEDS", "Scope", "ScopeFold"]

NEEDS: Mapping[EffectClass, frozenset[str]] = {
    EffectClass.SEND: frozenset({"recipient", "user", "channel", "phone", "url", "name"}),
    EffectClass.PAY: frozenset({"account", "name"}),
    EffectClass.WRITE: frozenset({"name"}),
}
"""The target kinds each class of effect is aimed at (C1: "of the kind the request needs")."""
_IDENTIFIER_KIND = {"email": "recipient", "iban": "account"}
"""`extract_targets` names kinds as identifiers; targets use the manifest's kinds."""
_QUANTIFIERS = frozenset(
    "all every each both them these those any everything several many".split()  # noqa: SIM905
)
_PARKED_FOR_TARGETS = frozenset({"RULE.R10.UNTRUSTED_TARGET", "RULE.R7.APPROVAL_REQUIRED"})
_ADMITTED = "task.target_admitted"
_CANDIDATES = "task.candidates"

Log = Callable[..., Awaitable[int]]


def _kind(identifier_kind: str) -> str:
    return _IDENTIFIER_KIND.get(identifier_kind, identifier_kind)


def _host(value: str) -> str:
    """The host of a URL with or without its scheme, lower-case; '' for anything else."""
    rest = value.split("://", 1)[-1]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1].split(":")[0]
    return host.lower().rstrip(".") if "." in host else ""


_HOSTS = re.compile(r"(?<![\w.@-])((?:[a-z0-9-]+\.)+[a-z]{2,24})(?![\w-])")


def _domain_written(kind: str, value: str, request: str) -> bool:
    """Whether the Commander wrote the domain of ``value`` (a mail address or URL): the
    domain itself, one it lies under, or it with a leading ``www.``."""
    if kind == "recipient":
        domain = value.rpartition("@")[2].lower().rstrip(".")
    elif kind == "url":
        domain = _host(value)
    else:
        return False
    if not domain:
        return False
    for written in _HOSTS.findall(request.lower()):
        written = written.removeprefix("www.")
        if domain == written or domain.endswith("." + written) or domain == "www." + written:
            return True
    return False


def _uses_allowed(grants: Mapping[str, Any], cls: EffectClass) -> int | None:
    """How many effects of ``cls`` the words cover; None: no limit (a quantifier)."""
    reasons = [b for b in grants.get("because") or () if b["class"] == cls.value]
    for b in reasons:
        words = re.findall(r"[a-z0-9'-]+", str(b["words"]).lower())
        if set(words) & _QUANTIFIERS or any(w.isdigit() and int(w) > 1 for w in words):
            return None
        verbs = [i for i, w in enumerate(words) if lemma(w) is not None]
        if verbs and any(_plural(w) for w in words[verbs[0] + 1 :]):
            return None  # "pay the invoices", "delete the old drafts"
    return len(reasons)


def _plural(word: str) -> bool:
    """A plural noun, roughly: the count is lifted, so erring here costs no human."""
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))


class ScopeFold:
    """Per task: its last ``task.grants``, the candidates its pointed sources yielded, the
    targets C1 admitted, and the high-impact effects it committed (G3)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.grants: dict[str, Mapping[str, Any]] = {}
        self.candidates: dict[str, set[tuple[str, str, bool]]] = {}
        """(kind, value, from a trusted result) of what pointed sources handed over."""
        self.admitted: dict[str, set[str]] = {}
        self.uses: dict[str, dict[EffectClass, int]] = {}
        self.inflight: dict[str, tuple[str, frozenset[EffectClass]]] = {}
        """Intent id -> (task, high-impact classes) of what G3 let through and the log has
        not settled yet: counted as used, so two concurrent deletes cannot both pass."""
        self._prepared: dict[str, tuple[str, str, str]] = {}

    def apply(self, kind: str, body: Mapping[str, Any], idem_key: str | None = None) -> None:
        if kind == "task.grants":
            self.grants[str(body["task_id"])] = body
        elif kind == _CANDIDATES:
            found = self.candidates.setdefault(str(body["task_id"]), set())
            found.update(
                (str(i["kind"]), str(i["value"]), bool(i.get("trusted")))
                for i in body["identifiers"]
            )
        elif kind == _ADMITTED:
            self.admitted.setdefault(str(body["task_id"]), set()).add(str(body["target"]))
        elif kind == "intent.prepared" and idem_key is not None:
            self._prepared[idem_key] = (
                str(body.get("task_id", "")),
                str(body.get("op", "")),
                str(body.get("intent_id", "")),
            )
        elif kind in ("intent.committed", "intent.failed") and idem_key is not None:
            task_id, op, intent_id = self._prepared.pop(idem_key, ("", "", ""))
            self.inflight.pop(intent_id, None)
            spec = self._registry.ops.get(op)
            if spec is not None and kind == "intent.committed":
                used = self.uses.setdefault(task_id, {})
                for cls in spec.classes:
                    if cls in HIGH_IMPACT:
                        used[cls] = used.get(cls, 0) + 1
        elif kind == "intent.denied":
            self.inflight.pop(str(body.get("intent_id", "")), None)


class Scope:
    """The kernel's side: records what pointed sources yield, and reviews decisions."""

    def __init__(
        self,
        fold: ScopeFold,
        registry: Registry,
        log: Log,
        pipeline: Pipeline,
        ledger: BudgetLedger,
    ) -> None:
        self._fold = fold
        self._registry = registry
        self._log = log
        self._pipeline = pipeline
        self._ledger = ledger

    def _pointers(self, task_id: str) -> tuple[Pointer, ...]:
        grants = self._fold.grants.get(task_id)
        raw = (grants or {}).get("pointers") or ()
        return tuple(Pointer(str(p["kind"]), str(p["value"])) for p in raw)

    def _pointed(self, task_id: str, sources: Sequence[str]) -> list[str]:
        pointers = self._pointers(task_id)
        return [
            s for s in sources if any(source_matches(p, s, self._tool_text(s)) for p in pointers)
        ]

    def _tool_text(self, source: str) -> str:
        name = source.partition(":")[2] if source.startswith("tool:") else ""
        tool = self._registry.tools.get(name)
        return "" if tool is None else f"{tool.name} {tool.description}"

    async def note_result(
        self, intent: Intent, task: TaskRecord, label: Label, value: object
    ) -> None:
        """Log every identifier a result from a pointed source holds (new ones only): a
        source the request's nouns or paths point at, or a read of a URL it names."""
        grants = self._fold.grants.get(task.task_id)
        if grants is None:
            return
        named = {_host(str(t["value"])) for t in grants.get("targets") or () if t["kind"] == "url"}
        read_named = any(_host(t) in named for t in intent.targets if t and _host(t))
        if not read_named and not self._pointed(task.task_id, sorted(label.sources)):
            return
        text = "\n".join(leaf for _, leaf in bounded_leaves(value))
        known = self._fold.candidates.get(task.task_id, set())
        trusted = label.trusted
        found = {(_kind(t.kind), t.value, trusted) for t in extract_targets(text)}
        fresh = sorted(found - known)
        if fresh:
            await self._log(
                _CANDIDATES,
                {
                    "task_id": task.task_id,
                    "sources": sorted(label.sources),
                    "identifiers": [{"kind": k, "value": v, "trusted": t} for k, v, t in fresh],
                },
                intent_id=intent.intent_id,
            )

    async def review(self, inp: CheckInput, decision: Decision) -> Decision:
        """The DSC's decision, narrowed by G3 or (for a parked target) widened by C1.
        Fails closed: any error here is a deny."""
        try:
            return await self._review(inp, decision)
        except Exception as exc:  # R11: what cannot be evaluated is refused
            return Deny("DSC.INTERNAL", f"scope failed: {type(exc).__name__}", check="scope")

    def _redecide(self, inp: CheckInput) -> Decision:
        """The DSC again on a widened view: the first run's budget reservation is released
        first, so the intent holds one reservation, never two."""
        self._ledger.settle(inp.intent.intent_id, committed=False)
        return self._pipeline.decide(inp)

    async def _review(self, inp: CheckInput, decision: Decision) -> Decision:
        task_id = inp.intent.task_id
        grants = self._fold.grants.get(task_id)
        if inp.approved or grants is None or grants.get("override"):
            return decision
        if isinstance(decision, Pending) and decision.code in _PARKED_FOR_TARGETS:
            admitted = self._admissible(inp, decision, grants)
            if admitted:
                widened = replace(
                    inp,
                    task=replace(
                        inp.task, trusted_targets=inp.task.trusted_targets | set(admitted)
                    ),
                )
                again = self._redecide(widened)
                if isinstance(again, Allow):
                    # Marked before the first await: a concurrent intent to the same target
                    # finds it used already (once means once).
                    self._fold.admitted.setdefault(task_id, set()).update(admitted)
                    for target, why in admitted.items():
                        await self._log(_ADMITTED, {"task_id": task_id, "target": target, **why})
                    decision = again
        if isinstance(decision, Allow):
            return self._g3(inp, grants) or decision
        return decision

    def _g3(self, inp: CheckInput, grants: Mapping[str, Any]) -> Pending | None:
        spec = self._registry.ops.get(inp.intent.op)
        if spec is None:
            return None
        derived = set(grants.get("result") or ())
        task_id, intent_id = inp.intent.task_id, inp.intent.intent_id
        used = dict(self._fold.uses.get(task_id, {}))
        for other, (task, classes) in self._fold.inflight.items():
            for cls in classes if task == task_id and other != intent_id else ():
                used[cls] = used.get(cls, 0) + 1
        limited = frozenset(c for c in spec.classes if c in HIGH_IMPACT and c.value in derived)
        for cls in limited:
            allowed = _uses_allowed(grants, cls)
            if allowed is not None and used.get(cls, 0) >= allowed:
                return Pending(
                    "RULE.R7.GRANT_USED",
                    f"the request asked for {allowed} {cls.value} effect(s) and the task made "
                    f"{used.get(cls, 0)}: {inp.intent.op} needs the Commander",
                    rule="R7",
                    check="scope",
                    details=frozen_mapping(
                        {"effect_class": cls.value, "targets": [t for t in inp.intent.targets if t]}
                    ),
                )
        if limited:
            self._fold.inflight[intent_id] = (task_id, limited)
        return None

    def _admissible(
        self, inp: CheckInput, decision: Pending, grants: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """C1: every flagged target with why it may be used once; {} if any may not."""
        intent = inp.intent
        spec = self._registry.ops.get(intent.op)
        flagged = [str(t) for t in decision.details.get("targets") or ()]
        if spec is None or not flagged:
            return {}
        derived = set(grants.get("result") or ())
        needed = set().union(
            *(NEEDS.get(c, frozenset()) for c in spec.classes if c.value in derived)
        )
        kinds = dict(zip(intent.targets, target_kinds(intent, spec), strict=True))
        task_id = intent.task_id
        out: dict[str, dict[str, Any]] = {}
        request = str(grants.get("request", ""))
        for target in flagged:
            kind = kinds.get(target, "unknown")
            if kind not in needed or target in self._fold.admitted.get(task_id, ()):
                return {}
            forms = {target, *(t.value for t in extract_targets(target[:4096]))}
            pinned = {
                value
                for k, value, trusted in self._fold.candidates.get(task_id, ())
                if k == kind and (trusted or _domain_written(kind, value, request))
            }
            if len(pinned) != 1 or not pinned & forms:
                return {}
            out[target] = {"kind": kind, "pinned": sorted(pinned), "rule": "C1"}
        return out
