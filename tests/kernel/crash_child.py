"""A kernel-shaped process for the crash test: boot, recover, then commit effects until killed.

Usage: crash_child.py DATA_DIR WORKSPACE SMTP_PORT START

Runs `WORKERS` effect loops at once, so a SIGKILL almost always lands with effects in
flight. Effect ``i`` (from START on) is a mail when ``i % 3 == 0`` and otherwise a file
write; both are derived from ``i`` alone (see `effect`), so the parent can check them.
Prints ``RECOVERED {counts}`` and ``READY`` after recovery, then ``ACK <key>`` only once
`CommitLayer.run` has answered committed, flushed at once: an ACK is a promise the
parent holds the log to.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from maos.effects.base import Adapter
from maos.effects.email import SmtpAdapter
from maos.effects.fs import FsAdapter
from maos.kernel.anchor import HeadAnchor
from maos.kernel.commit import CommitLayer
from maos.kernel.types import Intent, OutcomeStatus
from maos.kernel.wal import Wal

WORKERS = 4
SENDER = "kernel@maos.example"
RECIPIENT = "bob@example.com"


def file_path(i: int) -> str:
    return f"out/{i // 100}/{i}.txt"


def file_content(i: int) -> str:
    return f"effect {i}\n" + "x" * (i % 97)


def effect(i: int) -> Intent:
    """The i-th effect; the parent recomputes the same keys, paths and contents."""
    if i % 3 == 0:
        op, target, key = "email.send", RECIPIENT, f"mail-{i}"
        params = {"subject": f"effect {i}", "body": f"message {i}\n"}
    else:
        op, target, key = "fs.write", file_path(i), f"file-{i}"
        params = {"content": file_content(i)}
    return Intent(f"intent-{i}", "crash-agent", "crash-task", op, target, key, params=params)


def adapters(workspace: Path, smtp_port: int) -> dict[str, Adapter]:
    return {
        "fs": FsAdapter(workspace),
        "email": SmtpAdapter("127.0.0.1", smtp_port, SENDER, timeout=10),
    }


async def main(data_dir: Path, workspace: Path, smtp_port: int, start: int) -> None:
    wal = Wal(data_dir / "wal.sqlite3", anchor=HeadAnchor(data_dir))  # as the kernel's is
    commit = CommitLayer(wal, adapters(workspace, smtp_port))
    report = await commit.recover()
    print("RECOVERED", json.dumps(report.counts), flush=True)
    print("READY", flush=True)

    async def worker(i: int) -> None:
        while True:
            intent = effect(i)
            outcome = await commit.run(intent)
            if outcome.status is OutcomeStatus.COMMITTED:
                # One write(2) of a short line: a pipe delivers it whole or not at all.
                os.write(1, f"ACK {intent.idempotency_key}\n".encode())
            i += WORKERS

    await asyncio.gather(*(worker(start + w) for w in range(WORKERS)))


if __name__ == "__main__":
    data, ws, port, first = sys.argv[1:5]
    asyncio.run(main(Path(data), Path(ws), int(port), int(first)))
