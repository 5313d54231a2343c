"""What the log's anchor costs (issue 9), each figure against its baseline in the same run.

- *Advancing the anchor*: the same appends through a `Wal` with an anchor (one more
  fdatasync per group commit, after COMMIT) and without, interleaved.
- *Boot on a big log*: the boot's check (anchor against head, record count, re-hash from
  the last checkpoint) against a plain scan re-hashing the same log, on 1,000,000
  records (20,000 with ``--quick``), checkpointed every `CHECKPOINT_EVERY` records.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from maos.kernel.anchor import AnchorState, HeadAnchor
from maos.kernel.chain import GENESIS, digest
from maos.kernel.wal import CHECKPOINT_EVERY, SCHEMA, Wal
from maos.kernel.walcheck import CHECKPOINT, check

__all__ = ["measure"]

_BODY = b'{"agent_id":"bench","op":"fs.write","target":"reports/q3.md"}'


async def _appends(wal: Wal, submitters: int, each: int) -> float:
    body = {"op": "fs.write", "target": "reports/q3.md", "agent_id": "bench"}

    async def one() -> None:
        for _ in range(each):
            await wal.append("bench.append", body)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(submitters)))
    return submitters * each / (time.perf_counter() - start)


def _advance_cost(directory: Path, *, rounds: int, scale: int) -> dict[str, float]:
    """Median appends/s with and without an anchor, the two interleaved round by round."""
    rates: dict[str, list[float]] = {k: [] for k in ("plain1", "anch1", "plain100", "anch100")}
    for r in range(rounds):
        for name, anchored in (("plain", False), ("anch", True)):
            data = directory / f"advance-{name}-{r}"
            data.mkdir()
            wal = Wal(data / "wal.sqlite3", anchor=HeadAnchor(data) if anchored else None)
            try:
                rates[f"{name}1"].append(asyncio.run(_appends(wal, 1, 50 * scale)))
                rates[f"{name}100"].append(asyncio.run(_appends(wal, 100, 5 * scale)))
            finally:
                wal.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "anchored_appends_per_s_1_submitter": round(med["anch1"], 1),
        "anchored_appends_per_s_100_submitters": round(med["anch100"], 1),
        "ratio_anchored_vs_plain_1_submitter": round(med["anch1"] / med["plain1"], 3),
        "ratio_anchored_vs_plain_100_submitters": round(med["anch100"] / med["plain100"], 3),
    }


def _build_log(data: Path, records: int) -> HeadAnchor:
    """A chained, checkpointed and anchored log of ``records`` rows, written directly (the
    bench measures reading it, not writing it): 500 records per commit, like the writer's."""
    anchor = HeadAnchor(data)
    conn = sqlite3.connect(data / "wal.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    prev, log_id, seq, rows = GENESIS, b"", 0, []
    kind = b"bench.append"
    try:
        while seq < records:
            seq += 1
            ts = float(seq // 500)
            if seq % (CHECKPOINT_EVERY + 1) == 0:
                state = AnchorState(seq - 1, prev, log_id)
                body = orjson.dumps(
                    {
                        "seq": seq - 1,
                        "hash": prev.hex(),
                        "log": log_id.hex(),
                        "mac": anchor.seal(state),
                    },
                    option=orjson.OPT_SORT_KEYS,
                )
                row_kind = CHECKPOINT.encode()
            else:
                body, row_kind = _BODY, kind
            h = digest(prev, seq, ts, row_kind, None, None, body)
            log_id = log_id or h
            rows.append((seq, ts, row_kind.decode(), None, None, body, prev, h))
            prev = h
            if len(rows) == 5000 or seq == records:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")
                rows = []
    finally:
        conn.close()
    anchor.reset(AnchorState(seq, prev, log_id))
    return anchor


def _boot_check(directory: Path, records: int) -> dict[str, Any]:
    data = directory / "boot"
    data.mkdir()
    anchor = _build_log(data, records)
    path = data / "wal.sqlite3"
    check(path, None, full=True)  # warm the page cache for both
    start = time.perf_counter()
    boot = check(path, anchor, full=False)
    boot_s = time.perf_counter() - start
    start = time.perf_counter()
    scan = check(path, None, full=True)
    scan_s = time.perf_counter() - start
    assert boot.ok and scan.ok, (boot, scan)
    return {
        "boot_check_records": records,
        "boot_check_rehashed": records - boot.checked_from,
        "boot_check_s": round(boot_s, 4),
        "plain_scan_s": round(scan_s, 3),
        "ratio_boot_check_vs_plain_scan": round(boot_s / scan_s, 4),
    }


def measure(directory: Path, *, quick: bool) -> dict[str, Any]:
    figures = _advance_cost(directory, rounds=3 if quick else 5, scale=1 if quick else 4)
    figures.update(_boot_check(directory, 20_000 if quick else 1_000_000))
    return figures
