"""The read-only verifier of a data directory's log: chain, anchor, witness, checkpoints.

It opens the database read-only (``file:...?mode=ro``) and writes nothing, so any process
can run it: the kernel at boot, ``maos wal verify``, a Trusted Display Path process. The
chain itself is `maos.kernel.chain`'s; this module decides what a log must look like to
be trusted (docs/wal.md has the reasoning):

- The anchor (and the witness, if configured) authenticates, belongs to this log (its
  ``log_id`` is record 1's hash) and names a record the log still holds with that hash.
  Fewer records than anchored: ``WAL.TRUNCATED``; another hash there: ``WAL.ANCHOR_MISMATCH``.
- Records beyond the anchor are accepted only as at most `UNANCHORED_COMMITS` group
  commits (one ``ts`` each, at most `MAX_BATCH` records plus a checkpoint each): what a
  writer that stopped between COMMIT and the anchor write leaves, never acknowledged.
  More is ``WAL.UNANCHORED``.
- ``full=False`` (boot) re-hashes from the last checkpoint whose seal verifies and whose
  vouched hash is still stored; ``full=True`` (``maos wal verify``) re-hashes everything
  and checks every checkpoint.

Codes: ``WAL.UNREADABLE`` (not a readable SQLite log: no tamper alarm), ``WAL.CHAIN_BROKEN``,
``WAL.TRUNCATED``, ``WAL.ANCHOR_MISMATCH``, ``WAL.ANCHOR_FOREIGN``, ``WAL.ANCHOR_INVALID``,
``WAL.NO_ANCHOR``, ``WAL.UNANCHORED``, ``WAL.WITNESS_INVALID``, ``WAL.NO_WITNESS``,
``WAL.CHECKPOINT_INVALID``, ``WAL.NO_KEY``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from maos.kernel.anchor import AnchorState, HeadAnchor
from maos.kernel.chain import COLUMNS, GENESIS, MAX_BATCH, STORED_TYPES, check_row
from maos.kernel.errors import WalError

__all__ = [
    "ADOPTED",
    "CHECKPOINT",
    "LOSS_ACCEPTED",
    "VerifyReport",
    "check",
    "connect_readonly",
    "open_readonly",
    "rehash",
    "require",
]

CHECKPOINT = "wal.checkpoint"
"""The record kind of a checkpoint: ``{seq, hash, log, mac}``, the seal of what it vouches."""
ADOPTED = "wal.adopted"
"""``maos wal adopt`` anchored the log as it was (`maos.kernel.reanchor`)."""
LOSS_ACCEPTED = "wal.loss_accepted"
"""``maos wal accept-loss``: the Commander accepted that records were lost."""
_REANCHORED = (ADOPTED, LOSS_ACCEPTED)
_SEALED = (CHECKPOINT, *_REANCHORED)
"""Kinds whose body seals what the log held before them: a boot re-hashes from the last."""
ADOPT_HINT = "check the log with `maos wal verify`, then `maos wal adopt` to anchor it"
LOSS_HINT = (
    "nothing is redone or resent while records are missing; if the loss is real, "
    "`maos wal accept-loss --reason TEXT` records it and re-anchors"
)
UNANCHORED_COMMITS = 2
"""Group commits a crash can leave beyond the anchor: the one being anchored and the one
being committed meanwhile (`maos.kernel.wal`); never acknowledged, so accepted."""
_CATCH_UP_S = 0.5
_BUSY_MS = 30_000
_RECHECKS = 5
"""Reads of a log that keeps coming alive under its check before the last is reported."""
_PAGE = 4096


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The answer of a check; a damaged log is a report, never an exception."""

    ok: bool
    """True when every check passed."""
    records: int
    """Records checked and found good before the first bad one (all of them if ok)."""
    first_bad_seq: int | None
    """The first seq where the chain breaks (a missing seq counts), or None."""
    reason: str
    """A sentence for a human: what is wrong and what to do, or that all is well."""
    code: str | None = None
    """The stable ``WAL.*`` code of what is wrong; None when ok."""
    head: int = 0
    """The last seq the log holds."""
    anchored: int | None = None
    """The seq the anchor vouches for; None when no anchor was checked."""
    checked_from: int = 0
    """Records after this seq were re-hashed (0: all of them)."""
    beyond_anchor: int = 0
    """Records after the anchor accepted as one unacknowledged group commit."""

    def summary(self) -> dict[str, int | None]:
        """What a boot logs of its check (in ``kernel.boot``)."""
        return {
            "head": self.head,
            "anchored": self.anchored,
            "rehashed_from": self.checked_from,
            "beyond_anchor": self.beyond_anchor,
        }


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that creates and writes nothing. While a writer has the log open its
    ``-shm`` file exists and ``mode=ro`` shares its locks; with neither ``-shm`` nor
    ``-wal`` beside it nobody has it open, and ``immutable=1`` reads the file as it is
    (``mode=ro`` would leave a ``-shm`` behind, or fail in a read-only directory, where
    a read-only copy of a data dir lives: issue 9)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    live = at_rest(path) is None
    attempts = (uri, f"{uri}&immutable=1") if live else (f"{uri}&immutable=1",)
    for i, attempt in enumerate(attempts, 1):
        conn = sqlite3.connect(
            attempt, timeout=30, isolation_level=None, check_same_thread=False, uri=True
        )
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            # A writer busy with the log is no reason to read its file past the writer's
            # ``-wal``: only a log nobody can share locks with is read as it lies.
            name = str(getattr(exc, "sqlite_errorname", ""))
            if i == len(attempts) or name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise
            continue
        return conn
    raise AssertionError("unreachable")


def at_rest(path: Path) -> tuple[int, int, int] | None:
    """The log file's inode, size and mtime while nobody has it open (no ``-shm`` or
    ``-wal`` beside it), else None. An immutable read sees the log as it was only if this
    is the same after the read: a writer that opened it meanwhile commits into a ``-wal``
    such a read never sees, one that came and went changed the file."""
    if any(Path(f"{path}{suffix}").exists() for suffix in ("-shm", "-wal")):
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def open_readonly(path: Path) -> sqlite3.Connection:
    """The log opened read-only, with stored text as bytes (hash exactly what is stored)."""
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        raise WalError("WAL.UNREADABLE", f"SQLite cannot open {path}: {exc}") from exc
    conn.text_factory = bytes
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
    return conn


def rehash(
    conn: sqlite3.Connection, after: int, prev: bytes, upto: int | None = None
) -> Iterator[tuple[int, bytes, str]]:
    """Re-derives records ``after < seq <= upto`` chained from ``prev``: yields ``(seq, hash,
    problem)`` per record and stops at the first problem (a missing seq is one).

    ``conn`` must read text as bytes. Pages are fetched by seq, so a long scan holds no
    cursor open across a writer's commits.
    """
    typeofs = ", ".join(f"typeof({name})" for name, _ in STORED_TYPES)
    limit = "" if upto is None else f" AND seq <= {int(upto)}"
    sql = f"SELECT {COLUMNS}, {typeofs} FROM records WHERE seq > ?{limit} ORDER BY seq LIMIT ?"
    expected = after + 1
    while True:
        page = conn.execute(sql, (expected - 1, _PAGE)).fetchall()
        for row in page:
            seq = row[0]
            if seq != expected:
                yield expected, b"", f"record {expected} is missing (the next record is {seq})"
                return
            problem = check_row(row, prev)
            if problem:
                yield seq, b"", f"record {seq}: {problem}"
                return
            prev = bytes(row[7])
            yield seq, prev, ""
            expected += 1
        if len(page) < _PAGE:
            return


def check(db_path: Path, anchor: HeadAnchor | None, *, full: bool) -> VerifyReport:
    """Checks the log at ``db_path`` against ``anchor`` (None: the chain alone).

    ``full`` re-hashes every record and checks every checkpoint; otherwise the chain is
    re-hashed from the last verified checkpoint (what a boot does).

    A log that a writer opened while it was read at rest is read again, live: the
    anchor read after the file vouches for commits the file does not hold yet, which is
    a moving log, not a truncated one.
    """
    for _ in range(_RECHECKS):
        rest = at_rest(db_path)
        report = _check_once(db_path, anchor, full)
        if rest is None or at_rest(db_path) == rest:
            return report
    return report


def _check_once(db_path: Path, anchor: HeadAnchor | None, full: bool) -> VerifyReport:
    try:
        conn = open_readonly(db_path)
    except WalError as exc:
        return VerifyReport(False, 0, None, exc.message, exc.code)
    try:
        return _Check(conn, anchor, full).run()
    except WalError as exc:
        return VerifyReport(False, 0, None, exc.message, exc.code)
    except sqlite3.Error as exc:
        why = f"SQLite cannot read {db_path} as a MAOS log ({exc}); nothing was checked"
        return VerifyReport(False, 0, None, why, "WAL.UNREADABLE")
    finally:
        conn.close()


def require(report: VerifyReport) -> VerifyReport:
    """``report`` if ok, else its `WalError` (what a boot refuses with)."""
    if not report.ok:
        assert report.code is not None
        raise WalError(
            report.code, report.reason, head=report.head, first_bad_seq=report.first_bad_seq
        )
    return report


class _Refused(Exception):
    def __init__(self, code: str, reason: str, bad_seq: int | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.bad_seq = code, reason, bad_seq


class _Check:
    """One check of one log; every finding is a `_Refused` turned into the report."""

    def __init__(self, conn: sqlite3.Connection, anchor: HeadAnchor | None, full: bool) -> None:
        self.conn, self.anchor, self.full = conn, anchor, full
        self.head, self.good, self.start = 0, 0, 0

    def run(self) -> VerifyReport:
        try:
            return self._run()
        except _Refused as refused:
            return VerifyReport(
                False,
                self.good,
                refused.bad_seq,
                refused.reason,
                refused.code,
                head=self.head,
                checked_from=self.start,
            )

    def _run(self) -> VerifyReport:
        # The anchors first, then one read transaction (a snapshot) for every query: a
        # kernel committing meanwhile only adds records after what the anchor names, and
        # head, count and re-hash all see the same log.
        anchors = self._read_anchors() if self.anchor is not None else None
        self.conn.execute("BEGIN")
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = {bytes(r[0]) for r in self.conn.execute(sql)}
        if tables and b"records" not in tables:
            raise _Refused("WAL.UNREADABLE", "the database holds no MAOS log (no records table)")
        tail = self._row("SELECT max(seq) FROM records") if tables else None
        self.head = 0 if tail is None else int(tail[0] or 0)
        start, prev = (0, GENESIS) if self.full or not tables else self._checkpoint()
        self.start = start
        if tables and not self.full:
            self._count()
        for seq, _, problem in rehash(self.conn, start, prev) if tables else ():
            if problem:
                raise _Refused("WAL.CHAIN_BROKEN", f"{problem}; the log was altered", seq)
            self.good += 1
        if self.full and tables:
            self._count()
        anchored = None if anchors is None else self._compare(*anchors)
        if self.full and tables:
            self._all_checkpoints()
        beyond = 0
        if anchored is not None:
            beyond = self._beyond(anchored)
        what = "hash chain intact" if self.full else f"re-hashed from seq {start}"
        where = "" if anchored is None else f"; anchored at seq {anchored.seq}"
        extra = (
            f" ({beyond} records after it were committed but never acknowledged; "
            "the next write anchors them)"
            if beyond
            else ""
        )
        return VerifyReport(
            True,
            self.head,
            None,
            f"{self.head} records, {what}{where}{extra}",
            head=self.head,
            anchored=None if anchored is None else anchored.seq,
            checked_from=start,
            beyond_anchor=beyond,
        )

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def _hash_at(self, seq: int) -> bytes | None:
        row = self._row("SELECT hash FROM records WHERE seq = ?", (seq,))
        return None if row is None else bytes(row[0])

    # -- the anchor and the witness ------------------------------------------------------

    def _read_anchors(self) -> tuple[AnchorState | None, AnchorState | None]:
        """The local anchor and the witness's last entry; both must authenticate."""
        assert self.anchor is not None
        try:
            return self.anchor.read(), self.anchor.read_witness()
        except WalError as exc:
            raise _Refused(exc.code, f"{exc.message}; {ADOPT_HINT}") from exc

    def _compare(
        self, local: AnchorState | None, witness: AnchorState | None
    ) -> AnchorState | None:
        """What the anchors vouch for is what the (already re-hashed) log holds."""
        assert self.anchor is not None
        if witness is not None and (local is None or witness.seq > local.seq):
            self._against(witness, "the witness")
            why = (
                f"the witness {self.anchor.witness} vouches for seq {witness.seq}, the local "
                f"anchor only for {'nothing' if local is None else local.seq}: it was rolled back"
            )
            raise _Refused("WAL.ANCHOR_MISMATCH", f"{why}; {ADOPT_HINT}")
        if local is None:
            if self.head:
                why = f"the log holds {self.head} records and has no anchor ({self.anchor.path})"
                raise _Refused("WAL.NO_ANCHOR", f"{why}; {ADOPT_HINT}")
            return None
        self._against(local, "the anchor")
        if self.anchor.witness is not None:
            if witness is None and self.head:
                why = f"the witness {self.anchor.witness} is missing or empty"
                raise _Refused("WAL.NO_WITNESS", f"{why}; `maos wal adopt` starts it")
            if witness is not None:
                self._against(witness, "the witness")
        return local

    def _against(self, state: AnchorState, name: str) -> None:
        """The log holds what ``state`` vouches for: as many records, the same one there."""
        if state.seq > self.head:
            missing = state.seq - self.head
            why = (
                f"{name} vouches for {state.seq} records but the log holds {self.head}: "
                f"{missing} acknowledged record(s) are missing"
            )
            raise _Refused("WAL.TRUNCATED", f"{why}; {LOSS_HINT}", self.head + 1)
        if state.seq == 0:
            return
        first = self._hash_at(1)
        if first is None:
            why = "record 1 is missing: records were deleted from the start of the log"
            raise _Refused("WAL.CHAIN_BROKEN", f"{why}; {LOSS_HINT}", 1)
        if first != state.log_id:
            why = f"{name} belongs to another log (its record 1 differs from this log's)"
            raise _Refused("WAL.ANCHOR_FOREIGN", f"{why}; {ADOPT_HINT}", 1)
        stored = self._hash_at(state.seq)
        if stored is None:
            why = f"record {state.seq}, which {name} vouches for, is missing"
            raise _Refused("WAL.TRUNCATED", f"{why}; {LOSS_HINT}", state.seq)
        if stored != state.hash:
            why = (
                f"record {state.seq} is not the record {name} vouches for: the log was "
                "rewritten up to there"
            )
            raise _Refused("WAL.ANCHOR_MISMATCH", f"{why}; {LOSS_HINT}", state.seq)

    def _beyond(self, anchored: AnchorState) -> int:
        row = self._row(
            "SELECT count(*), count(DISTINCT ts) FROM records WHERE seq > ?", (anchored.seq,)
        )
        assert row is not None
        count, commits = int(row[0]), int(row[1])
        limit = UNANCHORED_COMMITS * (MAX_BATCH + 1)
        if count and (commits > UNANCHORED_COMMITS or count > limit) and not self._caught_up():
            why = (
                f"{count} records after seq {anchored.seq} are not anchored and come from "
                f"{commits} commits; a crash leaves at most {UNANCHORED_COMMITS}: the anchor "
                "was replaced by an older one, or a writer without the key wrote the log"
            )
            raise _Refused("WAL.UNANCHORED", f"{why}; {ADOPT_HINT}", anchored.seq + 1)
        return count

    def _caught_up(self) -> bool:
        """Whether live writers have anchored the snapshot's head since it was taken.

        Each writer process can have two group commits in flight, so several writing at
        once can exceed what one crash leaves; they anchor them within an fsync or two.
        An anchor put back by an attacker does not move (a live writer refuses to
        advance it), so waiting `_CATCH_UP_S` for it costs a refusal that much time."""
        assert self.anchor is not None
        deadline = time.monotonic() + _CATCH_UP_S
        while True:
            try:
                now = self.anchor.read()
            except WalError:
                return False
            if now is not None and now.seq >= self.head:
                return now.seq > self.head or self._hash_at(now.seq) == now.hash
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- checkpoints ---------------------------------------------------------------------

    def _checkpoint(self) -> tuple[int, bytes]:
        """Where a boot starts re-hashing: the last checkpoint, if its seal holds."""
        row = self._row(
            "SELECT seq, body FROM records WHERE kind IN (?, ?, ?) ORDER BY seq DESC LIMIT 1",
            _SEALED,
        )
        if row is None:
            return 0, GENESIS
        state = self._sealed(int(row[0]), bytes(row[1]))
        return state.seq, state.hash

    def _sealed(self, at: int, body: bytes) -> AnchorState:
        """The state the checkpoint record ``at`` vouches for, if its seal and hash hold."""
        bad = f"the checkpoint record {at} does not verify"
        try:
            raw = orjson.loads(body)
            state = AnchorState(
                int(raw["seq"]), bytes.fromhex(raw["hash"]), bytes.fromhex(raw["log"])
            )
            mac = raw["mac"]
        except (ValueError, TypeError, KeyError) as exc:
            raise _Refused("WAL.CHECKPOINT_INVALID", f"{bad}: it is malformed", at) from exc
        if self.anchor is None:
            raise _Refused("WAL.CHECKPOINT_INVALID", f"{bad}: no key to check its seal", at)
        try:
            sealed = self.anchor.seal_ok(state, mac)
        except WalError as exc:
            raise _Refused(exc.code, exc.message, at) from exc
        if not sealed:
            raise _Refused("WAL.CHECKPOINT_INVALID", f"{bad}: its seal is not the kernel's", at)
        if not 0 <= state.seq < at:
            why = f"{bad}: it vouches for record {state.seq}, not one before it (renumbered)"
            raise _Refused("WAL.CHECKPOINT_INVALID", why, at)
        if state.seq == 0:  # accepted the loss of every record: nothing before it to match
            return state
        if self._hash_at(1) != state.log_id or self._hash_at(state.seq) != state.hash:
            why = f"record {state.seq} is not the record checkpoint {at} vouches for"
            raise _Refused("WAL.CHECKPOINT_INVALID", f"{why}: the log was rewritten", state.seq)
        return state

    def _all_checkpoints(self) -> None:
        """Every seal since the Commander last re-anchored (those before it vouched for
        what the Commander accepted as lost)."""
        if self.anchor is None:
            return
        row = self._row("SELECT max(seq) FROM records WHERE kind IN (?, ?)", _REANCHORED)
        since = 0 if row is None or row[0] is None else int(row[0]) - 1
        sql = "SELECT seq, body FROM records WHERE kind IN (?, ?, ?) AND seq > ? ORDER BY seq"
        for at, body in self.conn.execute(sql, (*_SEALED, since)).fetchall():
            self._sealed(int(at), bytes(body))

    def _count(self) -> None:
        """Deletions before the checkpoint show in the count without re-hashing them (and a
        record numbered below 1 in a full check)."""
        row = self._row("SELECT count(*), min(seq) FROM records")
        assert row is not None
        count, first = int(row[0]), row[1]
        if first is not None and first < 1:
            why = f"record {self.good + 1} is missing (a record has seq {first}, below 1)"
            raise _Refused("WAL.CHAIN_BROKEN", why, self.good + 1)
        if self.head and (count != self.head or first != 1):
            why = (
                f"the log holds {count} records numbered up to {self.head}: records were "
                "deleted or renumbered"
            )
            raise _Refused("WAL.CHAIN_BROKEN", f"{why}; {LOSS_HINT}")
