"""The Security Agent's thresholds: `maos security calibrate --days N` proposes them,
`maos security threshold set|list` orders and shows them (tightening is one step,
loosening an Override: docs/hacf.md)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    app,
    echo_json,
    fail,
    view_of,
)
from maos.kernel import orders
from maos.kernel.aggregate import limit_text
from maos.kernel.errors import MaosError
from maos.kernel.registry import COMMANDER
from maos.kernel.view import LogView

security_app = typer.Typer(
    help="The Security Agent: calibrate, set and list the aggregate thresholds.",
    no_args_is_help=True,
)
threshold_app = typer.Typer(
    help="The aggregate thresholds in force: config.json's, replaced by your orders.",
    no_args_is_help=True,
)
app.add_typer(security_app, name="security")
security_app.add_typer(threshold_app, name="threshold")


def configured(view: LogView, data_dir: Path) -> LogView:
    """``view`` with its aggregate limits as the kernel has them: config.json's
    ``security`` section, replaced by the ``security.threshold`` orders in the log."""
    from maos.boot import aggregate_limits
    from maos.llm.config import load_settings

    security = load_settings(data_dir).security
    view.aggregate.configure(aggregate_limits(security), enforce=not security.monitor_only)
    return view


@threshold_app.command("set")
def threshold_set(
    metric: Annotated[str, typer.Argument(help="outbound_bytes, external_destinations, ...")],
    value: Annotated[str, typer.Argument(help="The new limit.")],
    agent_class: Annotated[
        str | None,
        typer.Option("--agent-class", help="ring2 or ring3 only (default: every agent)."),
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Set one aggregate threshold (checked before every effect, docs/security.md), for
    every agent or for one agent class (a class's limit wins over every agent's).

    A lower limit applies at once. A higher one weakens protection: once a second factor
    is enrolled it is refused (HACF.OVERRIDE_REQUIRED) and goes through an override -
    cooling-off, the diff, a TOTP code:

    \b
        maos security threshold set external_destinations 20
        maos security threshold set external_destinations 5 --agent-class ring3
        maos commander override request threshold external_destinations --to 80 --reason "campaign"
        maos commander override request threshold external_destinations@ring3 --to 9 --reason "x"
        maos commander override confirm ov-... --code 123456
    """
    try:
        view = configured(view_of(data_dir), data_dir)
        ledger = view.aggregate
        order = orders.threshold(
            view.registry, ledger, metric, value, principal, agent_class=agent_class
        )
        view.wal.append_sync(order.kind, order.body)
    except MaosError as exc:
        fail(exc)
    before, after = limit_text(order.body["before"]), limit_text(order.body["limit"])
    who = "every agent" if agent_class is None else f"{agent_class} agents"
    typer.echo(f"{metric}: {before} -> {after} for {who}, from now on")


@threshold_app.command("list")
def threshold_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Each threshold in force, its window, and whether config.json or an order set it."""
    try:
        view = configured(view_of(data_dir, write=False), data_dir)
    except MaosError as exc:
        fail(exc)
    ledger = view.aggregate
    rows: list[dict[str, Any]] = [
        {
            "metric": t.metric,
            "agent_class": None,
            "limit": t.limit,
            "window_s": t.window_s,
            "set_by": "order" if t.metric in ledger.ordered else "config",
        }
        for t in ledger.limits.values()
    ]
    for (metric, agent_class), limit in sorted(ledger.by_class.items()):
        window = ledger.limits[metric].window_s
        rows.append(
            {
                "metric": metric,
                "agent_class": agent_class,
                "limit": limit,
                "window_s": window,
                "set_by": "order",
            }
        )
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        name = r["metric"] if r["agent_class"] is None else f"{r['metric']}@{r['agent_class']}"
        hours = float(r["window_s"]) / 3600
        typer.echo(
            f"{name:<30} {limit_text(float(r['limit'])):>12} per {hours:g} h  ({r['set_by']})"
        )


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
