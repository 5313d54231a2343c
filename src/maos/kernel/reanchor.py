"""The Commander moves the log's anchor, on the record: ``maos wal adopt`` and ``accept-loss``.

A boot refuses a log its anchor does not vouch for (`maos.kernel.walcheck`). Two of those
refusals have a way out that a human must take, and each leaves a record, so the log
always shows that its anchor was moved, by whom and why:

- **adopt** (``wal.adopted``): a log written before anchors existed, records beyond the
  anchor that one crash cannot explain, an anchor that does not authenticate or names
  another log, a witness not yet started. The whole chain must verify; the head is
  anchored as it is.
- **accept-loss** (``wal.loss_accepted``): the anchor says records are missing or were
  rewritten. The chain that is left must verify; the record names what the anchor
  vouched for and the head found, and from then on nothing whose record may have been
  lost is run again (`maos.kernel.approvals.ApprovalBook` folds it).

Both run only while no kernel serves the data directory (the caller holds `KernelLock`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maos.kernel import walcheck
from maos.kernel.anchor import AnchorState, HeadAnchor
from maos.kernel.approvals import ApprovalStatus
from maos.kernel.chain import GENESIS
from maos.kernel.errors import InputError, WalError
from maos.kernel.registry import check_principal
from maos.kernel.view import LogView
from maos.kernel.wal import Wal, WalRecord
from maos.kernel.walcheck import ADOPTED, LOSS_ACCEPTED
from maos.kernel.walconfig import LogConfig

__all__ = ["ADOPTABLE", "LOSSES", "Reanchored", "accept_loss", "adopt"]

ADOPTABLE = frozenset(
    {
        "WAL.NO_ANCHOR",
        "WAL.UNANCHORED",
        "WAL.ANCHOR_INVALID",
        "WAL.ANCHOR_FOREIGN",
        "WAL.NO_WITNESS",
    }
)
"""What ``adopt`` may settle: the anchor cannot vouch, but nothing says records are gone."""
LOSSES = frozenset({"WAL.TRUNCATED", "WAL.ANCHOR_MISMATCH", "WAL.CHECKPOINT_INVALID"})
"""What ``accept-loss`` may settle: the anchor (or a checkpoint) vouches for records the
log no longer holds as they were."""


@dataclass(frozen=True, slots=True)
class Reanchored:
    """What a re-anchoring found and wrote."""

    found: walcheck.VerifyReport
    """The check that refused the log."""
    record: WalRecord
    """The ``wal.adopted`` or ``wal.loss_accepted`` record, now anchored."""


def adopt(config: LogConfig, *, principal: str) -> Reanchored:
    """Anchors a log whose chain verifies but which its anchor does not vouch for."""
    return _reanchor(config, ADOPTED, ADOPTABLE, principal, lambda found, view: {})


def accept_loss(config: LogConfig, *, reason: str, principal: str) -> Reanchored:
    """Records that the log lost what its anchor vouched for, and anchors what is left."""
    if not isinstance(reason, str) or not reason.strip():
        raise InputError("BAD_INPUT.REASON", "accepting a loss needs a reason (--reason TEXT)")

    def extra(found: walcheck.VerifyReport, view: LogView) -> dict[str, Any]:
        unsettled = [
            a.approval_id
            for a in view.approvals.all()
            if a.outcome is None and a.status is not ApprovalStatus.DENIED
        ]
        return {"reason": reason.strip(), "found": found.code, "approvals_closed": unsettled}

    return _reanchor(config, LOSS_ACCEPTED, LOSSES, principal, extra)


def _reanchor(
    config: LogConfig,
    kind: str,
    allowed: frozenset[str],
    principal: str,
    extra: Callable[[walcheck.VerifyReport, LogView], dict[str, Any]],
) -> Reanchored:
    path = config.wal_path
    anchor = HeadAnchor(config.data_dir, witness=config.wal_witness)
    found = walcheck.check(path, anchor, full=True)
    if found.ok or found.code not in allowed:
        raise _not_this(kind, found)
    chain = walcheck.check(path, None, full=True)
    if not chain.ok:
        assert chain.code is not None
        raise WalError(
            chain.code,
            f"{chain.reason}: a broken chain cannot be anchored; restore the data directory "
            "from a backup",
        )
    try:
        previous = anchor.read()
    except WalError:
        previous = None
    conn = walcheck.open_readonly(path)
    try:
        head = AnchorState(chain.head, _hash_at(conn, chain.head), _hash_at(conn, 1))
    finally:
        conn.close()
    # Written by an unanchored writer (its anchor is what is being replaced), sealed like a
    # checkpoint: a boot re-hashes from here. The record first, then the anchor: a crash
    # in between leaves the refusal standing and the record kept, never a silent move.
    with Wal(path, clock=config.clock) as plain:
        view = LogView(plain)
        view.catch_up()
        check_principal(principal, view.registry)
        body = {
            "seq": head.seq,
            "hash": head.hash.hex(),
            "log": head.log_id.hex(),
            "mac": anchor.seal(head),
            "principal": principal,
            "anchored": None
            if previous is None
            else {"seq": previous.seq, "hash": previous.hash.hex()},
            **extra(found, view),
        }
        rec = plain.append_sync(kind, body)
    anchor.reset(AnchorState(rec.seq, rec.hash, head.log_id if head.seq else rec.hash))
    return Reanchored(found, rec)


def _hash_at(conn: sqlite3.Connection, seq: int) -> bytes:
    """The stored hash of record ``seq``; `GENESIS` (and 32 zero bytes for a log id) when
    the log is empty."""
    if seq == 0:
        return GENESIS
    row = conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
    return GENESIS if row is None else bytes(row[0])


def _not_this(kind: str, found: walcheck.VerifyReport) -> WalError:
    if found.ok:
        return WalError(
            "WAL.NOTHING_TO_DO", f"the log is whole and anchored ({found.reason}); nothing changed"
        )
    assert found.code is not None
    if kind == ADOPTED and found.code in LOSSES:
        hint = "records are missing: `maos wal accept-loss --reason TEXT` if the loss is real"
    elif kind == LOSS_ACCEPTED and found.code in ADOPTABLE:
        hint = "no records are missing: `maos wal adopt` anchors this log"
    else:
        hint = "this cannot be re-anchored; restore the data directory from a backup"
    return WalError(found.code, f"{found.reason} ({hint})")
