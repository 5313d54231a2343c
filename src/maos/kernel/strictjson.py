"""JSON from outside, read the one strict way: bounded in size, and a key given twice is an
error rather than "the last one wins".

Duplicate keys are how one document says two things to two readers: a checker that reads
the first ``status`` and an actor that reads the last (``{"status": "active", "status":
"killed"}``). RFC 8259 leaves them undefined, so MAOS refuses them wherever it reads JSON
it did not write: ``config.json``, the dashboard's request bodies, pod frames, intents.

orjson (the fast parser) keeps the last value silently, so the check is a proof: when
orjson's own encoding of what it parsed is byte for byte the input, the input cannot have
held a duplicate (an encoder never writes one), and the common case - compact JSON from
our own pods - costs one encode more. Otherwise the stdlib decoder walks the text again
with a hook that sees every key of every object.

    InputError  BAD_INPUT.TOO_LARGE      more bytes than the caller's cap
                BAD_INPUT.JSON           not JSON (or not UTF-8)
                BAD_INPUT.DUPLICATE_KEY  an object names a key twice
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from maos.kernel.errors import InputError

__all__ = ["DUPLICATE_KEY", "NOT_JSON", "TOO_LARGE", "check_size", "loads"]

TOO_LARGE = "BAD_INPUT.TOO_LARGE"
DUPLICATE_KEY = "BAD_INPUT.DUPLICATE_KEY"
NOT_JSON = "BAD_INPUT.JSON"


def check_size(size: int, limit: int, what: str) -> None:
    """`InputError` ``BAD_INPUT.TOO_LARGE`` when ``size`` bytes exceed ``limit``."""
    if size > limit:
        raise InputError(
            TOO_LARGE, f"{what} is {size} bytes; the limit is {limit}", size=size, limit=limit
        )


def loads(data: bytes | str, *, limit: int, what: str) -> Any:
    """Parse ``data`` (at most ``limit`` bytes) refusing duplicate keys; ``what`` names the
    document in the error sentence."""
    raw = data.encode() if isinstance(data, str) else data
    check_size(len(raw), limit, what)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(NOT_JSON, f"{what} is not valid JSON ({exc})") from None
    try:
        canonical = orjson.dumps(value) == raw
    except TypeError:  # nested deeper than orjson encodes: take the long way
        canonical = False
    if not canonical:
        _refuse_duplicates(raw, what)
    return value


def _refuse_duplicates(raw: bytes, what: str) -> None:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise InputError(
                        DUPLICATE_KEY,
                        f"{what} names the key {key[:64]!r} twice; each key may appear once",
                        key=key[:64],
                    )
                seen.add(key)
        return obj

    # orjson accepted it, so it is valid UTF-8 JSON; this pass only looks at the keys.
    try:
        json.loads(raw, object_pairs_hook=unique)
    except RecursionError:
        raise InputError(NOT_JSON, f"{what} nests too deeply") from None
