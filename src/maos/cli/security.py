"""The Security Agent's calibration: `maos security calibrate --days N`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Annotated

import typer

from maos.cli._common import DEFAULT_DIR, DataDir, JsonOut, app, echo_json, view_of

security_app = typer.Typer(
    help="The Security Agent: calibrate the aggregate thresholds.", no_args_is_help=True
)
app.add_typer(security_app, name="security")


@security_app.command("calibrate")
def calibrate(
    days: Annotated[int, typer.Option(min=1, help="How many days of the log to read.")] = 30,
    data_dir: DataDir = DEFAULT_DIR,
    as_json: JsonOut = False,
) -> None:
    """Propose aggregate thresholds from the log: per agent class (ring), 3x the 95th
    percentile of each figure per agent and day (seed §49.11). Run it after a period with
    "monitor_only": true in config.json's security section, then copy the proposal
    there. Nothing is changed."""
    from maos.services.calibrate import CONFIG_KEYS, propose

    view = view_of(data_dir)
    rings = {a.agent_id: a.ring for a in view.registry.agents.values()}
    proposals = propose(view.wal.read(), view.registry.ops, rings, days=days, now=time.time())
    section = {
        CONFIG_KEYS[m]: max(p.limit for p in proposals if p.metric == m)
        for m in CONFIG_KEYS
        if any(p.metric == m for p in proposals)
    }
    if as_json:
        echo_json({"proposals": [asdict(p) for p in proposals], "security": section})
        return
    if not proposals:
        typer.echo(f"no agents in the log: nothing to calibrate from {days} day(s)")
        return
    for p in proposals:
        typer.echo(
            f"{p.agent_class:<6} {p.metric:<24} p95 {p.p95:>12g} over {p.samples} "
            f"agent-days -> limit {p.limit}"
        )
    typer.echo("config.json (one limit for every agent: the largest class's):")
    typer.echo(json.dumps({"security": section}, indent=2))
