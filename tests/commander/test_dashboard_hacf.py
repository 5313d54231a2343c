"""Issue 10 section 1 on the page (`static/hacf.js`), in Debian's Chromium against a real
kernel: an override the console requested is listed with its diff; a wrong code is
refused (`HACF.BAD_CODE`) and changes nothing; the code of the enrolled authenticator on
the kernel's clock confirms it. A deliberate-level approval is asked about from the page.
What happened is read from the kernel's folds and the log."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyotp
from dashkit import in_browser, park_stranger_mail, run

from maos.commander.web import Dashboard
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.hacfconfig import CommanderSection
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.registry import COMMANDER
from maos.services import hacf
from maos.testing import StepClock as Clock


def test_the_page_confirms_an_override_only_with_the_authenticators_code_issue_10(
    config: KernelConfig,
) -> None:
    clock = Clock()

    async def body(k: Kernel, dashboard: Dashboard, token: str) -> None:
        _, aid = await park_stranger_mail(k)
        log = hacf.kernel_log(k)
        factor = hacf.SecondFactor(k.config.data_dir, clock)
        ov = hacf.Overrides(k.registry, log, clock, CommanderSection(cooling_off_s=60), factor)
        secret = await ov.enroll(COMMANDER)
        await k.set_agent_status("a1", AgentStatus.QUARANTINED, principal=COMMANDER)
        made = await ov.request("resume", "a1", "active", reason="mine", principal=COMMANDER)
        oid = made.override_id

        async def act(page: Any) -> None:
            item = page.locator(f'#overrides li[data-id="{oid}"]')
            await item.wait_for()
            assert '"quarantined" → "active"' in await item.inner_text()
            assert "cooling-off: 60 s left" in await item.inner_text()
            clock.now += 60
            await item.locator(".code").fill("000000")
            await item.locator(".confirm").click()
            await page.locator("#banner", has_text="HACF.BAD_CODE").wait_for()
            assert k.registry.agent("a1").status is AgentStatus.QUARANTINED
            assert k.registry.overrides.items[oid].status == "requested"
            await item.locator(".code").fill(pyotp.TOTP(secret).at(clock.now))
            await item.locator(".confirm").click()
            await page.locator("#banner", has_text=f"{oid}: done").wait_for()
            await item.wait_for(state="detached")  # no longer waiting
            assert k.registry.agent("a1").status is AgentStatus.ACTIVE
            card = page.locator(f'#deliberations [data-id="{aid}"]')
            await card.locator(".question").fill("who named this recipient?")
            await card.locator(".ask").click()
            await page.locator("#banner", has_text="asked").wait_for()
            await card.locator(".thread", has_text="who named this recipient?").wait_for()

        await in_browser(dashboard, act)
        asked = [r.body["question"] for r in hacf.thread(k.wal, aid)]
        assert asked == ["who named this recipient?"]

    config.data_dir.mkdir(parents=True)
    (config.data_dir / "config.json").write_text(
        '{"commander": {"levels": {"send": "deliberate"}}}'
    )
    run(replace(config, clock=clock), body)
