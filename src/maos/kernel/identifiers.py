"""Identifiers in text and their one normalisation per kind, for Ring 0.

Two users: the Orchestrator extracts the trusted targets of a task from the Commander's
prompt (its targets module re-exports this one), and the kernel extracts the identifiers
in every result it hands an agent, to record where a target value first appeared
(provenance, DESIGN.md). The kernel may not import services, so the one copy lives here.
`normalise` is the other half: R10's match (`maos.kernel.dsc.ifc.is_trusted_target`)
compares a target with the named ones through it, so what extraction names and what the
match accepts can never drift apart.

A target that the Commander wrote into the task prompt is one a trusted principal named
(DESIGN.md, R10), so it joins the task's trusted targets when the Orchestrator opens the
task. Extraction is deterministic and deliberately narrow - a pure function of the text,
regular expressions plus checksums, no model - because every false positive widens what
an injected instruction could reach. The grammar (docs/rules.md has it with examples):

- URLs: ``http``/``https`` with a plain host (no userinfo, no IPv6 literal, a valid
  port), scheme and host lower-cased, a default port and the fragment dropped, trailing
  punctuation cut; and hosts written without a scheme - ``www.`` anything, or a name
  under a common top-level domain (`BARE_TLDS`: ``example.com``, ``shop.example.io/x``)
  - which read as ``https://``. ``example.com/page.html`` is a URL, never a path;
- mail addresses: a bare ``local@domain.tld``, lower-cased; never the userinfo of a URL
  (``https://bank.com@evil.com`` names evil.com, not a mailbox);
- IBANs: a country code, check digits, 11-30 letters or digits, optionally grouped by
  fours; one that fails the mod-97 checksum is still an account identifier (typos and
  test data are real, and R10 checks the value all the same) with ``checksum=False``;
- phone numbers: ``+`` then 7-15 digits (E.164), separators removed;
- paths: absolute (``/srv/out/``) or workspace-relative with a file extension or a
  trailing slash (``reports/q3.md``, ``./out``); never with ``..`` or ``~``;
- channels ``#general`` and handles ``@alice`` (a letter or digit first);
- names: a quoted string (``"Chez Panisse"``, 1-80 characters on one line), or the
  capitalised words after a cue word (`NAME_CUES`: "book a table **at** Chez Panisse",
  "**invite** Alice Smith and Bob Jones"), joined by ``of``, ``de``, ``&``... and listed
  with ``,`` or ``and``; weekdays and months are not names.

Amounts of money (`extract_amounts`) are not targets but are named the same way: a sum
the Commander wrote is one an agent with untrusted content in its context may pay.

Each span of text is consumed by the first kind that matches it, in the order above
(URLs first, so a URL's path or host never reads as a second target).

Invariants (property-tested): the same text gives the same targets; no text makes it
raise; every target appears in the text (up to the normalisations named above).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = [
    "BARE_TLDS",
    "IDENTIFIER_KINDS",
    "NAME_CUES",
    "TAGGED_KINDS",
    "TrustedTarget",
    "extract_amounts",
    "extract_targets",
    "iban_valid",
    "normalise",
    "tagged",
    "target_values",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_URL = re.compile(r"(?<![\w.+-])https?://[^\s<>\"'`\\{}|^]+", re.IGNORECASE)
_EMAIL = re.compile(
    r"(?<![\w.%+/:@-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w@-])"
)
_BARE_HOST = re.compile(
    r"(?<![\w.@/:%+#&=~-])((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))"
    r"(?::[0-9]{1,5})?(?:/[^\s<>\"'`\\{}|^]*)?(?![\w@-])"
)
BARE_TLDS = _words(
    "com org net edu gov int io dev app ai co me info biz eu uk de fr nl be ch at es it "
    "se no dk fi ie pt us ca au nz jp cn br cz gr hu lu ro sk si ee lv lt hr bg tv cloud "
    "online site tech shop store news blog xyz page"
)
"""Top-level domains that make a scheme-less ``name.tld`` a host; the ones that are also
common file extensions (``md``, ``py``, ``sh``, ``pl``, ``rs``, ``zip``, ``mov``) are left
out, so ``notes.md`` stays a file name."""
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9 ]*")
_IBAN_COUNTRIES = _words(
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB "
    "GE GI GL GR GT HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR "
    "MT MU NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA "
    "VA VG XK YE"
)
_PHONE = re.compile(r"(?<![\w+])\+[1-9](?:[ .\-()]{0,2}[0-9]){6,14}(?![0-9])")
_PATH = re.compile(r"(?<![\w/.:~@%+-])(?:\.?/)?(?:[\w.-]+/)*[\w.-]+/?")
_CHANNEL = re.compile(r"(?<![\w#&/])#([A-Za-z0-9][\w.-]{0,79})")
_USER = re.compile(r"(?<![\w.@/])@([A-Za-z0-9_][\w.-]{0,63})")
_QUOTED = re.compile(
    r'"([^"\n]{1,80})"|\u201c([^\u201d\n]{1,80})\u201d|\u00ab([^\u00bb\n]{1,80})\u00bb'
    r"|(?<!\w)'([^'\n]{1,80})'(?!\w)"
)
NAME_CUES = ("at", "with", "to", "for", "invite", "book", "meet", "from")
"""Words after which capitalised words are a name ("a table at Chez Panisse")."""
_CUE = re.compile(rf"\b(?:{'|'.join(NAME_CUES)})\s+", re.IGNORECASE)
_WORD = re.compile(r"\S+")
_JOINERS = frozenset(
    {"of", "de", "la", "le", "du", "des", "van", "von", "der", "den", "da", "di", "del", "y", "&"}
)
_NOT_NAMES = _words(
    "i monday tuesday wednesday thursday friday saturday sunday january february march "
    "april may june july august september october november december"
)
_MAX_NAME_WORDS = 6
_MASK = "\x00"
"""What a consumed span becomes for the kinds after it: no word, no space, no quote, so
a name or a quoted string can never be pieced together around a URL or an address."""
_NAME_WINDOW = 400
"""Characters after a cue word read for a name list (bounds the scan per cue)."""
_QUOTES = "\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb"
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
)
_TRAILING = ".,;:!?)]}'\""
_CURRENCY = r"(?:EUR|USD|GBP|CHF|€|\$|£)"
_NUMBER = r"\d{1,3}(?:[,.' ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_AMOUNT = re.compile(
    rf"(?<![\w.,]){_CURRENCY} ?({_NUMBER})(?![\d.,]\d)"
    rf"|(?<![\w.,'])({_NUMBER}) ?{_CURRENCY}(?![A-Za-z])"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_KINDS = ("url", "email", "host", "iban", "phone", "path", "channel", "user", "quoted", "cued")

TAGGED_KINDS = ("name", "channel", "user")
"""Kinds whose trusted entries carry their kind (`TrustedTarget.entry`)."""
_TAGS = tuple(f"{k}:" for k in TAGGED_KINDS)


def tagged(entry: str) -> bool:
    """Whether a trusted-target entry is a tagged name, channel or handle."""
    return entry.startswith(_TAGS)


IDENTIFIER_KINDS = {
    "recipient": "email",
    "url": "url",
    "path": "path",
    "account": "iban",
    "phone": "phone",
    "name": "name",
    "channel": "channel",
    "user": "user",
}
"""A target kind (a manifest's) -> the kind `extract_targets` calls it."""


@dataclass(frozen=True, slots=True)
class TrustedTarget:
    """One identifier named in a text."""

    kind: str
    """``url``, ``email``, ``iban``, ``phone``, ``path``, ``name``, ``channel``, ``user``."""
    value: str
    """The normalised identifier (`normalise`), as it joins the task's trusted targets."""
    checksum: bool | None = None
    """For an IBAN: whether it passes mod 97 (one that fails is kept, flagged)."""

    @property
    def entry(self) -> str:
        """What joins a task's trusted targets: the value, tagged with its kind for names,
        channels and handles (``name:chez panisse``), so a word the Commander quoted is
        a trusted *name* only - never a host, a path or a mailbox."""
        return f"{self.kind}:{self.value}" if self.kind in TAGGED_KINDS else self.value


def normalise(kind: str, value: str) -> str | None:
    """The one spelling of ``value`` as a target of ``kind`` (a manifest's kind or an
    extracted one), or ``None`` when it is no such identifier - never a loose match:

    recipient: a bare address, stripped, lower-cased; url: http(s), scheme-less read as
    https, host lower-cased, default port and fragment dropped (userinfo, backslashes
    and spaces: ``None``); account: spaces removed, upper-case; phone: digits and a
    leading ``+`` (spaces, dashes, dots, brackets dropped); name: NFKC, case-folded,
    surrounding quotes stripped, inner whitespace collapsed; channel and user: as name,
    less a leading ``#`` or ``@``; path: as written (the workspace decides, in ifc)."""
    return _normalise(kind, value)


@lru_cache(maxsize=8192)
def _normalise(kind: str, value: str) -> str | None:
    if kind in ("recipient", "email"):
        return _address(value)
    if kind == "url":
        return _url(value.strip())
    if kind in ("account", "iban"):
        plain = value.replace(" ", "").upper()
        ok = plain.isalnum() and plain.isascii() and len(plain) >= 5
        return plain if ok else None
    if kind == "phone":
        plain = "".join(c for c in value.strip() if c not in " -.()")
        digits = plain[1:] if plain.startswith("+") else plain
        return plain if digits.isdigit() and digits.isascii() and 5 <= len(digits) <= 16 else None
    if kind in ("name", "channel", "user"):
        name = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
        name = name.strip(_QUOTES).strip()
        if kind != "name":
            name = name.removeprefix("#" if kind == "channel" else "@")
        return name or None
    if kind == "path":
        return value or None
    return None


def _address(value: str) -> str | None:
    address = value.strip()
    if (
        address.count("@") != 1
        or any(c in address for c in ' <>,;:"()[]\\')
        or not address.isprintable()
    ):
        return None
    local, domain = address.split("@")
    domain = domain.rstrip(".")
    return f"{local}@{domain}".lower() if local and domain else None


def _url(raw: str) -> str | None:
    """``scheme://host[:port]/path[?query]``, scheme-less read as https."""
    if "\\" in raw or " " in raw or not raw.isprintable():
        return None
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if not host.isascii() or not _HOST.match(host):
        return None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path or '/'}{query}"


def extract_targets(text: str) -> tuple[TrustedTarget, ...]:
    """Targets named in ``text``, deduplicated, in order of first appearance."""
    found: list[tuple[int, TrustedTarget]] = []
    current = text
    for kind in _KINDS:
        hits = list(_SCANNERS[kind](current))
        if not hits:
            continue
        masked = list(current)
        for start, end, target in hits:
            found.append((start, target))
            masked[start:end] = _MASK * (end - start)  # a span names one target, not two
        current = "".join(masked)
    seen: set[TrustedTarget] = set()
    out: list[TrustedTarget] = []
    for _, target in sorted(found, key=lambda item: item[0]):
        if target not in seen:
            seen.add(target)
            out.append(target)
    return tuple(out)


def extract_amounts(text: str) -> tuple[int, ...]:
    """Sums of money named in ``text`` with their currency (``1,250.00 EUR``, ``€1.250,00``,
    ``$12``), in cents, deduplicated, in order. The currency is what makes a number an
    amount; which currency is not kept (one task rarely mixes them)."""
    out: list[int] = []
    for m in _AMOUNT.finditer(text):
        cents = _cents(m.group(1) or m.group(2))
        if cents not in out:
            out.append(cents)
    return tuple(out)


def _cents(number: str) -> int:
    """``1.250,00`` and ``1,250.00`` are both 125000: a last separator followed by one or
    two digits is the decimal mark, every other one groups thousands."""
    parts = re.split(r"[,.' ]", number)
    if len(parts) > 1 and len(parts[-1]) in (1, 2):
        whole, fraction = "".join(parts[:-1]), parts[-1].ljust(2, "0")
    else:
        whole, fraction = "".join(parts), "00"
    return int(whole) * 100 + int(fraction)


def target_values(text: str) -> list[str]:
    """The entries of `extract_targets`, sorted: what `Kernel.open_task` takes."""
    return sorted({t.entry for t in extract_targets(text)})


def iban_valid(iban: str) -> bool:
    """ISO 13616: length 15-34, country letters, check digits, mod 97 == 1."""
    if not 15 <= len(iban) <= 34 or not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", iban):
        return False
    moved = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


Scan = Iterator[tuple[int, int, TrustedTarget]]


def _urls(text: str) -> Scan:
    for m in _URL.finditer(text):
        raw = m.group().rstrip(_TRAILING)
        value = _extracted_url(raw)
        if value is not None:
            yield m.start(), m.start() + len(raw), TrustedTarget("url", value)


def _extracted_url(raw: str) -> str | None:
    """`normalise`'s URL, for text that spells its scheme and host canonically enough
    (an empty port or odd case folding is not an identifier we can trust)."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    written = parts.netloc.lower()
    if written not in (host, f"{host}:{port}"):
        return None
    return _url(raw.split("#", 1)[0])


def _hosts(text: str) -> Scan:
    for m in _BARE_HOST.finditer(text):
        raw = m.group().rstrip(_TRAILING)
        host = m.group(1).lower()
        if not (host.startswith("www.") or m.group(2).lower() in BARE_TLDS):
            continue
        value = _extracted_url("https://" + raw)
        if value is not None:
            yield m.start(), m.start() + len(raw), TrustedTarget("url", value)


def _emails(text: str) -> Scan:
    for m in _EMAIL.finditer(text):
        local = m.group().split("@")[0]
        if ".." in local or local.endswith("."):
            continue
        value = _address(m.group())
        if value is not None:
            yield m.start(), m.end(), TrustedTarget("email", value)


def _ibans(text: str) -> Scan:
    for m in _IBAN.finditer(text):
        span = m.group()
        if span[:2] not in _IBAN_COUNTRIES:
            continue
        hit = _valid_iban(text, m.end(), span) or _grouped_iban(span)
        if hit is not None:
            end, compact = hit
            checksum = iban_valid(compact)
            yield m.start(), m.start() + end, TrustedTarget("iban", compact, checksum)


def _valid_iban(text: str, stop: int, span: str) -> tuple[int, str] | None:
    """The longest prefix of ``span`` ending at a group's end that passes mod 97."""
    for end in range(len(span), 3, -1):
        if span[end - 1] == " " or (end < len(span) and span[end] != " "):
            continue  # an IBAN ends at the end of a group
        if end == len(span) and stop < len(text) and text[stop].isalnum():
            continue
        compact = span[:end].replace(" ", "")
        if "  " not in span[:end] and iban_valid(compact):
            return end, compact
    return None


def _grouped_iban(span: str) -> tuple[int, str] | None:
    """An IBAN-shaped value failing its checksum: written compact, or in groups of four
    with a last group of one to four, 15-34 characters in all."""
    groups = span.split(" ")
    if len(groups[0]) > 4:
        compact = groups[0]
        end = len(compact)
    else:
        taken = []
        for group in groups:
            if not 1 <= len(group) <= 4:
                break
            taken.append(group)
            if len(group) < 4:
                break
        compact = "".join(taken)
        end = len(" ".join(taken))
    if not 15 <= len(compact) <= 34 or not compact[4:].isalnum():
        return None
    if not any(c.isdigit() for c in compact[4:]):
        return None  # "GB12 ABCD EFGH IJKL" is shouting, not an account
    return end, compact


def _phones(text: str) -> Scan:
    for m in _PHONE.finditer(text):
        digits = re.sub(r"[^0-9]", "", m.group())
        if m.group().count("(") == m.group().count(")"):
            yield m.start(), m.end(), TrustedTarget("phone", "+" + digits)


def _paths(text: str) -> Scan:
    for m in _PATH.finditer(text):
        raw = m.group()
        while raw and raw[-1] in _TRAILING:
            raw = raw[:-1]
        if "/" not in raw or not raw.isascii() or not any(c.isalpha() for c in raw):
            continue
        segments = [s for s in raw.split("/") if s]
        named = segments[1 if raw[:2] == "./" else 0 :]
        if not named or any(s == ".." or s.endswith(".") for s in named):
            continue
        explicit = raw.startswith(("/", "./")) or raw.endswith("/")
        if not explicit and "." not in segments[-1].strip("."):
            continue  # "and/or", "24/7": prose, not a path
        yield m.start(), m.start() + len(raw), TrustedTarget("path", raw)


def _handles(pattern: re.Pattern[str], kind: str) -> Callable[[str], Scan]:
    def scan(text: str) -> Scan:
        for m in pattern.finditer(text):
            raw = m.group().rstrip(_TRAILING + "-")
            value = _normalise(kind, raw)
            if value is not None and any(c.isalpha() for c in value):  # "#1" is an issue
                yield m.start(), m.start() + len(raw), TrustedTarget(kind, value)

    return scan


def _quoted(text: str) -> Scan:
    for m in _QUOTED.finditer(text):
        inner = next(g for g in m.groups() if g is not None)
        clean = _MASK not in inner and inner == inner.strip()
        if clean and any(c.isalnum() for c in inner):
            value = _normalise("name", inner)
            if value is not None:
                yield m.start(), m.end(), TrustedTarget("name", value)


def _cued(text: str) -> Scan:
    """Capitalised words after a cue word, joined by particles, listed by ``,``/``and``."""
    for cue in _CUE.finditer(text):
        window = min(len(text), cue.end() + _NAME_WINDOW)  # never the rest of the text
        words = list(_WORD.finditer(text, cue.end(), window))[: 4 * _MAX_NAME_WORDS]
        i = 0
        while i < len(words):
            name: list[re.Match[str]] = []
            ended = False
            while i < len(words) and len(name) < _MAX_NAME_WORDS and not ended:
                word = words[i].group()
                bare = word.rstrip(",.;:!?)")
                ended = bare != word
                if bare[:1].isupper() and bare.casefold() not in _NOT_NAMES:
                    name.append(words[i])
                elif name and bare in _JOINERS and i + 1 < len(words) and not ended:
                    pass  # a particle inside a name; kept only if a capital follows
                else:
                    break
                i += 1
            while name and not name[-1].group()[:1].isupper():
                name.pop()
            if not name:
                break
            start, end = name[0].start(), name[-1].start() + len(name[-1].group().rstrip(",.;:!?)"))
            value = _normalise("name", text[start:end])
            if value is not None:
                yield start, end, TrustedTarget("name", value)
            last = words[i - 1].group() if i else ""
            if last.endswith(","):
                continue  # "Alice Smith, Bob Jones": the list goes on
            if i < len(words) and words[i].group() == "and":
                i += 1
                continue
            break


_SCANNERS: dict[str, Callable[[str], Scan]] = {
    "url": _urls,
    "email": _emails,
    "host": _hosts,
    "iban": _ibans,
    "phone": _phones,
    "path": _paths,
    "channel": _handles(_CHANNEL, "channel"),
    "user": _handles(_USER, "user"),
    "quoted": _quoted,
    "cued": _cued,
}
