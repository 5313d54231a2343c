"""Trusted Decision Packets: what the Commander is shown about a parked intent, built and
signed by the kernel, and the check that an approval decides exactly what was shown.

A person approves what they read, not an approval id. So the kernel builds the packet
from its own state - never from anything an agent or the dashboard says:

- the exact effect (op, every target, effect class) and a digest of the intent's wire form;
- each flagged target with where it first appeared (the provenance the kernel recorded);
- a digest of the payload and a readable preview of it;
- the label context: the agent's context label, stage and status, the task's
  declassification and granted effect classes;
- the rule, code and reason that asked for a human, and the agent's recent history
  (taken from the log when the intent was parked, so it cannot move afterwards).

Its digest is SHA-256 over the canonical JSON of that content; the signature is Ed25519
(`cryptography`) over ``maos/decision-packet\\0 || digest``, with a key derived from the
root key (`maos.kernel.tokens.derive_key`, purpose ``decision-packet``), so a display that
holds only the public key can tell a kernel-built packet from a forged one. An approval
carries the digest; `check` rebuilds the content from the state at that moment and
refuses with ``APPROVAL.PACKET_MISMATCH`` when anything in it changed (the agent read
something secret since, the task's grants moved, the approval is another one), and the
kernel runs the intent only after the same check passes again at execution.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from maos.kernel.approvals import Approval
from maos.kernel.errors import ApprovalError
from maos.kernel.registry import Registry
from maos.kernel.tokens import derive_key
from maos.kernel.types import Outcome, OutcomeStatus

if TYPE_CHECKING:
    from maos.kernel.wal import Wal

__all__ = [
    "HISTORY",
    "PACKET_MISMATCH",
    "PACKET_REQUIRED",
    "PREVIEW_CHARS",
    "DecisionPacket",
    "PacketSigner",
    "check",
    "content",
    "digest_of",
    "effect_class_of",
    "history",
    "stale",
]

PACKET_MISMATCH = "APPROVAL.PACKET_MISMATCH"
"""The approval named a packet that no longer describes the parked intent and its context."""
PACKET_REQUIRED = "APPROVAL.PACKET_REQUIRED"
"""An approval that carried no packet digest: nobody can say what the human saw."""
PREVIEW_CHARS = 300
"""Characters of the payload a packet shows before it cuts them (the digest covers all)."""
HISTORY = 8
"""The agent's last records a packet shows."""
_HISTORY_SCAN = 400
"""Records back from the log's tail searched for them when the intent is parked."""
_HISTORY_KINDS = ("intent.prepared", "intent.denied", "approval.pending")
_DOMAIN = b"maos/decision-packet\0"
_VERSION = 1


def _canonical(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _sha(value: object) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def content(approval: Approval, registry: Registry) -> dict[str, Any]:
    """The packet's facts, from the approval as logged and the registry as it is now."""
    intent = approval.intent
    details = dict(approval.details)
    params = intent.get("params") or {}
    preview = _canonical(params).decode()
    if len(preview) > PREVIEW_CHARS:
        preview = preview[:PREVIEW_CHARS] + " ..."
    agent = registry.agents.get(approval.agent_id)
    task = registry.tasks.get(approval.task_id)
    labels: dict[str, Any] = {
        "agent_context": agent.context.to_dict() if agent is not None else None,
        "agent_status": agent.status.value if agent is not None else None,
        "agent_stage": agent.stage.value if agent is not None else None,
        "task_declassified_to": (
            task.declassified_to.name.lower()
            if task is not None and task.declassified_to is not None
            else None
        ),
        "task_effect_classes": (
            sorted(c.value for c in task.effect_classes)
            if task is not None and task.effect_classes is not None
            else None
        ),
    }
    first_seen = details.pop("first_seen", None) or {}
    targets = [str(intent.get("target", "")), *map(str, intent.get("extra_targets") or ())]
    return {
        "version": _VERSION,
        "approval_id": approval.approval_id,
        "agent_id": approval.agent_id,
        "task_id": approval.task_id,
        "effect": {
            "op": intent.get("op"),
            "targets": targets,
            "effect_class": details.pop("effect_class", None)
            or effect_class_of(approval, registry),
            "intent_digest": _sha(dict(intent)),
        },
        "targets": [
            {"value": t, "first_seen": first_seen.get(t), "flagged": t in first_seen}
            for t in targets
        ],
        "payload": {"digest": _sha(params), "preview": preview},
        "labels": labels,
        "rules": {"rule": approval.rule, "code": approval.code, "reason": approval.reason},
        "history": details.pop("history", []),
        "details": details,
    }


def effect_class_of(approval: Approval, registry: Registry) -> str:
    """The class the kernel's catalogue gives the parked op ("" for one it does not know)."""
    spec = registry.ops.get(str(approval.intent.get("op", "")))
    return spec.effect_class.value if spec is not None else ""


def digest_of(facts: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a packet's content in canonical JSON: what an approval carries."""
    return _sha(dict(facts))


@dataclass(frozen=True, slots=True)
class DecisionPacket:
    """A packet as shown: its content, the digest an approval sends back, the signature."""

    content: Mapping[str, Any]
    digest: str
    """SHA-256 of ``content`` (hex)."""
    signature: str
    """Ed25519 over the domain and the digest (hex)."""
    public_key: str
    """The raw Ed25519 public key that verifies it (hex)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": dict(self.content),
            "digest": self.digest,
            "signature": self.signature,
            "public_key": self.public_key,
        }


class PacketSigner:
    """Signs packets with the data dir's packet key; derives it on first use, so a
    command that only reads the log creates no key."""

    def __init__(self, key_dir: Path) -> None:
        self._key_dir = key_dir
        self._key: Ed25519PrivateKey | None = None

    def _private(self) -> Ed25519PrivateKey:
        if self._key is None:
            seed = derive_key(self._key_dir, "decision-packet")
            self._key = Ed25519PrivateKey.from_private_bytes(seed)
        return self._key

    def public_key(self) -> Ed25519PublicKey:
        return self._private().public_key()

    def build(self, approval: Approval, registry: Registry) -> DecisionPacket:
        facts = content(approval, registry)
        digest = digest_of(facts)
        signature = self._private().sign(_DOMAIN + bytes.fromhex(digest))
        raw = self.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return DecisionPacket(facts, digest, signature.hex(), raw.hex())

    def verify(self, packet: Mapping[str, Any]) -> bool:
        """Whether ``packet`` (as `DecisionPacket.to_dict` gives it) was signed by this
        data dir's kernel and its digest is its content's; anything malformed is False."""
        try:
            digest = str(packet["digest"])
            if not hmac.compare_digest(digest, digest_of(packet["content"])):
                return False
            sig = bytes.fromhex(str(packet["signature"]))
            self.public_key().verify(sig, _DOMAIN + bytes.fromhex(digest))
        except (KeyError, TypeError, ValueError, InvalidSignature):
            return False
        return True


def _mismatch(approval_id: str) -> str:
    return (
        f"approval {approval_id}: the intent or its label context changed since its decision"
        " packet was built; nothing ran - look at the new packet"
        f" (maos approvals show {approval_id}) and decide again"
    )


def check(approval: Approval, registry: Registry, digest: str | None) -> None:
    """Refuse an approval whose packet digest is missing or no longer the packet's."""
    if not digest:
        raise ApprovalError(
            PACKET_REQUIRED,
            f"approval {approval.approval_id} carries no decision packet digest; fetch the"
            f" packet (maos approvals show {approval.approval_id}) and approve what it shows",
            approval_id=approval.approval_id,
        )
    if not hmac.compare_digest(str(digest), digest_of(content(approval, registry))):
        raise ApprovalError(
            PACKET_MISMATCH, _mismatch(approval.approval_id), approval_id=approval.approval_id
        )


def stale(approval: Approval, registry: Registry) -> Outcome | None:
    """At execution: the denial an approved intent gets when its packet no longer holds
    (None when it does), so an approved intent never runs under a changed context."""
    try:
        check(approval, registry, approval.packet_digest)
    except ApprovalError as exc:
        intent_id = str(approval.intent.get("intent_id", ""))
        return Outcome(
            intent_id,
            OutcomeStatus.DENIED,
            code=exc.code,
            reason=exc.message,
            approval_id=approval.approval_id,
        )
    return None


def history(wal: Wal, agent_id: str) -> list[dict[str, Any]]:
    """The agent's last `HISTORY` intents before now, as the log has them: parked with the
    intent, so the packet shows what the agent did before it asked."""
    first = max(0, wal.tail_seq() - _HISTORY_SCAN)
    found: list[dict[str, Any]] = []
    for rec in wal.read(since_seq=first, kinds=_HISTORY_KINDS):
        body = rec.body
        if body.get("agent_id") != agent_id:
            continue
        intent = body.get("intent") or {}
        entry = {
            "seq": rec.seq,
            "kind": rec.kind,
            "op": body.get("op", intent.get("op")),
            "target": body.get("target", intent.get("target")),
        }
        if "code" in body:
            entry["code"] = body["code"]
        found.append(entry)
    return found[-HISTORY:]
