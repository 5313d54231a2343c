"""The degradation modes at the console: `maos mode`, and the mode in `maos status`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from maos.cli._common import DEFAULT_DIR, AsPrincipal, DataDir, app, fail, view_of
from maos.kernel import orders
from maos.kernel.errors import MaosError
from maos.kernel.modes import Mode, mode_report
from maos.kernel.registry import COMMANDER, Registry

__all__ = ["mode", "status_section"]

_MODES = "|".join(m.value for m in Mode)


@app.command("mode")
def mode(
    level: Annotated[str, typer.Argument(metavar=_MODES, help="The mode to demand.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; it is logged with who.")] = "",
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Demand a degradation mode as the Commander (``normal`` lifts your demand).

    The effective mode is the most severe of every source's demand (service health,
    federation, the TSCA, you): lifting yours does not lift theirs. What each mode
    allows is in docs/resilience.md; `maos status` shows the mode and who demands it.

    \b
    Example: maos mode degraded-2 --reason "SMTP relay compromised, sends only by hand"
    """
    try:
        view = view_of(data_dir)
        order = orders.mode(view.registry, "commander", level, reason or "-", principal)
        view.wal.append_sync(order.kind, order.body)
        view.catch_up()
    except MaosError as exc:
        fail(exc)
    typer.echo(f"mode demanded: {level}; effective mode now {view.registry.mode.value}")


def status_section(registry: Registry) -> tuple[str, dict[str, Any], list[str]]:
    """`maos status`'s resilience part: its JSON key, value and text lines."""
    report = mode_report(registry.modes, registry.mode)
    lines = [f"mode          {report['mode']}  ({report['allows']})"]
    for source, demand in report["demands"].items():
        lines.append(f"  {source:<12} {demand['mode']}: {demand['cause']}")
    return "mode", report, lines
