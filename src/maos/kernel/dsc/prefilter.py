"""Check 7: a deterministic pre-filter for known prompt-injection phrasings.

It reads everything the agent sends (``intent.content``, which the Input Sanitizer
derives from every string and key in ``params``, and the targets), so an agent that was
hijacked cannot pass the payload on to the next model, mailbox or file. It is a cheap
first net, not the defence: R10 and the SSE carry the weight.

Text is normalized before matching: NFKC (full-width and ligature forms), invisible
characters removed (``i\\u200bgnore``), case folded, and common Cyrillic/Greek
look-alikes mapped to Latin. Speed matters (this runs on every intent, over up to 64 KiB):
a regex with a leading alternation costs ~20x a substring search in CPython, so every
pattern starts with a literal, one ``in`` test per distinct literal skips the text that
holds none, and patterns sharing a literal are one regex. Patterns that need a word
*before* their literal check it with a second regex over a short window. ASCII text (most
of it) is normalized by one byte-table pass derived from the full normalization itself.
Phrases are chosen to name the attack, not the topic: "you are now registered" passes,
"you are now an unrestricted AI" does not.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from maos.kernel.dsc.base import CheckInput
from maos.kernel.types import Allow, Decision, Deny

if TYPE_CHECKING:
    from maos.kernel.immune import ThreatMemory

__all__ = ["PATTERNS", "PrefilterCheck", "locate", "normalize"]

_S = r"[\W_]{1,16}"  # a word gap: spaces, punctuation, underscores, markdown
_W = rf"(?:\w{{1,20}}{_S})"  # one filler word
_PRIOR = r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|old)"
_ORDERS = (
    r"(?:instructions?|prompts?|directions?|directives?|commands?|guidelines|rules|"
    r"messages?|context|programming|orders)\b"
)
_OLD_ORDERS = rf"{_S}{_W}{{0,3}}?{_PRIOR}{_S}{_W}{{0,2}}?{_ORDERS}"  # "... all the previous rules"
_ROLE = (
    r"(?:ai|assistant|chatbot|bot|model|llm|dan|jailbroken|unrestricted|unfiltered|"
    rf"uncensored|(?:developer|god|admin){_S}mode)\b"
)

_PATTERNS = (
    # (id, literal every match starts with, the regex after it, regex that must match
    # just before the literal, or None)
    ("ignore-previous-instructions", "ignor", rf"(?:e|ing){_OLD_ORDERS}", None),
    (
        "disregard-previous-instructions",
        "disregard",
        rf"(?:ing)?(?:{_OLD_ORDERS}"
        rf"|{_S}(?:(?:all|everything|anything|the){_S})?(?:above|foregoing)\b)",
        None,
    ),
    (
        "forget-previous-instructions",
        "forget",
        rf"(?:{_OLD_ORDERS}|{_S}(?:all|everything){_S}(?:you|above|before|previous)\b)",
        None,
    ),
    ("override-previous-instructions", "overrid", rf"(?:e|ing){_OLD_ORDERS}", None),
    (
        "you-are-now",
        "you",
        rf"{_S}(?:are|re){_S}now{_S}(?:(?:in|a|an|the|my){_S})?"
        rf"(?:(?:new|different|unrestricted|unfiltered|uncensored|jailbroken|evil){_S}){{0,3}}"
        rf"{_ROLE}",
        None,
    ),
    (
        "your-new-instructions",
        "you",
        rf"r{_S}(?:new|real|actual|true|updated){_S}(?:instructions|orders)\b",
        None,
    ),
    (
        # "the system prompt appears" is a UI manual; "reveal your system prompt" is not.
        "system-prompt",
        "system",
        rf"{_S}prompt\b",
        r"(?:reveal|print|show|output|repeat|ignore|override|leak|disclose|display|dump|"
        r"change|replace|your|new|real|original|hidden|secret|initial|updated)"
        r"(?:\s+(?:me|us|the|your|my|its|this|that|full|entire|whole|original|hidden|real|"
        r"secret|initial))*\s+$",
    ),
    ("chat-role-tag", "<", r"(?:\|[\w\s]{1,24}\|>|</?sys>>|/?system\s*>)", None),
    ("inst-tag", "[", r"/?(?:inst|sys)\]", None),
    (
        "begin-system-block",
        "begin",
        rf"{_S}(?:new{_S})?(?:system|admin|developer){_S}"
        r"(?:prompt|instructions?|message|override)\b",
        None,
    ),
    (
        "developer-mode",
        "developer",
        rf"{_S}mode{_S}(?:enabled|on|activated|engaged)\b",
        None,
    ),
)
PATTERNS: Mapping[str, str] = MappingProxyType(
    {pid: re.escape(literal) + rest for pid, literal, rest, _ in _PATTERNS}
)
"""Pattern id to regex source, matched against `normalize`d text."""
_WINDOW = 64
"""How far back a pattern's preceding-words regex looks."""

_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff"
    "\uffa0\U000e0000-\U000e0fff]"
)
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁԛԝɡαεικνορτυχ",  # Cyrillic and Greek look-alikes
    "aeopcyxijsdqwgaeikvoptux",
)


def _normalize_unicode(text: str) -> str:
    """The normalization as specified; `normalize` must always equal it."""
    text = unicodedata.normalize("NFKC", text)
    return _INVISIBLE.sub("", text).casefold().translate(_LOOKALIKES)


def _ascii_tables() -> tuple[bytes, bytes]:
    """`bytes.translate` arguments that compute `_normalize_unicode` on ASCII text.

    Why a per-byte table is exact: on ASCII input every step of `_normalize_unicode` is a
    function of each character alone. NFKC is the identity (no ASCII character has a
    decomposition, all have combining class 0, and every canonical composition needs a
    non-ASCII second character); `_INVISIBLE` deletes single characters (it includes the
    ASCII controls, which ``str.lower`` alone would keep: ``ig\\x08nore``); ``casefold``
    has no context rules and maps ASCII to ASCII; `_LOOKALIKES` has no ASCII keys. So
    ``_normalize_unicode(s)`` is the concatenation of ``_normalize_unicode(c)`` over the
    characters ``c`` of ``s``, and the table is built from exactly that, one character at
    a time, rather than restated. The checks below make a future edit that breaks the
    argument fail at import instead of weakening the filter.
    """
    table = bytearray(range(256))
    delete = bytearray()
    for code in range(128):
        char = chr(code)
        if not unicodedata.is_normalized("NFKC", char):
            raise AssertionError(f"NFKC changes ASCII {char!r}")
        folded = _normalize_unicode(char)
        if folded == "":
            delete.append(code)
        elif len(folded) == 1 and folded.isascii():
            table[code] = ord(folded)
        else:
            raise AssertionError(f"{char!r} does not normalize to one ASCII character")
    if any(key < 128 for key in _LOOKALIKES):
        raise AssertionError("a look-alike mapping touches ASCII")
    return bytes(table), bytes(delete)


_ASCII_TABLE, _ASCII_DELETE = _ascii_tables()


def normalize(text: str) -> str:
    """The form patterns are matched against: NFKC, invisible characters removed, case
    folded, look-alikes mapped to Latin. ASCII text takes one table pass (see
    `_ascii_tables` for why it equals the full path) at a sixth or less of its cost."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE, _ASCII_DELETE).decode("ascii")
    return _normalize_unicode(text)


_Group = tuple[str, re.Pattern[str], Mapping[str, tuple[str, re.Pattern[str] | None]]]


def _compile() -> tuple[_Group, ...]:
    """One regex per literal, so patterns that share a literal cost one scan."""
    groups: dict[str, list[tuple[str, str, str | None]]] = {}
    for pattern_id, literal, rest, before in _PATTERNS:
        groups.setdefault(literal, []).append((pattern_id, rest, before))
    compiled = []
    for literal, members in groups.items():
        branches = "|".join(f"(?P<p{i}>{rest})" for i, (_, rest, _) in enumerate(members))
        by_group = {
            f"p{i}": (pattern_id, None if before is None else re.compile(before))
            for i, (pattern_id, _, before) in enumerate(members)
        }
        compiled.append((literal, re.compile(f"{re.escape(literal)}(?:{branches})"), by_group))
    return tuple(compiled)


_GROUPS = _compile()


def _find(text: str) -> tuple[str, int, int] | None:
    """The id and span of the first pattern found in ``text`` (already normalized).

    A substring test of the literal first: it is faster than the regex engine's own prefix
    scan, and most text holds none of the literals at all. ``in`` rather than ``find``,
    because it is the cheaper call for the common answer (absent), measured at ~20%.
    """
    for literal, pattern, by_group in _GROUPS:
        if literal not in text:
            continue
        at = text.find(literal)
        for found in pattern.finditer(text, at):
            pattern_id, before = by_group[str(found.lastgroup)]
            start = found.start()
            if before is None or before.search(text, max(0, start - _WINDOW), start):
                return pattern_id, start, found.end()
    return None


def _match(text: str) -> str | None:
    found = _find(text)
    return None if found is None else found[0]


def locate(text: str) -> tuple[int, int] | None:
    """Where in ``text`` (already normalized) an injection phrasing is: the immune memory
    learns the sentence around it."""
    found = _find(text)
    return None if found is None else (found[1], found[2])


class PrefilterCheck:
    """Check 7. The patterns above are fixed per release, like the rules; ``memory`` adds
    the threats the immune memory learned (`maos.kernel.immune`), which the kernel folds
    from the log - the check only reads them."""

    __slots__ = ("_allow", "_memory", "name")

    def __init__(self, memory: ThreatMemory | None = None) -> None:
        self.name = "prefilter"
        self._allow = Allow(check=self.name)
        self._memory = memory

    def __call__(self, inp: CheckInput) -> Decision:
        intent = inp.intent
        text = intent.content
        if intent.extra_targets:
            text = "\n".join((text, *intent.targets))
        elif intent.target:
            text = f"{text}\n{intent.target}"
        normalized = normalize(text)
        found = _match(normalized)
        if found is None:
            return self._allow if not self._memory else self._learned(inp, normalized)
        where = "content" if _match(normalize(intent.content)) else "targets"
        return Deny(
            "DSC.PREFILTER.INJECTION",
            f"the intent's {where} match the prompt-injection pattern {found}",
            check=self.name,
        )

    def _learned(self, inp: CheckInput, normalized: str) -> Decision:
        assert self._memory is not None
        threat = self._memory.in_intent(inp.intent, inp.task.trusted_targets, normalized)
        if threat is None:
            return self._allow
        return Deny(
            "DSC.PREFILTER.LEARNED",
            f"the intent repeats a threat the immune memory learned: {threat.describe()}",
            check=self.name,
        )
