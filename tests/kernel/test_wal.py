"""The write-ahead log: durability API, group commit, the hash chain and its verifier."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from maos.kernel.errors import WalError
from maos.kernel.wal import GENESIS, Wal

COLUMNS = ("seq", "ts", "kind", "intent_id", "idem_key", "body", "prev_hash", "hash")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "wal.sqlite3"


@pytest.fixture
def wal(path: Path) -> Iterator[Wal]:
    log = Wal(path)
    yield log
    log.close()


def fill(wal: Wal, n: int) -> None:
    """Records with every optional field both present and absent, and varied bodies."""
    for i in range(1, n + 1):
        wal.append_sync(
            f"test.kind{i % 3}",
            {"i": i, "text": "héllo" * (i % 4), "nested": {"b": [i, None, True], "a": 1.5}},
            intent_id=f"intent-{i}" if i % 5 else None,
            idem_key=f"key-{i}" if i % 7 else None,
        )


def raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # tamper fast; only the verifier's view matters
    return conn


def expected_hash(row: tuple[Any, ...]) -> bytes:
    """The documented encoding, written independently of the implementation."""
    seq, ts, kind, intent_id, idem_key, body, prev, _ = row

    def field(text: str | bytes | None) -> bytes:
        if text is None:
            return b"\x00"
        data = text.encode() if isinstance(text, str) else text
        return b"\x01" + len(data).to_bytes(8, "big") + data

    encoded = seq.to_bytes(8, "big", signed=True) + struct.pack(">d", ts)
    encoded += field(kind) + field(intent_id) + field(idem_key) + field(body)
    return hashlib.sha256(prev + encoded).digest()


# -- the API ---------------------------------------------------------------------------------


def test_append_returns_the_record_as_read_back(wal: Wal) -> None:
    async def go() -> None:
        rec = await wal.append("a.b", {"z": 1, "a": (1, 2)}, intent_id="i1", idem_key="k1")
        assert (rec.seq, rec.kind, rec.intent_id, rec.idem_key) == (1, "a.b", "i1", "k1")
        assert dict(rec.body) == {"a": [1, 2], "z": 1}  # canonical JSON, tuples become lists
        assert rec.prev_hash == GENESIS
        assert list(wal.read()) == [rec]
        assert wal.by_idem_key("k1") == [rec]

    asyncio.run(go())
    assert wal.tail_seq() == 1


def test_read_filters_by_seq_and_kind_across_pages(wal: Wal) -> None:
    fill(wal, 1100)  # more than two pages of the paged reader
    assert [r.seq for r in wal.read()] == list(range(1, 1101))
    assert [r.seq for r in wal.read(since_seq=1090)] == list(range(1091, 1101))
    kind1 = [r.seq for r in wal.read(kinds={"test.kind1"})]
    assert kind1 == [i for i in range(1, 1101) if i % 3 == 1]
    assert list(wal.read(kinds=())) == []
    assert [r.seq for r in wal.by_idem_key("key-8")] == [8]
    assert wal.by_idem_key("key-7") == []


def test_empty_log_has_tail_zero_and_verifies(wal: Wal) -> None:
    assert wal.tail_seq() == 0
    assert list(wal.read()) == []
    report = wal.verify()
    assert report.ok and report.records == 0


def test_log_file_is_private(path: Path, wal: Wal) -> None:
    wal.append_sync("a", {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_bad_records_fail_only_their_own_caller(wal: Wal) -> None:
    async def go() -> list[Any]:
        calls = [
            wal.append("ok", {"n": 1}),
            wal.append("bad", {"n": object()}),
            wal.append("", {"n": 2}),
            wal.append("ok", {"n": 3}, idem_key="\ud800"),
            wal.append("bad", {1: "non-string key"}),  # type: ignore[dict-item]
            wal.append("ok", {"n": 4}),
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(go())
    errors = [r for r in results if isinstance(r, WalError)]
    assert [e.code for e in errors] == ["WAL.BAD_RECORD"] * 4
    assert [r.body["n"] for r in results if not isinstance(r, BaseException)] == [1, 4]
    assert wal.verify().ok and wal.tail_seq() == 2


def test_append_after_close_is_refused_and_close_flushes(path: Path) -> None:
    wal = Wal(path)

    async def go() -> None:
        pending = [asyncio.ensure_future(wal.append("a", {"i": i})) for i in range(20)]
        await asyncio.sleep(0)  # every append is queued; close must still commit them
        await asyncio.to_thread(wal.close)
        assert [p.result().seq for p in pending] == list(range(1, 21))

    asyncio.run(go())
    with pytest.raises(WalError) as err:
        wal.append_sync("a", {})
    assert err.value.code == "WAL.CLOSED"
    assert Wal(path).verify().records == 20


# -- group commit ----------------------------------------------------------------------------


def test_group_commit_batches_concurrent_appenders(wal: Wal) -> None:
    async def go() -> None:
        records = await asyncio.gather(*(wal.append("c", {"i": i}) for i in range(100)))
        assert sorted(r.seq for r in records) == list(range(1, 101))

    asyncio.run(go())
    assert wal.commit_count <= 10, wal.commit_count


def test_no_caller_is_woken_before_its_own_batch_commits(path: Path, wal: Wal) -> None:
    """Batches are pipelined (callers of one are woken during the next one's fsync): each
    returned record must already be visible to another connection, i.e. committed."""
    check = raw(path)
    wal.append_sync("setup", {})  # the table exists for the checking connection

    async def appender(i: int) -> None:
        for j in range(5):
            rec = await wal.append("c", {"i": i, "j": j})
            found = check.execute("SELECT hash FROM records WHERE seq = ?", (rec.seq,))
            assert found.fetchall() == [(rec.hash,)], (i, j, rec.seq)

    async def go() -> None:
        await asyncio.gather(*(appender(i) for i in range(100)))

    asyncio.run(go())
    check.close()
    assert wal.verify().records == 501


def test_a_caller_whose_loop_is_gone_does_not_stop_the_writer(path: Path, wal: Wal) -> None:
    wal.append_sync("setup", {})
    ext = raw(path)
    ext.execute("BEGIN IMMEDIATE")  # the orphan commits only after its loop is closed
    loop = asyncio.new_event_loop()
    orphan = loop.create_task(wal.append("orphan", {}))
    loop.run_until_complete(asyncio.sleep(0))  # the append is queued
    loop.close()
    ext.execute("ROLLBACK")
    ext.close()
    assert wal.append_sync("after", {}).seq == 3
    assert [r.kind for r in wal.read()] == ["setup", "orphan", "after"]
    assert not orphan.done()


def test_serial_appends_commit_one_by_one(wal: Wal) -> None:
    fill(wal, 5)
    assert wal.commit_count == 5


def test_failed_commit_fails_its_whole_batch_and_leaves_nothing(path: Path, wal: Wal) -> None:
    wal.append_sync("setup", {})  # creates the schema
    ext = raw(path)
    ext.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.kind = 'boom'"
        " BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
    )
    ext.execute("BEGIN IMMEDIATE")  # hold the write lock so the appends pile up

    async def go() -> list[Any]:
        calls = [wal.append("fine", {"i": i}, idem_key=f"k{i}") for i in range(30)]
        tasks = [asyncio.ensure_future(c) for c in [*calls, wal.append("boom", {})]]
        for _ in range(3):
            await asyncio.sleep(0)
        ext.execute("ROLLBACK")
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(go())
    ext.close()
    failed = [i for i, r in enumerate(results) if isinstance(r, WalError)]
    assert all(results[i].code == "WAL.WRITE_FAILED" for i in failed)
    assert 30 in failed and len(failed) >= 2  # the boom record took its batch-mates down
    logged = {r.idem_key for r in wal.read(kinds={"fine"})}
    assert logged == {f"k{i}" for i in range(30) if i not in failed}
    assert wal.verify().ok
    assert wal.append_sync("after", {}).seq == wal.tail_seq()  # the writer carries on


# -- the chain and its verifier --------------------------------------------------------------


def test_chain_links_every_record_with_the_documented_hash(path: Path, wal: Wal) -> None:
    fill(wal, 30)
    rows = raw(path).execute(f"SELECT {', '.join(COLUMNS)} FROM records ORDER BY seq").fetchall()
    prev = GENESIS
    for row in rows:
        assert row[6] == prev
        assert row[7] == expected_hash(row)
        assert row[5] == orjson.dumps(orjson.loads(row[5]), option=orjson.OPT_SORT_KEYS)
        prev = row[7]
    report = wal.verify()
    assert (report.ok, report.records, report.first_bad_seq) == (True, 30, None)


def flips(value: Any) -> Iterator[Any]:
    """Every single-bit flip of an integer or a double, and two per byte of a string."""
    if isinstance(value, int):
        for bit in range(64):
            flipped = value ^ (1 << bit)
            yield flipped - (1 << 64) if flipped >= 1 << 63 else flipped
    elif isinstance(value, float):
        (bits,) = struct.unpack(">Q", struct.pack(">d", value))
        for bit in range(64):
            yield struct.unpack(">d", struct.pack(">Q", bits ^ (1 << bit)))[0]
    else:
        data = value.encode() if isinstance(value, str) else value
        for i in range(len(data)):
            for mask in (0x01, 0x80):
                yield data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


@pytest.mark.parametrize("column", COLUMNS)
def test_flipping_any_byte_of_a_record_fails_verify_at_that_record(
    path: Path, wal: Wal, column: str
) -> None:
    fill(wal, 30)
    wal.close()
    conn = raw(path)
    # Text flips are stored as TEXT even when they are no longer valid UTF-8.
    cast = "CAST(? AS TEXT)" if column in ("kind", "intent_id", "idem_key") else "?"
    tried = 0
    for seq in (1, 2, 5, 14, 29, 30):
        (original,) = conn.execute(f"SELECT {column} FROM records WHERE seq = ?", (seq,)).fetchone()
        if original is None:
            continue
        where = (original,) if column == "seq" else (seq,)
        for bad in flips(original):
            try:
                conn.execute(f"UPDATE records SET {column} = {cast} WHERE seq = ?", (bad, *where))
            except sqlite3.IntegrityError:
                continue  # a seq already taken, or a NaN SQLite stores as NULL: no such log
            report = wal.verify()
            back = (bad,) if column == "seq" else (seq,)
            conn.execute(f"UPDATE records SET {column} = ? WHERE seq = ?", (original, *back))
            assert not report.ok, (column, seq, bad)
            assert report.first_bad_seq == seq, (column, seq, bad, report)
            assert report.records == seq - 1
            tried += 1
    assert tried >= 40
    assert wal.verify().ok  # every flip was undone


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("ts", "not a time"),
        ("kind", b"\xff\xfe"),
        ("kind", ""),
        ("intent_id", 42),
        ("idem_key", b"key"),
        ("body", '{"i": 1}'),
        ("body", b"[1, 2]"),
        ("prev_hash", "00" * 32),
        ("hash", b"\x00" * 31),
        ("hash", 1.5),
    ],
)
def test_fields_of_the_wrong_type_are_reported_not_raised(
    path: Path, wal: Wal, column: str, value: object
) -> None:
    fill(wal, 10)
    raw(path).execute(f"UPDATE records SET {column} = ? WHERE seq = 4", (value,))
    report = wal.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4), report


def test_a_deleted_record_is_named_as_missing(path: Path, wal: Wal) -> None:
    fill(wal, 10)
    raw(path).execute("DELETE FROM records WHERE seq = 6")
    report = wal.verify()
    assert (report.ok, report.first_bad_seq, report.records) == (False, 6, 5)
    assert "missing" in report.reason


def test_a_deleted_last_record_is_undetectable_by_design(path: Path, wal: Wal) -> None:
    """Truncating the tail keeps a valid chain: only an external anchor could tell."""
    fill(wal, 10)
    raw(path).execute("DELETE FROM records WHERE seq = 10")
    assert wal.verify().ok


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "scribbled", "directory", "no_table"],
)
def test_unreadable_file_is_a_report_never_an_exception(path: Path, damage: str) -> None:
    if damage == "directory":
        path.mkdir(parents=True)
    elif damage == "garbage":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"this is not a database at all\n" * 200)
    else:
        with Wal(path) as wal:
            fill(wal, 300)
        data = path.read_bytes()
        if damage == "truncated":
            path.write_bytes(data[: len(data) // 3])
        elif damage == "scribbled":
            path.write_bytes(data[:4096] + b"\xa5" * 8192 + data[4096 + 8192 :])
        else:
            conn = raw(path)
            conn.execute("CREATE TABLE other (x)")
            conn.execute("DROP TABLE records")
            conn.close()
    report = Wal(path).verify()
    assert not report.ok
    assert report.reason


def test_appending_to_or_reading_a_garbage_file_raises_wal_errors(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage" * 1000)
    with Wal(path) as wal:
        with pytest.raises(WalError) as write:
            wal.append_sync("a", {})
        with pytest.raises(WalError) as read:
            wal.tail_seq()
    assert (write.value.code, read.value.code) == ("WAL.WRITE_FAILED", "WAL.READ_FAILED")


# -- many writers, one chain -----------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from maos.kernel.wal import Wal
with Wal(Path(sys.argv[1])) as wal:
    for i in range(60):
        wal.append_sync("child", {"i": i}, idem_key=f"child-{i}")
"""


def test_two_wals_and_another_process_extend_one_chain(path: Path) -> None:
    Wal(path).append_sync("genesis", {})  # schema exists before the race starts
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)])
    first, second = Wal(path), Wal(path)

    def writer(wal: Wal, name: str) -> None:
        async def go() -> None:
            for start in range(0, 60, 10):
                batch = (wal.append(name, {"i": i}) for i in range(start, start + 10))
                await asyncio.gather(*batch)

        asyncio.run(go())

    threads = [
        threading.Thread(target=writer, args=(first, "first")),
        threading.Thread(target=writer, args=(second, "second")),
    ]
    for t in threads:
        t.start()
    for i in range(30):
        first.append_sync("sync", {"i": i})
    for t in threads:
        t.join()
    assert child.wait(timeout=120) == 0
    first.close()
    second.close()
    report = Wal(path).verify()
    assert report.ok, report
    assert report.records == 1 + 60 + 60 + 30 + 60
