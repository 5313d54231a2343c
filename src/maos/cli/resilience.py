"""The degradation modes at the console: `maos mode`, and the mode in `maos status`."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer

from maos.cli._common import DEFAULT_DIR, AsPrincipal, DataDir, app, fail, view_of
from maos.kernel import orders
from maos.kernel.errors import MaosError
from maos.kernel.modes import Mode, mode_report
from maos.kernel.registry import COMMANDER, Registry
from maos.kernel.wal import Wal
from maos.pod.lifecycle import pods_from_log
from maos.services.cells import cells_report
from maos.services.manager import services_from_log

__all__ = ["mode", "status_section"]

_MODES = "|".join(m.value for m in Mode)


@app.command("mode")
def mode(
    level: Annotated[str, typer.Argument(metavar=_MODES, help="The mode to demand.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; it is logged with who.")] = "",
    source: Annotated[
        str,
        typer.Option(
            "--source", help="Whose demand: commander (yours), or lift another's (tsca...)."
        ),
    ] = "commander",
    data_dir: DataDir = DEFAULT_DIR,
    principal: AsPrincipal = COMMANDER,
) -> None:
    """Demand a degradation mode as the Commander (``normal`` lifts your demand).

    The effective mode is the most severe of every source's demand (service health,
    federation, the TSCA, you): lifting yours does not lift theirs, but you may lift
    theirs by naming it (the TSCA's Minimal Safe State waits for you; once a second factor
    is enrolled, lowering another's degraded mode is an override: docs/hacf.md). What each mode
    allows is in docs/resilience.md; `maos status` shows the mode and who demands it.

    \b
    Example: maos mode degraded-2 --reason "SMTP relay compromised, sends only by hand"
    Example: maos mode normal --source tsca --reason "incident 4 understood"
    """
    try:
        view = view_of(data_dir)
        order = orders.mode(view.registry, source, level, reason or "-", principal)
        view.wal.append_sync(order.kind, order.body)
        view.catch_up()
    except MaosError as exc:
        fail(exc)
    typer.echo(f"mode demanded: {level}; effective mode now {view.registry.mode.value}")


def status_section(registry: Registry, wal: Wal, llm_mode: str) -> tuple[dict[str, Any], list[str]]:
    """`maos status`'s resilience part: its JSON sections (``mode``, ``services``,
    ``pods``, ``cells``) and its text lines."""
    report = mode_report(registry.modes, registry.mode)
    lines = [f"mode          {report['mode']}  ({report['allows']})"]
    for source, demand in report["demands"].items():
        lines.append(f"  {source:<12} {demand['mode']}: {demand['cause']}")
    services = services_from_log(wal)
    shown = [f"{n} {s['state']}" for n, s in services.items()]
    lines.append(f"services      {', '.join(shown) or '-'}  (supervised, as last logged)")
    pods = pods_from_log(wal)
    states = Counter(p["state"] for p in pods.values())
    missed = [f"{a} ({p['missed']})" for a, p in pods.items() if p["missed"]]
    lines.append(
        f"pods          {', '.join(f'{n} {s}' for s, n in sorted(states.items())) or '-'}"
        f"; heartbeats missed: {', '.join(missed) or 'none'}  (as last logged)"
    )
    cells = cells_report(llm_mode)
    waiting = [c["component"] for c in cells if c["now"] != "runs"]
    lines.append(
        f"cells         {len(cells)} components, {sum(c['needs_llm'] == 'no' for c in cells)}"
        " need no LLM" + (f"; in Rule-Based Mode: {'; '.join(waiting)} limited" if waiting else "")
    )
    return {"mode": report, "services": services, "pods": pods, "cells": cells}, lines
