"""`maos commander ...`: the Commander's second factor, overrides, deliberations, inbox.

The four HACF levels (docs/hacf.md): inform (the inbox), recommend (`maos approvals`),
deliberate and override (here). Every command logs a record with its principal; an
agent's id is never a Commander principal.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    agent_app,
    app,
    echo_json,
    fail,
    kernel_running,
    view_of,
    with_kernel,
)
from maos.cli.decisions import WaitFor, decide
from maos.cli.security import configured
from maos.commander.packets import signed_lines
from maos.kernel.config import read_config
from maos.kernel.errors import InputError, MaosError, StateError
from maos.kernel.kernel import Kernel
from maos.kernel.overrides import Override
from maos.kernel.packets import PacketSigner
from maos.kernel.registry import COMMANDER
from maos.kernel.types import Outcome, OutcomeStatus, iso_time
from maos.kernel.view import LogView
from maos.services import hacf

commander_app = typer.Typer(
    help="The Commander's HACF levels beyond approvals: enrol a second factor, override"
    " (cooling-off + diff + TOTP), deliberate, and the inform inbox. See docs/hacf.md.",
    no_args_is_help=True,
)
override_app = typer.Typer(
    help="What widens authority or weakens protection, once a second factor is enrolled.",
    no_args_is_help=True,
)
deliberate_app = typer.Typer(
    help="Ask about a parked intent, edit it, then decide it once, on the record.",
    no_args_is_help=True,
)
app.add_typer(commander_app, name="commander")
commander_app.add_typer(override_app, name="override")
commander_app.add_typer(deliberate_app, name="deliberate")


def _log(view: LogView) -> hacf.Log:
    async def log(kind: str, body: Any) -> None:
        view.wal.append_sync(kind, body)
        view.catch_up()

    return log


def _overrides(data_dir: Path, view: LogView) -> hacf.Overrides:
    section = read_config(data_dir).commander
    factor = hacf.SecondFactor(data_dir, time.time)
    view = configured(view, data_dir)  # the thresholds in force, for `threshold`
    return hacf.Overrides(view.registry, _log(view), time.time, section, factor, view)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except MaosError as exc:
        fail(exc)


@commander_app.command("enroll")
def enroll(data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER) -> None:
    """Enrol the Commander's second factor (TOTP, RFC 6238), once, on purpose.

    Prints the secret and an otpauth:// URI for an authenticator app; the secret is kept
    in <data-dir>/keys/commander.totp (mode 0600), never in the log. From then on every
    override needs a code from that app, so a hijacked dashboard session alone cannot
    lift a quarantine or declassify data. R8 (pause, quarantine, kill, safe state) never
    needs it.

    \b
    Example: maos commander enroll -d .maos
    """
    view = view_of(data_dir)
    secret = _run(_overrides(data_dir, view).enroll(principal))
    typer.echo(f"second factor enrolled for {principal}")
    typer.echo(f"secret  {secret}")
    typer.echo(f"uri     {hacf.SecondFactor(data_dir, time.time).uri(secret)}")
    typer.echo("add it to your authenticator now; it is not shown again")


def _print_override(o: Override) -> None:
    typer.echo(f"{o.override_id}  [{o.status}]  {o.action} {o.subject} -> {o.to}  by {o.principal}")
    for field, (before, after) in o.diff.items():
        typer.echo(f"    {field}: {before} -> {after}")
    typer.echo(f"    why: {o.reason or '-'}; confirmable from {iso_time(o.not_before)}")


@override_app.command("request")
def override_request(
    action: Annotated[
        str,
        typer.Argument(help="release | resume | declassify | grants | mode | threshold | execute"),
    ],
    subject: Annotated[
        str,
        typer.Argument(
            help="The agent (release, resume), task, source (mode), metric or intent id."
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why; logged with who.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Stage, status, level, classes (read,pay), mode, limit; for execute the"
            " intent's SHA-256 (optional: the recorded one).",
        ),
    ] = "",
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Ask for an override; prints its id, the diff and when it can be confirmed.

    \b
    Examples:
        maos commander override request resume a1 --to active --reason "false positive"
        maos commander override request release a1 --to normal --reason "RCA done"
        maos commander override request declassify visa --to public --reason "consulate"
        maos commander override request grants invoices --to read,pay --reason "pay run"
        maos commander override request mode health --to normal --reason "relay fixed"
        maos commander override request threshold outbound_bytes --to 209715200 --reason "x"
        maos commander override request execute 3f2a... --reason "a false positive"
    Then, after the cooling-off (config.json commander.cooling_off_s, default 300 s):
        maos commander override confirm ov-... --code 123456
    """
    view = view_of(data_dir)
    _print_override(
        _run(
            _overrides(data_dir, view).request(
                action, subject, to, reason=reason, principal=principal
            )
        )
    )


@agent_app.command("promote")
def agent_promote(
    agent_id: str,
    to: Annotated[int, typer.Option("--to", help="The ring it moves inward to: 2.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; logged with who.")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Promote an agent inward (ring 3 -> 2): an override, then re-onboarding (R5).

    Asks for the override (cooling-off, the diff, a TOTP code; a second factor must be
    enrolled). Confirmed, the agent is onboarded again as a fresh identity at the new
    ring (<id>-r2) and the old identity is killed: no token, context label or pod
    memory carries over. Refused in a degraded mode (STATE.MODE.NO_PROMOTIONS), for an
    agent that is not active at the cascade's normal stage, and never by an agent.
    Moving outward is instant (Kernel.register_agent at ring 3; docs/hacf.md).

    \b
    Example: maos agent promote a1 --to 2 --reason "a month clean, reviewed"
    Then:    maos commander override confirm ov-... --code 123456
    """
    view = view_of(data_dir)
    made = _run(
        _overrides(data_dir, view).request(
            "promote", agent_id, str(to), reason=reason, principal=principal
        )
    )
    _print_override(made)
    typer.echo(f"then: maos commander override confirm {made.override_id} --code <TOTP>")


@override_app.command("confirm")
def override_confirm(
    override_id: str,
    code: Annotated[str, typer.Option("--code", help="The 6 digits your authenticator shows.")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Confirm an override with a fresh TOTP code; it is carried out at once.

    Refused: before the cooling-off ends (HACF.COOLING_OFF), with a wrong code
    (HACF.BAD_CODE) or one already used (HACF.CODE_REPLAYED), and when the subject moved
    since the request (HACF.OVERRIDE_STALE). An ``execute`` runs the refused intent here,
    so it needs no kernel serving the data dir (or confirm it on maos up's API).

    \b
    Example: maos commander override confirm ov-1a2b3c4d5e6f --code 123456
    """
    view = view_of(data_dir)
    try:
        action = view.registry.overrides.get(override_id).action
    except MaosError as exc:
        fail(exc)
    if action not in hacf.NEEDS_THE_KERNEL:
        _print_override(
            _run(_overrides(data_dir, view).confirm(override_id, code, principal=principal))
        )
        return
    if kernel_running(data_dir):
        fail(
            StateError(
                "HACF.EXECUTE_NEEDS_THE_KERNEL",
                f"an override to {action} is carried out by the kernel that serves the data dir",
                hint="confirm it on the dashboard's API (maos up), or stop maos up and run this",
            )
        )

    async def act(k: Kernel) -> tuple[Override, dict[str, Any]]:
        section = read_config(data_dir).commander
        factor = hacf.SecondFactor(data_dir, k.clock)
        ov = hacf.Overrides(k.registry, hacf.kernel_log(k), k.clock, section, factor, k.view)
        done = await ov.confirm(override_id, code, principal=principal)
        return done, await hacf.carry_out(k, override_id, principal)

    try:
        done, result = with_kernel(data_dir, act)
    except MaosError as exc:
        fail(exc)
    _print_override(done)
    if "promoted" in result:
        typer.echo(f"    onboarded: {done.subject} is now {result['promoted']} (ring {done.to})")
        return
    outcome = Outcome.from_dict(result["outcome"])
    typer.echo(f"    ran: {outcome.status.value} {outcome.code} {outcome.reason}".rstrip())
    if outcome.status is not OutcomeStatus.COMMITTED:
        raise typer.Exit(1)


@override_app.command("list")
def override_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Overrides, newest last, with their diff and status."""
    items = list(view_of(data_dir, write=False).registry.overrides.items.values())
    if as_json:
        echo_json([o.to_dict() for o in items])
        return
    if not items:
        typer.echo("no overrides")
    for o in items:
        _print_override(o)


def _deliberation(view: LogView) -> hacf.Deliberation:
    return hacf.Deliberation(view.registry, view.approvals, _log(view))


@deliberate_app.command("ask")
def deliberate_ask(
    approval_id: str,
    question: str,
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Ask the agent about its parked intent; its answer is logged (see `show`).

    \b
    Example: maos commander deliberate ask ap-1c2d3e4f5a6b "who named this recipient?"
    """
    view = view_of(data_dir)
    _run(_deliberation(view).ask(approval_id, question, principal=principal))
    typer.echo(f"{approval_id}: asked")


@deliberate_app.command("edit")
def deliberate_edit(
    approval_id: str,
    params: Annotated[str, typer.Option("--params", help="The parameters as JSON.")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Edit the proposal's parameters: approved, the edited intent runs instead, re-checked.

    \b
    Example: maos commander deliberate edit ap-1c2d... --params '{"subject": "s", "body": "short"}'
    """
    try:
        parsed = json.loads(params)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        fail(InputError("BAD_INPUT.PARAMS", "--params is one JSON object"))
    view = view_of(data_dir)
    _run(_deliberation(view).edit(approval_id, parsed, principal=principal))
    typer.echo(f"{approval_id}: edited")


@deliberate_app.command("show")
def deliberate_show(approval_id: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """The exchange about one approval, in order. An agent's answer is marked untrusted:
    its words, and what it proposes, change nothing unless you edit the proposal."""
    for r in hacf.thread(view_of(data_dir, write=False).wal, approval_id):
        b = r.body
        text = b.get("question") or b.get("answer") or b.get("params") or b.get("decision")
        who = b.get("principal") or b.get("agent_id")
        if b.get("trusted") is False:
            who = f"{who} (agent, untrusted)"
        if b.get("proposal"):
            text = f"{text} | proposes {json.dumps(b['proposal'], sort_keys=True)}"
        typer.echo(f"#{r.seq} {r.kind.removeprefix('hacf.')} by {who}: {text}")


@deliberate_app.command("decide")
def deliberate_decide(
    approval_id: str,
    decision: Annotated[str, typer.Argument(metavar="approve|deny")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
    note: Annotated[str, typer.Option(help="Why; shown to the agent.")] = "",
    wait: WaitFor = 60.0,
) -> None:
    """End the deliberation with one recorded decision, then carry it out (an approval
    sends the decision packet's digest, as `maos approvals approve` does).

    \b
    Example: maos commander deliberate decide ap-1c2d3e4f5a6b approve
    """
    if decision not in ("approve", "deny"):
        fail(InputError("BAD_INPUT.DECISION", "say approve or deny"))
    approve = decision == "approve"
    view = view_of(data_dir)
    packet = None
    if approve:  # the packet as it is now: shown, and its digest goes with the decision
        built = PacketSigner(data_dir / "keys").build(
            view.approvals.get(approval_id), view.registry
        )
        for line in signed_lines(built.to_dict(), verified=True):
            typer.echo(f"    {line}")
        packet = built.digest
    if not kernel_running(data_dir):

        async def act(k: Kernel) -> Outcome:
            return await hacf.conclude(
                k, approval_id, approve, packet=packet, principal=principal, note=note
            )

        try:
            outcome = with_kernel(data_dir, act)
        except MaosError as exc:
            fail(exc)
        typer.echo(
            f"{approval_id}: {outcome.status.value} {outcome.code} {outcome.reason}".rstrip()
        )
        if approve and outcome.status is not OutcomeStatus.COMMITTED:
            raise typer.Exit(1)
        return
    if hacf.edited_params(view.wal, approval_id) is not None:
        fail(
            StateError(
                "HACF.EDIT_NEEDS_THE_KERNEL",
                "an edited proposal is submitted by the kernel that serves the data dir",
                hint="decide it on the dashboard's API (maos up), or stop maos up and run this",
            )
        )
    _run(
        _deliberation(view).decide(
            approval_id, approve, packet=packet, principal=principal, note=note
        )
    )
    decide(data_dir, approval_id, principal, approve, note, wait, packet, deliberated=True)


@commander_app.command("inbox")
def inbox(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Inform level: what agents did in effect classes config.json sets to inform."""
    items = [r.body for r in hacf.inbox(view_of(data_dir, write=False).wal)]
    if as_json:
        echo_json([dict(b) for b in items])
        return
    if not items:
        typer.echo("nothing was done at the inform level")
    for b in items:
        typer.echo(f"#{b['seq']} {b['agent_id']} {b['op']} -> {b['target']} ({b['effect_class']})")


def status_entry(view: LogView, data_dir: Path) -> dict[str, Any]:
    """The ``commander`` entry of `maos status` (and its one line, ``summary``)."""
    report = hacf.status_report(view.registry, read_config(data_dir).commander, view.wal)
    levels = ", ".join(f"{k} {v}" for k, v in report["levels"].items()) or "all recommend"
    factor = (
        "2nd factor enrolled" if report["enrolled"] else "no 2nd factor (maos commander enroll)"
    )
    waiting = len(report["overrides_waiting"])
    report["summary"] = (
        f"{factor}; levels: {levels}; {waiting} override(s) waiting; {report['informed']} informed"
    )
    return report
