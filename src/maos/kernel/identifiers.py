"""Identifiers in text (mail addresses, URLs, IBANs, phone numbers, paths), for Ring 0.

Two users: the Orchestrator extracts the trusted targets of a task from the Commander's
prompt (its targets module re-exports this one), and the kernel extracts the identifiers
in every result it hands an agent, to record where a target value first appeared
(provenance, DESIGN.md). The kernel may not import services, so the one copy lives here.

A target (a recipient, an IBAN, a URL, a path, a phone number) that the Commander wrote
into the task prompt is one a trusted principal named (DESIGN.md, R10), so it joins the
task's trusted targets when the Orchestrator opens the task. Extraction is deterministic
and deliberately narrow - a pure function of the text, regular expressions plus
checksums, no model - because every false positive widens what an injected instruction
could reach:

- mail addresses: a bare ``local@domain.tld``, the domain lower-cased; never the userinfo
  of a URL (``https://bank.com@evil.com`` names evil.com, not a mailbox);
- URLs: ``http``/``https`` with a plain host (no userinfo, no IPv6 literal, a valid
  port), scheme and host lower-cased, the fragment dropped, trailing punctuation cut;
- IBANs: upper-case, optionally grouped by spaces, 15-34 characters, mod-97 checksum;
- phone numbers: ``+`` then 7-15 digits (E.164), separators removed;
- paths: absolute (``/srv/out/``) or workspace-relative with a file extension or a
  trailing slash (``reports/q3.md``, ``./out``); never with ``..`` or ``~``.

Amounts of money (`extract_amounts`) are not targets but are named the same way: a sum
the Commander wrote is one an agent with untrusted content in its context may pay.

Each span of text is consumed by the first kind that matches it, in the order above
(URLs first, so a URL's path or host never reads as a second target).

Invariants (property-tested): the same text gives the same targets; no text makes it
raise; every target appears in the text (up to the normalizations named above).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["TrustedTarget", "extract_amounts", "extract_targets", "iban_valid", "target_values"]

_URL = re.compile(r"(?<![\w.+-])https?://[^\s<>\"'`\\{}|^]+", re.IGNORECASE)
_EMAIL = re.compile(
    r"(?<![\w.%+/:@-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w@-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9 ]*")
_PHONE = re.compile(r"(?<![\w+])\+[1-9](?:[ .\-()]{0,2}[0-9]){6,14}(?![0-9])")
_PATH = re.compile(r"(?<![\w/.:~@%+-])(?:\.?/)?(?:[\w.-]+/)*[\w.-]+/?")
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
_KINDS = ("url", "email", "iban", "phone", "path")


@dataclass(frozen=True, slots=True)
class TrustedTarget:
    """One identifier the Commander named in a task prompt."""

    kind: str
    """``url``, ``email``, ``iban``, ``phone`` or ``path``."""
    value: str
    """The normalized identifier, as it joins the task's trusted targets."""


def extract_targets(text: str) -> tuple[TrustedTarget, ...]:
    """Targets named in ``text``, deduplicated, in order of first appearance."""
    found: list[tuple[int, TrustedTarget]] = []
    masked = list(text)
    for kind in _KINDS:
        current = "".join(masked)
        for start, end, value in _SCANNERS[kind](current):
            found.append((start, TrustedTarget(kind, value)))
            masked[start:end] = " " * (end - start)  # a span names one target, not two
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
    """The values of `extract_targets`, sorted: what `Kernel.open_task` takes."""
    return sorted({t.value for t in extract_targets(text)})


def iban_valid(iban: str) -> bool:
    """ISO 13616: length 15-34, country letters, check digits, mod 97 == 1."""
    if not 15 <= len(iban) <= 34 or not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", iban):
        return False
    moved = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


def _urls(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _URL.finditer(text):
        raw = m.group().rstrip(_TRAILING)
        value = _normalize_url(raw)
        if value is not None:
            yield m.start(), m.start() + len(raw), value


def _normalize_url(raw: str) -> str | None:
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if "@" in parts.netloc or not host.isascii() or not _HOST.match(host):
        return None
    scheme = parts.scheme.lower()
    netloc = host if port is None else f"{host}:{port}"
    if parts.netloc.lower() != netloc:
        return None  # an empty port, odd case folding: not an identifier we can trust
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path}{query}"


def _emails(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _EMAIL.finditer(text):
        local, domain = m.group().split("@")
        if ".." in local or local.endswith("."):
            continue
        yield m.start(), m.end(), f"{local}@{domain.lower()}"


def _ibans(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _IBAN.finditer(text):
        span = m.group()
        for end in range(len(span), 3, -1):
            if span[end - 1] == " " or (end < len(span) and span[end] != " "):
                continue  # an IBAN ends at the end of a group
            if end == len(span) and m.end() < len(text) and text[m.end()].isalnum():
                continue
            compact = span[:end].replace(" ", "")
            if "  " not in span[:end] and iban_valid(compact):
                yield m.start(), m.start() + end, compact
                break


def _phones(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _PHONE.finditer(text):
        digits = re.sub(r"[^0-9]", "", m.group())
        if m.group().count("(") == m.group().count(")"):
            yield m.start(), m.end(), "+" + digits


def _paths(text: str) -> Iterator[tuple[int, int, str]]:
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
        yield m.start(), m.start() + len(raw), raw


_SCANNERS = {"url": _urls, "email": _emails, "iban": _ibans, "phone": _phones, "path": _paths}
