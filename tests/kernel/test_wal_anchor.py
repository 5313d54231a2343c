"""Issue 9: how the anchor is kept, adopted and moved on the record.

Real kernels on real data dirs, the real CLI, a real SMTP server on loopback, real
writer processes racing on one log.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel import walcheck
from maos.kernel.anchor import ANCHOR_FILE, HeadAnchor
from maos.kernel.errors import WalError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.kernel.wal import Wal
from maos.testing import Mailbox, intent_frame, task_with_untrusted_mail, with_kernel


def maos(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def boot_refusal(config: KernelConfig) -> WalError | None:
    async def go() -> WalError | None:
        try:
            kernel = await Kernel.boot(KernelConfig.load(config.data_dir), follow=False)
        except WalError as exc:
            return exc
        await kernel.close()
        return None

    return asyncio.run(go())


def records(config: KernelConfig, *kinds: str) -> list[tuple[int, str, dict[str, object]]]:
    with Wal(config.wal_path) as wal:
        return [(r.seq, r.kind, dict(r.body)) for r in wal.read(kinds=kinds or None)]


def anchored_seq(config: KernelConfig) -> int:
    state = HeadAnchor(config.data_dir).read()
    assert state is not None
    return state.seq


def test_a_new_data_dir_is_anchored_at_its_head_from_the_first_boot_issue_9(
    config: KernelConfig,
) -> None:
    with_kernel(config, lambda k: k.register_agent("a1", ring=3))
    assert (config.data_dir / ANCHOR_FILE).stat().st_size == 120
    assert anchored_seq(config) == records(config)[-1][0]
    code, out = maos("wal", "verify", "-d", str(config.data_dir))
    assert code == 0 and f"anchored at seq {anchored_seq(config)}" in out, out


def test_a_log_without_anchor_is_refused_until_adopted_and_adoption_is_logged_issue_9(
    config: KernelConfig,
) -> None:
    with_kernel(config, lambda k: k.register_agent("a1", ring=3))
    (config.data_dir / ANCHOR_FILE).unlink()  # as a data dir written before anchors existed
    refused = boot_refusal(config)
    assert refused is not None and refused.code == "WAL.NO_ANCHOR"
    assert "maos wal adopt" in refused.message
    code, out = maos("wal", "verify", "-d", str(config.data_dir))
    assert code == 1 and out.startswith("error WAL.NO_ANCHOR: ") and "maos wal adopt" in out
    code, out = maos("wal", "adopt", "-d", str(config.data_dir))
    assert code == 0 and out.startswith("adopted (WAL.NO_ANCHOR)"), out
    [(seq, _, body)] = records(config, "wal.adopted")
    assert (body["principal"], body["seq"], body["anchored"]) == ("commander", seq - 1, None)
    assert anchored_seq(config) == seq
    assert boot_refusal(config) is None
    code, out = maos("wal", "adopt", "-d", str(config.data_dir))
    assert code == 2 and "WAL.NOTHING_TO_DO" in out, out


def test_adopt_refuses_a_truncated_log_and_while_a_kernel_serves_issue_9(
    config: KernelConfig,
) -> None:
    with_kernel(config, lambda k: k.register_agent("a1", ring=3))
    db = sqlite3.connect(config.wal_path)
    db.execute("DELETE FROM records WHERE seq = (SELECT max(seq) FROM records)")
    db.commit()
    db.close()
    before = config.wal_path.read_bytes(), (config.data_dir / ANCHOR_FILE).read_bytes()
    code, out = maos("wal", "adopt", "-d", str(config.data_dir))
    assert code == 2 and "error WAL.TRUNCATED" in out and "accept-loss" in out, out

    async def serving(_: Kernel) -> tuple[int, str]:
        return maos("wal", "adopt", "-d", str(config2.data_dir))

    config2 = KernelConfig(data_dir=config.data_dir / "other")
    with_kernel(config2, lambda k: k.register_agent("a1", ring=3))
    code, out = with_kernel(config2, serving)
    assert code == 2 and "STATE.KERNEL_RUNNING" in out, out
    after = config.wal_path.read_bytes(), (config.data_dir / ANCHOR_FILE).read_bytes()
    assert after == before


def test_records_lost_back_before_an_approved_mails_prepare_never_send_it_again_issue_9(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """The issue's case: the log loses everything from an approved mail's
    ``intent.prepared`` on. Today a reboot replays the approval and the mail goes out a
    second time with the same Message-ID. Now the boot refuses, the Commander accepts
    the loss on the record, and the mail is never sent again."""
    config.save()

    async def approve_stranger_mail(k: Kernel) -> str:
        token = await task_with_untrusted_mail(k, [Grant("fs.*", "*"), Grant("email.send", "*")])
        await k.submit(intent_frame(token, "fs.read", "inbox/mail.txt", "r1"), agent_id="a1")
        mail = intent_frame(token, "email.send", "stranger@evil.example", "m1", subject="s")
        parked = await k.submit(mail, agent_id="a1")
        assert parked.approval_id is not None
        done = await k.approve(parked.approval_id, k.packet(parked.approval_id).digest)
        assert done.status is OutcomeStatus.COMMITTED
        return parked.approval_id

    approval_id = with_kernel(config, approve_stranger_mail)
    [sent] = mailbox.message_ids()
    [prepared] = [
        seq for seq, _, body in records(config, "intent.prepared") if body["op"] == "email.send"
    ]
    db = sqlite3.connect(config.wal_path)
    db.execute("DELETE FROM records WHERE seq >= ?", (prepared,))
    db.commit()
    db.close()

    refused = boot_refusal(config)
    assert refused is not None and refused.code == "WAL.TRUNCATED"
    assert "accept-loss" in refused.message
    code, out = maos("wal", "accept-loss", "-d", str(config.data_dir))
    assert code == 2, out  # --reason is required
    code, out = maos(
        "wal", "accept-loss", "--reason", "disk restored from backup", "-d", str(config.data_dir)
    )
    assert code == 0 and "1 approval(s) closed as in doubt" in out, out
    [(_, _, body)] = records(config, "wal.loss_accepted")
    assert (body["seq"], body["reason"], body["found"]) == (
        prepared - 1,
        "disk restored from backup",
        "WAL.TRUNCATED",
    )
    assert body["approvals_closed"] == [approval_id]
    anchored = body["anchored"]
    assert isinstance(anchored, dict) and anchored["seq"] > prepared

    async def reboot(k: Kernel) -> dict[str, object]:
        item = k.approvals.get(approval_id)
        assert item.outcome is not None
        return dict(item.outcome)

    outcome = with_kernel(config, reboot)
    assert (outcome["status"], outcome["code"]) == ("in_doubt", "WAL.RECORDS_LOST")
    with_kernel(config, lambda k: asyncio.sleep(0))
    assert mailbox.message_ids() == [sent]
    assert [b["op"] for _, _, b in records(config, "intent.prepared")] == ["fs.read"]
    assert maos("wal", "verify", "-d", str(config.data_dir))[0] == 0


def test_the_clis_own_writes_advance_the_anchor_issue_9(config: KernelConfig) -> None:
    with_kernel(config, lambda k: k.register_agent("a1", ring=3))
    code, out = maos("agent", "pause", "a1", "-d", str(config.data_dir))
    assert code == 0, out
    assert anchored_seq(config) == records(config)[-1][0]


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from maos.kernel.kernel import KernelConfig
    from maos.kernel.walconfig import anchored_wal

    with anchored_wal(KernelConfig(data_dir=Path(sys.argv[1]), wal_checkpoint_every=50)) as wal:
        for i in range(150):
            wal.append_sync("test.note", {"writer": sys.argv[2], "i": i})
    """
)


def test_writers_in_several_processes_keep_one_anchor_at_the_head_issue_9(
    config: KernelConfig,
) -> None:
    """The anchor never goes backwards and never skips a record: three processes append
    to one log at once, each advancing the anchor after its own commits."""
    with_kernel(config, lambda k: k.register_agent("a1", ring=3))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(config.data_dir), str(n)], env=env)
        for n in range(3)
    ]
    # Checked while they write, as `maos wal verify` or a booting kernel would: never a
    # false alarm from a commit landing mid-check.
    anchor = HeadAnchor(config.data_dir)
    try:
        while any(p.poll() is None for p in procs):
            for full in (False, True):
                report = walcheck.check(config.wal_path, anchor, full=full)
                assert report.ok, report
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    finally:  # a failed check leaves no writer running into the next test
        for p in procs:
            p.kill()
            p.wait()
    assert anchored_seq(config) == records(config)[-1][0]
    assert len(records(config, "test.note")) == 450
    assert records(config, "wal.checkpoint")
    code, out = maos("wal", "verify", "-d", str(config.data_dir))
    assert code == 0, out
    assert boot_refusal(config) is None


def test_an_append_returns_only_once_the_anchor_vouches_for_it_issue_9(
    config: KernelConfig,
) -> None:
    """The promise the anchor keeps: no caller hears of a record the anchor does not yet
    vouch for, so losing an acknowledged record is always a detectable truncation."""
    config.data_dir.mkdir(parents=True)
    anchor = HeadAnchor(config.data_dir)
    with Wal(config.wal_path, anchor=anchor) as wal:
        for i in range(50):
            rec = wal.append_sync("test.note", {"i": i})
            state = HeadAnchor(config.data_dir).read()
            assert state is not None and state.seq >= rec.seq, (i, state, rec.seq)


def test_an_anchor_replaced_under_a_running_writer_fails_its_next_commit_issue_9(
    config: KernelConfig,
) -> None:
    """Deleting the anchor, or putting an older one back, while a writer runs is not
    papered over by the writer's next advance: that commit's callers hear of it."""
    config.data_dir.mkdir(parents=True)
    path = config.data_dir / ANCHOR_FILE
    with Wal(config.wal_path, anchor=HeadAnchor(config.data_dir)) as wal:
        wal.append_sync("test.note", {"i": 0})
        older = path.read_bytes()
        wal.append_sync("test.note", {"i": 1})
        path.write_bytes(older)
        with pytest.raises(WalError, match="went back") as put_back:
            wal.append_sync("test.note", {"i": 2})
        assert put_back.value.code == "WAL.WRITE_FAILED"
        path.unlink()
        with pytest.raises(WalError, match="disappeared") as deleted:
            wal.append_sync("test.note", {"i": 3})
        assert deleted.value.code == "WAL.WRITE_FAILED"


class _CommitBeforeRead(HeadAnchor):
    """The anchor as a checker reads it, with a kernel's commits landing just before the
    read and the kernel still running: the worst moment for a checker that opened the
    log while nobody had it open."""

    def __init__(self, config: KernelConfig, commits: int) -> None:
        super().__init__(config.data_dir)
        self.config, self.commits = config, commits
        self.writer: Wal | None = None

    def read(self):  # type: ignore[no-untyped-def]
        if self.writer is None:
            self.writer = Wal(self.config.wal_path, anchor=HeadAnchor(self.config.data_dir))
            for i in range(self.commits):
                self.writer.append_sync("test.note", {"i": i})
        return super().read()


@pytest.mark.parametrize("full", [False, True])
def test_a_log_that_comes_alive_while_it_is_checked_is_no_false_truncation_issue_9(
    config: KernelConfig, full: bool
) -> None:
    """A checker that found the log closed reads its file as it is (immutable, so it
    creates nothing); a kernel that starts writing meanwhile puts its commits in a ``-wal``
    file such a read never sees, while the anchor read next vouches for them. That is a
    moving log, not a truncated one: the check reads it again, live."""
    with_kernel(config, lambda k: k.register_agent("a1", ring=3))
    live = [config.wal_path.with_name(config.wal_path.name + s) for s in ("-wal", "-shm")]
    assert not any(path.exists() for path in live)
    anchor = _CommitBeforeRead(config, 8)
    try:
        report = walcheck.check(config.wal_path, anchor, full=full)
        assert report.ok, report
        assert report.head == anchored_seq(config) == records(config)[-1][0]
    finally:
        assert anchor.writer is not None
        anchor.writer.close()
