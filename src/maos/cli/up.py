"""`maos up`: the kernel, serving, with the Commander's dashboard and HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import DEFAULT_DIR, DataDir, app, fail
from maos.kernel.errors import MaosError


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DIR,
    port: Annotated[int, typer.Option(help="Port on the host; 0 picks a free one.")] = 8470,
    host: Annotated[
        str, typer.Option(help="Loopback address to serve on: 127.0.0.1 or ::1.")
    ] = "127.0.0.1",
    plan: Annotated[
        list[Path] | None,
        typer.Option("--plan", metavar="PLAN.yaml", help="Run these plans, one after another."),
    ] = None,
) -> None:
    """The kernel with the Commander's dashboard and HTTP API on loopback, until Ctrl-C.

    Open the printed address: the dashboard shows what waits for a decision, with the
    decision packet (where each flagged target first appeared), and approves or denies
    it; it pauses, quarantines or kills agents and enters Minimal Safe State. It and
    the API take the token in <data-dir>/commander.token (docs/dashboard.md).

    While it runs, the console's deciding commands (`maos approvals approve`, `maos agent
    kill`) still work: they log the decision and this kernel carries it out.

    \b
    Example:
        maos up --data-dir /tmp/maos-invoice --plan examples/plans/invoice.yaml
    """
    if host not in ("127.0.0.1", "::1", "localhost"):
        typer.secho(
            "error BAD_INPUT.HOST: the dashboard serves on loopback only (127.0.0.1 or ::1)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        asyncio.run(_serve(data_dir, "127.0.0.1" if host == "localhost" else host, port, plan))
    except MaosError as exc:
        fail(exc)
    except OSError as exc:
        typer.secho(f"error STATE.PORT_UNAVAILABLE: cannot serve on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None


async def _serve(data_dir: Path, host: str, port: int, plans: list[Path] | None) -> None:
    from maos.boot import configured_kernel, run_plan_on
    from maos.commander.web import Dashboard, load_or_create_token

    runs: list[dict[str, Any]] = [{"task": str(p), "status": "queued"} for p in plans or ()]

    async def run_plans() -> None:
        for path, run in zip(plans or (), runs, strict=True):
            run["status"] = "running"
            try:
                result = await run_plan_on(kernel, path, echo=typer.echo)
            except MaosError as exc:
                run.update(status="failed", detail=f"{exc.code}: {exc.message}")
                typer.secho(f"plan     {path} failed {exc.code}: {exc.message}", err=True)
                continue
            run.update(task=result.task_id, status=result.status, detail=result.code or "")

    async with configured_kernel(data_dir) as kernel:
        dashboard = Dashboard(
            kernel,
            load_or_create_token(data_dir),
            host=host,
            port=port,
            extra=lambda: {"plans": [dict(r) for r in runs]},
        )
        typer.echo(f"MAOS Commander on {dashboard.login_url}")
        typer.echo(f"  kernel on {data_dir}; Ctrl-C stops both")
        worker = asyncio.create_task(run_plans())
        try:
            await dashboard.serve()
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
