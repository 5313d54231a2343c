"""Durable commit throughput against the physical limits measured in the same run.

Two baselines frame the kernel's log: the raw fsync rate of the data directory (the
most serial durable commits the disk allows) and raw SQLite inserting pre-hashed rows into the
log's own schema in batches of 100 with ``synchronous=FULL`` (what group commit can at
best reach).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from maos.kernel.wal import SCHEMA, Wal


def raw_fsync_per_s(directory: Path, n: int) -> float:
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 64)
            os.fsync(fd)
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def sqlite_batch_rows_per_s(directory: Path, batches: int, batch: int = 100) -> float:
    """Pre-hashed rows into the log's own schema, 100 per fsynced commit: no kernel at all."""
    path = directory / "sqlite-probe.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        prev = bytes(32)
        body = b'{"op":"fs.write","target":"reports/q3.md"}'
        seq = 0
        start = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            rows = []
            for _ in range(batch):
                seq += 1
                digest = hashlib.sha256(prev + body).digest()
                rows.append((seq, 0.0, "bench.append", None, None, body, prev, digest))
                prev = digest
            conn.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", rows)
            conn.execute("COMMIT")
        return batches * batch / (time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _wal_rate(wal: Wal, submitters: int, per_submitter: int) -> float:
    body = {"op": "fs.write", "target": "reports/q3.md", "agent_id": "bench"}

    async def one() -> None:
        for _ in range(per_submitter):
            await wal.append("bench.append", body)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(submitters)))
    return submitters * per_submitter / (time.perf_counter() - start)


def measure(directory: Path, *, quick: bool) -> dict[str, Any]:
    scale = 1 if quick else 4
    fsync = raw_fsync_per_s(directory, 100 * scale)
    sqlite_limit = sqlite_batch_rows_per_s(directory, 10 * scale)
    wal = Wal(directory / "bench-wal.sqlite3")
    try:
        one = asyncio.run(_wal_rate(wal, 1, 100 * scale))
        hundred = asyncio.run(_wal_rate(wal, 100, 10 * scale))
        commits = wal.commit_count
        chain_ok = wal.verify().ok
    finally:
        wal.close()
    return {
        "raw_fsync_per_s": round(fsync, 1),
        "sqlite_batch100_rows_per_s": round(sqlite_limit, 1),
        "wal_appends_per_s_1_submitter": round(one, 1),
        "wal_appends_per_s_100_submitters": round(hundred, 1),
        "wal_sqlite_commits": commits,
        "wal_chain_ok_after_bench": chain_ok,
        "ratio_1_submitter_vs_raw_fsync": round(one / fsync, 3),
        "ratio_100_submitters_vs_group_commit_limit": round(hundred / sqlite_limit, 3),
        "target_ratio_100_submitters": 0.5,
    }
