"""The log's hash chain: how a record is encoded and hashed, and what makes a stored row good.

Pure functions, no I/O: the writer (`maos.kernel.wal`) chains with them and the read-only
verifier (`maos.kernel.walcheck`) re-derives with them, so there is one definition of
the chain, whoever checks it.

Record ``n`` stores ``prev_hash``, the hash of record ``n-1`` (`GENESIS` for record 1),
and ``hash = sha256(prev_hash || int64 seq || float64 ts || encoded fields)``, where
every field is typed and length-prefixed, so no byte can move across a field boundary
unnoticed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

__all__ = [
    "COLUMNS",
    "GENESIS",
    "MAX_BATCH",
    "STORED_TYPES",
    "chain_step",
    "check_row",
    "digest",
    "encode_fields",
    "parse_body",
]

GENESIS = bytes(32)
"""The ``prev_hash`` of record 1."""
MAX_BATCH = 512
"""Most records one transaction commits; bounds how long one fsync keeps callers waiting,
and how many records a crash can leave beyond the anchor (docs/wal.md)."""
COLUMNS = "seq, ts, kind, intent_id, idem_key, body, prev_hash, hash"
STORED_TYPES = (
    ("ts", ("real",)),
    ("kind", ("text",)),
    ("intent_id", ("text", "null")),
    ("idem_key", ("text", "null")),
    ("body", ("blob",)),
    ("prev_hash", ("blob",)),
    ("hash", ("blob",)),
)
"""What a verifier accepts as SQLite storage classes; the schema alone cannot enforce it."""

_SEQ_TS = struct.Struct(">qd")
_LEN = struct.Struct(">Q")


def encode_fields(
    kind: bytes, intent_id: bytes | None, idem_key: bytes | None, body: bytes
) -> bytes:
    """The hashed encoding of the four fields, each tagged and length-prefixed so that
    ``None`` and ``b""`` differ and no boundary can shift: ``\\x00`` for None, else
    ``\\x01 || uint64 length || bytes``. It does not depend on the record's position, so
    callers compute it before queueing."""
    pack = _LEN.pack
    return b"".join(
        (
            b"\x01",
            pack(len(kind)),
            kind,
            b"\x00" if intent_id is None else b"\x01" + pack(len(intent_id)) + intent_id,
            b"\x00" if idem_key is None else b"\x01" + pack(len(idem_key)) + idem_key,
            b"\x01",
            pack(len(body)),
            body,
        )
    )


def chain_step(prev_hash: bytes, seq: int, ts: float, encoded_fields: bytes) -> bytes:
    """``sha256(prev_hash || int64 seq || float64 ts || encoded fields)``, big-endian."""
    return hashlib.sha256(prev_hash + _SEQ_TS.pack(seq, ts) + encoded_fields).digest()


def digest(
    prev_hash: bytes,
    seq: int,
    ts: float,
    kind: bytes,
    intent_id: bytes | None,
    idem_key: bytes | None,
    body: bytes,
) -> bytes:
    """A record's hash from its stored fields as raw bytes, so a verifier hashes exactly
    what is stored, decodable or not."""
    return chain_step(prev_hash, seq, ts, encode_fields(kind, intent_id, idem_key, body))


def parse_body(raw: bytes) -> Mapping[str, Any]:
    """A stored body as the read-only mapping records carry; ``ValueError`` if not an object."""
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    return MappingProxyType(body)


def check_row(row: tuple[Any, ...], prev: bytes) -> str:
    """What is wrong with one stored row at its expected position, or "" if nothing.

    ``row`` is the eight `COLUMNS` read with ``text_factory = bytes``, then the
    ``typeof()`` of each of `STORED_TYPES`.
    """
    seq, ts, kind, intent_id, idem_key, body, prev_hash, stored_hash = row[:8]
    for (name, allowed), raw_type in zip(STORED_TYPES, row[8:], strict=True):
        stored = raw_type.decode("ascii")  # typeof() answers in bytes under this text_factory
        if stored not in allowed:
            return f"{name} is stored as {stored}, expected {' or '.join(allowed)}"
    for name, raw in (("kind", kind), ("intent_id", intent_id), ("idem_key", idem_key)):
        try:
            if raw is not None:
                raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"{name} is not valid UTF-8"
    if not kind:
        return "kind is empty"
    if len(prev_hash) != 32 or len(stored_hash) != 32:
        return "a hash is not 32 bytes long"
    if prev_hash != prev:
        return "prev_hash does not match the previous record's hash"
    if digest(prev, seq, ts, kind, intent_id, idem_key, body) != stored_hash:
        return "hash does not match the record's contents"
    try:
        parse_body(body)
    except ValueError:
        return "body is not a JSON object"
    return ""
