"""The caveat vocabulary: the only Datalog a MAOS capability token may contain.

Every block carries one fact ``maos_caveat("<canonical JSON>")`` and the checks generated
from that JSON. Reading a block parses the JSON, regenerates the Datalog and compares it
with what Biscuit prints for the block. Equal text means the block says exactly what its
JSON says, so the kernel may enforce the JSON with a compiled closure while any standard
Biscuit authorizer enforces the same constraints through the checks.

Biscuit 0.4 prints string terms without escaping quotes, so printed text alone could be
faked by one string term holding ``");\\ncheck if ...``. The raw block bytes close that gap:
outside the caveat JSON itself no symbol may hold a quote, a backslash or a non-printable
character, and a block may hold only symbols, facts and checks (no rules, no scopes, no
third-party signature).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from biscuit_auth import BlockBuilder, Fact

from maos.kernel.errors import TokenError

__all__ = [
    "ATTENUATION",
    "AUTHORITY",
    "MAX_TIME",
    "Caveat",
    "Chain",
    "Grant",
    "block_builder",
    "check_id",
    "covered",
    "grant_tuple",
    "read_chain",
]

AUTHORITY = "authority"
ATTENUATION = "attenuation"
MAX_TIME = 253_402_300_799
"""9999-12-31T23:59:59Z: the last instant Biscuit's RFC 3339 dates can print."""
_MAX_CENTS = 2**63 - 1
_MAX_BLOCKS = 16
_PLAIN = re.compile(r"[ !#-\[\]-~]*")
"""Printable ASCII without ``"`` and ``\\``: what Biscuit prints back unambiguously."""
_OP = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+|[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*\.\*")
_KEY = re.compile(r"[0-9a-f]{64}")
_UNSUPPORTED = "DSC.CAPABILITY.UNSUPPORTED_BLOCK"
_MALFORMED = "DSC.CAPABILITY.MALFORMED"


def check_id(value: object, what: str) -> str:
    """Ids are printed into Datalog unescaped, so they keep to the plain alphabet."""
    if not isinstance(value, str) or not 0 < len(value) <= 256 or not _PLAIN.fullmatch(value):
        raise TokenError(
            "TOKEN.BAD_ID",
            f"The {what} must be 1-256 printable ASCII characters without quotes or backslashes.",
            value=str(value)[:80],
        )
    return value


@dataclass(frozen=True, slots=True)
class Grant:
    """One thing a token allows; a token allows the union of its grants."""

    op: str
    """An exact op name (``fs.write``) or a family wildcard (``fs.*``)."""
    resource: str
    """An exact resource, or a prefix ending in ``*`` (``reports/*``); ``*`` alone is any."""
    max_amount_cents: int | None = None
    """The largest amount one action may move, in cents; None is no limit."""

    def __post_init__(self) -> None:
        cap = self.max_amount_cents
        if not isinstance(self.op, str) or not _OP.fullmatch(self.op):
            raise TokenError(
                "TOKEN.BAD_GRANT",
                "A grant's op must be an op name like 'fs.write' or a family like 'fs.*'.",
                op=str(self.op)[:80],
            )
        if (
            not isinstance(self.resource, str)
            or len(self.resource) > 1024
            or not _PLAIN.fullmatch(self.resource)
            or "*" in self.resource[:-1]
        ):
            raise TokenError(
                "TOKEN.BAD_GRANT",
                "A grant's resource must be printable ASCII "
                "without quotes or backslashes, with '*' only as its last character "
                "(a prefix).",
                resource=str(self.resource)[:80],
            )
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= _MAX_CENTS
        ):
            raise TokenError(
                "TOKEN.BAD_GRANT",
                "A grant's max_amount_cents must be None or a non-negative 64-bit integer.",
                max_amount_cents=str(cap)[:80],
            )


def split(pattern: str) -> tuple[str, bool]:
    """``(text, is_prefix)``: ops and resources share one rule, a trailing ``*`` is a prefix."""
    return (pattern[:-1], True) if pattern.endswith("*") else (pattern, False)


def _within(inner: str, outer: str) -> bool:
    inner_text, inner_prefix = split(inner)
    outer_text, outer_prefix = split(outer)
    if outer_prefix:
        return inner_text.startswith(outer_text)
    return not inner_prefix and inner_text == outer_text


def covered(grant: Grant, parent: Grant) -> bool:
    """Every action ``grant`` allows, ``parent`` allows.

    Per grant is exact for sets too: the action made of the longest op and resource ``grant``
    allows (plus a suffix no parent names) and its cap is in some parent only if that parent
    covers ``grant`` whole, so a grant covered by a union of grants is covered by one of them.
    """
    cap, parent_cap = grant.max_amount_cents, parent.max_amount_cents
    return (
        _within(grant.op, parent.op)
        and _within(grant.resource, parent.resource)
        and (parent_cap is None or (cap is not None and cap <= parent_cap))
    )


def grant_tuple(grants: Sequence[Grant]) -> tuple[Grant, ...]:
    """Grants checked at the API: an empty list would make a check Datalog cannot express."""
    result = tuple(grants)
    if not result:
        raise TokenError("TOKEN.NO_GRANTS", "A token or attenuation needs at least one grant.")
    if not all(isinstance(g, Grant) for g in result):
        raise TokenError("TOKEN.BAD_GRANT", "Grants must be Grant values.")
    return result


@dataclass(frozen=True, slots=True)
class Caveat:
    """What one block says, as its ``maos_caveat`` JSON says it."""

    kind: str
    """``authority`` (block 0, minted by the kernel) or ``attenuation`` (appended later)."""
    grants: tuple[Grant, ...] | None
    """An action must match one of these; None (attenuation only) leaves grants unchanged."""
    expires_at: int | None
    """Seconds since the epoch; None (attenuation only) leaves the expiry unchanged."""
    agent_id: str = ""
    task_id: str = ""
    audience: str = ""
    root_key: str = ""
    """Hex public root key: a holder needs it to re-serialise after appending a block."""

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "v": 1,
            "kind": self.kind,
            "exp": self.expires_at,
            "grants": None
            if self.grants is None
            else [[g.op, g.resource, g.max_amount_cents] for g in self.grants],
        }
        if self.kind == AUTHORITY:
            body |= {
                "agent": self.agent_id,
                "task": self.task_id,
                "aud": self.audience,
                "key": self.root_key,
            }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def checks(self) -> str:
        """The Datalog checks, formatted exactly as Biscuit prints them back."""
        lines = []
        if self.kind == AUTHORITY:
            lines += [f'check if node("{self.audience}");', f'check if holder("{self.agent_id}");']
        if self.expires_at is not None:
            stamp = datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"check if time($t), $t < {stamp};")
        if self.grants is not None:
            lines.append("check if " + " or ".join(_alternative(g) for g in self.grants) + ";")
        return "".join(line + "\n" for line in lines)


def _alternative(grant: Grant) -> str:
    """Predicates first, then expressions: the order Biscuit's printer puts them in."""
    op, op_prefix = split(grant.op)
    resource, resource_prefix = split(grant.resource)
    predicates = [
        "operation($op)" if op_prefix else f'operation("{op}")',
        "resource($r)" if resource_prefix else f'resource("{resource}")',
    ]
    expressions = [f'$op.starts_with("{op}")'] if op_prefix else []
    if resource_prefix:
        expressions.append(f'$r.starts_with("{resource}")')
    if grant.max_amount_cents is not None:
        predicates.append("amount($a)")
        expressions.append(f"$a <= {grant.max_amount_cents}")
    return ", ".join(predicates + expressions)


def block_builder(caveat: Caveat) -> BlockBuilder:
    """The block for ``caveat``; the JSON goes in as a parameter because it holds quotes."""
    block = BlockBuilder(caveat.checks())
    block.add_fact(Fact("maos_caveat({j})", {"j": caveat.to_json()}))
    return block


def _grant(raw: object) -> Grant:
    if not isinstance(raw, list) or len(raw) != 3:
        raise TypeError("a grant is [op, resource, max_amount_cents]")
    return Grant(*raw)


def _caveat(text: str) -> Caveat:
    """Decode strictly; anything our encoder would not have written is refused."""
    try:
        body = json.loads(text)
        kind, exp, raw = body["kind"], body["exp"], body["grants"]
        grants = None if raw is None else tuple(_grant(g) for g in raw)
        if kind == AUTHORITY:
            key = body["key"]
            caveat = Caveat(
                kind,
                grants,
                exp,
                check_id(body["agent"], "agent id"),
                check_id(body["task"], "task id"),
                check_id(body["aud"], "audience"),
                key if isinstance(key, str) and _KEY.fullmatch(key) else "",
            )
        else:
            caveat = Caveat(kind, grants, exp)
    except (ValueError, RecursionError, TypeError, KeyError, TokenError) as exc:
        raise TokenError(_UNSUPPORTED, "A token block's caveat is not MAOS caveat JSON.") from exc
    exp_ok = exp is None or (type(exp) is int and 0 <= exp <= MAX_TIME)
    needs_both = kind == AUTHORITY and (exp is None or grants is None or not caveat.root_key)
    if (
        kind not in (AUTHORITY, ATTENUATION)
        or not exp_ok
        or needs_both
        or grants == ()
        or (exp is None and grants is None)
        or caveat.to_json() != text
    ):
        raise TokenError(_UNSUPPORTED, "A token block's caveat is not canonical MAOS caveat JSON.")
    return caveat


@dataclass(frozen=True, slots=True)
class Chain:
    """A token's blocks, read and checked to narrow one another."""

    caveats: tuple[Caveat, ...]
    grants: tuple[Grant, ...]
    """Effective grants: those of the last block that names grants (each block nests)."""
    expires_at: int
    """Effective expiry: the earliest of all blocks'."""

    def compile(self) -> Callable[[str, str, int], bool]:
        """Every block's grant check as one closure; its Datalog twin is `Caveat.checks`.

        An action must match a grant of each block, exactly as Biscuit requires every
        block's check to hold; prefixes are ``str.startswith`` as in Datalog's ``starts_with``.
        """
        return _compiled(
            tuple(
                tuple(
                    (*_interned(g.op), *_interned(g.resource), g.max_amount_cents) for g in grants
                )
                for grants in (caveat.grants for caveat in self.caveats)
                if grants is not None
            )
        )


_Blocks = tuple[tuple[tuple[str, bool, str, bool, int | None], ...], ...]


def _interned(pattern: str) -> tuple[str, bool]:
    """`split`, with the text interned: equal grants in many tokens share one string."""
    text, prefix = split(pattern)
    return sys.intern(text), prefix


@lru_cache(maxsize=1024)
def _compiled(blocks: _Blocks) -> Callable[[str, str, int], bool]:
    """The closure for one grant structure, shared by every token that has it.

    Tokens minted with the same grants (a task's agents, an agent's renewals) get the same
    closure, so deciding for many agents in turn keeps touching a few warm objects rather
    than one cold closure per token. Equal keys mean equal grants, so sharing is exact.
    """
    if len(blocks) == 1:  # a token never attenuated: one loop, no block loop around it
        (only,) = blocks

        def covers_one(op: str, resource: str, amount: int) -> bool:
            for op_text, op_prefix, res_text, res_prefix, cap in only:
                if (
                    (op.startswith(op_text) if op_prefix else op == op_text)
                    and (resource.startswith(res_text) if res_prefix else resource == res_text)
                    and (cap is None or amount <= cap)
                ):
                    return True
            return False

        return covers_one

    def covers(op: str, resource: str, amount: int) -> bool:
        for grants in blocks:
            for op_text, op_prefix, res_text, res_prefix, cap in grants:
                if (
                    (op.startswith(op_text) if op_prefix else op == op_text)
                    and (resource.startswith(res_text) if res_prefix else resource == res_text)
                    and (cap is None or amount <= cap)
                ):
                    break
            else:
                return False
        return True

    return covers


class _Printable(Protocol):
    def block_count(self) -> int: ...
    def block_source(self, index: int) -> str: ...


def read_chain(token: _Printable, raw: bytes) -> Chain:
    """Read every block of ``token`` (whose bytes are ``raw``); TokenError with a DSC code."""
    count = token.block_count()
    if count > _MAX_BLOCKS:
        raise TokenError(_UNSUPPORTED, f"The token has {count} blocks; at most {_MAX_BLOCKS}.")
    caveats: list[Caveat] = []
    texts: set[str] = set()
    for index in range(count):
        printed = token.block_source(index)
        first = printed.partition("\n")[0]
        if not (first.startswith('maos_caveat("') and first.endswith('");')):
            raise TokenError(
                _UNSUPPORTED,
                f"Token block {index} has no MAOS caveat: hand-written Datalog is refused.",
            )
        text = first[len('maos_caveat("') : -len('");')]
        caveat = _caveat(text)
        if (caveat.kind == AUTHORITY) != (index == 0) or printed != f"{first}\n{caveat.checks()}":
            raise TokenError(
                _UNSUPPORTED,
                f"Token block {index} holds Datalog other than what its MAOS caveat generates.",
            )
        caveats.append(caveat)
        texts.add(text)
    _check_symbols(raw, texts)
    return _nest(tuple(caveats))


def _nest(caveats: tuple[Caveat, ...]) -> Chain:
    authority = caveats[0]
    assert authority.grants is not None and authority.expires_at is not None  # _caveat ensures
    grants, expires_at = authority.grants, authority.expires_at
    for index, caveat in enumerate(caveats[1:], start=1):
        if caveat.grants is not None:
            if not all(any(covered(g, p) for p in grants) for g in caveat.grants):
                raise TokenError(
                    "DSC.CAPABILITY.OVER_ATTENUATED",
                    f"Token block {index} grants more than the blocks before it.",
                )
            grants = caveat.grants
        if caveat.expires_at is not None:
            if caveat.expires_at > expires_at:
                raise TokenError(
                    "DSC.CAPABILITY.OVER_ATTENUATED",
                    f"Token block {index} expires later than the blocks before it.",
                )
            expires_at = caveat.expires_at
    return Chain(caveats, grants, expires_at)


def _check_symbols(raw: bytes, caveat_json: set[str]) -> None:
    """Make the printed source trustworthy: see the module docstring."""
    try:
        for field, signed in _fields(raw):
            if field not in (2, 3):  # authority and appended blocks; 1 key id, 4 proof
                continue
            for inner, value in _fields(_bytes(signed)):
                if inner == 4:
                    raise TokenError(_UNSUPPORTED, "The token holds a third-party block.")
                if inner != 1:
                    continue
                for part, content in _fields(_bytes(value)):
                    if part not in (1, 3, 4, 6):  # symbols, version, facts, checks
                        raise TokenError(
                            _UNSUPPORTED,
                            "A token block holds rules, scopes or a context.",
                        )
                    symbol = _bytes(content).decode() if part == 1 else ""
                    if not _PLAIN.fullmatch(symbol) and symbol not in caveat_json:
                        raise TokenError(
                            _UNSUPPORTED,
                            "A token block holds a string with a quote: it prints ambiguously.",
                        )
    except (ValueError, IndexError) as exc:
        raise TokenError(_MALFORMED, "The token's block encoding is not readable.") from exc


def _bytes(value: int | bytes) -> bytes:
    if isinstance(value, int):
        raise ValueError("expected a length-delimited protobuf field")
    return value


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    if buf[i] < 0x80:  # nearly every key and length: skip the loop
        return buf[i], i + 1
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Top-level protobuf fields; only the varint and length-delimited wire types occur."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            value, i = _varint(buf, i)
            yield key >> 3, value
        elif key & 7 == 2:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise ValueError("truncated protobuf field")
            yield key >> 3, buf[i : i + length]
            i += length
        else:
            raise ValueError("unexpected protobuf wire type")
