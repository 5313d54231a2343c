"""Immune memory (seed §37.11, the Wisdom Pool): threats MAOS deflected once, recognised
the next time they come.

A deflected threat - an intent the DSC or the SSE refused for an injection, an R10/R6
park the Commander denied - is stored as a `Threat`: the op and target it aimed at, and
the injection text that preceded it (the sentence of untrusted content that carried the
target or the injection phrasing), in the pre-filter's normalised form. The Memory
Manager (Ring 1) finds these and submits each as a ``memory.learned`` order through the
kernel's service desk; the
patterns live here, in Ring 0, folded from the log like every other state, so they
survive a restart and every process that reads the log agrees on them.

The kernel consults them in two places:

* **Results** (`ThreatMemory.in_result`): a result that carries a learned injection text
  is withheld from the agent (``MEMORY.KNOWN_INJECTION``) and a ``memory.match`` is
  logged, a danger signal. A second agent that meets the same injection is stopped at
  the read, before it can act on it - the first one was stopped only at the send.
* **Intents** (check 7, `ThreatMemory.in_intent`): an intent whose content repeats a
  learned injection text, or that aims the same op at the same target a deflected threat
  aimed at (and the task's Commander did not name it), is refused
  (``DSC.PREFILTER.LEARNED``).

Matching is exact (a normalised substring) and cheap: nothing when the memory is empty;
otherwise one set of the text's words, and an ``in`` only for the learned texts whose
key word is among them (`ThreatMemory.in_text`). Paraphrases are the SSE's to judge
(``services/memory.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from maos.kernel.dsc.prefilter import normalize
from maos.kernel.errors import StateError
from maos.kernel.orders import Order
from maos.kernel.provenance import bounded_leaves
from maos.kernel.registry import Registry, check_principal
from maos.kernel.services import service_principal
from maos.kernel.types import Intent, Outcome, OutcomeStatus

__all__ = [
    "KINDS",
    "LEARNED_CODE",
    "MAX_THREATS",
    "MIN_TEXT",
    "RESULT_CODE",
    "Threat",
    "ThreatMemory",
    "forgotten",
    "learned",
    "match_body",
    "text_form",
    "withheld",
]

KINDS = ("memory.learned", "memory.forgotten")
LEARNED_CODE = "DSC.PREFILTER.LEARNED"
RESULT_CODE = "MEMORY.KNOWN_INJECTION"
MAX_THREATS = 512
"""Learned threats kept; a full memory refuses to learn more (the Commander forgets)."""
MIN_TEXT = 24
"""A learned injection text is at least this long: a shorter one would match innocent text."""
MAX_TEXT = 400


def text_form(text: str) -> str:
    """The form learned texts are stored and matched in: the pre-filter's normalisation
    (NFKC, invisibles removed, case folded, look-alikes mapped), whitespace runs as one
    space - so a re-wrapped or re-cased copy of the same injection still matches."""
    return " ".join(normalize(text).split())


@dataclass(frozen=True, slots=True)
class Threat:
    """One deflected threat, as the kernel recognises it again."""

    pattern_id: str
    op: str
    """The op the deflected intent used."""
    target_kind: str
    target: str
    """Its target, case folded; ``""`` when the threat aimed at none worth matching."""
    text: str
    """The injection text that preceded it, in `text_form`; ``""`` when none was found."""
    code: str
    """What deflected it (a deny code, or ``APPROVAL.DENIED`` for the Commander)."""
    seq: int
    """The record of the deflection."""
    source: Mapping[str, Any]
    """Where the injection text was: ``{"source": "fs.read:...", "field": ..., "intent_id"}``."""

    @staticmethod
    def make(
        *,
        op: str,
        target_kind: str,
        target: str,
        text: str,
        code: str,
        seq: int,
        source: Mapping[str, Any],
    ) -> Threat:
        """A threat with its id: the digest of what it matches on, so the same threat
        learned twice is one pattern."""
        target = target.strip().casefold()
        text = text_form(text)[:MAX_TEXT]
        if text and len(text) < MIN_TEXT:
            text = ""
        key = "\x00".join((op, target_kind, target, text)).encode()
        pattern_id = "m-" + hashlib.sha256(key).hexdigest()[:12]
        return Threat(pattern_id, op, target_kind, target, text, code, seq, dict(source))

    def record(self) -> dict[str, Any]:
        return {
            "pattern_id": self.pattern_id,
            "op": self.op,
            "target_kind": self.target_kind,
            "target": self.target,
            "text": self.text,
            "code": self.code,
            "deflected_seq": self.seq,
            "source": dict(self.source),
        }

    def describe(self) -> str:
        what = f"{self.op} to {self.target}" if self.target else self.op
        return f"{self.pattern_id} ({what}, deflected at record {self.seq} by {self.code})"


class ThreatMemory:
    """The fold of ``memory.learned`` / ``memory.forgotten``."""

    __slots__ = ("_aims", "_by_word", "_texts", "_threats", "_unkeyed")

    def __init__(self) -> None:
        self._threats: dict[str, Threat] = {}
        self._texts: dict[str, Threat] = {}
        self._by_word: dict[str, list[Threat]] = {}
        self._unkeyed: list[Threat] = []
        self._aims: dict[tuple[str, str], Threat] = {}

    def __len__(self) -> int:
        return len(self._threats)

    def __iter__(self) -> Iterator[Threat]:
        return iter(tuple(self._threats.values()))

    def __contains__(self, pattern_id: object) -> bool:
        return pattern_id in self._threats

    def apply(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind == "memory.learned":
            threat = Threat(
                str(body["pattern_id"]),
                str(body["op"]),
                str(body.get("target_kind", "")),
                str(body.get("target", "")),
                str(body.get("text", "")),
                str(body.get("code", "")),
                int(body.get("deflected_seq", 0)),
                MappingProxyType(dict(body.get("source") or {})),
            )
            self._threats[threat.pattern_id] = threat
            self._index()
        elif kind == "memory.forgotten":
            self._threats.pop(str(body["pattern_id"]), None)
            self._index()

    def _index(self) -> None:
        self._texts = {t.text: t for t in self._threats.values() if t.text}
        self._aims = {(t.op, t.target): t for t in self._threats.values() if t.target}
        self._by_word, self._unkeyed = {}, []
        for threat in self._texts.values():
            inner = threat.text.split(" ")[1:-1]
            if inner:  # the least shared inner word so far, the longest of those
                key = min(inner, key=lambda w: (len(self._by_word.get(w, ())), -len(w)))
                self._by_word.setdefault(key, []).append(threat)
            else:
                self._unkeyed.append(threat)

    def in_text(self, normalized: str) -> Threat | None:
        """The first learned threat whose text occurs in ``normalized`` (the pre-filter's
        `normalize`d form; whitespace runs are collapsed here, only when needed).

        Exact, without an ``in`` per learned text: a text's inner words are whole words
        of any text it occurs in, so a text whose key word (one of its inner words, the
        one fewest other texts are keyed on) is not among the words of ``normalized``
        cannot occur in it. Texts of one or two words are few and checked one by one.
        """
        if not self._texts:
            return None
        words = normalized.split()
        keyed = self._by_word.keys() & words
        if not keyed and not self._unkeyed:
            return None
        form = " ".join(words)
        for word in keyed:
            for threat in self._by_word[word]:
                if threat.text in form:
                    return threat
        for threat in self._unkeyed:
            if threat.text in form:
                return threat
        return None

    def in_result(self, value: object) -> Threat | None:
        """A learned injection text carried anywhere in a result (keys too), if any."""
        if not self._texts:
            return None
        return self.in_text(normalize("\n".join(text for _, text in bounded_leaves(value))))

    def in_intent(
        self, intent: Intent, trusted: frozenset[str], normalized: str | None = None
    ) -> Threat | None:
        """A learned threat this intent repeats: the same op at the same target (unless
        the Commander named it for the task: ``trusted``), or a learned text in what it
        sends (``normalized``: its content as the pre-filter already normalised it)."""
        if self._aims:
            for target in intent.targets:
                folded = target.strip().casefold()
                hit = self._aims.get((intent.op, folded))
                if hit is not None and target not in trusted and folded not in trusted:
                    return hit
        if self._texts and intent.content:
            return self.in_text(normalize(intent.content) if normalized is None else normalized)
        return None


def learned(registry: Registry, memory: ThreatMemory, threat: Threat, principal: str) -> Order:
    """Remember a deflected threat: the Commander may, and the Memory Manager
    (``service:memory``, whose order the kernel's service desk checks), never an agent."""
    if principal != service_principal("memory"):
        check_principal(principal, registry)
    if not threat.text and not threat.target:
        raise StateError(
            "STATE.MEMORY.EMPTY_THREAT", f"{threat.pattern_id} has neither a text nor a target"
        )
    if threat.pattern_id not in memory and len(memory) >= MAX_THREATS:
        raise StateError(
            "STATE.MEMORY.FULL",
            f"the immune memory holds {MAX_THREATS} threats; forget some first "
            "(maos memory forget ID)",
        )
    return Order("memory.learned", {**threat.record(), "principal": principal})


def forgotten(registry: Registry, memory: ThreatMemory, pattern_id: str, principal: str) -> Order:
    """Drop a learned threat (a false positive the Commander judged)."""
    check_principal(principal, registry)
    if pattern_id not in memory:
        raise StateError(
            "STATE.MEMORY.UNKNOWN", f"no learned threat {pattern_id!r} (maos memory list)"
        )
    return Order("memory.forgotten", {"pattern_id": pattern_id, "principal": principal})


def match_body(threat: Threat, intent: Intent, *, where: str) -> dict[str, Any]:
    """The ``memory.match`` record: a danger signal against the agent."""
    return {
        "agent_id": intent.agent_id,
        "task_id": intent.task_id,
        "intent_id": intent.intent_id,
        "op": intent.op,
        "pattern_id": threat.pattern_id,
        "code": RESULT_CODE,
        "where": where,
    }


def withheld(intent: Intent, threat: Threat, seq: int) -> Outcome:
    """What the agent gets instead of a result that carries a learned injection."""
    reason = (
        f"the result carries an injection MAOS deflected before: {threat.describe()}; "
        "it is withheld from the agent"
    )
    return Outcome(
        intent.intent_id, OutcomeStatus.DENIED, code=RESULT_CODE, reason=reason, wal_seq=seq
    )
