"""The federation's roster: which certificate each node links with, and which nodes are revoked.

Built by the Sovereign from its own log (``federation.admitted`` with a certificate's pin,
``federation.node_revoked``), published down like a policy (key `ROSTER_KEY` of the policy
bucket, a rising epoch, so the Sentinels' mirrors carry it), and applied by each Sentinel
to its client listener as ``pinned_certs`` (reloaded in place: a revoked or rotated-out
Pawn is disconnected and refused in the handshake). A Sentinel logs each roster it adopts
(``federation.roster``), so a reboot with the Sovereign gone keeps the cut.

The Sovereign pins its own leaf-node listener the same way from the same log
(`leaf_pins`: the Sentinels' certificates), restarting its server when they change,
since nats-server does not reload a leaf listener's pins.

Pinning starts with the first admitted certificate: from then on a Sentinel accepts only
pinned certificates (its own and every admitted, unrevoked node's), so every Pawn is
admitted with ``--cert``. A roster with no pins and no revocation pins nothing (any
certificate the CA signed links, as before).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from maos.kernel.wal import WalRecord

__all__ = ["NO_CERT", "ROSTER_KEY", "leaf_pins", "pins", "revoked", "roster_of"]

ROSTER_KEY = "_roster"
"""The roster's key in the policy bucket (a node's ``policy:`` never starts with ``_``)."""
NO_CERT = "0" * 64
"""A pin no certificate has (a SHA-256 of all zeros): what a pin set holds to be pinned
at all when no node may be named in it (`leaf_pins`)."""


def roster_of(records: Iterable[WalRecord]) -> dict[str, Any]:
    """The roster the Sovereign's log says: each node's latest admitted pin, the revoked.

    A later admission with a new certificate replaces the node's pin (a rotation); a
    revocation is final (a revoked node re-admitted stays revoked: issue it a new name)."""
    node_pins: dict[str, str] = {}
    gone: dict[str, str] = {}
    for rec in records:
        node = str(rec.body.get("node"))
        if rec.kind == "federation.admitted" and isinstance(rec.body.get("pin"), str):
            node_pins[node] = str(rec.body["pin"])
        elif rec.kind == "federation.node_revoked":
            gone.setdefault(node, str(rec.body.get("reason", "")))
    return {"pins": dict(sorted(node_pins.items())), "revoked": dict(sorted(gone.items()))}


def revoked(doc: Mapping[str, Any]) -> frozenset[str]:
    """The revoked nodes of a roster document (an unreadable one revokes nothing it cannot
    name; its pins fail closed, see `pins`)."""
    gone = doc.get("revoked")
    return frozenset(str(n) for n in gone) if isinstance(gone, dict) else frozenset()


def pins(doc: Mapping[str, Any], own: str) -> tuple[str, ...]:
    """The certificates a Sentinel's client listener accepts under ``doc``: its own and
    every unrevoked node's; ``()`` (pin nothing) when the roster neither pins nor revokes
    anybody (a revocation alone starts pinning: a revoked node never admitted with its
    certificate is cut off too, with every other unpinned one). A document
    that cannot be read pins only the Sentinel's own certificate: a deny."""
    node_pins = doc.get("pins")
    if not isinstance(node_pins, dict) or not isinstance(doc.get("revoked"), dict):
        return (own,)
    gone = revoked(doc)
    if not node_pins and not gone:
        return ()
    return tuple(sorted({own} | {str(p) for n, p in node_pins.items() if n not in gone}))


def leaf_pins(records: Iterable[WalRecord]) -> tuple[str, ...]:
    """The certificates the Sovereign's leaf-node listener accepts under its log: every
    admitted, unrevoked Sentinel's latest pin, and `NO_CERT`. ``()`` (pin nothing) until a
    Sentinel is admitted with its certificate or a node not admitted as a Pawn is revoked:
    from then on a Sentinel admitted without its certificate is refused too (fail closed,
    like `pins`). `NO_CERT` keeps the set from ever being empty, which would pin nothing;
    it is not the Sovereign's own pin, so rotating the Sovereign's certificate leaves the
    set as it is (its server reloads the new files in place, no restart)."""
    sentinels: dict[str, str] = {}
    roles: dict[str, str] = {}
    gone: set[str] = set()
    for rec in records:
        node = str(rec.body.get("node"))
        if rec.kind == "federation.admitted":
            roles[node] = str(rec.body.get("role"))
            if roles[node] == "sentinel" and isinstance(rec.body.get("pin"), str):
                sentinels[node] = str(rec.body["pin"])
        elif rec.kind == "federation.node_revoked":
            gone.add(node)
    if not sentinels and all(roles.get(n) == "pawn" for n in gone):
        return ()
    return tuple(sorted({NO_CERT} | {p for n, p in sentinels.items() if n not in gone}))
