"""The write-ahead log: one append-only, hash-chained SQLite table of everything decided.

Invariants:

- **Write-ahead (R3).** `Wal.append` returns a record only after the transaction holding
  it has committed with ``synchronous=FULL`` (fsynced). Callers act on the world only
  after that, so nothing is done that the log could forget.
- **Chain.** Records are numbered 1..N without gaps. Record ``n`` stores ``prev_hash``,
  the hash of record ``n-1`` (32 zero bytes for record 1), and
  ``hash = sha256(prev_hash || encode(seq, ts, kind, intent_id, idem_key, body))`` where
  every field is typed and length-prefixed, so no byte can move across a field boundary
  unnoticed. `Wal.verify` re-derives all of it and names the first record that breaks it.
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
import hashlib
import itertools
import os
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import orjson

from maos.kernel.errors import WalError

__all__ = ["GENESIS", "MAX_BATCH", "SCHEMA", "VerifyReport", "Wal", "WalRecord"]

GENESIS = bytes(32)
"""The ``prev_hash`` of record 1."""
MAX_BATCH = 512
"""Most records one transaction commits; bounds how long one fsync keeps callers waiting."""
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
_COLUMNS = "seq, ts, kind, intent_id, idem_key, body, prev_hash, hash"
_STORED_TYPES = (
    ("ts", ("real",)),
    ("kind", ("text",)),
    ("intent_id", ("text", "null")),
    ("idem_key", ("text", "null")),
    ("body", ("blob",)),
    ("prev_hash", ("blob",)),
    ("hash", ("blob",)),
)
"""What `verify` accepts as SQLite storage classes; the schema alone cannot enforce it."""


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


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The answer of `Wal.verify`; a damaged log is a report, never an exception."""

    ok: bool
    """True when every record is well-formed and the chain is unbroken."""
    records: int
    """How many records were checked and found good before the first bad one."""
    first_bad_seq: int | None
    """The first seq where the chain breaks (a missing seq counts), or None."""
    reason: str
    """A sentence for a human: what is wrong, or that all is well."""


_SEQ_TS = struct.Struct(">qd")
_LEN = struct.Struct(">Q")


def _encode_fields(
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


def _chain_step(prev_hash: bytes, seq: int, ts: float, encoded_fields: bytes) -> bytes:
    """``sha256(prev_hash || int64 seq || float64 ts || encoded fields)``, big-endian."""
    return hashlib.sha256(prev_hash + _SEQ_TS.pack(seq, ts) + encoded_fields).digest()


def _digest(
    prev_hash: bytes,
    seq: int,
    ts: float,
    kind: bytes,
    intent_id: bytes | None,
    idem_key: bytes | None,
    body: bytes,
) -> bytes:
    """A record's hash from its stored fields as raw bytes, so `verify` can hash exactly
    what is stored, decodable or not."""
    return _chain_step(prev_hash, seq, ts, _encode_fields(kind, intent_id, idem_key, body))


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


def _parse_body(raw: bytes) -> Mapping[str, Any]:
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    return MappingProxyType(body)


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
    return f"INSERT INTO records ({_COLUMNS}) VALUES {values}"


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
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that creates and writes nothing. While a writer has the log open its
    ``-shm`` file exists and ``mode=ro`` shares its locks; with neither ``-shm`` nor
    ``-wal`` beside it nobody has it open, and ``immutable=1`` reads the file as it is
    (``mode=ro`` would leave a ``-shm`` behind, or fail in a read-only directory)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    live = any(Path(f"{path}{suffix}").exists() for suffix in ("-shm", "-wal"))
    attempts = (uri, f"{uri}&immutable=1") if live else (f"{uri}&immutable=1",)
    for i, attempt in enumerate(attempts, 1):
        conn = sqlite3.connect(
            attempt,
            uri=True,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn.close()
            if i == len(attempts):
                raise
            continue
        return conn
    raise AssertionError("unreachable")


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
        self, path: Path, clock: Callable[[], float] = time.time, *, readonly: bool = False
    ) -> None:
        self._path = path
        self._clock = clock
        self._readonly = readonly
        """Opened only to read (``maos status`` and the like): creates and writes nothing."""
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
        encoded = _encode_fields(kind_b, intent_b, key_b, raw)
        pending = _Pending(kind, intent_id, idem_key, raw, _parse_body(raw), encoded, loop, future)
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
            self._insert(conn, batch, release)
        except Exception as exc:
            release()
            conn = _rollback(conn)
            _deliver(batch, f"committing {len(batch)} records failed: {exc}", path)
            return conn, []
        self._commits += 1
        return conn, batch

    def _insert(
        self, conn: sqlite3.Connection, batch: list[_Pending], release: Callable[[], None]
    ) -> None:
        """Chains and stores the batch in one transaction, noting each one's position."""
        _begin_immediate(conn, release)
        tail = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (0, GENESIS) if tail is None else (int(tail[0]), bytes(tail[1]))
        ts = float(self._clock())
        rows: list[tuple[Any, ...]] = []
        for p in batch:
            seq += 1
            digest = _chain_step(prev, seq, ts, p.encoded)
            rows.append((seq, ts, p.kind, p.intent_id, p.idem_key, p.body, prev, digest))
            p.seq, p.ts, p.prev_hash, p.hash = seq, ts, prev, digest
            prev = digest
        # Multi-row INSERTs: one SQLite step (one GIL release) per chunk, not per row.
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            conn.execute(_insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        release()
        conn.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    def read(self, since_seq: int = 0, kinds: Collection[str] | None = None) -> Iterator[WalRecord]:
        """Records with ``seq > since_seq`` in order, fetched in pages (no long-held cursor)."""
        kinds = None if kinds is None else tuple(kinds)
        if kinds is not None and not kinds:
            return
        where = "" if kinds is None else f" AND kind IN ({','.join('?' * len(kinds))})"
        sql = f"SELECT {_COLUMNS} FROM records WHERE seq > ?{where} ORDER BY seq LIMIT {_PAGE}"
        after = since_seq
        while True:
            page = self._query(sql, (after, *(kinds or ())))
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    def by_idem_key(self, idem_key: str) -> list[WalRecord]:
        """Every record carrying this key, in order: what the Commit Layer dedups on."""
        sql = f"SELECT {_COLUMNS} FROM records WHERE idem_key = ? ORDER BY seq"
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
                    WalRecord(seq, ts, kind, iid, key, _parse_body(body), prev, digest)
                    for seq, ts, kind, iid, key, body, prev, digest in rows
                ]
            except (sqlite3.Error, ValueError) as exc:
                raise WalError("WAL.READ_FAILED", str(exc), path=str(self._path)) from exc

    def _read_conn(self) -> sqlite3.Connection:
        if self._closing:
            raise WalError("WAL.CLOSED", "the log is closed", path=str(self._path))
        if self._reader is None:
            self._reader = _connect_readonly(self._path) if self._readonly else _connect(self._path)
        return self._reader

    # -- verifying -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Re-derives the whole chain from the stored bytes; works on a closed log too."""
        good = 0
        try:
            conn = _connect_readonly(self._path)
        except sqlite3.Error as exc:
            return VerifyReport(False, 0, None, f"SQLite cannot open the log: {exc}")
        conn.text_factory = bytes
        try:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            if not tables:
                return VerifyReport(True, 0, None, "the log is empty")
            typeofs = ", ".join(f"typeof({name})" for name, _ in _STORED_TYPES)
            rows = conn.execute(f"SELECT {_COLUMNS}, {typeofs} FROM records ORDER BY seq")
            prev, stray = GENESIS, None
            for row in rows:
                seq = row[0]
                if seq < 1:
                    stray = seq if stray is None else stray
                    continue
                if seq != good + 1:
                    why = f"record {good + 1} is missing (the next record is {seq})"
                    return VerifyReport(False, good, good + 1, why)
                problem = _check_row(row, prev)
                if problem:
                    return VerifyReport(False, good, seq, f"record {seq}: {problem}")
                prev, good = row[7], good + 1
            if stray is not None:
                why = f"record {good + 1} is missing (a record has seq {stray}, below 1)"
                return VerifyReport(False, good, good + 1, why)
            return VerifyReport(True, good, None, f"{good} records, chain intact")
        except sqlite3.Error as exc:
            return VerifyReport(False, good, None, f"SQLite cannot read the log: {exc}")
        finally:
            conn.close()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Commits whatever is queued, stops the writer; later appends raise ``WAL.CLOSED``."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            writer = self._writer
        if writer is not None:
            writer.join()
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


def _check_row(row: tuple[Any, ...], prev: bytes) -> str:
    """What is wrong with one stored row at its expected position, or "" if nothing."""
    seq, ts, kind, intent_id, idem_key, body, prev_hash, digest = row[:8]
    for (name, allowed), raw_type in zip(_STORED_TYPES, row[8:], strict=True):
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
    if len(prev_hash) != 32 or len(digest) != 32:
        return "a hash is not 32 bytes long"
    if prev_hash != prev:
        return "prev_hash does not match the previous record's hash"
    if _digest(prev, seq, ts, kind, intent_id, idem_key, body) != digest:
        return "hash does not match the record's contents"
    try:
        _parse_body(body)
    except ValueError:
        return "body is not a JSON object"
    return ""
