"""The write-ahead log: verify its chain, show its records."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    config_of,
    fail,
    log_of,
    wal_app,
)
from maos.kernel import reanchor, walcheck
from maos.kernel.anchor import HeadAnchor
from maos.kernel.errors import MaosError
from maos.kernel.kernel import KernelConfig
from maos.kernel.logfilter import RecordFilter
from maos.kernel.registry import COMMANDER
from maos.kernel.view import KernelLock
from maos.kernel.wal import Wal, WalRecord


@wal_app.command("verify")
def wal_verify(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Re-hash the whole log and check it against its anchor (and witness).

    Exit 0 when every record chains and the anchor vouches for the head; exit 1 with
    'error WAL.<CODE>: ...' naming what is wrong (WAL.CHAIN_BROKEN with the first bad
    seq, WAL.TRUNCATED, WAL.ANCHOR_MISMATCH, WAL.NO_ANCHOR, WAL.UNANCHORED, ...); exit 2
    when there is no log or it cannot be read as one (WAL.UNREADABLE). Read-only.
    """
    config = _config(data_dir)
    if not config.wal_path.exists():
        typer.secho(
            f"error STATE.NO_DATA_DIR: no MAOS log at {config.wal_path}", err=True, fg="red"
        )
        raise typer.Exit(2)
    anchor = HeadAnchor(config.data_dir, witness=config.wal_witness)
    report = walcheck.check(config.wal_path, anchor, full=True)
    if report.ok:
        typer.echo(f"ok: {report.reason}")
        return
    where = (
        "" if report.first_bad_seq is None else f" (first bad record: seq={report.first_bad_seq})"
    )
    typer.secho(f"error {report.code}: {report.reason}{where}", err=True, fg="red")
    raise typer.Exit(2 if report.code == "WAL.UNREADABLE" else 1)


@wal_app.command("adopt")
def wal_adopt(data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER) -> None:
    """Anchor a log that its anchor does not vouch for, after verifying the whole chain.

    For a data dir written before the log had an anchor (WAL.NO_ANCHOR), records beyond
    the anchor that one crash cannot explain (WAL.UNANCHORED), an anchor that does not
    authenticate or names another log, or a witness not started yet. Logs a 'wal.adopted'
    record; refuses while a kernel serves the data dir, and when records are missing.
    """
    out = _reanchor(data_dir, lambda config: reanchor.adopt(config, principal=principal))
    typer.echo(
        f"adopted ({out.found.code}): {out.record.body['seq']} records verified, "
        f"anchored at seq {out.record.seq}"
    )


@wal_app.command("accept-loss")
def wal_accept_loss(
    reason: Annotated[str, typer.Option(help="Why the loss is accepted; it is logged.")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Accept that the log lost records its anchor vouched for, and re-anchor it.

    Only for WAL.TRUNCATED, WAL.ANCHOR_MISMATCH and WAL.CHECKPOINT_INVALID, and only when
    what is left still chains. Logs a 'wal.loss_accepted' record naming the anchored seq
    and hash and the head found. From then on nothing whose records may have been lost is
    run again: approvals not yet carried out are closed as in doubt, never re-executed.
    """
    out = _reanchor(
        data_dir, lambda config: reanchor.accept_loss(config, reason=reason, principal=principal)
    )
    closed = out.record.body["approvals_closed"]
    typer.echo(
        f"loss accepted ({out.found.code}): the log holds {out.record.body['seq']} records, "
        f"anchored at seq {out.record.seq}; {len(closed)} approval(s) closed as in doubt"
    )


def _reanchor(
    data_dir: Path, act: Callable[[KernelConfig], reanchor.Reanchored]
) -> reanchor.Reanchored:
    config = _config(data_dir)
    if not config.wal_path.exists():
        typer.secho(
            f"error STATE.NO_DATA_DIR: no MAOS log at {config.wal_path}", err=True, fg="red"
        )
        raise typer.Exit(2)
    lock = KernelLock(data_dir)
    try:
        lock.acquire()
        try:
            return act(config)
        finally:
            lock.release()
    except MaosError as exc:
        fail(exc)
        raise  # fail() always exits


def _config(data_dir: Path) -> KernelConfig:
    """config.json validated whole, as every command does (`config_of`)."""
    return config_of(data_dir)


FOLLOW_POLL_S = 0.2
"""How often ``--follow`` looks for records another process (a serving kernel) appended."""


@wal_app.command("show")
def wal_show(
    data_dir: DataDir = DEFAULT_DIR,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only records after this seq number, within this age (90s, 10m, 2h, 1d) "
            "or since this ISO 8601 time (UTC unless it names a zone)."
        ),
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="Only these record kinds (intent.* for a prefix).")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only records about this agent.")] = None,
    task: Annotated[str | None, typer.Option(help="Only records about this task.")] = None,
    op: Annotated[
        list[str] | None, typer.Option(help="Only records of these ops (fs.* for a prefix).")
    ] = None,
    code: Annotated[
        list[str] | None,
        typer.Option(help="Only records with these decision codes (DSC.* for a prefix)."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing records as they are appended, until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Print log records, one JSON object per line, oldest first.

    Filters combine (a record must match all given); a record without the field a filter
    names does not match it. With --follow the log is watched as a serving kernel (or any
    process) appends to it; read-only either way. A filter value it cannot read is
    refused with error BAD_INPUT.FILTER before anything is printed.

    \b
    Examples:
        maos wal show -d D --follow --code 'DSC.*'
        maos wal show -d D --agent drafter --since 10m --kind intent.denied
    """
    flt = RecordFilter.parse(
        now=time.time(),
        agent=agent,
        task=task,
        ops=op or (),
        kinds=kind or (),
        codes=code or (),
        since=since,
    )
    wal = log_of(data_dir, write=False)
    last = flt.after_seq
    try:
        while True:
            for rec in wal.read(since_seq=last, kinds=flt.sql_kinds()):
                last = rec.seq
                if flt.matches(rec):
                    typer.echo(_line(rec))
            if not follow:
                return
            time.sleep(FOLLOW_POLL_S)
            # A fresh connection each look: a log no process had open when it was last
            # opened is read as an immutable file, blind to what a writer adds since.
            wal.close()
            wal = Wal(wal.path, readonly=True)
    except KeyboardInterrupt:
        return  # Ctrl-C ends a follow: exit 0, nothing half-printed
    finally:
        wal.close()


def _line(rec: WalRecord) -> str:
    return json.dumps({"seq": rec.seq, "ts": rec.ts, "kind": rec.kind, **rec.body}, default=str)


# -- tokens -------------------------------------------------------------------------------
