"""The immune memory: what MAOS learned from the threats it deflected (`maos memory`)."""

from __future__ import annotations

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
from maos.kernel import immune
from maos.kernel.errors import MaosError
from maos.kernel.registry import COMMANDER
from maos.kernel.view import LogView

__all__ = ["status_section"]

memory_app = typer.Typer(
    help=(
        "The immune memory: threats MAOS deflected once and now recognises (a result "
        "carrying one is withheld from the agent; an intent repeating one is refused)."
    ),
    no_args_is_help=True,
)
app.add_typer(memory_app, name="memory")


def status_section(view: LogView) -> tuple[str, dict[str, Any], list[str]]:
    """`maos status`'s memory line: the threats held and how often they matched."""
    matches = sum(1 for _ in view.wal.read(kinds=["memory.match"]))
    section = {"threats": len(view.memory), "matches": matches}
    held = len(view.memory)
    line = f"memory        {held} learned threats, {matches} matches  (maos memory list)"
    return "memory", section, [line]


@memory_app.command("list")
def memory_list(data_dir: DataDir = DEFAULT_DIR, as_json: JsonOut = False) -> None:
    """Every learned threat: its id, what it aimed at, the injection text it was learned
    from and the record that deflected it.

    \b
    Example: maos memory list
    """
    try:
        threats = list(view_of(data_dir, write=False).memory)
    except MaosError as exc:
        fail(exc)
    if as_json:
        echo_json([t.record() for t in threats])
        return
    if not threats:
        typer.echo("the immune memory is empty: nothing was deflected yet")
        return
    for t in threats:
        aim = f"{t.op} -> {t.target}" if t.target else t.op
        typer.echo(f"{t.pattern_id}  {aim}  (record {t.seq}, {t.code})")
        if t.text:
            typer.echo(f"    text: {t.text[:160]}")
        where = t.source.get("source")
        if where:
            typer.echo(f"    from: {where} {t.source.get('field', '')}".rstrip())


@memory_app.command("forget")
def memory_forget(
    pattern_id: Annotated[str, typer.Argument(help="A learned threat's id (maos memory list).")],
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Drop a learned threat you judge a false positive; logged with who. A serving
    kernel stops matching it at once.

    \b
    Example: maos memory forget m-3f2a9c0d1e4b
    """
    try:
        view = view_of(data_dir)
        order = immune.forgotten(view.registry, view.memory, pattern_id, principal)
        view.wal.append_sync(order.kind, order.body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"{pattern_id}: forgotten")
