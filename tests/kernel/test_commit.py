"""The Commit Layer with the real adapters: a workspace on disk and an SMTP relay on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import orjson
import pytest

from maos.effects.email import SmtpAdapter, message_id
from maos.effects.fs import FsAdapter
from maos.effects.http import HttpAdapter
from maos.kernel.commit import CommitLayer
from maos.kernel.errors import StateError
from maos.kernel.types import Cost, Intent, Outcome, OutcomeStatus
from maos.kernel.wal import Wal
from maos.testing import EphemeralController, crash_after_prepare, loopback_http

SENDER = "kernel@maos.example"


class Inbox:
    """An SMTP handler that remembers every Message-ID it accepted, and what the log held."""

    def __init__(self, wal_path: Path) -> None:
        self.wal_path = wal_path
        self.message_ids: list[str] = []
        self.prepared_first: list[bool] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        """When set, each delivery waits for it: an effect held in flight."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.entered.set()
        if self.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        mid = str(message_from_bytes(envelope.original_content)["Message-ID"])
        with Wal(self.wal_path) as log:  # a second reader, as an auditor would be
            kinds = [r.kind for r in log.read() if r.body.get("op") == "email.send"]
        self.prepared_first.append(kinds[-1:] == ["intent.prepared"])
        self.message_ids.append(mid)
        return "250 OK"


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[Wal]:
    log = Wal(tmp_path / "data" / "wal.sqlite3")
    yield log
    log.close()


@pytest.fixture
def inbox(wal: Wal) -> Iterator[tuple[Inbox, int]]:
    handler = Inbox(wal.path)
    controller = EphemeralController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


def layer(wal: Wal, workspace: Path, smtp_port: int | None = None) -> CommitLayer:
    adapters: dict[str, Any] = {"fs": FsAdapter(workspace)}
    if smtp_port is not None:
        adapters["email"] = SmtpAdapter("127.0.0.1", smtp_port, SENDER, timeout=10)
    return CommitLayer(wal, adapters)


def intent(op: str, target: str, key: str, n: int = 1, **params: Any) -> Intent:
    return Intent(
        intent_id=f"intent-{key}-{n}",
        agent_id="agent-a",
        task_id="task-1",
        op=op,
        target=target,
        idempotency_key=key,
        params=params,
        cost=Cost(api_calls=1),
    )


def write(key: str, path: str, content: str, n: int = 1) -> Intent:
    return intent("fs.write", path, key, n, content=content)


def mail(key: str, n: int = 1) -> Intent:
    return intent("email.send", "bob@example.com", key, n, subject="Hi", body="Hello.\n")


def kinds(wal: Wal, key: str) -> list[str]:
    return [r.kind for r in wal.by_idem_key(key)]


# -- run -------------------------------------------------------------------------------------


def test_committed_effect_is_logged_after_its_prepared_record(wal: Wal, workspace: Path) -> None:
    out = asyncio.run(layer(wal, workspace).run(write("k1", "notes/a.txt", "alpha")))
    assert out.status is OutcomeStatus.COMMITTED
    assert (workspace / "notes" / "a.txt").read_text() == "alpha"
    prepared, committed = wal.by_idem_key("k1")
    assert (prepared.kind, committed.kind) == ("intent.prepared", "intent.committed")
    assert out.wal_seq == committed.seq and out.intent_id == "intent-k1-1"
    assert dict(prepared.body) == {
        "op": "fs.write",
        "target": "notes/a.txt",
        "params": {"content": "alpha"},
        "constraints": {},
        "agent_id": "agent-a",
        "task_id": "task-1",
        "intent_id": "intent-k1-1",
        "cost": {"tokens": 0, "api_calls": 1, "money_cents": 0},
        "idempotent": True,
    }
    assert committed.body["value"] == out.value and out.value["size"] == 5
    assert committed.body["cost"] == {"tokens": 0, "api_calls": 1, "money_cents": 0}
    orjson.dumps(out.to_dict())  # what crosses back is JSON


def test_mail_is_sent_only_after_the_prepared_record_is_durable(
    wal: Wal, workspace: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    out = asyncio.run(layer(wal, workspace, port).run(mail("m1")))
    assert out.status is OutcomeStatus.COMMITTED
    assert handler.message_ids == [message_id("m1", "maos.example")]
    assert handler.prepared_first == [True]


def test_adapter_failure_is_logged_with_its_code(wal: Wal, workspace: Path) -> None:
    out = asyncio.run(layer(wal, workspace).run(intent("fs.read", "missing.txt", "r1")))
    assert (out.status, out.code) == (OutcomeStatus.FAILED, "EFFECT.FS.NOT_FOUND")
    [_, failed] = wal.by_idem_key("r1")
    assert failed.kind == "intent.failed" and failed.body["code"] == "EFFECT.FS.NOT_FOUND"
    assert out.wal_seq == failed.seq and out.reason == failed.body["message"]


def test_unexpected_adapter_exception_is_an_internal_failure(
    wal: Wal, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad_limit = {"max_bytes": "plenty"}  # the adapter's int() raises ValueError
    with caplog.at_level(logging.ERROR, logger="maos.kernel.commit"):
        out = asyncio.run(layer(wal, workspace).run(write("k", "a", "x"), constraints=bad_limit))
    assert (out.status, out.code) == (OutcomeStatus.FAILED, "EFFECT.INTERNAL")
    assert kinds(wal, "k") == ["intent.prepared", "intent.failed"]
    assert "ValueError" in caplog.text


def test_unknown_family_fails_without_logging_or_running(wal: Wal, workspace: Path) -> None:
    out = asyncio.run(layer(wal, workspace).run(intent("email.send", "bob@example.com", "e")))
    assert (out.status, out.code) == (OutcomeStatus.FAILED, "EFFECT.NO_ADAPTER")
    assert wal.tail_seq() == 0


def test_same_key_twice_executes_once(wal: Wal, workspace: Path, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    commit = layer(wal, workspace, port)

    async def go() -> tuple[Outcome, Outcome]:
        return await commit.run(mail("m", 1)), await commit.run(mail("m", 2))

    first, second = asyncio.run(go())
    assert len(handler.message_ids) == 1
    assert first.status is second.status is OutcomeStatus.COMMITTED
    assert (first.value, first.wal_seq) == (second.value, second.wal_seq)
    assert second.intent_id == "intent-m-2"  # the answer is addressed to the retry
    assert kinds(wal, "m") == ["intent.prepared", "intent.committed"]


def test_a_recorded_failure_is_answered_not_retried(wal: Wal, workspace: Path) -> None:
    commit = layer(wal, workspace)
    asyncio.run(commit.run(intent("fs.read", "late.txt", "r")))
    (workspace / "late.txt").write_text("now it exists")
    out = asyncio.run(commit.run(intent("fs.read", "late.txt", "r", 2)))
    assert out.code == "EFFECT.FS.NOT_FOUND"
    assert kinds(wal, "r") == ["intent.prepared", "intent.failed"]


def test_concurrent_runs_of_one_key_execute_once(
    wal: Wal, workspace: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    commit = layer(wal, workspace, port)

    async def go() -> list[Outcome]:
        return await asyncio.gather(*(commit.run(mail("same", n)) for n in range(10)))

    outcomes = asyncio.run(go())
    assert len(handler.message_ids) == 1
    assert {(o.status, o.wal_seq) for o in outcomes} == {(OutcomeStatus.COMMITTED, 2)}
    assert kinds(wal, "same") == ["intent.prepared", "intent.committed"]


def test_a_cancelled_caller_does_not_leave_its_effect_unlogged(
    wal: Wal, workspace: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    handler.gate = threading.Event()
    commit = layer(wal, workspace, port)

    async def go() -> Outcome:
        first = asyncio.ensure_future(commit.run(mail("c")))
        assert await asyncio.to_thread(handler.entered.wait, 30)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert handler.gate is not None
        handler.gate.set()
        return await commit.run(mail("c", 2))  # queues behind the still-running first

    out = asyncio.run(go())
    assert out.status is OutcomeStatus.COMMITTED
    assert kinds(wal, "c") == ["intent.prepared", "intent.committed"]
    assert len(handler.message_ids) == 1


def test_a_key_reused_for_a_different_effect_is_refused(wal: Wal, workspace: Path) -> None:
    commit = layer(wal, workspace)
    asyncio.run(commit.run(write("k", "a.txt", "first")))
    out = asyncio.run(commit.run(write("k", "a.txt", "second", 2)))
    assert (out.status, out.code) == (OutcomeStatus.FAILED, "EFFECT.KEY_REUSED")
    assert (workspace / "a.txt").read_text() == "first"


def test_params_that_cannot_be_logged_are_refused_before_running(wal: Wal, workspace: Path) -> None:
    out = asyncio.run(layer(wal, workspace).run(intent("fs.write", "a", "k", content={1, 2})))
    assert (out.status, out.code) == (OutcomeStatus.FAILED, "EFFECT.BAD_PARAMS")
    assert wal.tail_seq() == 0 and not (workspace / "a").exists()


# -- recovery (the log as a crash leaves it: prepared, no outcome) ---------------------------


def test_recover_redoes_a_missing_write_and_confirms_a_present_one(
    wal: Wal, workspace: Path
) -> None:
    commit = layer(wal, workspace)
    asyncio.run(commit.run(write("done", "done.txt", "already")))
    crash_after_prepare(wal, write("lost", "lost.txt", "redo me"), True)
    wal.append_sync("noise", {})
    crash_after_prepare(wal, write("landed", "landed.txt", "was written"), True)
    (workspace / "landed.txt").write_text("was written")
    before = os.stat(workspace / "landed.txt")

    report = asyncio.run(commit.recover())
    assert (report.redone, report.confirmed, report.failed, report.in_doubt) == (
        ("lost",),
        ("landed",),
        (),
        (),
    )
    assert (workspace / "lost.txt").read_text() == "redo me"
    after = os.stat(workspace / "landed.txt")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert wal.by_idem_key("landed")[-1].body["recovered"] == "confirmed"
    assert wal.by_idem_key("lost")[-1].body["recovered"] == "redone"
    assert asyncio.run(commit.recover()).counts == dict.fromkeys(report.counts, 0)
    assert wal.verify().ok


def test_recover_records_a_redo_that_fails(wal: Wal, workspace: Path) -> None:
    commit = layer(wal, workspace)
    crash_after_prepare(wal, intent("fs.read", "gone.txt", "read"), True)
    report = asyncio.run(commit.recover())
    assert report.failed == ("read",)
    assert wal.by_idem_key("read")[-1].body["code"] == "EFFECT.FS.NOT_FOUND"


def test_mail_without_outcome_goes_in_doubt_and_waits_for_the_commander(
    wal: Wal, workspace: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    commit = layer(wal, workspace, port)
    crash_after_prepare(wal, mail("m"), False)

    report = asyncio.run(commit.recover())
    assert report.in_doubt == ("m",) and report.counts["in_doubt"] == 1
    assert handler.message_ids == []  # never redone
    [doubt] = commit.in_doubt()
    assert (doubt.idem_key, doubt.op, doubt.target) == ("m", "email.send", "bob@example.com")
    assert doubt.to_dict()["agent_id"] == "agent-a"
    retry = asyncio.run(commit.run(mail("m", 2)))
    assert (retry.status, retry.code) == (OutcomeStatus.IN_DOUBT, "EFFECT.IN_DOUBT")
    assert asyncio.run(commit.recover()).counts["in_doubt"] == 0  # already settled

    verdict = commit.resolve_in_doubt("m", happened=False, principal="commander")
    assert verdict.kind == "intent.resolved" and verdict.body["happened"] is False
    assert commit.in_doubt() == []
    after = asyncio.run(commit.run(mail("m", 3)))
    assert (after.status, after.code) == (OutcomeStatus.FAILED, "EFFECT.NOT_HAPPENED")
    with pytest.raises(StateError) as err:
        commit.resolve_in_doubt("m", happened=True, principal="commander")
    assert err.value.code == "STATE.NOT_IN_DOUBT"
    assert handler.message_ids == []


def test_a_confirmed_in_doubt_effect_answers_committed(wal: Wal, workspace: Path) -> None:
    commit = layer(wal, workspace)  # no mail adapter configured at boot
    crash_after_prepare(wal, mail("m"), False)
    asyncio.run(commit.recover())
    commit.resolve_in_doubt("m", happened=True, principal="commander")
    out = asyncio.run(commit.run(mail("m", 2)))
    assert out.status is OutcomeStatus.COMMITTED and "commander" in out.reason


def test_resolving_a_key_that_is_not_in_doubt_is_refused(wal: Wal, workspace: Path) -> None:
    commit = layer(wal, workspace)
    asyncio.run(commit.run(write("k", "a", "x")))
    for key in ("k", "never-seen"):
        with pytest.raises(StateError):
            commit.resolve_in_doubt(key, happened=True, principal="commander")


def test_recover_redoes_an_interrupted_get_but_puts_a_post_in_doubt(
    wal: Wal, workspace: Path
) -> None:
    with loopback_http({"/rates": b"1.08"}) as site:
        commit = CommitLayer(wal, {"http": HttpAdapter()})
        allowed = {"allowed_hosts": [f"127.0.0.1:{site.port}"]}
        for key, method in (("get", "GET"), ("post", "POST")):
            it = intent("http.request", site.url("/rates"), key, method=method)
            crash_after_prepare(wal, it, method == "GET", allowed)

        report = asyncio.run(commit.recover())
    assert (report.redone, report.in_doubt) == (("get",), ("post",))
    assert site.seen == [("GET", "/rates")]  # the POST was never resent
