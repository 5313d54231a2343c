"""The Memory Manager (Ring 1): turns every threat MAOS deflects into immune memory.

It follows the kernel's log. A deflection is an intent the DSC or the SSE refused for
an injection or an untrusted target (``DSC.PREFILTER.INJECTION``, ``SENTRY.PAYLOAD.*``,
``RULE.R10.*``, ``RULE.R6.*``, the SSE's vetoes), or an R10/R6 park the Commander denied.
For each it looks for the injection text that preceded it, in the results the kernel
handed the agent:

* a flagged target's provenance names the result it first came in (``first_seen``):
  the sentence of that result around the target is the injection;
* otherwise the newest of the agent's recent results in which the pre-filter finds an
  injection phrasing: the sentence around the phrasing.

It then submits a ``memory.learned`` order through the kernel's service desk with its
Ring 1 capability (`maos.kernel.immune`, `maos.kernel.services`); it never writes kernel
state itself. The kernel recognises the threat from then on;
`MemoryEvaluator` lets the SSE catch paraphrases of it as well.

Restart-safe: the history is folded again at start, and a deflection that already
became a pattern (or one the Commander made the memory forget) is not learned twice.
A serving kernel runs it as its own process under the Service Manager
(``maos.service_main memory``: out of the kernel's memory, reading the log through a
read-only fold, restarted when it fails); a one-shot command's kernel runs it in its own
process.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from maos.kernel.approvals import ApprovalBook
from maos.kernel.dsc.prefilter import locate
from maos.kernel.errors import MaosError
from maos.kernel.immune import KINDS, MIN_TEXT, Threat, ThreatMemory, learned, text_form
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Label
from maos.kernel.provenance import bounded_leaves
from maos.kernel.registry import Registry
from maos.kernel.services import service_principal
from maos.kernel.sse import SemanticEvaluator, SseDeny, SsePass, SseVerdict
from maos.kernel.types import Intent
from maos.kernel.wal import Wal, WalRecord
from maos.services.follower import LogFollower
from maos.services.security import Order, kernel_order
from maos.services.sse import CompositeEvaluator

__all__ = [
    "MATCH_CODE",
    "PRINCIPAL",
    "MemoryEvaluator",
    "MemoryManager",
    "consulted_by_sse",
    "injection_text",
]

SERVICE = "memory"
PRINCIPAL = service_principal(SERVICE)
MATCH_CODE = "SSE.MEMORY_MATCH"
LEARN_FROM = (
    "DSC.PREFILTER.INJECTION",
    "SENTRY.PAYLOAD.",
    "RULE.R10.",
    "RULE.R6.",
    "SSE.EXFILTRATION",
    "SSE.JUDGE_DENIED",
)
"""Deny codes that mean a threat was deflected (not a budget spent, not an evaluator down)."""
_FOLLOWED = ("intent.committed", "intent.denied", "approval.denied", *KINDS)
RECENT_PER_AGENT = 16
"""Results per agent searched for the injection behind a denial."""
RESULTS_KEPT = 4096
"""Results kept by intent id, for a flagged target's ``first_seen``."""
_SENTENCE_END = re.compile(r"[.!?;\n]")
SIMILAR = 0.6
"""Share of a learned text's word triples an intent must repeat for the SSE to veto it."""


def injection_text(form: str, start: int, end: int) -> str:
    """The sentence of ``form`` (a `text_form`) around ``form[start:end]``, widened to its
    neighbours while it is shorter than `MIN_TEXT`."""
    left = max((m.end() for m in _SENTENCE_END.finditer(form, 0, start)), default=0)
    right_match = _SENTENCE_END.search(form, end)
    right = len(form) if right_match is None else right_match.end()
    while right - left < MIN_TEXT and (left > 0 or right < len(form)):
        left = max((m.end() for m in _SENTENCE_END.finditer(form, 0, max(0, left - 1))), default=0)
        nxt = _SENTENCE_END.search(form, right)
        right = len(form) if nxt is None else nxt.end()
    return form[left:right].strip()


class _MemoryView(Protocol):
    memory: ThreatMemory
    approvals: ApprovalBook


class MemorySource(Protocol):
    """What the Memory Manager reads: a kernel, or a service process's read-only fold."""

    wal: Wal
    registry: Registry

    @property
    def view(self) -> _MemoryView: ...


class MemoryManager(LogFollower):
    """Follows a kernel's log and teaches its immune memory."""

    def __init__(
        self,
        kernel: Kernel | MemorySource,
        *,
        interval_s: float = 0.2,
        order: Order | None = None,
        refresh: Callable[[], object] | None = None,
    ) -> None:
        """``order``: how its records reach the log (default: this kernel's service desk,
        with the Memory Manager's Ring 1 capability, which needs ``kernel`` to be a
        `Kernel`); ``refresh``: brings a service process's fold up to date before each
        poll (so what the kernel learned meanwhile is known)."""
        self._kernel = kernel
        if order is None:
            if not isinstance(kernel, Kernel):
                raise TypeError("a Memory Manager outside the kernel needs its order path")
            order = kernel_order(kernel, SERVICE)
        self._order = order
        self._refresh = refresh
        self._interval = interval_s
        self._seen = 0
        self._recent: dict[str, deque[tuple[str, object]]] = {}
        self._results: OrderedDict[str, tuple[str, object]] = OrderedDict()
        self._handled: set[int] = set()
        """Seqs of deflections that became patterns (or were forgotten): never again."""
        self.learned: list[Threat] = []
        """What this manager taught, in order (for status and tests)."""

    @property
    def memory(self) -> ThreatMemory:
        return self._kernel.view.memory

    async def poll(self) -> list[Threat]:
        """Fold what was logged since the last poll; returns the threats learned."""
        if self._refresh is not None:
            self._refresh()
        taught: list[Threat] = []
        for rec in list(self._kernel.wal.read(since_seq=self._seen, kinds=_FOLLOWED)):
            self._seen = rec.seq
            threat = self._fold(rec)
            if threat is None or threat.pattern_id in self.memory:
                continue
            if any(t.pattern_id == threat.pattern_id for t in taught):
                continue  # this process's fold has not seen its own order yet
            order = learned(self._kernel.registry, self.memory, threat, PRINCIPAL)
            await self._order(order.kind, order.body)
            self._handled.add(threat.seq)
            self.learned.append(threat)
            taught.append(threat)
        return taught

    # -- folding -----------------------------------------------------------------------

    def _fold(self, rec: WalRecord) -> Threat | None:
        body = rec.body
        if rec.kind in KINDS:
            self._handled.add(int(body.get("deflected_seq", 0)))
            return None
        if rec.seq in self._handled:
            return None
        if rec.kind == "intent.committed":
            self._remember(rec)
            return None
        if rec.kind == "approval.denied":
            return self._from_denied_approval(rec)
        code = str(body.get("code", ""))
        if not code.startswith(LEARN_FROM):
            return None
        return self._from_recent(rec, str(body.get("agent_id", "")), str(body.get("op", "")), code)

    def _remember(self, rec: WalRecord) -> None:
        agent, value = str(rec.body.get("agent_id", "")), rec.body.get("value")
        if rec.intent_id is None or value is None:
            return
        entry = (str(rec.body.get("op", "")), value)
        self._recent.setdefault(agent, deque(maxlen=RECENT_PER_AGENT)).append(
            (rec.intent_id, value)
        )
        self._results[rec.intent_id] = entry
        while len(self._results) > RESULTS_KEPT:
            self._results.popitem(last=False)

    def _from_denied_approval(self, rec: WalRecord) -> Threat | None:
        try:
            item = self._kernel.view.approvals.get(str(rec.body.get("approval_id")))
        except MaosError:
            return None
        if item.rule not in ("R10", "R6"):
            return None  # an R7 high-impact ask the Commander declined is no attack
        intent = item.intent
        targets = [str(t) for t in item.details.get("targets", ())]
        target = targets[0] if targets else str(intent.get("target", ""))
        seen: Mapping[str, Any] = (item.details.get("first_seen") or {}).get(target) or {}
        source = self._results.get(str(seen.get("intent_id", "")))
        return Threat.make(
            op=str(intent.get("op", "")),
            target_kind=str(seen.get("kind", "")),
            target=target,
            text="" if source is None else _around(source[1], target),
            code="APPROVAL.DENIED",
            seq=rec.seq,
            source={k: seen[k] for k in ("source", "field", "intent_id") if k in seen},
        )

    def _from_recent(self, rec: WalRecord, agent: str, op: str, code: str) -> Threat | None:
        for intent_id, value in reversed(self._recent.get(agent, ())):
            form = " ".join(text_form(t) for _, t in bounded_leaves(value))
            span = locate(form)
            if span is None:
                continue
            source = {"intent_id": intent_id, "source": self._results.get(intent_id, ("",))[0]}
            text = injection_text(form, *span)
            return Threat.make(
                op=op, target_kind="", target="", text=text, code=code, seq=rec.seq, source=source
            )
        return None


def _around(value: object, target: str) -> str:
    """The injection text around ``target`` in a result, if the result names it."""
    needle = text_form(target)
    for _, leaf in bounded_leaves(value):
        form = text_form(leaf)
        at = form.find(needle)
        if at >= 0:
            return injection_text(form, at, at + len(needle))
    return ""


def _triples(form: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", form)
    return {tuple(words[i : i + 3]) for i in range(max(0, len(words) - 2))}


class MemoryEvaluator:
    """The SSE's view of the immune memory: an intent that repeats most of a learned
    injection's word triples is a paraphrase of it (``SSE.MEMORY_MATCH``). The kernel's
    check 7 already refused exact repeats; this catches the reworded ones."""

    name = "memory"

    def __init__(self, memory: ThreatMemory, *, similar: float = SIMILAR) -> None:
        self._memory = memory
        self._similar = similar

    async def evaluate(self, intent: Intent, context: Label) -> SseVerdict:
        threat = self.similar_to(intent.content)
        if threat is None:
            return SsePass()
        return SseDeny(MATCH_CODE, f"the intent paraphrases a learned threat: {threat.describe()}")

    def similar_to(self, content: str) -> Threat | None:
        if not len(self._memory) or not content:
            return None
        said = _triples(text_form(content))
        for threat in self._memory:
            known = _triples(threat.text)
            if known and len(known & said) >= self._similar * len(known):
                return threat
        return None


def consulted_by_sse(
    sse: SemanticEvaluator | None, fever_sse: SemanticEvaluator | None, memory: ThreatMemory
) -> tuple[SemanticEvaluator | None, SemanticEvaluator | None]:
    """The kernel's two SSE slots with the immune memory consulted wherever an SSE runs:
    the configured one, and the one Security Fever and observed agents get."""
    evaluator = MemoryEvaluator(memory)
    return (
        None if sse is None else CompositeEvaluator([sse, evaluator]),
        evaluator if fever_sse is None else CompositeEvaluator([evaluator, fever_sse]),
    )
