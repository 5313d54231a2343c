"""Agents: run one in a pod, list them, and the Commander's R8 powers over each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    agent_app,
    echo_json,
    fail,
    grant_option,
    view_of,
)
from maos.kernel import orders
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import MaosError
from maos.kernel.registry import COMMANDER
from maos.kernel.stages import stage_report


@agent_app.command("run")
def agent_run(
    script: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The agent: a Python file.")
    ],
    ring: Annotated[int, typer.Option(help="2 (verified) or 3 (untrusted).")] = 3,
    level: Annotated[
        int | None,
        typer.Option(help="Isolation level 1-5; default by ring: ring 2 -> 1, ring 3 -> 2."),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent id; default: the script's name.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task id; default: run-<agent>.")] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            help="OP|RESOURCE[|MAX_CENTS], repeatable; default: read and write the task "
            "workspace (fs.read|*, fs.write|*, fs.list|*)."
        ),
    ] = None,
    trusted: Annotated[
        list[str] | None,
        typer.Option(help="A target the task names (recipient, URL prefix), repeatable."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Run again in the task an earlier run opened (its workspace)."
        ),
    ] = False,
    new_task: Annotated[
        bool,
        typer.Option("--new-task", help="Start a fresh task (<task>-2, -3, ...) for this run."),
    ] = False,
    frameworks: Annotated[
        bool,
        typer.Option(
            "--frameworks",
            help="Give the pod the agent frameworks (OpenAI Agents SDK, LangGraph, "
            "pydantic-ai) from their read-only runtime, built on first use "
            "(`maos agent-runtime build`; docs/frameworks.md).",
        ),
    ] = False,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Run an agent script in a sandboxed pod, one line per request the kernel answered.

    The exit status is the agent's (2: refused before it ran). The first run opens the
    task (default run-<agent>) with its --trusted targets; running again into it needs
    --resume (same workspace and targets) or --new-task (a fresh one). The workspace
    starts empty: nothing is put there for the agent.

    The agent imports `maos.sdk` and nothing else of MAOS:

    \b
        from maos import sdk
        sdk.fs.write("hello.txt", "hi")
        sdk.email.send("alice@example.com", "hi", "from my agent")

    Example (examples ship in the package's maos/agents/ directory):

    \b
        maos agent run my_agent.py --ring 3 --grant 'fs.write|*' \\
            --grant 'email.send|alice@example.com' --trusted alice@example.com
    """
    from maos.pod.isolation.base import read_script
    from maos.pod.launcher import DEFAULT_GRANTS, AgentLaunch, launch

    if resume and new_task:
        typer.secho("error BAD_INPUT.OPTIONS: --resume or --new-task, not both", err=True)
        raise typer.Exit(2)
    agent_id = agent or script.stem.replace("_", "-")
    try:
        read_script(script)  # refused before a kernel boots and logs anything
    except MaosError as exc:
        fail(exc)
    plan = AgentLaunch(
        script=script,
        agent_id=agent_id,
        task_id=task or f"run-{agent_id}",
        ring=ring,
        level=level,
        grants=[grant_option(g) for g in grant] if grant else DEFAULT_GRANTS,
        trusted=trusted or (),
        resume=resume,
        new_task=new_task,
        frameworks=frameworks,
    )

    async def go() -> tuple[Any, str]:
        from maos.boot import configured_kernel

        async with configured_kernel(data_dir) as kernel:
            return await launch(kernel, plan, typer.echo)

    try:
        ended, output = asyncio.run(go())
    except MaosError as exc:
        fail(exc)
    if output.strip():
        typer.echo("--- agent output ---")
        typer.echo(output.rstrip())
    raise typer.Exit(ended.exit_code)


@agent_app.command("list")
def agent_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Registered agents with ring, status, context label, and their place in the
    quarantine cascade: stage, danger score now (folded from the log) and evidence."""
    view = view_of(data_dir, write=False)
    scores = _danger_now(view, data_dir)
    rows: list[dict[str, Any]] = [
        {
            "agent_id": a.agent_id,
            "ring": a.ring,
            "status": a.status.value,
            "context": a.context.to_dict(),
            **stage_report(a),
            "danger_now": scores.get(a.agent_id, 0.0),
        }
        for a in view.registry.agents.values()
    ]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        ctx = r["context"]
        typer.echo(
            f"{r['agent_id']:<20} ring {r['ring']}  {r['status']:<12}"
            f" context {ctx['conf']}/{ctx['integrity']}"
            f"  stage {r['stage']:<15} danger {r['danger_now']:.1f}"
            f" ({len(r['evidence'])} signal(s) in evidence)"
        )


def _danger_now(view: Any, data_dir: Path) -> dict[str, float]:
    """Each agent's danger score now, as the Security Agent computes it."""
    import time

    from maos.boot import cascade_policy
    from maos.llm.config import load_settings
    from maos.services.security import LOG_KINDS, danger_from_log

    try:
        policy = cascade_policy(load_settings(data_dir).security)
    except MaosError as exc:
        fail(exc)
    book = danger_from_log(view.wal.read(kinds=LOG_KINDS), policy)
    now = time.time()
    return {a: round(book.score(a, now), 3) for a in view.registry.agents}


def _set_status(data_dir: Path, agent_id: str, status: AgentStatus, principal: str) -> None:
    try:
        view = view_of(data_dir)
        order = orders.agent_status(view.registry, agent_id, status, principal)
        view.wal.append_sync(order.kind, order.body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{agent_id}: {status.value}")


@agent_app.command("pause")
def agent_pause(
    agent_id: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Pause: every intent of the agent is denied until it is resumed (R8)."""
    _set_status(data_dir, agent_id, AgentStatus.PAUSED, principal)


@agent_app.command("resume")
def agent_resume(
    agent_id: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Resume a paused or quarantined agent."""
    _set_status(data_dir, agent_id, AgentStatus.ACTIVE, principal)


@agent_app.command("isolate")
def agent_isolate(
    agent_id: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Soft isolation: nothing outbound (mail, HTTP, external tools, messages to agents);
    reads, the LLM and internal tools stay open and the pod keeps running (R8)."""
    _set_status(data_dir, agent_id, AgentStatus.ISOLATED, principal)


@agent_app.command("quarantine")
def agent_quarantine(
    agent_id: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Quarantine: all gateways closed, the agent frozen (R8)."""
    _set_status(data_dir, agent_id, AgentStatus.QUARANTINED, principal)


@agent_app.command("kill")
def agent_kill(
    agent_id: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Kill: the agent can do nothing more, ever (R8)."""
    _set_status(data_dir, agent_id, AgentStatus.KILLED, principal)


@agent_app.command("release")
def agent_release(
    agent_id: str,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="normal, observation or soft_isolation: a stage below the agent's own.",
        ),
    ],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Let an agent down the quarantine cascade; a frozen pod is thawed and resumes where
    it stopped. Escalation is the Security Agent's; de-escalation is a clean observation
    window or this (issue 12)."""
    import time

    from maos.kernel import cascade
    from maos.kernel.errors import InputError
    from maos.kernel.stages import RELEASE_TO, Stage

    try:
        if to not in {s.value for s in RELEASE_TO}:
            names = ", ".join(s.value for s in RELEASE_TO)
            raise InputError("BAD_INPUT.STAGE", f"--to must be one of {names}, not {to!r}")
        view = view_of(data_dir)
        order = cascade.release_order(
            view.registry, agent_id, Stage(to), principal=principal, at=time.time()
        )
        view.wal.append_sync(order.kind, order.body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{agent_id}: {to}")


@agent_app.command("rca")
def agent_rca(agent_id: str, data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """The root-cause report of an agent: its way through the cascade with the evidence,
    and what was kept of it when it was frozen (workspace, pod output, log excerpt,
    conversation) under <data-dir>/rca/ID."""
    from maos.cli.rca import rca_report

    try:
        report = rca_report(view_of(data_dir), data_dir, agent_id)
    except MaosError as exc:
        fail(exc)
    if as_json:
        echo_json(report)
        return
    for line in report["lines"]:
        typer.echo(line)
