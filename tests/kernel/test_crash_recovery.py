"""The Commit Layer survives SIGKILL at any moment: nothing ACKed is lost, nothing done twice.

A real kernel-shaped child (`crash_child.py`) commits file writes and mails against a
real workspace and a real SMTP relay owned by this process (so the relay outlives every
kill). The child is killed at a seeded-random moment, usually with effects in flight,
sometimes while it is still booting and recovering. After each kill the world and the
log are checked; every other round this process recovers in-process, otherwise the next
child's boot does. Timing decides which cases each round hits, so the assertions are
invariants that must hold whatever was interrupted, never durations.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from maos.effects.email import message_id
from maos.kernel import walcheck
from maos.kernel.anchor import HeadAnchor
from maos.kernel.commit import CommitLayer
from maos.kernel.wal import Wal, WalRecord
from maos.testing import EphemeralController

pytestmark = pytest.mark.slow

KILLS = 60
SEED = 58_2026
CHILD_PATH = Path(__file__).with_name("crash_child.py")
OUTCOMES = ("intent.committed", "intent.failed", "intent.in_doubt", "intent.resolved")


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_child", CHILD_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()
DOMAIN = child.SENDER.rpartition("@")[2]


class Inbox:
    """Every Message-ID the relay accepted, and how many SMTP sessions are still open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ids: list[str] = []
        self._sessions = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mid = str(message_from_bytes(envelope.original_content)["Message-ID"])
        with self._cond:
            self._ids.append(mid)
        return "250 OK"

    def received(self) -> list[str]:
        with self._cond:
            return list(self._ids)

    def session(self, delta: int) -> None:
        with self._cond:
            self._sessions += delta
            self._cond.notify_all()

    def settle(self) -> None:
        """Waits until every session is closed: a lost connection's handler is cancelled,
        so a killed child's half-sent mail cannot arrive after we looked."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._sessions == 0, timeout=60)


class CountingSMTP(SMTP):
    def connection_made(self, transport: Any) -> None:
        self.event_handler.session(+1)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.event_handler.session(-1)


@dataclass
class World:
    data: Path
    ws: Path
    port: int
    inbox: Inbox
    acked: set[str] = field(default_factory=set)
    stable: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """Every file seen with its final content, and its (inode, mtime): never rewritten."""
    tally: Counter[str] = field(default_factory=Counter)

    @property
    def wal_path(self) -> Path:
        return self.data / "wal.sqlite3"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    inbox = Inbox()
    controller = EphemeralController(inbox, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield World(tmp_path / "data", tmp_path / "ws", controller.port, inbox)
    finally:
        controller.stop()


def index(key: str) -> int:
    return int(key.rpartition("-")[2])


def run_and_kill(world: World, start: int, delay: float, from_spawn: bool) -> list[str]:
    """Starts a child, SIGKILLs it ``delay`` s after spawn or after READY; its stdout lines."""
    args = [str(world.data), str(world.ws), str(world.port), str(start)]
    err_path = world.data.parent / f"child-{start}.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD_PATH), *args], stdout=subprocess.PIPE, stderr=err, text=True
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump)
    reader.start()
    seen: list[str] = []
    try:
        while not from_spawn and "READY" not in seen:
            line = lines.get(timeout=60)
            assert line is not None, f"child died before READY: {err_path.read_text()}"
            seen.append(line)
        time.sleep(delay)
    finally:
        proc.kill()
        proc.wait()
        reader.join()
        assert proc.stdout is not None
        proc.stdout.close()
    while (line := lines.get()) is not None:
        seen.append(line)
    assert proc.returncode == -signal.SIGKILL, err_path.read_text()
    return seen


def check(world: World) -> tuple[dict[str, WalRecord], dict[str, WalRecord]]:
    """The invariants that hold at any moment no process is running; the log's view."""
    world.inbox.settle()
    report = Wal(world.wal_path, anchor=HeadAnchor(world.data)).verify()
    assert report.ok, report
    # What a boot checks: a kill between COMMIT and the anchor write leaves at most what
    # it accepts (issue 9); below, nothing acknowledged lies beyond the anchor.
    assert walcheck.check(world.wal_path, HeadAnchor(world.data), full=False).ok
    with Wal(world.wal_path) as wal:
        records = list(wal.read())
    prepared: dict[str, WalRecord] = {}
    outcome: dict[str, WalRecord] = {}
    for rec in records:
        assert rec.idem_key is not None, rec
        target = prepared if rec.kind == "intent.prepared" else outcome
        assert rec.kind == "intent.prepared" or rec.kind in OUTCOMES, rec
        assert rec.idem_key not in target, f"second {rec.kind} for {rec.idem_key}"
        target[rec.idem_key] = rec
        assert rec.idem_key in prepared, f"{rec.kind} for {rec.idem_key} before its prepare"

    received = world.inbox.received()
    assert len(received) == len(set(received)), "a Message-ID was delivered twice"
    mails = {message_id(k, DOMAIN): k for k in prepared if k.startswith("mail-")}
    assert set(received) <= set(mails), "a mail went out with no prepared record (R3)"

    for path in world.ws.rglob("*.txt"):
        key = f"file-{path.stem}"
        assert key in prepared, f"{path} was written with no prepared record (R3)"
        assert path.read_text() == child.file_content(index(key)), f"{path} is torn"
        st = path.stat()
        sig = (st.st_ino, st.st_mtime_ns)
        assert world.stable.setdefault(path, sig) == sig, f"{path} was written twice"

    for key, rec in outcome.items():
        assert rec.kind != "intent.failed", rec.body
        if key.startswith("mail-"):
            assert rec.kind != "intent.committed" or message_id(key, DOMAIN) in received
            assert "recovered" not in rec.body, "recovery must never resend mail"
        else:
            assert rec.kind == "intent.committed", rec
            path = world.ws / child.file_path(index(key))
            assert path.read_text() == child.file_content(index(key))
    anchored = HeadAnchor(world.data).read()
    for key in world.acked:
        assert outcome[key].kind == "intent.committed", f"ACKed {key} is {outcome[key].kind}"
        assert anchored is not None and outcome[key].seq <= anchored.seq, f"ACKed {key} unanchored"
    return prepared, outcome


def recover_here(world: World) -> None:
    """Recovery in this process, checked against the log and the relay before and after."""
    prepared, outcome = check(world)
    open_keys = {k for k in prepared if k not in outcome}
    before = world.inbox.received()
    with Wal(world.wal_path, anchor=HeadAnchor(world.data)) as wal:
        commit = CommitLayer(wal, child.adapters(world.ws, world.port))
        report = asyncio.run(commit.recover())
        again = asyncio.run(commit.recover())
        in_doubt = {d.idem_key for d in commit.in_doubt()}
    world.inbox.settle()
    assert world.inbox.received() == before, "recovery delivered mail"
    assert again.counts == dict.fromkeys(again.counts, 0)
    open_mail = {k for k in open_keys if k.startswith("mail-")}
    assert set(report.in_doubt) == open_mail and open_mail <= in_doubt
    assert set(report.confirmed) | set(report.redone) == open_keys - open_mail
    _, outcome = check(world)
    assert all(k in outcome for k in open_keys)
    world.tally.update(report.counts)


def test_sigkill_at_random_moments_loses_nothing_acked_and_repeats_nothing(world: World) -> None:
    rng = random.Random(SEED)
    for round_ in range(KILLS):
        # One round in five kills from spawn: those land in the child's boot and recovery.
        from_spawn = round_ % 5 == 4
        delay = rng.uniform(0.02, 0.3) + (0.25 if from_spawn else 0.0)
        lines = run_and_kill(world, round_ * 10_000, delay, from_spawn)
        world.acked |= {w[1] for w in map(str.split, lines) if len(w) == 2 and w[0] == "ACK"}
        world.tally["kills"] += 1
        world.tally["booted"] += "READY" in lines
        for line in lines:
            if line.startswith("RECOVERED "):
                world.tally.update(json.loads(line.partition(" ")[2]))
        if round_ % 2 == 0:
            recover_here(world)
        else:
            check(world)
    recover_here(world)
    prepared, outcome = check(world)
    assert set(prepared) == set(outcome)
    print(f"\ncrash test: {len(world.acked)} ACKed, {len(prepared)} prepared, {world.tally}")
    assert world.tally["kills"] >= 50
    assert world.acked, "no child ever committed anything: the test exercised nothing"
    assert world.tally["confirmed"] + world.tally["redone"] + world.tally["in_doubt"] > 0
