"""Aggregate monitoring (seed §49.11): a real kernel mails through a real SMTP server on
loopback; the Security Agent reads the log those effects left and isolates an agent whose
figures pass a threshold (soft isolation: nothing outbound). Thresholds are small so a
test can cross them; the kernel's clock is a variable, so windows slide exactly as the
test says."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from maos.boot import configured_kernel
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.services.security import BREACH, PRINCIPAL, SecurityAgent, Threshold
from maos.testing import Mailbox, intent_frame, with_kernel

RECIPIENTS = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


async def _mailer(k: Kernel) -> str:
    await k.register_agent("mailer", ring=3, budgets={"api_calls": 100})
    await k.open_task("t1", trusted_targets=RECIPIENTS, budgets={"api_calls": 100})
    return k.mint("mailer", "t1", [Grant("email.send", "*")])


async def _mail(k: Kernel, token: str, to: str, key: str, body: str = "hi") -> str:
    out = await k.submit(intent_frame(token, "email.send", to, key, body=body), agent_id="mailer")
    return out.status.value if out.status is OutcomeStatus.COMMITTED else out.code


def test_a_third_new_recipient_in_the_window_isolates_the_agent(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    clock = Clock()

    async def body(k: Kernel) -> tuple[list[str], list[dict[str, object]]]:
        token = await _mailer(k)
        security = SecurityAgent(k, [Threshold("external_destinations", 2, 100.0)], interval_s=3600)
        security.start()
        try:
            seen = []
            for n, to in enumerate(RECIPIENTS[:3]):
                seen.append(await _mail(k, token, to, f"m{n}"))
                seen.append(str(len(await security.poll())))
            seen.append(await _mail(k, token, RECIPIENTS[3], "m3"))
        finally:
            await security.stop()
        breaches = [dict(r.body) for r in k.wal.read(kinds=[BREACH])]
        status = [dict(r.body) for r in k.wal.read(kinds=["agent.status"])]
        assert status == [{"agent_id": "mailer", "status": "isolated", "principal": PRINCIPAL}]
        assert k.registry.agent("mailer").status is AgentStatus.ISOLATED
        return seen, breaches

    seen, [breach] = with_kernel(replace(config, clock=clock), body)
    assert seen == [
        "committed",
        "0",
        "committed",
        "0",
        "committed",
        "1",
        "RULE.R8.AGENT_ISOLATED",
    ]
    assert (breach["agent_id"], breach["metric"], breach["value"]) == (
        "mailer",
        "external_destinations",
        3.0,
    )
    assert mailbox.recipients() == RECIPIENTS[:3]


def test_the_window_slides_and_a_resumed_agent_starts_from_zero(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    clock = Clock()

    async def body(k: Kernel) -> list[str]:
        token = await _mailer(k)
        security = SecurityAgent(k, [Threshold("outbound_bytes", 1000, 100.0)], interval_s=3600)
        security.start()
        seen = []
        try:
            big = "x" * 600
            for n in range(2):  # 600 bytes, then 600 more 150 s later: never 1000 at once
                seen.append(await _mail(k, token, RECIPIENTS[0], f"slow{n}", big))
                seen.append(str(len(await security.poll())))
                clock.now += 150 * (1 - n)
            seen.append(await _mail(k, token, RECIPIENTS[0], "fast", big))  # 1,200 at once
            seen.append(str(len(await security.poll())))
            await k.set_agent_status("mailer", AgentStatus.ACTIVE)  # the Commander resumes
            seen.append(await _mail(k, token, RECIPIENTS[0], "after", "short"))
            seen.append(str(len(await security.poll())))
        finally:
            await security.stop()
        return seen

    assert with_kernel(replace(config, clock=clock), body) == [
        "committed",
        "0",
        "committed",
        "0",
        "committed",
        "1",
        "committed",
        "0",
    ]
    assert len(mailbox.messages) == 4


def test_breaches_in_the_history_are_folded_not_acted_on(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """A new Security Agent (a restart) rebuilds its windows from the log but does not
    quarantine for what happened before it started."""

    async def body(k: Kernel) -> tuple[str, list[str]]:
        token = await _mailer(k)
        for n, to in enumerate(RECIPIENTS[:3]):
            await _mail(k, token, to, f"m{n}")
        security = SecurityAgent(k, [Threshold("external_destinations", 3, 3600.0)])
        security.start()
        try:
            before = k.registry.agent("mailer").status.value
            await _mail(k, token, RECIPIENTS[3], "m3")  # the 4th destination: a live breach
            acted = [b.metric for b in await security.poll()]
        finally:
            await security.stop()
        return before, acted

    before, acted = with_kernel(config, body)
    assert (before, acted) == ("active", ["external_destinations"])


def test_every_maos_kernel_runs_the_monitor_with_the_configured_thresholds(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """`configured_kernel` (maos up, run, agent run, the console's decisions) starts the
    Security Agent with the ``security`` section of config.json."""
    config.save()
    path = config.data_dir / "config.json"
    path.write_text(
        json.dumps(
            {**json.loads(path.read_text()), "security": {"external_destinations_per_week": 1}}
        )
    )

    async def main() -> AgentStatus:
        async with configured_kernel(config.data_dir) as k:
            token = await _mailer(k)
            assert await _mail(k, token, RECIPIENTS[0], "m0") == "committed"
            assert await _mail(k, token, RECIPIENTS[1], "m1") == "committed"
            for _ in range(600):  # it follows the log every 0.2 s; wait for it, not a time
                if k.registry.agent("mailer").status is not AgentStatus.ACTIVE:
                    break
                await asyncio.sleep(0.05)
            return k.registry.agent("mailer").status

    assert asyncio.run(main()) is AgentStatus.ISOLATED
    assert len(mailbox.messages) == 2
