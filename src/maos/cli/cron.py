"""The Cron Scheduler's jobs, as ``config.json`` declares them and the log says they ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from maos.cli._common import DEFAULT_DIR, DataDir, JsonOut, app, echo_json, fail, view_of
from maos.kernel.config import read_config
from maos.kernel.errors import MaosError
from maos.kernel.types import iso_time
from maos.kernel.view import LogView
from maos.services.cron import cron_report

__all__ = ["status_section"]

cron_app = typer.Typer(
    help=(
        "Scheduled plans: the jobs of config.json's `cron` section, which `maos up` runs "
        "as ordinary plans when they fall due (docs/cron.md)."
    ),
    no_args_is_help=True,
)
app.add_typer(cron_app, name="cron")


def _report(view: LogView, data_dir: Path) -> dict[str, Any]:
    return cron_report(view.wal, read_config(data_dir).cron)


def status_section(view: LogView, data_dir: Path) -> tuple[str, dict[str, Any], list[str]]:
    """`maos status`'s cron line: how many jobs, and the next one due."""
    report = _report(view, data_dir)
    dues = [(j["next_due"], j["name"]) for j in report["jobs"] if j["next_due"] is not None]
    line = f"cron          {len(report['jobs'])} jobs"
    if dues:
        when, name = min(dues)
        line += f", next {name} at {iso_time(when)}  (maos cron list)"
    return "cron", report, [line]


@cron_app.command("list")
def cron_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Every job: its schedule, its missed-run policy, its last run and when it is next due
    (a job `maos up` has not started yet shows no time).

    \b
    Example: maos cron list
    """
    try:
        report = _report(view_of(data_dir, write=False), data_dir)
    except MaosError as exc:
        fail(exc)
    if as_json:
        echo_json(report)
        return
    if not report["jobs"]:
        typer.echo("no jobs: add them to the `cron` section of config.json (docs/cron.md)")
        return
    for job in report["jobs"]:
        due = "-" if job["next_due"] is None else iso_time(job["next_due"])
        typer.echo(
            f"{job['name']:<20} {job['schedule']:<16} missed={job['missed']:<9} next {due}"
            f"  last {job['last_task'] or '-'}  plan {job['plan']}"
        )
