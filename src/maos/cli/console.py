"""The system as a whole: the demo, plans, status, the bench, Minimal Safe State."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    app,
    directory_option,
    echo_json,
    fail,
    kernel_running,
    plan_exit_status,
    view_of,
)
from maos.cli.commander import status_entry
from maos.kernel import orders
from maos.kernel.commit import CommitLayer
from maos.kernel.errors import MaosError
from maos.kernel.registry import COMMANDER
from maos.kernel.stages import stage_report


@app.command()
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            "-d",
            help="Keep the demo's state here: a new or empty directory (default: a fresh "
            "temp dir).",
            callback=directory_option,
        ),
    ] = None,
) -> None:
    """The main job on embedded defaults: agents against an injection, in pods.

    Act 1: a reader and a writer (LLM agents in sandboxed pods, on a scripted model that
    obeys injections) work on a task whose document carries an injection. Act 2: a
    compromised script tries the pod's limits. Prints what was committed, what was
    refused and why; exits 1 if an attack got through."""
    from maos.demo import run_demo

    sys.exit(run_demo(data_dir))


@app.command("run")
def run_plan(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN.yaml", help="The task plan.")],
    data_dir: DataDir = DEFAULT_DIR,
    resume: Annotated[
        bool, typer.Option("--resume", help="Run only the steps of the plan's task not done.")
    ] = False,
) -> None:
    """Run a task plan: its steps as agents in pods, in dependency order, one line per step.

    \b
    Each step's token holds only its grants.
    `effects` bounds the kinds of change the task may make.
    `tool_modules` start in sandboxed tool hosts (docs/tools.md).
    `script: cell` steps are LLM agents: set an LLM in config.json,
    or MAOS_LLM_BASE_URL and MAOS_LLM_MODEL (docs/cell.md).
    With `maos up` serving the data dir, the plan runs there (the dashboard shows it).

    \b
    The run ends by naming every decision still waiting: a done plan keeps its
    undecided approvals for 24 hours (`maos approvals list` shows until when); a failed
    or stopped plan expires them (APPROVAL.EXPIRED: they never run).

    \b
    Exit codes:
        0  the plan is done and nothing waits
        1  the plan failed (the last line names the step and its code)
        2  refused before it ran (error CODE: ...)
        3  the plan is done, but decisions wait for the Commander (listed above)

    \b
    Examples:
        maos run examples/plans/report.yaml --data-dir /tmp/maos-report
        MAOS_LLM_BASE_URL=http://127.0.0.1:11434/v1 MAOS_LLM_MODEL=llama3.1 \\
            maos run examples/plans/invoice.yaml --data-dir /tmp/maos-invoice
    """
    if not resume and kernel_running(data_dir):
        from maos.cli.up import run_on_serving_kernel

        status = run_on_serving_kernel(data_dir, plan_file)
        if status is not None:
            raise typer.Exit(status)
    try:
        from maos.boot import run_plan_file

        result = asyncio.run(run_plan_file(data_dir, plan_file, resume=resume, echo=typer.echo))
    except MaosError as exc:
        fail(exc)
    raise typer.Exit(plan_exit_status(result.status, bool(result.waiting)))


def _llm_line(llm: Mapping[str, Any]) -> str:
    if not llm["configured"]:
        return "not configured: Rule-Based Mode (agents that need a model pause)"
    since = datetime.fromtimestamp(llm["since"]).isoformat(sep=" ", timespec="seconds")
    if llm["mode"] == "rule_based":
        return f"rule_based since {since} (last error: {llm['last_error']})"
    count = len(llm["providers"])
    via = llm["last_provider"] or llm["providers"][0]["name"]
    return f"{llm['mode']} via {via} ({count} provider{'s' if count != 1 else ''})"


@app.command()
def status(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """What the kernel knows: agents, tasks, approvals, LLM, tools, in-doubt effects."""
    from maos.cli import cron, memory, resilience
    from maos.llm.config import llm_status

    view = view_of(data_dir, write=False)
    in_doubt = [d.to_dict() for d in CommitLayer(view.wal, {}).in_doubt()]
    tasks = sorted(view.registry.tasks)
    info: dict[str, Any] = {
        "data_dir": str(data_dir),
        "kernel_running": kernel_running(data_dir),
        "dashboard": _dashboard_url(data_dir),
        "wal_records": view.seen_seq,
        "agents": {
            a.agent_id: {"ring": a.ring, "status": a.status.value, **stage_report(a)}
            for a in view.registry.agents.values()
        },
        "tasks": tasks,
        "pending_approvals": len(view.approvals.pending()),
        "in_doubt": in_doubt,
        "revoked_ids": len(view.revoked),
        "llm": llm_status(view.wal),
        "safe_state": view.registry.safe_state,
        "fever": view.registry.fever_report(),
        "tools": {
            t.name: {"effect_class": t.effect_class.value, "targets": dict(t.targets)}
            for t in view.registry.tools.values()
        },
        "commander": status_entry(view, data_dir),
    }
    live = resilience.live_services(data_dir, info["dashboard"])
    sections, lines = resilience.status_section(
        view.registry, view.wal, info["llm"]["mode"], live=live
    )
    info.update(sections)
    key, section, memory_lines = memory.status_section(view)
    info[key] = section
    key, section, cron_lines = cron.status_section(view, data_dir)
    info[key] = section
    lines = [*lines, *memory_lines, *cron_lines]
    if as_json:
        echo_json(info)
        return
    typer.echo(
        f"data dir      {data_dir}  (kernel {'running' if info['kernel_running'] else 'stopped'})"
    )
    if info["dashboard"]:
        typer.echo(f"dashboard     {info['dashboard']}  (maos up; token in commander.token)")
    typer.echo(f"log records   {info['wal_records']}")
    if view.registry.safe_state is not None:
        why = view.registry.safe_state.get("reason") or "no reason given"
        typer.echo(f"SAFE STATE    on ({why}): `maos safe-state off` to leave it")
    if view.registry.fever:
        who = ", ".join(sorted(view.registry.quarantined))
        typer.echo(f"FEVER         on: {who} in quarantine; rate limits halved, Ring 3 to the SSE")
    typer.echo("\n".join(lines))
    typer.echo(f"agents        {len(view.registry.agents)}")
    for a in view.registry.agents.values():
        stage = "" if a.stage.value == "normal" else f"  {a.stage.value}: {a.stage_cause}"
        typer.echo(f"  {a.agent_id:<20} ring {a.ring}  {a.status.value}{stage}")
    typer.echo(f"tasks         {', '.join(tasks) or '-'}")
    typer.echo(f"approvals     {info['pending_approvals']} pending  (maos approvals list)")
    typer.echo(f"commander     {info['commander']['summary']}")
    typer.echo(f"llm           {_llm_line(info['llm'])}")
    tools = [f"{n} ({t['effect_class']})" for n, t in sorted(info["tools"].items())]
    typer.echo(f"tools         {', '.join(tools) or '-'}")
    typer.echo(
        f"in doubt      {len(in_doubt)}"
        + (
            "  <- check each, then `maos in-doubt resolve KEY happened|not-happened`"
            if in_doubt
            else ""
        )
    )
    for d in in_doubt:
        typer.echo(f"  {d['idem_key']}  {d['op']} -> {d['target']}")


def _dashboard_url(data_dir: Path) -> str | None:
    """Where `maos up` serves this data dir, if it is up (its kernel holds the lock)."""
    from maos.commander.web import URL_FILE

    url_file = data_dir / URL_FILE
    if not url_file.exists() or not kernel_running(data_dir):
        return None
    return url_file.read_text().strip()


@app.command()
def bench(
    as_json: JsonOut = False,
    quick: Annotated[bool, typer.Option(help="Fewer iterations (for a smoke run).")] = False,
) -> None:
    """Measure the DSC, the log, pods, the egress relay, the federation (revocation and
    policy to every node, audit up, durability, node RSS), the security suites, a crashed
    service's restart, the MCP gateway's cost per call and the dashboard's live-update
    latency against same-run baselines."""
    from maos.bench import run_bench
    from maos.commander import bench as dashboard_bench
    from maos.mcp import bench as mcp_bench

    figures = run_bench(quick=quick, progress=not as_json)
    if not as_json:
        typer.echo("bench, last: MCP gateway (a tool call through it vs direct) ...", err=True)
    figures["mcp_gateway"] = mcp_bench.measure(quick=quick)
    figures["dashboard"] = dashboard_bench.measure(quick=quick)  # issue 10: live updates
    if as_json:
        echo_json(figures)
    else:
        from maos.bench import render

        typer.echo(render(figures))
        typer.echo(mcp_bench.render(figures["mcp_gateway"]))
        typer.echo(dashboard_bench.render(figures["dashboard"]))


# -- wal ----------------------------------------------------------------------------------


@app.command("safe-state")
def safe_state(
    state: Annotated[str, typer.Argument(metavar="on|off", help="Enter or leave it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; it is logged with who.")] = "",
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Minimal Safe State (R8): stop every agent, refuse everything but apoptosis.

    Nothing starts again until `maos safe-state off`.

    Works whether or not a kernel is running: the decision is a log record, and a running
    kernel kills its pods as soon as it reads it. Agents keep their own status, so leaving
    the state restores what each one was.

    \b
    Example: maos safe-state on --reason "odd payments at 03:00"
    """
    if state not in ("on", "off"):
        typer.secho("error BAD_INPUT.STATE: say on or off", err=True)
        raise typer.Exit(2)
    try:
        view = view_of(data_dir)
        order = orders.safe_state(view.registry, state == "on", reason, principal)
        view.wal.append_sync(order.kind, order.body)
        waiting = [a.approval_id for a in view.approvals.pending()]
        expired = orders.settlement(
            view.approvals, waiting, None, f"Minimal Safe State engaged: {reason}", principal
        )
        if state == "on" and expired is not None:
            view.wal.append_sync(expired.kind, expired.body)
            typer.echo(f"expired {len(waiting)} waiting approval(s): {', '.join(waiting)}")
    except MaosError as exc:
        fail(exc)
    typer.echo(
        "Minimal Safe State: on; every agent is stopped and every request but apoptosis refused"
        if state == "on"
        else "Minimal Safe State: off; agents may run again"
    )
