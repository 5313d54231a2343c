"""Issue 9: the log's head is anchored. Tampering with a data dir's log, its files or its
anchor, the ways an attacker or an accident would, is named by `maos wal verify` (the
real CLI) with a stable code; whatever lies after the last checkpoint, and every
truncation or anchor mismatch, is refused by `Kernel.boot` too.

Each data dir is written by a real kernel (60 commits, a checkpoint every 25 records)
and tampered with through SQLite or the file system directly, as an attacker would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.anchor import ANCHOR_FILE
from maos.kernel.chain import digest
from maos.kernel.errors import WalError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.wal import Wal

NOTES = 60
EVERY = 25


def build(data: Path, *, witness: Path | None = None, notes: int = NOTES) -> KernelConfig:
    """A data dir a real kernel wrote: one commit per note, checkpoints every `EVERY`."""
    config = KernelConfig(data_dir=data, wal_checkpoint_every=EVERY, wal_witness=witness)
    config.save()

    async def write() -> None:
        async with await Kernel.boot(KernelConfig.load(data), follow=False) as kernel:
            for i in range(notes):
                await kernel.wal.append("test.note", {"i": i}, idem_key=f"k{i}")

    asyncio.run(write())
    return KernelConfig.load(data)


def verify(data: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["wal", "verify", "-d", str(data)])
    return result.exit_code, result.output


def boot_refusal(data: Path) -> str | None:
    """The code `Kernel.boot` refuses the data dir with, or None if it boots."""

    async def go() -> str | None:
        try:
            kernel = await Kernel.boot(KernelConfig.load(data), follow=False)
        except WalError as exc:
            return exc.code
        await kernel.close()
        return None

    return asyncio.run(go())


def sql(data: Path, *statements: str) -> None:
    db = sqlite3.connect(data / "wal.sqlite3", isolation_level=None)
    try:
        for statement in statements:
            db.execute(statement)
    finally:
        db.close()


def head(data: Path) -> int:
    db = sqlite3.connect(data / "wal.sqlite3")
    try:
        return int(db.execute("SELECT max(seq) FROM records").fetchone()[0])
    finally:
        db.close()


def rechain(data: Path, renumber: bool = False) -> None:
    """Re-derives every stored hash (and with ``renumber`` closes seq gaps) as an attacker
    who knows the chain's encoding would, so the chain alone verifies again."""
    db = sqlite3.connect(data / "wal.sqlite3", isolation_level=None)
    db.text_factory = bytes
    try:
        rows = db.execute(
            "SELECT seq, ts, kind, intent_id, idem_key, body FROM records ORDER BY seq"
        ).fetchall()
        db.execute("BEGIN")
        db.execute("DELETE FROM records")
        prev = bytes(32)
        for n, (seq, ts, kind, iid, key, body) in enumerate(rows, start=1):
            seq = n if renumber else seq
            h = digest(prev, seq, ts, kind, iid, key, body)
            texts = [None if t is None else t.decode() for t in (kind, iid, key)]
            db.execute(
                "INSERT INTO records VALUES (?,?,?,?,?,?,?,?)",
                (seq, ts, *texts, body, prev, h),
            )
            prev = h
        db.execute("COMMIT")
    finally:
        db.close()


Tamper = Callable[[Path], None]


def edit(column: str, value: str, at: Callable[[Path], int] = head) -> Tamper:
    return lambda d: sql(d, f"UPDATE records SET {column} = {value} WHERE seq = {at(d)}")


def delete(where: Callable[[int], str]) -> Tamper:
    return lambda d: sql(d, f"DELETE FROM records WHERE {where(head(d))}")


def swap_last_two(d: Path) -> None:
    n = head(d)
    sql(
        d,
        f"UPDATE records SET seq = -1 WHERE seq = {n}",
        f"UPDATE records SET seq = {n} WHERE seq = {n - 1}",
        f"UPDATE records SET seq = {n - 1} WHERE seq = -1",
    )


def delete_middle_and_rehash(d: Path) -> None:
    sql(d, f"DELETE FROM records WHERE seq = {head(d) - 20}")
    rechain(d, renumber=True)


def edit_and_rehash(at: Callable[[int], int]) -> Tamper:
    def tamper(d: Path) -> None:
        sql(d, f"UPDATE records SET body = CAST('{{\"i\":999}}' AS BLOB) WHERE seq = {at(head(d))}")
        rechain(d)

    return tamper


def truncate_file(d: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (d / f"wal.sqlite3{suffix}").unlink(missing_ok=True)
    os.truncate(d / "wal.sqlite3", 0)


def edit_anchor(d: Path) -> None:
    raw = bytearray((d / ANCHOR_FILE).read_bytes())
    raw[20] ^= 0x01  # inside the seq field
    (d / ANCHOR_FILE).write_bytes(bytes(raw))


def not_sqlite(d: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (d / f"wal.sqlite3{suffix}").unlink(missing_ok=True)
    (d / "wal.sqlite3").write_bytes(b"this is not a database\n" * 100)


AFTER_CHECKPOINT = [
    # (name, tamper, the code `maos wal verify` must name); boot must refuse each.
    ("edit ts", edit("ts", "ts + 1"), "WAL.CHAIN_BROKEN"),
    ("edit kind", edit("kind", "'test.forged'"), "WAL.CHAIN_BROKEN"),
    ("edit intent_id", edit("intent_id", "'forged'"), "WAL.CHAIN_BROKEN"),
    ("edit idem_key", edit("idem_key", "'forged'"), "WAL.CHAIN_BROKEN"),
    ("edit body", edit("body", "CAST('{\"i\":999}' AS BLOB)"), "WAL.CHAIN_BROKEN"),
    ("edit prev_hash", edit("prev_hash", "zeroblob(32)"), "WAL.CHAIN_BROKEN"),
    ("edit hash", edit("hash", "zeroblob(32)"), "WAL.CHAIN_BROKEN"),
    ("edit seq", edit("seq", "seq + 5"), "WAL.CHAIN_BROKEN"),
    ("delete last 1", delete(lambda n: f"seq = {n}"), "WAL.TRUNCATED"),
    ("delete last 10", delete(lambda n: f"seq > {n - 10}"), "WAL.TRUNCATED"),
    ("delete 1 in the middle", delete(lambda n: f"seq = {n - 5}"), "WAL.CHAIN_BROKEN"),
    (
        "delete 10 in the middle",
        delete(lambda n: f"seq BETWEEN {n - 15} AND {n - 6}"),
        "WAL.CHAIN_BROKEN",
    ),
    ("delete first 1", delete(lambda n: "seq = 1"), "WAL.CHAIN_BROKEN"),
    ("delete first 10", delete(lambda n: "seq <= 10"), "WAL.CHAIN_BROKEN"),
    ("delete in the middle, rehash after", delete_middle_and_rehash, "WAL.TRUNCATED"),
    ("reorder the last two", swap_last_two, "WAL.CHAIN_BROKEN"),
    ("edit after the checkpoint, rechain", edit_and_rehash(lambda n: n - 3), "WAL.ANCHOR_MISMATCH"),
    ("edit record 2, rechain everything", edit_and_rehash(lambda n: 2), "WAL.ANCHOR_MISMATCH"),
    ("truncate the file to 0 bytes", truncate_file, "WAL.TRUNCATED"),
    ("edit the anchor", edit_anchor, "WAL.ANCHOR_INVALID"),
    ("delete the anchor", lambda d: (d / ANCHOR_FILE).unlink(), "WAL.NO_ANCHOR"),
]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [pytest.param(t, c, id=name) for name, t, c in AFTER_CHECKPOINT],
)
def test_tampering_is_named_by_verify_and_refused_by_boot_issue_9(
    tmp_path: Path, tamper: Tamper, code: str
) -> None:
    data = tmp_path / "data"
    build(data)
    assert verify(data) == (0, verify(data)[1]) and "anchored at seq" in verify(data)[1]
    tamper(data)
    exit_code, out = verify(data)
    assert exit_code == 1, out
    assert out.startswith(f"error {code}: "), out
    assert boot_refusal(data) is not None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(edit("body", "CAST('{\"i\":999}' AS BLOB)", at=lambda d: 5), id="body"),
        pytest.param(edit("kind", "'test.forged'", at=lambda d: 5), id="kind"),
        pytest.param(edit("ts", "ts + 1", at=lambda d: 5), id="ts"),
    ],
)
def test_an_edit_before_the_last_checkpoint_is_found_by_the_full_verify_issue_9(
    tmp_path: Path, tamper: Tamper
) -> None:
    """What only a full `maos wal verify` finds (docs/wal.md): an edit that leaves every
    stored hash from the last checkpoint on intact."""
    data = tmp_path / "data"
    build(data)
    tamper(data)
    exit_code, out = verify(data)
    assert (exit_code, out.split(":")[0]) == (1, "error WAL.CHAIN_BROKEN"), out
    assert "seq=5" in out


def test_an_unreadable_file_is_not_a_tamper_alarm_issue_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, notes=3)
    not_sqlite(data)
    exit_code, out = verify(data)
    assert exit_code == 2 and out.startswith("error WAL.UNREADABLE: "), out
    assert "BAD record" not in out
    assert boot_refusal(data) == "WAL.UNREADABLE"


def test_an_older_anchor_restored_is_refused_issue_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, notes=5)
    old = (data / ANCHOR_FILE).read_bytes()
    build(data, notes=5)  # another boot and five more commits
    (data / ANCHOR_FILE).write_bytes(old)
    exit_code, out = verify(data)
    assert exit_code == 1 and out.startswith("error WAL.UNANCHORED: "), out
    assert boot_refusal(data) == "WAL.UNANCHORED"


def test_an_anchor_from_another_data_dir_is_refused_issue_9(tmp_path: Path) -> None:
    mine, other, twin = tmp_path / "mine", tmp_path / "other", tmp_path / "twin"
    build(mine, notes=5)
    build(other, notes=5)
    shutil.copytree(mine, twin)
    (twin / ANCHOR_FILE).unlink()
    shutil.rmtree(twin / "keys")
    shutil.copytree(other / "keys", twin / "keys")
    shutil.copy(other / ANCHOR_FILE, twin / ANCHOR_FILE)
    shutil.copy(other / ANCHOR_FILE, mine / ANCHOR_FILE)
    # Another data dir's key: the anchor does not authenticate here.
    exit_code, out = verify(mine)
    assert exit_code == 1 and out.startswith("error WAL.ANCHOR_INVALID: "), out
    assert boot_refusal(mine) == "WAL.ANCHOR_INVALID"
    # The same key (keys copied along): the anchor names another log.
    exit_code, out = verify(twin)
    assert exit_code == 1 and out.startswith("error WAL.ANCHOR_FOREIGN: "), out
    assert boot_refusal(twin) == "WAL.ANCHOR_FOREIGN"


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from maos.kernel.kernel import Kernel, KernelConfig

    async def main() -> None:
        kernel = await Kernel.boot(KernelConfig.load(Path(sys.argv[1])), follow=False)
        for i in range(20):
            await kernel.wal.append("test.acked", {"i": i})
        print("ACKED", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def test_wiping_the_wal_file_after_a_sigkill_is_refused_issue_9(tmp_path: Path) -> None:
    """A writer acknowledged 20 records and was SIGKILLed: they live in -wal only. Losing
    that file loses them; today the log says 'ok' with the older records."""
    data = tmp_path / "data"
    build(data, notes=3)
    before = head(data)
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ACKED"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert (data / "wal.sqlite3-wal").stat().st_size > 0
    (data / "wal.sqlite3-wal").unlink()
    (data / "wal.sqlite3-shm").unlink(missing_ok=True)
    assert head(data) == before
    exit_code, out = verify(data)
    assert exit_code == 1 and out.startswith("error WAL.TRUNCATED: "), out
    assert boot_refusal(data) == "WAL.TRUNCATED"


def test_the_witness_finds_a_truncation_the_local_anchor_was_rolled_back_over_issue_9(
    tmp_path: Path,
) -> None:
    """An attacker with the data dir (and its key) deletes the last records and puts back
    the anchor they saved when the log ended there: locally consistent, but the
    witness on another path already vouched for more."""
    data, witness = tmp_path / "data", tmp_path / "elsewhere" / "anchor.log"
    witness.parent.mkdir()
    build(data, notes=5, witness=witness)
    saved, upto = (data / ANCHOR_FILE).read_bytes(), head(data)
    build(data, notes=5, witness=witness)
    assert verify(data)[0] == 0
    sql(data, f"DELETE FROM records WHERE seq > {upto}")
    (data / ANCHOR_FILE).write_bytes(saved)
    exit_code, out = verify(data)
    assert exit_code == 1 and out.startswith("error WAL.TRUNCATED: the witness"), out
    assert boot_refusal(data) == "WAL.TRUNCATED"
    witness.unlink()
    exit_code, out = verify(data)
    assert exit_code == 1 and out.startswith("error WAL.NO_WITNESS: "), out
    assert boot_refusal(data) == "WAL.NO_WITNESS"
    KernelConfig(data_dir=data, wal_checkpoint_every=EVERY).save()
    assert verify(data)[0] == 0  # the local anchor alone cannot tell (docs/wal.md)


def test_two_unanchored_group_commits_are_accepted_three_are_not_issue_9(
    tmp_path: Path,
) -> None:
    """A writer that stopped between COMMIT and its anchor write leaves at most two group
    commits beyond the anchor (one being anchored, one committed meanwhile), never
    acknowledged: accepted. Three commits are not a crash."""
    data = tmp_path / "data"
    config = build(data, notes=3)

    def unanchored_commits(n: int) -> None:
        with Wal(config.wal_path) as unanchored:
            for i in range(n):
                time.sleep(0.002)  # a commit's records share one ts; make these distinct
                unanchored.append_sync("test.unacked", {"n": i})

    unanchored_commits(2)
    exit_code, out = verify(data)
    assert exit_code == 0 and "never acknowledged" in out, out
    assert boot_refusal(data) is None  # and the boot anchored them
    assert "never acknowledged" not in verify(data)[1]
    unanchored_commits(3)
    exit_code, out = verify(data)
    assert exit_code == 1 and out.startswith("error WAL.UNANCHORED: "), out
    assert boot_refusal(data) == "WAL.UNANCHORED"


def test_boot_rehashes_only_from_the_last_checkpoint_issue_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data)

    async def boot_record() -> dict[str, object]:
        async with await Kernel.boot(KernelConfig.load(data), follow=False) as kernel:
            [*_, rec] = kernel.wal.read(kinds=["kernel.boot"])
            return dict(rec.body["wal"])

    checked = asyncio.run(boot_record())
    assert checked["head"] == checked["anchored"]
    assert 0 < int(checked["rehashed_from"]) <= int(checked["head"])  # type: ignore[call-overload]
    assert int(checked["head"]) - int(checked["rehashed_from"]) <= EVERY + 1  # type: ignore[call-overload]
