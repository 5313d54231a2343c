"""The Sovereign's side of audit up: the external witness and the reconciler.

The Sovereign reads its ``AUDIT`` stream (its own records and every admitted site's,
sourced) and, per node:

- re-checks the chain and the anchors (`maos.federation.audit.verify_message`); what is
  wrong becomes a ``federation.tampered`` record in the Sovereign's log;
- takes a revocation a Sentinel or Pawn logged (``token.revoked``) into the authoritative
  revocations bucket, so it reaches every other node (a revocation anywhere is a
  revocation everywhere);
- **reconciles**: a node logs ``federation.policy`` whenever it adopts a policy epoch and
  ``federation.link`` whenever it loses or regains the Sovereign, so the witness knows
  which of its effects were decided offline and under which epoch. Each of those is
  re-validated when its record arrives (epoch, then optimistic re-validation): decided
  under the current epoch, or still allowed by the current policy, it is accepted
  (``federation.reconciled``); an effect the current policy refuses (committed under a
  policy revoked meanwhile) is surfaced to the Commander (``federation.unreconciled``,
  shown by ``maos federation status``), never silently accepted. Effects decided online
  are the node's to decide: the policy reached it within the propagation time the bench
  measures.

It keeps no state of its own on disk: it replays the stream from the start when the
Sovereign starts, and skips findings its log already holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from maos.federation.audit import HUB_STREAM, ChainState, verify_message
from maos.federation.buckets import Authority, Revocation
from maos.federation.policy import refusal
from maos.kernel.kernel import Kernel

__all__ = ["FEDERATION_PRINCIPAL", "FINDING_KINDS", "Witness"]

FEDERATION_PRINCIPAL = "commander:federation"
"""Who a node's kernel says revoked a token it learned of from the federation: such a
revocation is not sent upstream again."""
FINDING_KINDS = ("federation.tampered", "federation.unreconciled", "federation.reconciled")
_PREPARED_KEPT = 100_000


class Witness:
    """Reads the hub's audit stream from where it left off; one `poll` per node tick."""

    def __init__(
        self, kernel: Kernel, js: JetStreamContext, authority: Authority, *, policy: str
    ) -> None:
        self.kernel = kernel
        self.js = js
        self.authority = authority
        self.policy_name = policy
        self.hub = kernel.config.node_id
        self.next_seq = 1
        self.chains: dict[str, ChainState] = {}
        self.epochs: dict[str, int] = {}
        """Per node: the policy epoch it last said it adopted."""
        self.offline: dict[str, bool] = {}
        """Per node: whether it last said it had lost the Sovereign."""
        self._prepared: dict[tuple[str, str], tuple[str, str]] = {}
        self._logged: set[tuple[str, str, int]] = {
            (rec.kind, str(rec.body.get("node")), int(rec.body.get("seq", 0)))
            for rec in kernel.wal.read(kinds=FINDING_KINDS)
        }

    async def poll(self, limit: int = 2000) -> int:
        """Check up to ``limit`` new audit messages; returns how many were read."""
        done = 0
        while done < limit:
            try:
                msg = await self.js.get_msg(
                    HUB_STREAM, seq=self.next_seq, subject="maos.audit.>", next=True
                )
            except NotFoundError:
                break
            assert msg.seq is not None and msg.subject is not None
            self.next_seq = msg.seq + 1
            done += 1
            parts = msg.subject.split(".")
            if len(parts) != 5:
                continue
            node, what = parts[3], parts[4]
            chain = self.chains.setdefault(node, ChainState())
            finding, record = verify_message(chain, node, what, msg.data or b"")
            if finding is not None:
                await self._surface("federation.tampered", finding.body())
            if record is not None and node != self.hub:
                await self._record(node, record)
        return done

    async def _surface(self, kind: str, body: Mapping[str, Any]) -> None:
        key = (kind, str(body["node"]), int(body["seq"]))
        if key in self._logged:
            return
        self._logged.add(key)
        await self.kernel.wal.append(kind, body)

    async def _record(self, node: str, rec: Mapping[str, Any]) -> None:
        kind, body = rec["kind"], rec["body"]
        if kind == "federation.link":
            self.offline[node] = bool(body.get("cut_off"))
        elif kind == "federation.policy" and body.get("name") == self.policy_name:
            self.epochs[node] = int(body.get("epoch", 0))
        elif kind == "intent.prepared" and rec["intent_id"]:
            if len(self._prepared) >= _PREPARED_KEPT:
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[(node, rec["intent_id"])] = (str(body["op"]), str(body["target"]))
        elif kind == "intent.committed" and rec["intent_id"]:
            await self._reconcile(node, rec)
        elif kind == "token.revoked" and body.get("principal") != FEDERATION_PRINCIPAL:
            ids = [str(i) for i in body.get("revocation_ids", ())]
            if ids:
                current = await self.authority.policy(self.policy_name)
                await self.authority.revoke(
                    Revocation(
                        ids[0], epoch=0 if current is None else current.epoch, by=node,
                        reason=f"revoked at {node}", revocation_ids=tuple(ids),
                    )
                )  # fmt: skip

    async def _reconcile(self, node: str, rec: Mapping[str, Any]) -> None:
        op, target = self._prepared.pop((node, rec["intent_id"]), ("?", "?"))
        if not self.offline.get(node, False):
            return  # decided online: the node held the policy of the moment
        current = await self.authority.policy(self.policy_name)
        then = self.epochs.get(node, 0)
        now = 0 if current is None else current.epoch
        body = {
            "node": node, "seq": rec["seq"], "intent_id": rec["intent_id"], "op": op,
            "target": target, "epoch_then": then, "epoch_now": now,
        }  # fmt: skip
        if op == "?":
            why = "its prepared record was not seen"
        elif current is None or then >= now:
            why = ""  # decided under the current epoch
        else:
            why = refusal(current.document, op)
        if why:
            await self._surface("federation.unreconciled", {**body, "reason": why})
        else:
            await self._surface("federation.reconciled", body)
