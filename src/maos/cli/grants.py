"""``maos task grants``: what a task may do (its effect classes), and the Commander's say."""

from __future__ import annotations

from typing import Annotated

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    JsonOut,
    echo_json,
    fail,
    task_app,
    view_of,
)
from maos.commander.grants import grant_lines, latest_grants
from maos.kernel import orders
from maos.kernel.errors import MaosError
from maos.kernel.registry import COMMANDER


@task_app.command("grants")
def task_grants(
    task_id: Annotated[str, typer.Argument(help="The task whose grant is shown or set.")],
    effects: Annotated[
        str | None,
        typer.Option(
            "--effects",
            help="Set the grant: comma-separated effect classes (read, write, delete, send, "
            "pay, credentials, execute); replaces what the request's words gave.",
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; it is logged with who.")] = "",
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
    as_json: JsonOut = False,
) -> None:
    """Show a task's effect classes and the words they were derived from, or set them.

    The grant is derived from the Commander's request when the task opens (``task.grants``
    in the log: what the words asked for, what they refused, the plan's ceiling); R2
    refuses every effect of another class. ``--effects`` replaces it, logged with who and
    why; a running kernel picks it up from the log.

    \b
    Example: maos task grants invoice-march --effects read,pay --reason "pay it after all"
    """
    view = view_of(data_dir)
    if effects is not None:
        try:
            classes = [c.strip() for c in effects.split(",") if c.strip()]
            order = orders.grants(view.registry, task_id, classes, reason, principal)
            view.wal.append_sync(order.kind, order.body)
        except MaosError as exc:
            fail(exc)
        view.catch_up()
    try:
        task = view.registry.task(task_id)
    except MaosError as exc:
        fail(exc)
    body = latest_grants((r.kind, r.body) for r in view.wal.read()).get(task_id)
    granted = None if task.effect_classes is None else sorted(c.value for c in task.effect_classes)
    if as_json:
        echo_json({"task_id": task_id, "effect_classes": granted, "grants": body})
        return
    typer.echo(f"{task_id}: {', '.join(granted) if granted is not None else 'any (no grant)'}")
    for line in grant_lines(body):
        typer.echo(f"    {line}")
