"""Audit up: every node's log records into a local audit stream the hub sources; the hub
re-checks every site's chain and is the external witness of every node's anchor.

Subjects are ``maos.audit.<site>.<node>.rec`` (one message per WAL record, exactly as
chained) and ``maos.audit.<site>.<node>.anchor`` (the node's anchored head). A Sentinel's
stream ``AUDIT_<site>`` holds its own and its Pawns' (``maos.audit.<site>.>``); the
Sovereign's ``AUDIT`` holds its own and sources every admitted site's from the site's
JetStream domain, so a site keeps recording with the hub gone and the hub catches up when
the link heals. Both servers run ``sync_interval: always``: a publish is acknowledged once
it is on disk.

The hub does not trust what a site says its records hash to: it re-derives every record's
hash with the log's own chain (`maos.kernel.chain.digest`) and checks each ``prev_hash``
against the record before, and an anchor against the record at its seq. A record changed
on the way (or in a site's store), a missing record, an anchor that names another hash or
goes backwards: each is a finding the Sovereign logs for the Commander.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from maos.federation.errors import FederationError
from maos.kernel.anchor import AnchorState
from maos.kernel.chain import GENESIS, digest
from maos.kernel.wal import Wal, WalRecord

__all__ = [
    "HUB_STREAM",
    "AuditShipper",
    "ChainState",
    "Finding",
    "audit_subject",
    "create_hub_stream",
    "create_site_stream",
    "site_stream",
    "verify_message",
]

HUB_STREAM = "AUDIT"
_ACK_TIMEOUT = 10.0
"""Seconds a batch waits for its acknowledgements; the next round resends the rest."""
_KEEP_HASHES = 50_000
"""Record hashes kept per node for checking anchors against (the recent ones suffice:
an anchor trails the records it vouches for by a tick)."""


def site_stream(site: str) -> str:
    return f"AUDIT_{site}"


def audit_subject(site: str, node: str, what: str) -> str:
    return f"maos.audit.{site}.{node}.{what}"


async def create_site_stream(js: JetStreamContext, site: str) -> None:
    """A Sentinel's (or the Sovereign's own) local audit stream: file storage, no deletes."""
    await js.add_stream(
        StreamConfig(
            name=site_stream(site),
            subjects=[f"maos.audit.{site}.>"],
            storage=StorageType.FILE,
            deny_delete=True,
            deny_purge=True,
        )
    )


async def create_hub_stream(
    js: JetStreamContext, hub: str, sites: list[str], *, fresh: bool = False
) -> None:
    """The Sovereign's ``AUDIT``: its own records, and every admitted site's stream
    sourced from the site's domain (``sites``; updated on admit and retire).

    ``fresh``: remove the sources before adding them again, so nats-server sets each up
    at once (after the hub's server restarted it would retry them only after its
    back-off); each resumes after the last message the stream holds from it. The
    stream's sources are read back: a mismatch is ``FED.AUDIT_UNSOURCED``."""
    config = StreamConfig(
        name=HUB_STREAM,
        subjects=[f"maos.audit.{hub}.>"],
        storage=StorageType.FILE,
        deny_delete=True,
        deny_purge=True,
        sources=[
            StreamSource(name=site_stream(s), external=ExternalStream(api=f"$JS.{s}.API"))
            for s in sites
        ]
        or None,
    )
    try:
        await js.stream_info(HUB_STREAM)
    except NotFoundError:
        await js.add_stream(config)
    else:
        if fresh and sites:
            await js.update_stream(replace(config, sources=None))
        await js.update_stream(config)
    info = await js.stream_info(HUB_STREAM)
    have = sorted(src.name for src in info.config.sources or ())
    if have != sorted(site_stream(s) for s in sites):
        raise FederationError(
            "FED.AUDIT_UNSOURCED",
            f"{HUB_STREAM} sources {have}, not the linked sites {sorted(sites)}; the "
            "Sovereign sets them again on its next tick.",
        )


def encode_record(rec: WalRecord) -> bytes:
    return orjson.dumps(
        {
            "seq": rec.seq,
            "ts": rec.ts,
            "kind": rec.kind,
            "intent_id": rec.intent_id,
            "idem_key": rec.idem_key,
            "body": dict(rec.body),
            "prev_hash": rec.prev_hash.hex(),
            "hash": rec.hash.hex(),
        },
        default=dict,
    )


def encode_anchor(state: AnchorState) -> bytes:
    return orjson.dumps({"seq": state.seq, "hash": state.hash.hex(), "log_id": state.log_id.hex()})


class AuditShipper:
    """A node's side: its log's records and anchor into its site's audit stream, in order.

    It resumes after the last record the stream holds for this node, so a restart neither
    loses nor repeats records (each also carries a ``Nats-Msg-Id``, so a retried publish
    is stored once)."""

    def __init__(
        self, wal: Wal, js: JetStreamContext, site: str, node: str, *, stream: str
    ) -> None:
        self.wal = wal
        self.js = js
        self.node = node
        self.stream = stream
        self.rec_subject = audit_subject(site, node, "rec")
        self.anchor_subject = audit_subject(site, node, "anchor")
        self.shipped: int | None = None
        self.anchored = -1

    async def _resume(self) -> int:
        try:
            msg = await self.js.get_last_msg(self.stream, self.rec_subject)
        except NotFoundError:
            return 0
        return int(orjson.loads(msg.data or b"{}").get("seq", 0))

    async def ship(self, limit: int = 512) -> int:
        """Publish up to ``limit`` records past the last shipped; returns how many.

        The batch is published without waiting between records (one connection keeps
        their order) and its acknowledgements awaited together; the shipped mark moves
        only over the acknowledged prefix, so a failure resends from the first record the
        stream did not confirm (its ``Nats-Msg-Id`` makes a resent record count once)."""
        if self.shipped is None:
            self.shipped = await self._resume()
        batch: list[tuple[int, asyncio.Future[Any]]] = []
        for rec in self.wal.read(self.shipped):
            future = await self.js.publish_async(
                self.rec_subject,
                encode_record(rec),
                stream=self.stream,
                headers={"Nats-Msg-Id": f"{self.node}:{rec.seq}"},
            )
            batch.append((rec.seq, future))
            if len(batch) >= limit:
                break
        acks = await asyncio.wait_for(  # an ack that never comes (a cut link) ends the round
            asyncio.gather(*(f for _, f in batch), return_exceptions=True), _ACK_TIMEOUT
        )
        sent = 0
        for (seq, _), ack in zip(batch, acks, strict=True):
            if isinstance(ack, BaseException):
                raise ack
            self.shipped = seq
            sent += 1
        state = self.wal.anchor.read() if self.wal.anchor is not None else None
        if state is not None and state.seq != self.anchored and state.seq <= self.shipped:
            await self.js.publish(self.anchor_subject, encode_anchor(state), stream=self.stream)
            self.anchored = state.seq
        return sent


@dataclass(frozen=True)
class Finding:
    """Something the hub found wrong in a node's audit (logged as ``federation.tampered``)."""

    node: str
    seq: int
    code: str
    """``FED.AUDIT_TAMPERED``, ``FED.AUDIT_GAP``, ``FED.ANCHOR_MISMATCH`` or
    ``FED.ANCHOR_ROLLBACK``."""
    reason: str

    def body(self) -> dict[str, Any]:
        return {"node": self.node, "seq": self.seq, "code": self.code, "reason": self.reason}


@dataclass
class ChainState:
    """What the hub knows of one node's chain."""

    seq: int = 0
    hash: bytes = GENESIS
    hashes: dict[int, bytes] = field(default_factory=dict)
    anchored: int = 0
    anchored_hash: bytes = b""
    anchors: dict[int, bytes] = field(default_factory=dict)
    """Anchors seen before their record: checked when it arrives."""
    bad: int = 0
    """Records found tampered with or missing."""


def _hex(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not hex")
    return bytes.fromhex(value)


def verify_message(
    chain: ChainState, node: str, what: str, data: bytes
) -> tuple[Finding | None, Mapping[str, Any] | None]:
    """Check one audit message against the node's chain so far and advance it.

    Returns a finding (or None) and, for a record whose hash the hub re-derived, the record
    as a mapping (what reconciliation and upstream revocations read)."""
    try:
        raw = orjson.loads(data)
        seq = int(raw["seq"])
        claimed = _hex(raw["hash"])
    except (ValueError, KeyError, TypeError):
        return Finding(node, chain.seq + 1, "FED.AUDIT_TAMPERED", "unreadable message"), None
    if what == "anchor":
        return _check_anchor(chain, node, seq, claimed), None
    try:
        body = raw["body"]
        kind, intent_id, idem_key = raw["kind"], raw["intent_id"], raw["idem_key"]
        body_raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        derived = digest(
            _hex(raw["prev_hash"]),
            seq,
            float(raw["ts"]),
            kind.encode(),
            None if intent_id is None else intent_id.encode(),
            None if idem_key is None else idem_key.encode(),
            body_raw,
        )
        prev = _hex(raw["prev_hash"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return Finding(node, seq, "FED.AUDIT_TAMPERED", "unreadable record"), None
    if seq <= chain.seq:
        return None, None  # a redelivery of a record already checked
    finding: Finding | None = None
    if seq != chain.seq + 1:
        finding = Finding(node, seq, "FED.AUDIT_GAP", f"records {chain.seq + 1}..{seq - 1} missing")
    elif prev != chain.hash:
        finding = Finding(node, seq, "FED.AUDIT_TAMPERED", "prev_hash is not record seq-1's hash")
    if derived != claimed:
        finding = Finding(node, seq, "FED.AUDIT_TAMPERED", "the record's hash does not match it")
    elif chain.anchors.pop(seq, claimed) != claimed:
        finding = Finding(node, seq, "FED.ANCHOR_MISMATCH", "the record is not the one anchored")
    chain.seq, chain.hash = seq, claimed
    chain.hashes[seq] = claimed
    if len(chain.hashes) > _KEEP_HASHES:
        del chain.hashes[min(chain.hashes)]
    if finding is not None:
        chain.bad += 1
        return finding, None
    return None, {"seq": seq, "kind": kind, "intent_id": intent_id, "body": body}


def _check_anchor(chain: ChainState, node: str, seq: int, claimed: bytes) -> Finding | None:
    if seq < chain.anchored or (seq == chain.anchored and claimed != chain.anchored_hash):
        return Finding(
            node, seq, "FED.ANCHOR_ROLLBACK",
            f"the anchor went back from record {chain.anchored} to {seq}",
        )  # fmt: skip
    known = chain.hashes.get(seq)
    chain.anchored, chain.anchored_hash = seq, claimed
    if known is None and seq > chain.seq and len(chain.anchors) < _KEEP_HASHES:
        chain.anchors[seq] = claimed
    if known is not None and known != claimed:
        return Finding(node, seq, "FED.ANCHOR_MISMATCH", "the anchor names another hash")
    return None
