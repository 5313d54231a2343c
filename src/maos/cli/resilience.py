"""The degradation modes at the console: `maos mode`, and the mode in `maos status`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from maos.cli._common import DEFAULT_DIR, AsPrincipal, DataDir, app, fail, view_of
from maos.kernel import orders
from maos.kernel.errors import MaosError
from maos.kernel.modes import Mode, mode_report
from maos.kernel.registry import COMMANDER, Registry
from maos.kernel.wal import Wal
from maos.pod.lifecycle import pods_from_log
from maos.services.cells import cells_report
from maos.services.manager import SERVICES, services_from_log

__all__ = ["live_services", "mode", "status_section"]

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


LIVE_TIMEOUT_S = 2.0
"""How long `maos status` waits for a serving kernel's answer before using the log."""


def live_services(data_dir: Path, url: str | None) -> dict[str, dict[str, Any]] | None:
    """The serving kernel's Service Manager's view of its services (`maos up`'s
    ``api/state``: state, restarts, seconds since the last beat), or None when none
    serves ``data_dir`` or it does not answer (the log is used then)."""
    from maos.commander.web import TOKEN_FILE

    if url is None:
        return None
    try:
        token = (data_dir / TOKEN_FILE).read_text().strip()
        answer = httpx.get(
            url.rstrip("/") + "/api/state",
            headers={"Authorization": f"Bearer {token}"},
            timeout=LIVE_TIMEOUT_S,
        )
        services = answer.json().get("services") if answer.status_code == 200 else None
    except (OSError, httpx.HTTPError, ValueError):
        return None
    return services if isinstance(services, dict) else None


def status_section(
    registry: Registry,
    wal: Wal,
    llm_mode: str,
    *,
    live: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """`maos status`'s resilience part: its JSON sections (``mode``, ``services``,
    ``pods``, ``cells``) and its text lines. ``live``: the serving kernel's manager's
    view (`live_services`); without it each supervised service is shown as last logged."""
    report = mode_report(registry.modes, registry.mode)
    lines = [f"mode          {report['mode']}  ({report['allows']})"]
    for source, demand in report["demands"].items():
        lines.append(f"  {source:<12} {demand['mode']}: {demand['cause']}")
    services = _services(wal, live)
    where = "live from the serving kernel" if live is not None else "as last logged"
    lines.append(f"services      {len(services)} Ring 1 services  ({where})")
    for name, s in services.items():
        beat = "" if s.get("last_beat_s") is None else f"  last beat {s['last_beat_s']} s ago"
        restarts = f"  {s['restarts']} restarts" if s.get("restarts") else ""
        exit_ = f"  last exit: {s['last_exit']}" if s.get("last_exit") else ""
        lines.append(
            f"  {name:<13} {s['runs']:<8} {s['criticality']:<13} {s['state'] or '-'}"
            f"{restarts}{beat}{exit_}"
        )
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


def _services(wal: Wal, live: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Every service of the table with its health: live, or as last logged (those never
    logged: ``in kernel`` when they are part of the kernel's path, else no state)."""
    logged = services_from_log(wal)
    out: dict[str, dict[str, Any]] = {}
    for s in SERVICES:
        known = dict((live or {}).get(s.name) or logged.get(s.name) or {})
        if s.name == "beacon" and not known:  # the supervision's own probe: shown only if it ran
            continue
        state = known.get("state") or ("in kernel" if s.runs == "kernel" else "")
        out[s.name] = {
            "runs": s.runs,
            "criticality": s.criticality.value,
            "restarts": 0,
            "last_exit": "",
            **known,
            "state": state,
        }
    return out
