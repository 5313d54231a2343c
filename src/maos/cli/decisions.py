"""What the Commander decides: parked intents, and what a task may release (R6)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

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
from maos.commander.packets import packet_lines, signed_lines
from maos.kernel import orders
from maos.kernel.approvals import Approval, ApprovalStatus
from maos.kernel.commit import CommitLayer
from maos.kernel.config import read_config
from maos.kernel.errors import ApprovalError, MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Conf
from maos.kernel.packets import PacketSigner
from maos.kernel.registry import COMMANDER, check_principal
from maos.kernel.types import Outcome, OutcomeStatus, iso_time
from maos.services.hacf import check_plain_approval


@approvals_app.command("list")
def approvals_list(
    data_dir: DataDir = DEFAULT_DIR,
    all_: Annotated[bool, typer.Option("--all", help="Include decided and expired ones.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Intents waiting for a human, with the rule that asked and the flagged targets.

    An approval belongs to its task: one kept past its plan's end says until when;
    an expired one (its plan failed or was stopped, Minimal Safe State, its time ran
    out) can never run, and --all shows it as such."""
    view = view_of(data_dir, write=False)
    items = view.approvals.all() if all_ else view.approvals.pending()
    if as_json:
        echo_json([a.to_dict() for a in items])
        return
    if not items:
        typer.echo("no approvals pending" if not all_ else "no approvals")
    grants = latest_grants((r.kind, r.body) for r in view.wal.read()) if items else {}
    now = time.time()
    for a in items:
        intent = a.intent
        typer.echo(
            f"{a.approval_id}  [{_state(a, now)}]  {a.rule}  agent={a.agent_id} task={a.task_id}"
        )
        typer.echo(f"    {intent.get('op')} -> {intent.get('target')}")
        typer.echo(f"    why: {a.reason}")
        if a.status is ApprovalStatus.EXPIRED:
            typer.echo(f"    expired: {a.note} - it never runs")
        for line in [*packet_lines(a.details, intent), *grant_lines(grants.get(a.task_id))]:
            typer.echo(f"    {line}")


def _state(a: Approval, now: float) -> str:
    """The status as the Commander needs it: a kept approval says until when."""
    if a.status is not ApprovalStatus.PENDING or a.expires_at is None:
        return a.status.value
    if a.expired_by(now):
        return f"expired at {iso_time(a.expires_at)}"
    return f"pending, kept until {iso_time(a.expires_at)}"


@approvals_app.command("show")
def approvals_show(
    approval_id: str, data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False
) -> None:
    """The decision packet of an approval, built and signed by the kernel from its state now.

    Approving sends this packet's digest: if the intent or its label context changes
    before the approval lands (the agent reads something secret, the task's grants
    move), the kernel refuses with APPROVAL.PACKET_MISMATCH and nothing runs.

    \b
    Example: maos approvals show ap-1c2d3e4f5a6b
             maos approvals approve ap-1c2d3e4f5a6b --packet <the digest it printed>
    """
    try:
        packet = _packet(data_dir, approval_id)
    except MaosError as exc:
        fail(exc)
    if as_json:
        echo_json(packet)
        return
    for line in signed_lines(packet, verified=True):
        typer.echo(line)


def _packet(data_dir: Path, approval_id: str) -> dict[str, object]:
    """The approval's signed packet, verified against the data dir's packet key."""
    view = view_of(data_dir, write=False)
    signer = PacketSigner(data_dir / "keys")
    packet = signer.build(view.approvals.get(approval_id), view.registry).to_dict()
    if not signer.verify(packet):  # the key moved under us: show nothing to approve from
        raise ApprovalError(
            "APPROVAL.PACKET_UNSIGNED", f"the packet of {approval_id} does not verify"
        )
    return packet


WAIT_EXIT = 4
"""`approve`/`deny` with a serving kernel that logged no outcome within --wait."""


def decide(
    data_dir: Path,
    approval_id: str,
    principal: str,
    approve: bool,
    note: str,
    wait_s: float,
    packet: str | None = None,
    *,
    deliberated: bool = False,
) -> None:
    """Approve or deny, here or through the serving kernel; prints what came of it. A
    deliberate-level intent is approved only at the end of its deliberation."""
    try:
        if approve and not deliberated:
            view = view_of(data_dir, write=False)
            item = view.approvals.get(approval_id)
            check_plain_approval(read_config(data_dir).commander, item, view.registry, view.wal)
        if approve and packet is None:  # show what is approved; the digest goes with it
            shown = _packet(data_dir, approval_id)
            for line in signed_lines(shown, verified=True):
                typer.echo(f"    {line}")
            packet = str(shown["digest"])
        if kernel_running(data_dir):
            outcome = _decide_served(
                data_dir, approval_id, principal, approve, note, wait_s, packet
            )
        else:

            async def act(k: Kernel) -> Outcome:
                if approve:
                    return await k.approve(approval_id, packet, principal=principal)
                return await k.deny(approval_id, principal=principal, note=note)

            outcome = with_kernel(data_dir, act)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{approval_id}: {outcome.status.value} {outcome.code} {outcome.reason}".rstrip())
    if approve and outcome.status is not OutcomeStatus.COMMITTED:
        raise typer.Exit(1)


def _decide_served(
    data_dir: Path,
    approval_id: str,
    principal: str,
    approve: bool,
    note: str,
    wait_s: float,
    packet: str | None,
) -> Outcome:
    """Log the decision for the kernel that serves the data dir, then follow the log
    until that kernel logs what came of it (or ``wait_s`` passes: exit WAIT_EXIT)."""
    view = view_of(data_dir)
    order = orders.decision(
        view.registry,
        view.approvals,
        approval_id,
        approve=approve,
        principal=principal,
        now=time.time(),
        note=note,
        packet=packet,
    )
    view.wal.append_sync(order.kind, order.body)
    verb = "approved" if approve else "denied"
    typer.echo(f"{approval_id}: {verb}; the running kernel carries it out")
    deadline = time.monotonic() + wait_s
    while True:
        view.catch_up()
        item = view.approvals.get(approval_id)
        if item.status is not ApprovalStatus.APPROVED:
            return item.refusal()
        if item.outcome is not None:
            return Outcome.from_dict(item.outcome)
        if time.monotonic() >= deadline:
            typer.secho(
                f"error APPROVAL.NO_OUTCOME: the serving kernel logged no outcome within"
                f" {wait_s:g}s; see `maos approvals list --all` later",
                err=True,
            )
            raise typer.Exit(WAIT_EXIT)
        time.sleep(FOLLOW_S)


FOLLOW_S = 0.1
"""How often the CLI looks for the serving kernel's outcome record."""


WaitFor = Annotated[
    float,
    typer.Option(
        "--wait", min=0.0, help="With `maos up` serving: seconds to wait for the outcome."
    ),
]


@approvals_app.command("approve")
def approvals_approve(
    approval_id: str,
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
    wait: WaitFor = 60.0,
    packet: Annotated[
        str | None,
        typer.Option(
            "--packet",
            help="The digest `maos approvals show` printed: approve exactly what you read."
            " Without it the packet is shown here and its digest sent.",
        ),
    ] = None,
) -> None:
    """Approve: the intent is re-checked and runs exactly once; prints what came of it.

    The approval carries the decision packet's digest; when the intent or its label
    context no longer gives that packet, it is refused (APPROVAL.PACKET_MISMATCH) and
    nothing runs.

    \b
    Exit codes:
        0  the intent ran and committed
        1  it did not: a denial (the re-check, APPROVAL.EXPIRED, APPROVAL.PACKET_MISMATCH
           found at execution) or a failure
        2  refused (error CODE: already decided, expired, not found, packet mismatch ...)
        4  `maos up` serves the data dir and logged no outcome within --wait
    """
    decide(data_dir, approval_id, principal, True, "", wait, packet)


@approvals_app.command("deny")
def approvals_deny(
    approval_id: str,
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
    note: Annotated[str, typer.Option(help="Why; shown to the agent.")] = "",
    wait: WaitFor = 60.0,
) -> None:
    """Refuse: the agent's wait ends with APPROVAL.DENIED (exit 0; 2 when refused)."""
    decide(data_dir, approval_id, principal, False, note, wait)


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
    items = [d.to_dict() for d in CommitLayer(view_of(data_dir, write=False).wal, {}).in_doubt()]
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
