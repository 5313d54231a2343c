"""`maos up`: the kernel, serving, with the Commander's dashboard and HTTP API."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from maos.cli._common import DEFAULT_DIR, DataDir, app, plan_exit_status
from maos.kernel.errors import InputError
from maos.services.supervised import TaskFactory, in_thread, probe_task

if TYPE_CHECKING:
    from maos.commander.web import Dashboard


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
    log_json: Annotated[
        bool,
        typer.Option(
            "--log-json",
            help="Log as JSON lines on stderr, one per intent decided (like config.json "
            "telemetry.json_logs; docs/observability.md).",
        ),
    ] = False,
) -> None:
    """The kernel with the Commander's dashboard and HTTP API on loopback, until Ctrl-C.

    Open the printed address: the dashboard shows what waits for a decision, with the
    decision packet (where each flagged target first appeared), and approves or denies
    it; it pauses, quarantines or kills agents and enters Minimal Safe State; it has a
    page per agent, searches the log, charts the decisions, declassifies and revokes,
    and the server pushes every change. It and the API take the token in
    <data-dir>/commander.token (docs/dashboard.md).

    Prometheus reads /metrics there with that token or config.json's
    telemetry.metrics_token; telemetry.otlp_endpoint sends traces to an OpenTelemetry
    collector (docs/observability.md).

    While it runs, `maos run PLAN.yaml` on the same --data-dir hands the plan to it (plans
    run one after another; the page shows them), and the console's deciding commands
    (`maos approvals approve`, `maos agent kill`) log the decision for it to carry out.

    \b
    Example:
        maos up --data-dir /tmp/maos-invoice --plan examples/plans/invoice.yaml
    """
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise InputError(
            "BAD_INPUT.HOST", "the dashboard serves on loopback only (127.0.0.1 or ::1)"
        )
    if not 0 <= port <= MAX_PORT:
        raise InputError(
            "BAD_INPUT.PORT",
            f"--port {port} is not a TCP port",
            hint=f"give 1-{MAX_PORT}, or 0 to pick a free one",
        )
    from maos.commander.web import bind_loopback
    from maos.services.plan import load_plan

    for plan_file in plan or ():  # a bad plan, a taken port: refused before anything is written
        load_plan(plan_file)
    listening = bind_loopback("127.0.0.1" if host == "localhost" else host, port)
    try:
        asyncio.run(_serve(data_dir, listening, plan, json_logs=log_json))
    finally:
        listening.close()


MAX_PORT = 65535


async def _serve(
    data_dir: Path, listening: socket.socket, plans: list[Path] | None, *, json_logs: bool
) -> None:
    from maos.boot import (
        PROBE_S,
        PlanQueue,
        a2a_endpoints,
        configured_kernel,
        cron_scheduler,
        service_manager,
    )
    from maos.commander.web import URL_FILE, Dashboard, load_or_create_token

    host, port = listening.getsockname()[:2]
    _report_each_error_once_a_second(asyncio.get_running_loop())
    async with configured_kernel(data_dir, json_logs=json_logs) as kernel:
        queue = PlanQueue(kernel, typer.echo)
        manager = service_manager(kernel)
        assert manager is not None, "a serving kernel has its Service Manager"
        for plan_file in plans or ():
            queue.submit(plan_file)
        dashboard = Dashboard(
            kernel,
            load_or_create_token(data_dir),
            host=host,
            port=port,
            extra=lambda: {"plans": queue.runs(), "services": manager.health()},
            submit_plan=queue.submit,
            listening=listening,
        )
        url_file = data_dir / URL_FILE
        url_file.write_text(dashboard.url + "\n")
        typer.echo(f"MAOS Commander on {dashboard.login_url}")
        typer.echo(f"  kernel on {data_dir}; `maos run PLAN -d {data_dir}` runs here; Ctrl-C stops")
        # The Orchestrator's plan queue and the Cron tick loop drive this kernel's pods:
        # they stay in its process, supervised as tasks (maos.services.supervised).
        manager.start_task("orchestrator", lambda pulse: queue.serve())
        cron = cron_scheduler(kernel, data_dir, echo=typer.echo)
        if cron is not None:
            await cron.recover()
            manager.start_task("cron", cron.run, every_s=cron.interval_s)
        # The dashboard is this coroutine's own server: when it ends for good (Ctrl-C,
        # its port lost), `maos up` ends; a restart of it serves again on a fresh socket.
        manager.start_task("dashboard", dashboard_probe(dashboard), every_s=PROBE_S)
        endpoints = a2a_endpoints(kernel, data_dir)
        for endpoint in endpoints:
            await endpoint.start()
            typer.echo(f"  A2A messages for {endpoint.agent_id} on {endpoint.url}")
        try:
            await dashboard.serve()
        finally:
            await manager.stop_task("dashboard")
            for endpoint in endpoints:
                await endpoint.stop()
            if cron is not None:
                await manager.stop_task("cron")
                await cron.stop()
            url_file.unlink(missing_ok=True)
            await manager.stop_task("orchestrator")


def _report_each_error_once_a_second(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio reports an error a callback raised each time it happens; a listening socket
    broken under the running dashboard fails every accept, thousands a second, until the
    dashboard's restart closes it. Each distinct error is reported once a second at most,
    so stderr (a pipe someone must read) is not flooded meanwhile."""
    last: dict[str, float] = {}

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        key = f"{context.get('message')}|{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - last.get(key, -1.0) < 1.0 and key in last:
            return
        if len(last) > 256:
            last.clear()
        last[key] = now
        loop.default_exception_handler(context)

    loop.set_exception_handler(report)


def dashboard_probe(dashboard: Dashboard, period_s: float | None = None) -> TaskFactory:
    """The dashboard's probe: a GET of its health route, from a thread and bounded, so
    a wedged server is down rather than a stuck probe; a restart serves again on a
    fresh socket at the same address (``period_s``: `maos.boot.PROBE_S`)."""
    from maos.boot import PROBE_S, PROBE_TIMEOUT_S

    async def down() -> str | None:
        return await in_thread(dashboard.answers)

    every = PROBE_S if period_s is None else period_s
    return probe_task(
        down, every, "DASHBOARD.DOWN", timeout_s=PROBE_TIMEOUT_S, repair=dashboard.rebind
    )


POLL_S = 0.5


def run_on_serving_kernel(data_dir: Path, plan_file: Path) -> int | None:
    """Hand ``plan_file`` to the `maos up` serving ``data_dir`` and follow its run: the
    exit status, or None when no `maos up` serves there."""
    from maos.commander.web import TOKEN_FILE, URL_FILE

    try:
        url = (data_dir / URL_FILE).read_text().strip()
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return _follow(url, token, plan_file)
    except httpx.HTTPError as exc:
        typer.secho(f"error STATE.UNREACHABLE: `maos up` at {url} does not answer: {exc}", err=True)
        return 2


def _follow(url: str, token: str, plan_file: Path) -> int:
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        answer = client.post("api/plans", json={"path": str(plan_file.resolve())})
        body = answer.json()
        if answer.status_code != 200:
            typer.secho(f"error {body['error']}: {body['message']}", err=True)
            return 2
        typer.echo(f"run {body['run']} of {body['task']} on the kernel `maos up` serves ({url})")
        shown = 0
        while True:
            runs = client.get("api/state").json()["plans"]
            [run] = [r for r in runs if r["run"] == body["run"]]
            for line in run["log"][shown:]:
                typer.echo(line)
            shown = len(run["log"])
            if run["status"] not in ("queued", "running"):
                return plan_exit_status(run["status"], bool(run.get("waiting")))
            time.sleep(POLL_S)
