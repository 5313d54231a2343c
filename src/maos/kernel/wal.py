"""The write-ahead log: one append-only, hash-chained SQLite table of everything decided.

Invariants:

- **Write-ahead (R3).** `Wal.append` returns a record only after the transaction holding
  it has committed with ``synchronous=FULL`` (fsynced). Callers act on the world only
  after that, so nothing is done that the log could forget.
- **Chain.** Records are numbered 1..N without gaps. Record ``n`` stores ``prev_hash``,
  the hash of record ``n-1`` (32 zero bytes for record 1), and
  ``hash = sha256(prev_hash || encode(seq, ts, kind, intent_id, idem_key, body))`` where
  every field is typed and length-prefixed, so no byte can move across a field boundary
  unnoticed (`maos.kernel.chain`). `Wal.verify` re-derives all of it, read-only, through
  `maos.kernel.walcheck`, and names what is wrong with a stable code.
- **Anchored head** (with ``anchor=``, as every writer holding the root key opens it,
  `maos.kernel.walconfig.anchored_wal`). Before writing on top, a transaction checks
  that the log still holds what the anchor vouches for; after COMMIT, `_Anchorer`
  advances the anchor and only then wakes the batch's callers, so an acknowledged record
  is never beyond the anchor and losing it is a detectable truncation
  (`maos.kernel.anchor`, docs/wal.md). Every ``checkpoint_every`` records, a sealed
  ``wal.checkpoint`` record lets a boot re-hash only from there.
- **Append-only.** Nothing in MAOS updates or deletes a row.
- **Many writers, one chain.** Each batch reads the tail inside ``BEGIN IMMEDIATE``, so
  other `Wal` objects and other processes (the CLI approving while a kernel runs) extend
  the same chain; SQLite's write lock orders them.

Group commit: appends are queued to one writer thread, which commits everything queued
(up to `MAX_BATCH` records) in one transaction, hence one fsync, then wakes the callers.
That thread shares the GIL with the callers' event loop, so everything that need not be
serialized is kept off it (docs/wal.md has the measurements):

- **The caller encodes.** It validates, serializes the body to canonical JSON, parses it
  back for the returned record and encodes the hashed fields (`_encode_fields`) before
  queueing. Inside the transaction only the chain step is left, over the same bytes.
- **Few SQLite steps.** The writer takes the whole queue and stores it with multi-row
  ``INSERT`` statements (one step, hence one GIL release, per 64 rows), after the
  ``BEGIN IMMEDIATE`` and the tail read that keep other writers safe.
- **One wake-up per batch.** An ``async`` caller waits on an asyncio future of its own
  loop; the writer resolves all of a batch's futures with ONE ``call_soon_threadsafe``
  per loop. ``append_sync`` callers wait on a `concurrent.futures.Future`.
- **Pipelined.** A committed batch's callers are woken just before the *next* batch's
  COMMIT, so their Python work (and their next appends) runs while that fsync waits,
  instead of alternating with the writer on the GIL. If nothing else is queued, or the
  next batch must wait for another writer's lock, or fails, they are woken at once. To
  get two batches in flight, a long queue met while nothing is in flight is committed in
  two halves (`_SPLIT_AT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from maos.kernel import walcheck
from maos.kernel.anchor import AnchorState, HeadAnchor
from maos.kernel.chain import (
    COLUMNS,
    GENESIS,
    MAX_BATCH,
    chain_step,
    encode_fields,
    parse_body,
)
from maos.kernel.errors import WalError
from maos.kernel.walcheck import CHECKPOINT, VerifyReport

__all__ = [
    "CHECKPOINT_EVERY",
    "GENESIS",
    "MAX_BATCH",
    "SCHEMA",
    "VerifyReport",
    "Wal",
    "WalRecord",
]

_BUSY_TIMEOUT_S = 30.0
_PAGE = 512
_ROWS_PER_INSERT = 64
"""Rows per multi-row INSERT: 512 parameters, under SQLite's oldest 999-variable limit."""
_SPLIT_AT = 16
"""A queue this long, met with no commit in flight, is committed in two halves (see
`Wal._take`)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    intent_id TEXT,
    idem_key TEXT,
    body BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_idem_key ON records (idem_key);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind);
"""
CHECKPOINT_EVERY = 10_000
"""Records between two checkpoints (``wal.checkpoint``): a boot re-hashes at most about this
many (config.json ``wal.checkpoint_every``; docs/wal.md has the cost)."""


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One durable log record, exactly as stored and chained."""

    seq: int
    """Position in the chain, 1..N without gaps."""
    ts: float
    """Commit time (the log's clock), shared by every record of one group commit."""
    kind: str
    """What happened, dotted: ``intent.prepared``, ``approval.decided`` ..."""
    intent_id: str | None
    """The intent this record is about, if any."""
    idem_key: str | None
    """The idempotency key the Commit Layer dedups on, if any."""
    body: Mapping[str, Any]
    """The payload, read-only, as parsed back from its canonical JSON."""
    prev_hash: bytes
    """Hash of the previous record (`GENESIS` for record 1)."""
    hash: bytes
    """sha256 over ``prev_hash`` and this record's encoded fields."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def _text(name: str, value: object, *, optional: bool) -> bytes | None:
    """The field as UTF-8, or ``WAL.BAD_RECORD``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise WalError("WAL.BAD_RECORD", f"{name} must be a non-empty string", field=name)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WalError("WAL.BAD_RECORD", f"{name} is not valid text", field=name) from exc


@dataclass(slots=True)
class _Pending:
    """One queued append, encoded by its caller; the writer only chains and stores it."""

    kind: str
    intent_id: str | None
    idem_key: str | None
    body: bytes
    """Canonical JSON, as stored."""
    parsed: Mapping[str, Any]
    """``body`` parsed back: what the returned record carries."""
    encoded: bytes
    """`_encode_fields` of the four fields above."""
    loop: asyncio.AbstractEventLoop | None
    """The caller's event loop, or None for `Wal.append_sync`."""
    future: asyncio.Future[WalRecord] | Future[WalRecord]
    """An asyncio future of ``loop``, or a concurrent future when ``loop`` is None."""
    seq: int = 0
    """Set by the writer, with ``ts``, ``prev_hash`` and ``hash``, once chained."""
    ts: float = 0.0
    prev_hash: bytes = b""
    hash: bytes = b""

    def record(self) -> WalRecord:
        return WalRecord(
            self.seq,
            self.ts,
            self.kind,
            self.intent_id,
            self.idem_key,
            self.parsed,
            self.prev_hash,
            self.hash,
        )

    def claim(self) -> bool:
        """False if the caller gave up before the writer took it (then it is skipped).

        An asyncio future is only read here, off its loop. A cancel racing this read
        either skips the record or comes too late, and then the record is written while
        its caller sees the cancel: what any cancel after this point has always meant.
        """
        if self.loop is None:
            assert isinstance(self.future, Future)
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()


def _settle(batch: list[_Pending], error: str | None, path: str) -> None:
    """Runs on the callers' loop: one call resolves every asyncio waiter of a batch (and
    builds their records here, off the writer's critical path)."""
    for p in batch:
        future = p.future
        if future.done():  # cancelled after the writer took it; the record stands
            continue
        if error is None:
            future.set_result(p.record())
        else:
            future.set_exception(WalError("WAL.WRITE_FAILED", error, path=path))


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO records ({COLUMNS}) VALUES {values}"


def _connect(path: Path, *, writer: bool = False) -> sqlite3.Connection:
    """The writer's connection waits for no lock once the schema exists: see
    `_begin_immediate`."""
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        if writer:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.text_factory = bytes  # hash exactly what is stored (the gap re-hash)
    except BaseException:
        conn.close()
        raise
    return conn


def _begin_immediate(conn: sqlite3.Connection, before_waiting: Callable[[], None]) -> None:
    """Takes the write lock on the writer's connection (whose busy timeout is 0). If another
    writer holds it, runs ``before_waiting`` first (so a held batch's callers never wait on
    someone else's transaction), then waits as long as any connection would."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
    before_waiting()
    conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


class Wal:
    """The log of one data directory; safe to share between threads and coroutines."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        *,
        anchor: HeadAnchor | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
        readonly: bool = False,
    ) -> None:
        """``anchor``: every writer of a data directory's log that holds its root key
        passes one (the kernel, the CLI's deciding commands); without one the log is
        written unanchored (benchmarks, tests of the chain alone). ``readonly``: only read
        (``maos status`` and the like), so it creates and writes nothing."""
        if checkpoint_every < 1:
            raise WalError("WAL.BAD_CONFIG", "checkpoint_every must be at least 1")
        self._path = path
        self._clock = clock
        self.anchor = anchor
        self._checkpoint_every = checkpoint_every
        self._log_id: bytes | None = None
        """Record 1's hash, once this writer has checked the anchor names this log."""
        self._checkpointed: int | None = None
        """The seq the last checkpoint vouches for, as this writer knows it."""
        self._tail: tuple[int, bytes] | None = None
        """Seq and hash of this writer's last commit, set only with an anchor."""
        self._anchorer: _Anchorer | None = None
        self._readonly = readonly
        try:
            if readonly:
                raise FileExistsError
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            # The new directory entry must outlive a power cut like the records will.
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        # Schema and connections are made lazily: a damaged file must still reach verify().
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[_Pending] = deque()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._commits = 0
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def commit_count(self) -> int:
        """Transactions this object's writer has committed: how well group commit batches."""
        return self._commits

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        kind: str,
        body: Mapping[str, Any],
        *,
        intent_id: str | None = None,
        idem_key: str | None = None,
    ) -> WalRecord:
        """Returns once the record is durable; `WalError` if it is bad or the commit failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WalRecord] = loop.create_future()
        self._submit(kind, body, intent_id, idem_key, loop, future)
        return await future

    def append_sync(
        self,
        kind: str,
        body: Mapping[str, Any],
        *,
        intent_id: str | None = None,
        idem_key: str | None = None,
    ) -> WalRecord:
        """`append` for callers without an event loop (the CLI); same durability."""
        future: Future[WalRecord] = Future()
        self._submit(kind, body, intent_id, idem_key, None, future)
        return future.result()

    def _submit(
        self,
        kind: str,
        body: Mapping[str, Any],
        intent_id: str | None,
        idem_key: str | None,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[WalRecord] | Future[WalRecord],
    ) -> None:
        if self._readonly:
            raise WalError("WAL.READ_ONLY", "this log was opened read-only", path=str(self._path))
        # Validation and encoding happen here, in the caller: a bad record fails only its
        # caller, and the writer is left with nothing but the chain step.
        kind_b = _text("kind", kind, optional=False)
        assert kind_b is not None
        intent_b = None if intent_id is None else _text("intent_id", intent_id, optional=True)
        key_b = None if idem_key is None else _text("idem_key", idem_key, optional=True)
        if not isinstance(body, Mapping):
            raise WalError("WAL.BAD_RECORD", "body must be a mapping", kind=kind)
        try:
            raw = orjson.dumps(body, default=_json_default, option=orjson.OPT_SORT_KEYS)
        except TypeError as exc:
            raise WalError("WAL.BAD_RECORD", f"body is not JSON: {exc}", kind=kind) from exc
        encoded = encode_fields(kind_b, intent_b, key_b, raw)
        pending = _Pending(kind, intent_id, idem_key, raw, parse_body(raw), encoded, loop, future)
        with self._lock:  # the lock of ``_cond``
            if self._closing:
                raise WalError("WAL.CLOSED", "the log is closed", path=str(self._path))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"wal-writer:{self._path.name}", daemon=True
                )
                self._writer.start()
            self._queue.append(pending)
            if len(self._queue) == 1:  # the writer waits only on an empty queue
                self._cond.notify()

    def _write_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        held: list[_Pending] = []  # committed; their callers are woken during the next fsync
        while True:
            with self._cond:
                while not self._queue and not held and not self._closing:
                    self._cond.wait()
                if not self._queue and not held:
                    break  # closing, and everything is committed and delivered
                batch = self._take(pipelined=bool(held))
            # A caller cancelled before we started is skipped; after this it is written.
            batch = [p for p in batch if p.claim()]
            if batch:
                conn, held = self._commit(conn, batch, held)
            elif held:
                _deliver(held, None, str(self._path))
                held = []
        if conn is not None:
            conn.close()

    def _take(self, *, pipelined: bool) -> list[_Pending]:
        """The next batch, under ``_cond``: the whole queue, up to `MAX_BATCH`.

        Except when a long queue meets an idle pipeline: then half of it, so that the
        other half's commit can overlap the wake-up of this half's callers (and their next
        appends), instead of the two alternating on the GIL.
        """
        queue = self._queue
        take = len(queue)
        if not pipelined and take >= _SPLIT_AT:
            take = (take + 1) // 2
        if take >= len(queue) and take <= MAX_BATCH:
            batch = list(queue)
            queue.clear()
            return batch
        return [queue.popleft() for _ in range(min(take, MAX_BATCH))]

    def _commit(
        self, conn: sqlite3.Connection | None, batch: list[_Pending], held: list[_Pending]
    ) -> tuple[sqlite3.Connection | None, list[_Pending]]:
        """One transaction for the whole batch; on any error, every waiter learns it.

        ``held`` (the previous batch, already durable) is delivered once this batch is
        ready to commit, so its callers run while this fsync waits, or at once if this
        batch must wait for another writer's lock or fails. Returns the batch to hold.
        """
        path = str(self._path)

        def release() -> None:
            nonlocal held
            if held:
                _deliver(held, None, path)
                held = []

        try:
            if conn is None:
                conn = _connect(self._path, writer=True)
            if self._anchorer is not None:
                self._anchorer.wait_behind(1)  # a crash leaves at most two batches unanchored
            state = self._insert(conn, batch, release)
        except Exception as exc:
            release()
            conn = _rollback(conn)
            _deliver(batch, f"committing {len(batch)} records failed: {exc}", path)
            return conn, []
        self._commits += 1
        if state is not None:  # its callers are woken once the anchor vouches for it
            if self._anchorer is None:
                assert self.anchor is not None
                self._anchorer = _Anchorer(self.anchor, self._path)
            self._anchorer.hand(state, batch)
            return conn, []
        return conn, batch

    def _insert(
        self, conn: sqlite3.Connection, batch: list[_Pending], release: Callable[[], None]
    ) -> AnchorState | None:
        """Chains and stores the batch in one transaction, noting each one's position; with
        an anchor, checks that the chain extends it first, and returns what the anchor
        must vouch for before the batch's callers are told."""
        _begin_immediate(conn, release)
        tail = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (0, GENESIS) if tail is None else (int(tail[0]), bytes(tail[1]))
        anchor = self.anchor
        if anchor is not None:
            self._vouch(conn, anchor, seq, prev)
        ts = float(self._clock())
        rows: list[tuple[Any, ...]] = []
        for p in batch:
            seq += 1
            digest = chain_step(prev, seq, ts, p.encoded)
            rows.append((seq, ts, p.kind, p.intent_id, p.idem_key, p.body, prev, digest))
            p.seq, p.ts, p.prev_hash, p.hash = seq, ts, prev, digest
            prev = digest
        if anchor is not None:
            if self._log_id is None:  # this batch holds record 1
                self._log_id = rows[0][7]
            if self._checkpoint_due(conn, seq):
                seq, prev = self._checkpoint_row(anchor, rows, seq, prev, ts)
        # Multi-row INSERTs: one SQLite step (one GIL release) per chunk, not per row.
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            conn.execute(_insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        release()
        conn.execute("COMMIT")
        if anchor is None:
            return None
        self._tail = (seq, prev)
        assert self._log_id is not None
        return AnchorState(seq, prev, self._log_id)

    def _vouch(self, conn: sqlite3.Connection, anchor: HeadAnchor, seq: int, prev: bytes) -> None:
        """Inside the transaction, before writing on top: the log still holds what the
        anchor vouches for, and every record after it (other writers' batches not yet
        anchored, a stopped writer's last one) chains from it. Otherwise the batch fails
        and nothing is written over a truncated or rewritten log.

        When the tail is still this writer's own last commit, everything from the anchor
        to it was checked or written here, and the anchor file (maybe being advanced by
        `_Anchorer` right now) is not read: rolling it back shows at its next advance.
        """
        if self._tail == (seq, prev):
            return
        current = anchor.read()
        if current is None:
            if seq:
                raise WalError(
                    "WAL.NO_ANCHOR",
                    f"the log holds {seq} records and has no anchor; {walcheck.ADOPT_HINT}",
                )
            anchor.advance(AnchorState(0, GENESIS, bytes(32)))  # a new log: anchored empty
            return
        if current.seq > seq:
            raise WalError(
                "WAL.TRUNCATED",
                f"the anchor vouches for {current.seq} records but the log holds {seq}",
            )
        if current.seq == seq and current.hash != prev:
            raise WalError("WAL.ANCHOR_MISMATCH", f"record {seq} is not the anchored one")
        if current.seq < seq:
            at = conn.execute("SELECT hash FROM records WHERE seq = ?", (current.seq,)).fetchone()
            if current.seq and (at is None or bytes(at[0]) != current.hash):
                raise WalError(
                    "WAL.ANCHOR_MISMATCH", f"record {current.seq} is not the anchored one"
                )
            for at_seq, digest, problem in walcheck.rehash(conn, current.seq, current.hash, seq):
                if problem:
                    raise WalError("WAL.CHAIN_BROKEN", f"{problem} (after the anchor)")
                if at_seq == 1:
                    self._log_id = digest
        if current.seq and self._log_id is None:
            first = conn.execute("SELECT hash FROM records WHERE seq = 1").fetchone()
            if first is None or bytes(first[0]) != current.log_id:
                raise WalError("WAL.ANCHOR_FOREIGN", "the anchor belongs to another log")
            self._log_id = current.log_id

    def _checkpoint_due(self, conn: sqlite3.Connection, head: int) -> bool:
        if self._checkpointed is None:
            last = conn.execute(
                "SELECT max(seq) FROM records WHERE kind = ?", (CHECKPOINT,)
            ).fetchone()[0]
            self._checkpointed = int(last or 1) - 1  # a checkpoint vouches for the record before
        return head - self._checkpointed >= self._checkpoint_every

    def _checkpoint_row(
        self, anchor: HeadAnchor, rows: list[tuple[Any, ...]], seq: int, prev: bytes, ts: float
    ) -> tuple[int, bytes]:
        """Appends to ``rows`` the ``wal.checkpoint`` sealing record ``seq``; the new tail."""
        assert self._log_id is not None
        body = orjson.dumps(
            {
                "seq": seq,
                "hash": prev.hex(),
                "log": self._log_id.hex(),
                "mac": anchor.seal(AnchorState(seq, prev, self._log_id)),
            },
            option=orjson.OPT_SORT_KEYS,
        )
        digest = chain_step(prev, seq + 1, ts, encode_fields(CHECKPOINT.encode(), None, None, body))
        rows.append((seq + 1, ts, CHECKPOINT, None, None, body, prev, digest))
        self._checkpointed = seq
        return seq + 1, digest

    # -- reading ---------------------------------------------------------------------------

    def read(self, since_seq: int = 0, kinds: Collection[str] | None = None) -> Iterator[WalRecord]:
        """Records with ``seq > since_seq`` in order, fetched in pages (no long-held cursor)."""
        kinds = None if kinds is None else tuple(kinds)
        if kinds is not None and not kinds:
            return
        where = "" if kinds is None else f" AND kind IN ({','.join('?' * len(kinds))})"
        sql = f"SELECT {COLUMNS} FROM records WHERE seq > ?{where} ORDER BY seq LIMIT {_PAGE}"
        after = since_seq
        while True:
            page = self._query(sql, (after, *(kinds or ())))
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    def by_idem_key(self, idem_key: str) -> list[WalRecord]:
        """Every record carrying this key, in order: what the Commit Layer dedups on."""
        sql = f"SELECT {COLUMNS} FROM records WHERE idem_key = ? ORDER BY seq"
        return self._query(sql, (idem_key,))

    def tail_seq(self) -> int:
        """The last seq committed by anyone; 0 for an empty log."""
        with self._read_lock:
            try:
                row = self._read_conn().execute("SELECT max(seq) FROM records").fetchone()
            except sqlite3.Error as exc:
                raise WalError("WAL.READ_FAILED", str(exc), path=str(self._path)) from exc
        return int(row[0] or 0)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[WalRecord]:
        with self._read_lock:
            try:
                rows = self._read_conn().execute(sql, params).fetchall()
                return [
                    WalRecord(seq, ts, kind, iid, key, parse_body(body), prev, digest)
                    for seq, ts, kind, iid, key, body, prev, digest in rows
                ]
            except (sqlite3.Error, ValueError) as exc:
                raise WalError("WAL.READ_FAILED", str(exc), path=str(self._path)) from exc

    def _read_conn(self) -> sqlite3.Connection:
        if self._closing:
            raise WalError("WAL.CLOSED", "the log is closed", path=str(self._path))
        if self._reader is None:
            self._reader = (
                walcheck.connect_readonly(self._path) if self._readonly else _connect(self._path)
            )
        return self._reader

    # -- verifying -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Re-derives the whole chain from the stored bytes, read-only, and checks it
        against the anchor if this log has one; works on a closed log too."""
        return walcheck.check(self._path, self.anchor, full=True)

    def check_head(self) -> VerifyReport:
        """What a boot checks: the anchor against the head, and the chain re-hashed from
        the last checkpoint; raises the `WalError` that names what is wrong."""
        return walcheck.require(walcheck.check(self._path, self.anchor, full=False))

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Commits whatever is queued, stops the writer; later appends raise ``WAL.CLOSED``."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            writer = self._writer
        if writer is not None:
            writer.join()
        if self._anchorer is not None:
            self._anchorer.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> Wal:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Anchorer:
    """Advances the anchor after each commit, then wakes that batch's callers: its
    fdatasync runs while the writer commits the next batch, instead of after it.

    Batches handed in while it syncs are anchored together (the highest state covers
    them). The writer waits before committing while two batches are unanchored, so a
    crash leaves at most two group commits beyond the anchor (docs/wal.md).
    """

    def __init__(self, anchor: HeadAnchor, path: Path) -> None:
        self._anchor = anchor
        self._path = str(path)
        self._cond = threading.Condition()
        self._work: list[tuple[AnchorState, list[_Pending]]] = []
        self._handed = 0
        self._done = 0
        self._closing = False
        self._thread = threading.Thread(
            target=self._loop, name=f"wal-anchor:{path.name}", daemon=True
        )
        self._thread.start()

    def hand(self, state: AnchorState, batch: list[_Pending]) -> None:
        with self._cond:
            self._work.append((state, batch))
            self._handed += 1
            self._cond.notify_all()

    def wait_behind(self, at_most: int) -> None:
        """Blocks until at most ``at_most`` handed batches still wait for the anchor."""
        with self._cond:
            self._cond.wait_for(lambda: self._handed - self._done <= at_most)

    def close(self) -> None:
        """Anchors and delivers whatever was handed in, then stops."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._work) or self._closing)
                if not self._work:
                    return
                work, self._work = self._work, []
            error = None
            try:
                self._anchor.advance(work[-1][0])
            except Exception as exc:
                error = f"committed, but the anchor cannot vouch for it: {exc}"
            for _, batch in work:
                _deliver(batch, error, self._path)
            with self._cond:
                self._done += len(work)
                self._cond.notify_all()


def _deliver(batch: list[_Pending], error: str | None, path: str) -> None:
    """Wakes the batch's callers: sync ones one by one, async ones with one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for p in batch:
        if p.loop is not None:
            by_loop.setdefault(p.loop, []).append(p)
        elif error is None:
            p.future.set_result(p.record())
        else:
            p.future.set_exception(WalError("WAL.WRITE_FAILED", error, path=path))
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to wake
            loop.call_soon_threadsafe(_settle, waiting, error, path)


def _rollback(conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
    """Leaves no half-written batch; a connection that cannot even roll back is dropped."""
    if conn is None:
        return None
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        conn.close()
        return None
    return conn
