"""What the Commander decides: parked intents, and what a task may release (R6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    approvals_app,
    doubt_app,
    echo_json,
    fail,
    kernel_running,
    task_app,
    view_of,
    with_kernel,
)
from maos.commander.grants import grant_lines, latest_grants
from maos.commander.packets import packet_lines
from maos.kernel import orders
from maos.kernel.commit import CommitLayer
from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Conf
from maos.kernel.registry import COMMANDER, check_principal


@approvals_app.command("list")
def approvals_list(
    data_dir: DataDir = DEFAULT_DIR,
    all_: Annotated[bool, typer.Option("--all", help="Include decided ones.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Intents waiting for a human, with the rule that asked and the flagged targets."""
    view = view_of(data_dir)
    items = view.approvals.all() if all_ else view.approvals.pending()
    if as_json:
        echo_json([a.to_dict() for a in items])
        return
    if not items:
        typer.echo("no approvals pending" if not all_ else "no approvals")
    grants = latest_grants((r.kind, r.body) for r in view.wal.read()) if items else {}
    for a in items:
        intent = a.intent
        typer.echo(
            f"{a.approval_id}  [{a.status.value}]  {a.rule}  agent={a.agent_id} task={a.task_id}"
        )
        typer.echo(f"    {intent.get('op')} -> {intent.get('target')}")
        typer.echo(f"    why: {a.reason}")
        for line in [*packet_lines(a.details, intent), *grant_lines(grants.get(a.task_id))]:
            typer.echo(f"    {line}")


def _decide(data_dir: Path, approval_id: str, principal: str, approve: bool, note: str) -> None:
    try:
        if kernel_running(data_dir):
            view = view_of(data_dir)
            order = orders.decision(
                view.registry,
                view.approvals,
                approval_id,
                approve=approve,
                principal=principal,
                note=note,
            )
            view.wal.append_sync(order.kind, order.body)
            typer.echo(
                f"{approval_id}: {'approved' if approve else 'denied'};"
                " the running kernel carries it out"
            )
            return

        async def act(k: Kernel) -> Any:
            if approve:
                return await k.approve(approval_id, principal=principal)
            return await k.deny(approval_id, principal=principal, note=note)

        outcome = with_kernel(data_dir, act)
    except MaosError as exc:
        fail(exc)
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
        view = view_of(data_dir)
        order = orders.declassify(view.registry, task_id, level, reason, principal)
        view.wal.append_sync(order.kind, order.body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{task_id}: data may flow down to {to.lower()} ({reason})")


# -- effects in doubt -----------------------------------------------------------------------


@doubt_app.command("list")
def in_doubt_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Effects recovery could not settle on its own, oldest first."""
    items = [d.to_dict() for d in CommitLayer(view_of(data_dir).wal, {}).in_doubt()]
    if as_json:
        echo_json(items)
        return
    if not items:
        typer.echo("nothing is in doubt")
    for d in items:
        typer.echo(f"{d['idem_key']}  {d['op']} -> {d['target']}  agent={d['agent_id']}")
        typer.echo(f"    why: {d['reason']}")


@doubt_app.command("resolve")
def in_doubt_resolve(
    idem_key: Annotated[str, typer.Argument(help="The key `maos in-doubt list` shows.")],
    verdict: Annotated[
        str, typer.Argument(metavar="happened|not-happened", help="What you found out.")
    ],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Say whether an effect in doubt took place; its key answers so from then on.

    Check the world first (the recipient's mailbox, the bank statement): MAOS never
    repeats an effect it cannot prove undone, so this verdict is what the agent learns.

    \b
    Example: maos in-doubt resolve writer/mail-1 not-happened
    """
    if verdict not in ("happened", "not-happened"):
        typer.secho("error BAD_INPUT.VERDICT: say happened or not-happened", err=True)
        raise typer.Exit(2)
    try:
        view = view_of(data_dir)
        check_principal(principal, view.registry)
        happened = verdict == "happened"
        CommitLayer(view.wal, {}).resolve_in_doubt(idem_key, happened=happened, principal=principal)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{idem_key}: {verdict}, logged; the key answers so from now on")
