"""The `maos` command line: the Commander's console.

Every command takes ``--data-dir`` (default ``./.maos`` or ``$MAOS_DATA_DIR``). Reading
commands fold the log without starting a kernel. Deciding commands (approve, deny,
revoke, kill) start a kernel in this process when none is serving the data directory,
so the decision is carried out now; when a kernel is serving, they log the decision
and that kernel carries it out.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from maos.kernel.commit import CommitLayer
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.labels import Conf
from maos.kernel.registry import COMMANDER, check_principal
from maos.kernel.tokens import Grant, TokenAuthority
from maos.kernel.view import KernelLock, LogView
from maos.kernel.wal import Wal

T = TypeVar("T")

app = typer.Typer(
    help="MAOS: run AI agents so that they cannot hurt the people who use them.\n\n"
    "Start with `maos demo`; then `maos status`, `maos approvals list` and "
    "`maos wal verify` against the demo's --data-dir.\n\n"
    "Model providers and the Semantic Security Evaluator come from the 'llm' and 'sse' "
    "sections of <data-dir>/config.json (docs/llm.md, docs/sse.md). To try a server "
    "without editing it: MAOS_LLM_BASE_URL=http://127.0.0.1:11434/v1 MAOS_LLM_MODEL=llama3.1 "
    "(and MAOS_LLM_API_KEY_ENV=<the variable holding its key>) add one OpenAI-compatible "
    "provider. No provider: Rule-Based Mode, agents that need a model pause.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Mint, inspect and revoke capability tokens.", no_args_is_help=True)
approvals_app = typer.Typer(
    help="Decide intents that wait for a human (R7, R10).", no_args_is_help=True
)
task_app = typer.Typer(help="What the Commander says about a task.", no_args_is_help=True)
wal_app = typer.Typer(help="Inspect and verify the write-ahead log.", no_args_is_help=True)
agent_app = typer.Typer(
    help="Run agents in pods; list them; pause, quarantine or kill them (R8).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
app.add_typer(approvals_app, name="approvals")
app.add_typer(wal_app, name="wal")
app.add_typer(task_app, name="task")
app.add_typer(agent_app, name="agent")

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", "-d", envvar="MAOS_DATA_DIR", help="Where the WAL, keys and workspaces live."
    ),
]
AsPrincipal = Annotated[
    str, typer.Option("--as", help="Who decides: 'commander' or 'commander:<name>'.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DEFAULT_DIR = Path(".maos")


def _fail(exc: MaosError) -> None:
    typer.secho(f"error {exc.code}: {exc.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _view(data_dir: Path) -> LogView:
    wal_path = KernelConfig(data_dir=data_dir).wal_path
    if not wal_path.exists():
        typer.secho(f"error STATE.NO_DATA_DIR: no MAOS log at {wal_path}", err=True, fg="red")
        raise typer.Exit(2)
    view = LogView(Wal(wal_path))
    view.catch_up()
    return view


def _with_kernel(data_dir: Path, act: Callable[[Kernel], Awaitable[T]]) -> T:
    """Run ``act`` on a kernel booted here; callers check the lock first."""

    async def go() -> T:
        from maos.boot import configured_kernel

        async with configured_kernel(data_dir, follow=False) as kernel:
            return await act(kernel)

    return asyncio.run(go())


def _kernel_running(data_dir: Path) -> bool:
    lock = KernelLock(data_dir)
    if lock.try_acquire():
        lock.release()
        return False
    return True


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


# -- top level ----------------------------------------------------------------------------


@app.command()
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", "-d", help="Keep the demo's state here (default: a fresh temp dir)."
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

    \b
    Examples:
        maos run examples/plans/report.yaml --data-dir /tmp/maos-report
        MAOS_LLM_BASE_URL=http://127.0.0.1:11434/v1 MAOS_LLM_MODEL=llama3.1 \\
            maos run examples/plans/invoice.yaml --data-dir /tmp/maos-invoice
    """
    try:
        from maos.boot import run_plan_file

        result = asyncio.run(run_plan_file(data_dir, plan_file, resume=resume, echo=typer.echo))
    except MaosError as exc:
        _fail(exc)
    raise typer.Exit(0 if result.status == "done" else 1)


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
    from maos.llm.config import llm_status

    view = _view(data_dir)
    in_doubt = [d.to_dict() for d in CommitLayer(view.wal, {}).in_doubt()]
    tasks = sorted(view.registry.tasks)
    info: dict[str, Any] = {
        "data_dir": str(data_dir),
        "kernel_running": _kernel_running(data_dir),
        "wal_records": view.seen_seq,
        "agents": {
            a.agent_id: {"ring": a.ring, "status": a.status.value}
            for a in view.registry.agents.values()
        },
        "tasks": tasks,
        "pending_approvals": len(view.approvals.pending()),
        "in_doubt": in_doubt,
        "revoked_ids": len(view.revoked),
        "llm": llm_status(view.wal),
        "safe_state": view.registry.safe_state,
        "tools": {
            t.name: {"effect_class": t.effect_class.value, "targets": dict(t.targets)}
            for t in view.registry.tools.values()
        },
    }
    if as_json:
        _echo_json(info)
        return
    typer.echo(
        f"data dir      {data_dir}  (kernel {'running' if info['kernel_running'] else 'stopped'})"
    )
    typer.echo(f"log records   {info['wal_records']}")
    if view.registry.safe_state is not None:
        why = view.registry.safe_state.get("reason") or "no reason given"
        typer.echo(f"SAFE STATE    on ({why}): `maos safe-state off` to leave it")
    typer.echo(f"agents        {len(view.registry.agents)}")
    for a in view.registry.agents.values():
        typer.echo(f"  {a.agent_id:<20} ring {a.ring}  {a.status.value}")
    typer.echo(f"tasks         {', '.join(tasks) or '-'}")
    typer.echo(f"approvals     {info['pending_approvals']} pending  (maos approvals list)")
    typer.echo(f"llm           {_llm_line(info['llm'])}")
    tools = [f"{n} ({t['effect_class']})" for n, t in sorted(info["tools"].items())]
    typer.echo(f"tools         {', '.join(tools) or '-'}")
    typer.echo(
        f"in doubt      {len(in_doubt)}"
        + ("  <- the Commander must check these" if in_doubt else "")
    )
    for d in in_doubt:
        typer.echo(f"  {d['idem_key']}  {d['op']} -> {d['target']}")


@app.command()
def bench(
    as_json: JsonOut = False,
    quick: Annotated[bool, typer.Option(help="Fewer iterations (for a smoke run).")] = False,
) -> None:
    """Measure the DSC, the log, pods and the security scenarios against same-run baselines."""
    from maos.bench import run_bench

    figures = run_bench(quick=quick, progress=not as_json)
    if as_json:
        _echo_json(figures)
    else:
        from maos.bench import render

        typer.echo(render(figures))


# -- wal ----------------------------------------------------------------------------------


@wal_app.command("verify")
def wal_verify(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Re-check the hash chain; exit 1 naming the first bad record."""
    path = KernelConfig(data_dir=data_dir).wal_path
    if not path.exists():
        typer.secho(f"error STATE.NO_DATA_DIR: no MAOS log at {path}", err=True, fg="red")
        raise typer.Exit(2)
    report = Wal(path).verify()
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
    for rec in Wal(KernelConfig(data_dir=data_dir).wal_path).read(
        since_seq=since, kinds=kind or None
    ):
        typer.echo(
            json.dumps({"seq": rec.seq, "ts": rec.ts, "kind": rec.kind, **rec.body}, default=str)
        )


# -- tokens -------------------------------------------------------------------------------


def _parse_grant(text: str) -> Grant:
    parts = text.split("|")
    if len(parts) not in (2, 3):
        raise typer.BadParameter(f"{text!r}: use OP|RESOURCE or OP|RESOURCE|MAX_CENTS")
    cap = int(parts[2]) if len(parts) == 3 else None
    return Grant(parts[0], parts[1], cap)


def _grant_dict(g: Grant) -> dict[str, Any]:
    return {"op": g.op, "resource": g.resource, "max_amount_cents": g.max_amount_cents}


@token_app.command("mint")
def token_mint(
    agent: Annotated[str, typer.Option(help="Agent the token is bound to.")],
    task: Annotated[str, typer.Option(help="Task the token is scoped to.")],
    grant: Annotated[
        list[str],
        typer.Option(
            help="OP|RESOURCE[|MAX_CENTS], repeatable; RESOURCE may end in '*'. "
            "Example: --grant 'fs.write|reports/*' --grant 'email.send|alice@example.com'"
        ),
    ],
    ttl: Annotated[
        float | None, typer.Option(help="Seconds; default depends on the node type.")
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Mint a token for a registered agent on an open task (prints it on stdout)."""
    import time

    view = _view(data_dir)
    try:
        view.registry.agent(agent)
        view.registry.task(task)
        cfg = KernelConfig.load(data_dir)
        authority = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type)
        tok = authority.mint(
            agent_id=agent,
            task_id=task,
            grants=[_parse_grant(g) for g in grant],
            now=time.time(),
            ttl=ttl,
        )
        info = authority.inspect(tok)
        view.wal.append_sync(
            "token.minted",
            {
                "agent_id": agent,
                "task_id": task,
                "grants": [_grant_dict(g) for g in info.grants],
                "revocation_ids": list(info.revocation_ids),
                "expires_at": info.expires_at,
                "principal": COMMANDER,
            },
        )
    except MaosError as exc:
        _fail(exc)
    typer.echo(tok)


@token_app.command("inspect")
def token_inspect(token: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Verify a token's signatures and show what it allows."""
    cfg = KernelConfig.load(data_dir)
    try:
        info = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type).inspect(token)
    except MaosError as exc:
        _fail(exc)
    _echo_json(
        {
            "agent_id": info.agent_id,
            "task_id": info.task_id,
            "audience": info.audience,
            "expires_at": info.expires_at,
            "blocks": info.blocks,
            "grants": [_grant_dict(g) for g in info.grants],
            "revocation_ids": list(info.revocation_ids),
        }
    )


@token_app.command("revoke")
def token_revoke(
    token: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Revoke a token (and every token attenuated from it) for good."""
    cfg = KernelConfig.load(data_dir)
    view = _view(data_dir)
    try:
        check_principal(principal, view.registry)
        ids = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type).revoke(token)
        view.wal.append_sync("token.revoked", {"revocation_ids": list(ids), "principal": principal})
    except MaosError as exc:
        _fail(exc)
    typer.echo(f"revoked {len(ids)} block id(s); running kernels pick it up within a second")


# -- approvals ----------------------------------------------------------------------------


@approvals_app.command("list")
def approvals_list(
    data_dir: DataDir = DEFAULT_DIR,
    all_: Annotated[bool, typer.Option("--all", help="Include decided ones.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Intents waiting for a human, with the rule that asked and the flagged targets."""
    view = _view(data_dir)
    items = view.approvals.all() if all_ else view.approvals.pending()
    if as_json:
        _echo_json([a.to_dict() for a in items])
        return
    if not items:
        typer.echo("no approvals pending" if not all_ else "no approvals")
    for a in items:
        intent = a.intent
        typer.echo(
            f"{a.approval_id}  [{a.status.value}]  {a.rule}  agent={a.agent_id} task={a.task_id}"
        )
        typer.echo(f"    {intent.get('op')} -> {intent.get('target')}")
        typer.echo(f"    why: {a.reason}")
        for line in _packet(a.details, intent):
            typer.echo(f"    {line}")


_ORIGINS = {
    "commander": "in the Commander's own words",
    "trusted_source": "in a trusted source",
    "untrusted_content": "only in untrusted content",
    "never_seen": "nowhere: the agent produced it itself",
}


def _packet(details: Mapping[str, Any], intent: Mapping[str, Any]) -> list[str]:
    """The decision packet, as built by the kernel: where each flagged target first
    appeared, what the agent had read, and what exactly would be done."""
    lines = []
    for target, seen in (details.get("first_seen") or {}).items():
        origin = _ORIGINS.get(seen.get("first_seen"), str(seen.get("first_seen")))
        sources = ", ".join(seen.get("sources") or ())
        by = f", handed to {seen['agent_id']}" if seen.get("agent_id") else ""
        lines.append(
            f"flagged {target}: first seen {origin}" + (f" ({sources}{by})" if sources else "")
        )
    if "amount_cents" in details:
        named = ", ".join(f"{c / 100:.2f}" for c in details.get("named_amounts", ()))
        lines.append(f"amount {details['amount_cents'] / 100:.2f}; the task named {named}")
    if details.get("context_sources"):
        lines.append(f"the agent had read: {', '.join(details['context_sources'])}")
    if "effect_class" in details:
        lines.append(f"effect class: {details['effect_class']}")
    params = json.dumps(intent.get("params") or {}, sort_keys=True)
    lines.append(f"would send: {params if len(params) <= 300 else params[:300] + ' ...'}")
    return lines


def _decide(data_dir: Path, approval_id: str, principal: str, approve: bool, note: str) -> None:
    try:
        if _kernel_running(data_dir):
            view = _view(data_dir)
            check_principal(principal, view.registry)
            view.approvals.require_pending(approval_id, principal)
            kind = "approval.approved" if approve else "approval.denied"
            view.wal.append_sync(
                kind, {"approval_id": approval_id, "principal": principal, "note": note}
            )
            typer.echo(
                f"{approval_id}: {'approved' if approve else 'denied'};"
                " the running kernel carries it out"
            )
            return

        async def act(k: Kernel) -> Any:
            if approve:
                return await k.approve(approval_id, principal=principal)
            return await k.deny(approval_id, principal=principal, note=note)

        outcome = _with_kernel(data_dir, act)
    except MaosError as exc:
        _fail(exc)
    typer.echo(f"{approval_id}: {outcome.status.value} {outcome.code} {outcome.reason}".rstrip())


@approvals_app.command("approve")
def approvals_approve(
    approval_id: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Approve: the intent is re-checked and runs exactly once."""
    _decide(data_dir, approval_id, principal, True, "")


@approvals_app.command("deny")
def approvals_deny(
    approval_id: str,
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
    note: Annotated[str, typer.Option(help="Why; shown to the agent.")] = "",
) -> None:
    """Refuse: the agent's wait ends with APPROVAL.DENIED."""
    _decide(data_dir, approval_id, principal, False, note)


# -- agents -------------------------------------------------------------------------------


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
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Run an agent script in a sandboxed pod, one line per request the kernel answered.

    The exit status is the agent's.

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
    from maos.pod.launcher import DEFAULT_GRANTS, AgentLaunch, launch

    agent_id = agent or script.stem.replace("_", "-")
    plan = AgentLaunch(
        script=script,
        agent_id=agent_id,
        task_id=task or f"run-{agent_id}",
        ring=ring,
        level=level,
        grants=[_parse_grant(g) for g in grant] if grant else DEFAULT_GRANTS,
        trusted=trusted or (),
    )

    async def go() -> tuple[Any, str]:
        from maos.boot import configured_kernel

        async with configured_kernel(data_dir) as kernel:
            return await launch(kernel, plan, typer.echo)

    try:
        ended, output = asyncio.run(go())
    except MaosError as exc:
        _fail(exc)
    if output.strip():
        typer.echo("--- agent output ---")
        typer.echo(output.rstrip())
    raise typer.Exit(ended.exit_code)


@agent_app.command("list")
def agent_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Registered agents with ring, status and context label."""
    view = _view(data_dir)
    rows: list[dict[str, Any]] = [
        {
            "agent_id": a.agent_id,
            "ring": a.ring,
            "status": a.status.value,
            "context": a.context.to_dict(),
        }
        for a in view.registry.agents.values()
    ]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        ctx = r["context"]
        typer.echo(
            f"{r['agent_id']:<20} ring {r['ring']}  {r['status']:<12}"
            f" context {ctx['conf']}/{ctx['integrity']}"
        )


def _set_status(data_dir: Path, agent_id: str, status: AgentStatus, principal: str) -> None:
    try:
        view = _view(data_dir)
        check_principal(principal, view.registry)
        view.registry.agent(agent_id)
        view.wal.append_sync(
            "agent.status", {"agent_id": agent_id, "status": status.value, "principal": principal}
        )
    except MaosError as exc:
        _fail(exc)
    typer.echo(f"{agent_id}: {status.value}")


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
        view = _view(data_dir)
        check_principal(principal, view.registry)
        body = {"on": state == "on", "reason": reason, "principal": principal}
        view.wal.append_sync("kernel.safe_state", body)
    except MaosError as exc:
        _fail(exc)
    typer.echo(
        "Minimal Safe State: on; every agent is stopped and every request but apoptosis refused"
        if state == "on"
        else "Minimal Safe State: off; agents may run again"
    )


@task_app.command("declassify")
def task_declassify(
    task_id: Annotated[str, typer.Argument(help="The task whose data is released.")],
    to: Annotated[
        str, typer.Option("--to", help="The level released down to: public, internal, ...")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why; it is logged with who.")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Let a task's data flow down to a lower level (R6), logged with who and why.

    Personal or secret data keeps its label through every agent; sending a passport even
    to the authority the prompt named needs this.

    \b
    Example: maos task declassify visa-2026 --to public --reason "passport to the consulate"
    """
    try:
        level = Conf[to.upper()]
        if level is Conf.SECRET:
            raise KeyError(to)
    except KeyError:
        typer.secho("error BAD_INPUT.LEVEL: --to is public, internal or confidential", err=True)
        raise typer.Exit(2) from None
    try:
        view = _view(data_dir)
        check_principal(principal, view.registry)
        view.registry.task(task_id)
        body = {"task_id": task_id, "to": to.lower(), "reason": reason, "principal": principal}
        view.wal.append_sync("task.declassified", body)
    except MaosError as exc:
        _fail(exc)
    typer.echo(f"{task_id}: data may flow down to {to.lower()} ({reason})")


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


def main() -> None:
    app()
