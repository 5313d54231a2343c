"""What the Commander decides: parked intents, and what a task may release (R6)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    approvals_app,
    echo_json,
    fail,
    kernel_running,
    task_app,
    view_of,
    with_kernel,
)
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
        if kernel_running(data_dir):
            view = view_of(data_dir)
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
        check_principal(principal, view.registry)
        view.registry.task(task_id)
        body = {"task_id": task_id, "to": to.lower(), "reason": reason, "principal": principal}
        view.wal.append_sync("task.declassified", body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{task_id}: data may flow down to {to.lower()} ({reason})")
