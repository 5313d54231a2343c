"""What the dashboard's tests share: a real kernel served by a real uvicorn server on a
free loopback port, an HTTP client for it, and Debian's Chromium driven by Playwright
(`scripts/sysdeps.sh test` installs it; `playwright install` is not needed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import async_playwright

from maos.boot import PlanQueue
from maos.commander.web import Dashboard, load_or_create_token
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import intent_frame, task_with_untrusted_mail

EXAMPLE_PLAN = Path(__file__).parents[2] / "examples" / "plans" / "report.yaml"
MARKUP = "<img src=x onerror=\"document.title='pwned'\">"
"""What an injection might put in an intent, hoping the dashboard renders it."""


async def park_stranger_mail(k: Kernel) -> tuple[str, str]:
    """a1 reads an untrusted mail, then asks to mail the stranger it names: parked (R10)."""
    token = await task_with_untrusted_mail(k, [Grant("fs.read", "*"), Grant("email.send", "*")])
    await k.submit(intent_frame(token, "fs.read", "inbox/mail.txt", "r1"), agent_id="a1")
    frame = intent_frame(
        token, "email.send", "stranger@evil.example", "m1", subject="s", body=MARKUP
    )
    out = await k.submit(frame, agent_id="a1")
    assert out.status is OutcomeStatus.PENDING and out.approval_id is not None, out
    return token, out.approval_id


@contextlib.asynccontextmanager
async def served(config: KernelConfig) -> AsyncIterator[tuple[Kernel, Dashboard, str]]:
    kernel = await Kernel.boot(config)
    token = load_or_create_token(config.data_dir)
    plans = PlanQueue(kernel, echo=lambda line: None)
    dashboard = Dashboard(
        kernel, token, extra=lambda: {"plans": plans.runs()}, submit_plan=plans.submit
    )
    server = asyncio.create_task(dashboard.serve())
    worker = asyncio.create_task(plans.serve())
    try:
        await asyncio.wait_for(dashboard.started(), 30)
        yield kernel, dashboard, token
    finally:
        worker.cancel()
        dashboard.stop()
        await server
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await kernel.close()


def client(dashboard: Dashboard, token: str | None) -> httpx.AsyncClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=dashboard.url, headers=headers, timeout=30)


def run(config: KernelConfig, body: Callable[[Kernel, Dashboard, str], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with served(config) as (kernel, dashboard, token):
            return await body(kernel, dashboard, token)

    return asyncio.run(main())


CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def in_browser(
    dashboard: Dashboard, act: Any, *, url: str | None = None, width: int = 1280
) -> Any:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": 900})
            await page.goto(dashboard.login_url if url is None else url)
            return await act(page)
        finally:
            await browser.close()
