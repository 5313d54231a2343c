"""The write-ahead log: verify its chain, show its records."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    DataDir,
    log_of,
    wal_app,
)


@wal_app.command("verify")
def wal_verify(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Re-check the hash chain; exit 1 naming the first bad record."""
    report = log_of(data_dir, write=False).verify()
    if report.ok:
        typer.echo(f"ok: {report.records} records, hash chain intact")
        return
    typer.secho(f"BAD record seq={report.first_bad_seq}: {report.reason}", err=True, fg="red")
    raise typer.Exit(1)


@wal_app.command("show")
def wal_show(
    data_dir: DataDir = DEFAULT_DIR,
    since: Annotated[int, typer.Option(help="Only records after this sequence number.")] = 0,
    kind: Annotated[list[str] | None, typer.Option(help="Only these record kinds.")] = None,
) -> None:
    """Print log records, one JSON object per line."""
    for rec in log_of(data_dir, write=False).read(since_seq=since, kinds=kind or None):
        typer.echo(
            json.dumps({"seq": rec.seq, "ts": rec.ts, "kind": rec.kind, **rec.body}, default=str)
        )


# -- tokens -------------------------------------------------------------------------------
