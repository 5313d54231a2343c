"""Grants derived from the Commander's words alone (issue 8, item 6).

A task's effect classes bound what any injected instruction can do: an injected "delete
that file" or "reset the password" has no foreign target for R10 to catch, but it is
outside a task whose request never asked to delete or change a password (R2). So the
grant is read from the request itself - a plan's ``prompt`` or the task statement an
operator gives a gateway session - which no untrusted content has touched, and
intersected with what the plan's ``effects:`` or the operator's configuration allows
(the ceiling). `derive` is a pure function of the text: a small grammar of verbs and
objects, no model, documented in docs/rules.md (G1-G4) and tested line by line.

The grammar, per sentence (``.;!?`` end one; ``but``/``then``/``instead``/``just``/
``only``/``however`` end a negation's scope):

- a **verb** from `VERBS` grants its classes (send, pay, delete, credentials, write,
  execute; reading never needs a grant; a summary or translation is written: write).
  Words that are also nouns (``mail``, ``post``, ``book``, ``text``, ``order``,
  ``reply``...) count as verbs only where an imperative stands: at the start of a
  clause or after ``please``, ``and``, ``to``, a modal or a subject pronoun; any verb
  after a determiner (``the transfer``, ``my post``) is a noun;
- **objects** refine a verb: ``change|reset|update|rotate|set`` before ``password``,
  ``passcode``, ``pin``, ``credentials``, ``2fa``, ``api key`` is ``credentials`` (not
  ``write``); ``book|reserve`` is ``write`` + ``send``, and ``pay`` too when the request
  names a sum or a price; ``cancel`` is ``delete`` + ``send`` (cancelling notifies);
- a **negation** (``not``, ``don't``, ``never``, ``no``, ``without``, ``nor``) before a
  verb in the same scope grants nothing for it; the refusal is kept in the record.

Besides classes the request names **targets** and **amounts** (`maos.kernel.identifiers`:
one extraction shared with the R10 match) and **sources** it points at: a path
(``the invoice in inbox/``), or a kind of source by its noun (``the latest mail``,
``that channel``, ``the calendar``, ``the web page``) - which `source_matches` compares
with a tool's name and description. Content-sourced targets (`maos.kernel.sourced`) are
admitted only from sources the request points at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from maos.kernel.errors import InputError
from maos.kernel.identifiers import TrustedTarget, extract_amounts, extract_targets
from maos.kernel.registry import Registry, check_principal
from maos.kernel.types import EffectClass

__all__ = [
    "ALL_CLASSES",
    "NEGATIONS",
    "SOURCE_NOUNS",
    "UNCEILED",
    "VERBS",
    "Derivation",
    "Pointer",
    "Reason",
    "apply_grants",
    "derive",
    "grants_body",
    "lemma",
    "override_body",
    "source_matches",
]


def _words(text: str) -> list[str]:
    """The lexicon is written as prose-like strings: one place to read each word list."""
    return text.split()


_S, _P, _D, _W = EffectClass.SEND, EffectClass.PAY, EffectClass.DELETE, EffectClass.WRITE
_C, _X, _R = EffectClass.CREDENTIALS, EffectClass.EXECUTE, EffectClass.READ

ALL_CLASSES = frozenset(c for c in EffectClass if c is not EffectClass.KERNEL)
"""The ceiling when neither a plan nor an operator names one."""
UNCEILED = frozenset({EffectClass.WRITE, EffectClass.SEND})
"""Granted whatever the words say when no ceiling was named (a plan without ``effects:``):
the classes whose every target the kernel checks anyway (R10 and R7 for recipients, the
workspace for paths), so such plans keep working; high-impact classes (delete, pay,
credentials, execute), which an injection can use with no foreign target, only when the
Commander's words ask for them."""

VERBS: Mapping[str, frozenset[EffectClass]] = {
    **dict.fromkeys(
        _words(
            "send sends sent sending reply replies replied replying respond answer forward "
            "forwards forwarded forwarding mail mails mailed email emails emailed e-mail "
            "share shares shared sharing post posts posted posting notify notifies notified "
            "tell inform message text dm ping publish "
            "announce cc bcc submit contact introduce remind confirm rsvp"
        ),
        frozenset({_S}),
    ),
    **dict.fromkeys(
        _words(
            "pay pays paid paying transfer transfers transferred wire settle settles "
            "refund reimburse buy purchase tip donate"
        ),
        frozenset({_P}),
    ),
    **dict.fromkeys(
        _words(
            "delete deletes deleted deleting remove removes removed erase wipe purge discard "
            "trash clear unshare revoke"
        ),
        frozenset({_D}),
    ),
    **dict.fromkeys(
        _words("cancel cancels cancelled canceled cancelling decline"), frozenset({_D, _S})
    ),
    **dict.fromkeys(_words("book books booked reserve reserves"), frozenset({_W, _S})),
    **dict.fromkeys(
        _words(
            "schedule reschedule arrange organise organize set-up accept invite invites "
            "invited inviting"
        ),
        frozenset({_W, _S}),
    ),
    **dict.fromkeys(
        _words(
            "write writes save saves draft drafts update updates edit edits create creates "
            "add adds append note record store fill change changes mark rename renames "
            "move moves archive upload copy prepare compile reset resets rotate "
            "modify replace set summarise summarize translate"
        ),
        frozenset({_W}),
    ),
    **dict.fromkeys(_words("run execute deploy install"), frozenset({_X})),
    **dict.fromkeys(
        _words(
            "read find check look list search show get fetch open "
            "review compare count tell-me what which who when where how"
        ),
        frozenset({_R}),
    ),
}
"""Word -> the effect classes it asks for (the grammar's lexicon, docs/rules.md G1)."""

_NOUN_TOO = frozenset(
    _words(
        "mail mails email emails e-mail post posts book books text order reply replies answer "
        "message note record change draft transfer share list check look review tip wire "
        "contact store copy archive update schedule cancel invite refund"
    )
)
"""Words that are nouns as often as verbs: verbs only where an imperative stands."""
_VERB_LEAD = frozenset(
    _words(
        "please and to then also you i we just now finally first kindly can could would will "
        "should must need or , so"
    )
)
_DETERMINERS = frozenset(
    _words(
        "the a an this that these those my your his her our their its latest last new next "
        "previous any each every of whose 's all some both few many one two three four five "
        "several"
    )
)
_ROLE_ENDINGS = ("er", "or", "ist", "ant", "ent")
"""``the mailer mails``, ``the writer posts``: a role noun before a verb's -s form."""
_QUESTION_WORDS = frozenset(_words("how whether what when where why"))
_OBJECT_LEAD = frozenset(
    _words("the it them a an this that these those his her our their my your me him us")
)
"""A noun-or-verb followed by one of these has an object: ``mails the summary``."""
NEGATIONS = frozenset(_words("not don't dont never no without nor neither n't shouldn't won't"))
_SCOPE_END = frozenset(_words(". ; ! ? but then instead just only however rather"))
_CREDENTIAL_OBJECTS = frozenset(
    _words(
        "password passwords passcode passphrase pin credential credentials 2fa mfa login "
        "api-key secret"
    )
)
_CREDENTIAL_VERBS = frozenset(
    _words("change changes reset resets update updates rotate set modify replace")
)
_MONEY_WORDS = frozenset(
    _words("eur euro euros usd dollar dollars gbp pound pounds chf money amount sum cash")
)
"""``send 45.50 EUR to ...``, ``send the same amount back``: sending money is paying."""
_EVENT_WORDS = frozenset(
    _words("meeting meetings event events invitation invitations appointment call")
)
"""An event has participants: creating, sending or inviting to one is a write and a send."""
_PRICE_WORDS = frozenset(_words("price prices paid pay cost costs fee ticket tickets deposit"))

SOURCE_NOUNS: Mapping[str, tuple[str, ...]] = {
    "mail": ("mail", "email", "e-mail", "inbox", "sender"),
    "calendar": ("calendar", "meeting", "event", "appointment", "invitation"),
    "chat": ("channel", "chat", "thread", "slack", "dm"),
    "file": ("file", "document", "doc", "attachment", "spreadsheet", "folder", "drive"),
    "web": ("page", "website", "site", "web", "article", "link", "review"),
    "contacts": ("contact", "directory", "address book", "colleague"),
    "payments": ("invoice", "bill", "statement", "transaction", "account"),
    "bookings": ("restaurant", "hotel", "venue", "flight", "booking", "reservation"),
}
"""A kind of source -> the stems that name it, in a request and in a tool's manifest."""

_TOKEN = re.compile(r"[a-z0-9#@][a-z0-9'’_-]*(?:[./][a-z0-9_-]+)*/?|[.;!?,]")
"""Words; a file name, host or path (``refunds.txt``, ``notes/a.md``) is one token."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One effect class and the words that asked for it (or refused it)."""

    effect_class: EffectClass
    words: str
    """The request's words, as written: shown in the record and the packet."""


@dataclass(frozen=True, slots=True)
class Pointer:
    """A source the request points at: ``path`` (a workspace path or prefix) or a noun of
    `SOURCE_NOUNS` (kind ``mail``, value ``inbox``): a tool whose name or description uses
    that very noun is such a source."""

    kind: str
    value: str
    """The path, or the noun as written."""


@dataclass(frozen=True, slots=True)
class Derivation:
    """What the Commander's words ask for: a pure function of the request (`derive`)."""

    classes: frozenset[EffectClass]
    because: tuple[Reason, ...]
    refused: tuple[Reason, ...]
    """Classes a negation kept out (``do not pay``): never granted from these words."""
    targets: tuple[TrustedTarget, ...]
    amounts: tuple[int, ...]
    pointers: tuple[Pointer, ...]

    def within(self, ceiling: Iterable[EffectClass] | None) -> frozenset[EffectClass]:
        """The grant: what the words ask for, never more than the ceiling allows."""
        if ceiling is None:
            return self.classes | UNCEILED
        top = frozenset(ceiling)
        return frozenset(c for c in self.classes if c in top)


def derive(request: str) -> Derivation:
    """The effect classes, targets, amounts and sources ``request`` names."""
    text = request[:20_000]
    lowered = text.lower().replace("’", "'").replace("api key", "api-key")
    lowered = lowered.replace("set up", "set-up").replace("tell me", "tell-me")
    targets = extract_targets(text)
    masked = lowered
    for target in sorted(targets, key=lambda t: -len(t.value)):
        masked = masked.replace(target.value.lower(), " target ")  # "refunds.txt" is no verb
    tokens = [_split_nt(t) for t in _TOKEN.findall(masked)]
    flat = [w for group in tokens for w in group]
    amounts = extract_amounts(text)
    because: list[Reason] = []
    refused: list[Reason] = []
    negated = False
    for i, word in enumerate(flat):
        if word in _SCOPE_END:
            negated = False
            continue
        if word in NEGATIONS:
            negated = True
            continue
        classes = _classes_at(flat, i, has_price=bool(amounts) or _priced(flat))
        if not classes:
            continue
        words = " ".join(flat[max(0, i - 2) : i + 3])
        for cls in sorted(classes):
            if cls is _R:
                continue
            (refused if negated else because).append(Reason(cls, words))
    return Derivation(
        classes=frozenset(r.effect_class for r in because),
        because=tuple(because),
        refused=tuple(refused),
        targets=targets,
        amounts=amounts,
        pointers=_pointers(lowered, targets),
    )


def _split_nt(token: str) -> list[str]:
    """``don't`` stays a negation; ``shouldn't`` -> ``should n't``; ``bob's`` -> ``bob 's``."""
    if token in NEGATIONS:
        return [token]
    if token.endswith("n't"):
        return [token[:-3], "n't"]
    if token.endswith("'s") and len(token) > 2:
        return [token[:-2], "'s"]
    return [token]


def _priced(flat: list[str]) -> bool:
    return any(w in _PRICE_WORDS for w in flat)


def lemma(word: str) -> str | None:
    """``word`` as `VERBS` spells it: itself, or without ``-s``/``-es``/``-ed``/``-ing``."""
    if word in VERBS:
        return word
    for suffix, add in (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)] + add
            if stem in VERBS:
                return stem
    return None


def _classes_at(flat: list[str], i: int, *, has_price: bool) -> frozenset[EffectClass]:
    stem = lemma(flat[i])
    if stem is None:
        return frozenset()
    word, classes = stem, VERBS[stem]
    before = flat[i - 1] if i else ""
    if before in _DETERMINERS:
        return frozenset()  # "the transfer", "my post": a noun
    after = flat[i + 1] if i + 1 < len(flat) else ""
    imperative = not before or before in _VERB_LEAD or before in _SCOPE_END
    if before == "to" and i >= 2 and flat[i - 2] in _QUESTION_WORDS:
        return frozenset()  # "how to reset a PIN": an explanation, not a request
    third_person = flat[i].endswith("s") and before.endswith(_ROLE_ENDINGS)
    if word in _NOUN_TOO and not imperative and not third_person and after not in _OBJECT_LEAD:
        return frozenset()
    window = flat[i + 1 : i + 6]
    if word in _CREDENTIAL_VERBS and any(w in _CREDENTIAL_OBJECTS for w in window):
        return frozenset({_C})
    if classes == frozenset({_W, _S}) and word.startswith(("book", "reserve")) and has_price:
        return frozenset({_W, _S, _P})
    if _S in classes and any(w in _MONEY_WORDS for w in window):
        return frozenset({_P})
    if _D not in classes and classes & {_S, _W} and any(w in _EVENT_WORDS for w in window[:5]):
        return classes | {_W, _S}
    return classes


def _pointers(lowered: str, targets: tuple[TrustedTarget, ...]) -> tuple[Pointer, ...]:
    out = [Pointer("path", t.value) for t in targets if t.kind == "path"]
    words = set(re.findall(r"[a-z-]+", lowered))
    for kind, stems in SOURCE_NOUNS.items():
        for stem in stems:
            if any(w == stem or w == stem + "s" or w == stem + "es" for w in words) or (
                " " in stem and stem in lowered
            ):
                out.append(Pointer(kind, stem))
    return tuple(out)


def source_matches(pointer: Pointer, source: str, tool_text: str = "") -> bool:
    """Whether ``source`` (a result's label source: ``fs:inbox/a.txt``, ``tool:read_inbox``)
    is one ``pointer`` names. ``tool_text`` is the tool's name and description: a kind of
    source matches a tool whose manifest speaks of it (``read_inbox``: mail)."""
    if pointer.kind == "path":
        if not source.startswith("fs:"):
            return False
        path = source[3:].lstrip("./")
        want = pointer.value.lstrip("./")
        return path == want or (want.endswith("/") and path.startswith(want))
    if source.startswith("fs:"):
        return pointer.kind == "file"
    if not source.startswith("tool:"):
        return False
    # The noun the request used, not its whole kind: "the electricity bill" points at a
    # tool that speaks of bills, not at every tool of payments.
    text = tool_text.lower().replace("_", " ")
    return re.search(rf"\b{re.escape(pointer.value)}(?:s|es)?\b", text) is not None


def grants_body(
    task_id: str,
    request: str,
    derivation: Derivation,
    ceiling: Iterable[EffectClass] | None,
    principal: str,
) -> dict[str, Any]:
    """The ``task.grants`` record: what was derived, from which words, the ceiling, the
    result - the trusted account of why the task may do what it may."""
    return {
        "task_id": task_id,
        "request": request[:4000],
        "derived": sorted(c.value for c in derivation.classes),
        "because": [{"class": r.effect_class.value, "words": r.words} for r in derivation.because],
        "refused": [{"class": r.effect_class.value, "words": r.words} for r in derivation.refused],
        "targets": [{"kind": t.kind, "value": t.value} for t in derivation.targets],
        "amounts": list(derivation.amounts),
        "pointers": [{"kind": p.kind, "value": p.value} for p in derivation.pointers],
        "ceiling": None if ceiling is None else sorted(EffectClass(c).value for c in ceiling),
        "result": sorted(c.value for c in derivation.within(ceiling)),
        "override": False,
        "principal": principal,
    }


def override_body(
    registry: Registry, task_id: str, classes: Iterable[str], reason: str, principal: str
) -> dict[str, Any]:
    """The Commander's own grant for a task (``maos task grants``): replaces the derived
    one, logged as a ``task.grants`` record with ``override`` and who and why."""
    check_principal(principal, registry)
    registry.task(task_id)
    try:
        chosen = sorted({EffectClass(c).value for c in classes})
    except ValueError as exc:
        raise InputError(
            "BAD_INPUT.EFFECT_CLASS",
            f"{exc}; effect classes are {', '.join(sorted(c.value for c in ALL_CLASSES))}",
        ) from None
    if EffectClass.KERNEL.value in chosen:
        raise InputError("BAD_INPUT.EFFECT_CLASS", "no task is granted the kernel's own ops")
    return {
        "task_id": task_id,
        "result": chosen,
        "override": True,
        "reason": reason,
        "principal": principal,
    }


def apply_grants(registry: Registry, body: Mapping[str, Any]) -> None:
    """Fold a ``task.grants`` record: its result is what R2 and R7 read from then on."""
    task = registry.tasks.get(str(body["task_id"]))
    if task is not None:
        classes = frozenset(EffectClass(c) for c in body["result"])
        registry.tasks[task.task_id] = replace(task, effect_classes=classes)
