"""Policy and revocations: authoritative KV buckets at the Sovereign, mirrors at a Sentinel.

The Sovereign's JetStream holds two KV buckets (issue 11 item 1). Bucket revisions count
per bucket, not per key, so a policy's epoch is a field of its value and the bucket
revision is only the compare-and-set token (PLATFORM.md): a write names the revision it
read and is refused (``FED.STALE_REVISION``) if anyone wrote since; it must also raise the
epoch (``FED.STALE_EPOCH``), so an old policy can never come back as new.

A Sentinel mirrors both buckets' streams from the hub's JetStream domain into its own, so it
reads policy and revocations locally and keeps serving them with the hub gone (a mirror
keeps the origin's sequence numbers, so a revision means the same thing on both). Reads go
through the stream API (last message per subject), which works the same on the bucket and
on its mirror.

A revocation record that cannot be parsed still revokes the token its key names: a value a
check cannot understand is a deny.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    KeyValueConfig,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.client import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError

from maos.federation.errors import FederationError

__all__ = [
    "BUCKETS",
    "POLICY_BUCKET",
    "REVOCATIONS_BUCKET",
    "Authority",
    "BucketReader",
    "Mirror",
    "Policy",
    "Revocation",
]

POLICY_BUCKET = "maos-policy"
REVOCATIONS_BUCKET = "maos-revocations"
BUCKETS = (POLICY_BUCKET, REVOCATIONS_BUCKET)
HISTORY = 16
"""Past values kept per key: enough to show what a policy was when an offline decision is
re-validated (issue 11 item 5), small enough to bound the store."""
_KEY = re.compile(r"[-_=A-Za-z0-9]{1,128}\Z")
_HEX = re.compile(r"(?:[0-9a-f]{2})+\Z")


def _stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def _check_key(kind: str, key: str) -> str:
    if not _KEY.match(key):
        raise FederationError(
            "FED.BAD_KEY",
            f"{kind} key {key!r} is not 1-128 letters, digits, '-', '_' or '='.",
            key=key,
        )
    return key


@dataclass(frozen=True)
class Policy:
    """A named policy document at an epoch, and the bucket revision it was read at."""

    name: str
    epoch: int
    document: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    revision: int = 0

    def encode(self) -> bytes:
        return json.dumps(
            {"epoch": self.epoch, "document": dict(self.document)}, sort_keys=True
        ).encode()

    @classmethod
    def decode(cls, name: str, data: bytes, revision: int) -> Policy:
        try:
            raw = json.loads(data)
            epoch = raw["epoch"]
            document = raw["document"]
            if type(epoch) is not int or not isinstance(document, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise FederationError(
                "FED.BAD_RECORD",
                f"Policy {name!r} at revision {revision} is not an epoch and a document; "
                "refusing to use it.",
                revision=revision,
            ) from None
        return cls(name, epoch, MappingProxyType(document), revision)


@dataclass(frozen=True)
class Revocation:
    """A token revoked at some node, for some reason, under some policy epoch.

    ``token_id`` is the key: the token's first revocation id (hex) when the revoking node
    knows it, so even an unreadable record revokes that much. ``revocation_ids`` are every
    block id a kernel must add to its revocation list (`Kernel.revoke_ids`).
    """

    token_id: str
    epoch: int
    by: str
    reason: str = ""
    at: float = 0.0
    revision: int = 0
    revocation_ids: tuple[str, ...] = ()
    readable: bool = True
    """False when the stored record could not be parsed: the token is revoked anyway."""

    def encode(self) -> bytes:
        return json.dumps(
            {"token_id": self.token_id, "epoch": self.epoch, "by": self.by,
             "reason": self.reason, "at": self.at, "revocation_ids": list(self.revocation_ids)},
            sort_keys=True,
        ).encode()  # fmt: skip

    @classmethod
    def decode(cls, token_id: str, data: bytes, revision: int) -> Revocation:
        try:
            raw = json.loads(data)
            rev = cls(
                token_id=str(raw["token_id"]),
                epoch=int(raw["epoch"]),
                by=str(raw["by"]),
                reason=str(raw.get("reason", "")),
                at=float(raw.get("at", 0.0)),
                revision=revision,
                revocation_ids=tuple(raw.get("revocation_ids", ())),
            )
            if rev.token_id != token_id or not all(
                isinstance(r, str) and _HEX.match(r) for r in rev.revocation_ids
            ):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return cls(token_id, -1, "?", "unreadable record", 0.0, revision, readable=False)
        return rev

    def ids(self) -> tuple[str, ...]:
        """What a kernel revokes for this record: its ids, and its key when that is a
        revocation id (all an unreadable record still says)."""
        key = (self.token_id,) if _HEX.match(self.token_id) else ()
        ids = self.revocation_ids if self.readable else ()
        return tuple(dict.fromkeys((*key, *ids)))


class BucketReader:
    """Reads the last value per key of a bucket's stream: the bucket's or its mirror's."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def _last(self, bucket: str, key: str) -> tuple[bytes, int] | None:
        try:
            msg = await self.js.get_last_msg(_stream(bucket), _subject(bucket, key))
        except NotFoundError:
            return None
        assert msg.seq is not None
        return (msg.data or b""), msg.seq

    async def policy(self, name: str) -> Policy | None:
        found = await self._last(POLICY_BUCKET, _check_key("Policy", name))
        return None if found is None else Policy.decode(name, *found)

    async def revocation(self, token_id: str) -> Revocation | None:
        found = await self._last(REVOCATIONS_BUCKET, _check_key("Token", token_id))
        return None if found is None else Revocation.decode(token_id, *found)

    async def revocations(self, *, after: int = 0) -> list[Revocation]:
        """Every revocation past revision ``after``, oldest first (a walk of the stream:
        revocations are never deleted, so its messages are exactly the revocations)."""
        out: list[Revocation] = []
        prefix = _subject(REVOCATIONS_BUCKET, "")
        seq = after + 1
        while True:
            try:
                msg = await self.js.get_msg(
                    _stream(REVOCATIONS_BUCKET), seq=seq, subject=prefix + ">", next=True
                )
            except NotFoundError:
                return out
            assert msg.seq is not None and msg.subject is not None
            out.append(
                Revocation.decode(msg.subject.removeprefix(prefix), msg.data or b"", msg.seq)
            )
            seq = msg.seq + 1


class Authority(BucketReader):
    """The Sovereign's side: the authoritative buckets, and the only writer of policy."""

    @classmethod
    async def create(cls, js: JetStreamContext) -> Authority:
        """Create (or open) both buckets on file storage."""
        for bucket in BUCKETS:
            await js.create_key_value(
                KeyValueConfig(bucket=bucket, history=HISTORY, storage=StorageType.FILE)
            )
        return cls(js)

    async def put_policy(self, policy: Policy, *, expected_revision: int | None) -> Policy:
        """Write ``policy`` if the bucket still holds what the writer read.

        ``expected_revision`` is the revision the writer read (None: the policy must not
        exist yet). Returns the policy at its new revision.
        """
        kv = await self.js.key_value(POLICY_BUCKET)
        current = await self.policy(policy.name)
        seen = None if current is None else current.revision
        if seen != expected_revision:
            raise FederationError(
                "FED.STALE_REVISION",
                f"Policy {policy.name!r} is at revision {seen}, not {expected_revision}: "
                "someone wrote it since you read it; read it again and redo the change.",
                revision=seen,
            )
        if current is not None and policy.epoch <= current.epoch:
            raise FederationError(
                "FED.STALE_EPOCH",
                f"Policy {policy.name!r} is at epoch {current.epoch}; a change must raise it "
                f"(got {policy.epoch}).",
                epoch=current.epoch,
            )
        try:
            if expected_revision is None:
                revision = await kv.create(policy.name, policy.encode())
            else:
                revision = await kv.update(policy.name, policy.encode(), last=expected_revision)
        except KeyWrongLastSequenceError:
            raise FederationError(
                "FED.STALE_REVISION",
                f"Policy {policy.name!r} was written while this change was made; read it "
                "again and redo the change.",
            ) from None
        return Policy(policy.name, policy.epoch, policy.document, revision)

    async def revoke(self, revocation: Revocation) -> Revocation:
        """Record a revocation; revoking a revoked token keeps the first record."""
        _check_key("Token", revocation.token_id)
        kv = await self.js.key_value(REVOCATIONS_BUCKET)
        try:
            revision = await kv.create(revocation.token_id, revocation.encode())
        except KeyWrongLastSequenceError:
            existing = await self.revocation(revocation.token_id)
            assert existing is not None
            return existing
        return Revocation.decode(revocation.token_id, revocation.encode(), revision)


class Mirror(BucketReader):
    """A Sentinel's side: read-only mirrors of the Sovereign's buckets in its own domain."""

    @classmethod
    async def create(cls, js: JetStreamContext, hub_domain: str, *, fresh: bool = False) -> Mirror:
        """Create (or open) the mirrors of both buckets from the hub's JetStream domain;
        ``fresh``: delete them first, so they copy the hub's buckets anew at once (a
        mirror whose origin restarted resumes only after nats-server's back-off)."""
        for bucket in BUCKETS:
            name = _stream(bucket)
            if fresh:
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)
            await js.add_stream(
                StreamConfig(
                    name=name,
                    mirror=StreamSource(
                        name=name, external=ExternalStream(api=f"$JS.{hub_domain}.API")
                    ),
                    max_msgs_per_subject=HISTORY,
                    storage=StorageType.FILE,
                    discard=DiscardPolicy.NEW,
                    deny_delete=True,
                    allow_rollup_hdrs=True,
                )
            )
        return cls(js)
