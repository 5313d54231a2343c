"""Aggregate monitoring before the effect and the Security Agent's cascade (issue 12).

A real kernel mails through a real SMTP server on loopback. The kernel's running sums
refuse the intent that would carry a figure past its threshold, so what the mailbox
received never passes it; the Security Agent reads the refusal and soft-isolates the
agent. Thresholds are small so a test can cross them; the kernel's clock is a variable,
so windows and the 30-minute observation slide exactly as the test says."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from maos.boot import cascade_policy, configured_kernel
from maos.kernel import cascade
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import InputError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.stages import DEFAULT_WEIGHTS, CascadePolicy, Stage
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.llm.config import DangerWeights, SecuritySettings, load_settings
from maos.services.security import (
    BREACH,
    PRINCIPAL,
    SecurityAgent,
    Threshold,
)
from maos.services.sse import HeuristicEvaluator
from maos.testing import Mailbox, intent_frame, loopback_http, with_kernel
from maos.testing import StepClock as Clock

RECIPIENTS = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]


async def _mailer(k: Kernel) -> str:
    await k.register_agent("mailer", ring=3, budgets={"api_calls": 100})
    await k.open_task("t1", trusted_targets=RECIPIENTS, budgets={"api_calls": 100})
    return k.mint("mailer", "t1", [Grant("email.send", "*"), Grant("fs.read", "*")])


async def _mail(k: Kernel, token: str, to: str, key: str, body: str = "hi") -> str:
    out = await k.submit(intent_frame(token, "email.send", to, key, body=body), agent_id="mailer")
    return out.status.value if out.status is OutcomeStatus.COMMITTED else out.code


def _breaches(k: Kernel) -> list[dict[str, object]]:
    return [dict(r.body) for r in k.wal.read(kinds=[BREACH])]


def test_the_new_recipient_that_would_cross_the_limit_is_refused_before_it_is_mailed(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Issue 12: the breach is found before the effect, not after it was committed."""

    async def body(k: Kernel) -> list[str]:
        token = await _mailer(k)
        security = SecurityAgent(k, [Threshold("external_destinations", 2, 100.0)], interval_s=3600)
        seen = [await _mail(k, token, to, f"m{n}") for n, to in enumerate(RECIPIENTS[:3])]
        seen.append(str(len(await security.poll())))
        seen.append(await _mail(k, token, RECIPIENTS[0], "again"))  # isolated now
        await security.stop()
        [breach] = _breaches(k)
        assert (breach["metric"], breach["before_effect"], breach["acting"]) == (
            "external_destinations",
            True,
            True,
        )
        agent = k.registry.agent("mailer")
        assert (agent.status, agent.stage) == (AgentStatus.ISOLATED, Stage.SOFT_ISOLATION)
        [stage] = [dict(r.body) for r in k.wal.read(kinds=["agent.stage"])]
        assert stage["principal"] == PRINCIPAL and "aggregate" in str(stage["cause"])
        return seen

    seen = with_kernel(config, body)
    assert seen == [
        "committed",
        "committed",
        "SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS",
        "1",
        "RULE.R8.AGENT_ISOLATED",
    ]
    assert mailbox.recipients() == RECIPIENTS[:2]


def test_many_small_mails_stop_before_the_one_that_crosses_the_bytes_and_the_window_slides(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Exfiltration in many small allowed steps (issue 12): each mail passes alone; the
    one that would carry the window's bytes over 1,000 is refused, and once the window
    has slid past the first ones the same size passes again."""
    clock = Clock()

    async def body(k: Kernel) -> list[str]:
        token = await _mailer(k)
        k.view.aggregate.configure([Threshold("outbound_bytes", 1000, 100.0)])
        seen = []
        for n in range(6):  # ~212 bytes of params each: the fifth would pass 1,000
            seen.append(await _mail(k, token, RECIPIENTS[0], f"s{n}", "x" * 200))
            clock.now += 10
        clock.now += 100  # the first five leave the window
        seen.append(await _mail(k, token, RECIPIENTS[0], "later", "x" * 200))
        return seen

    seen = with_kernel(replace(config, clock=clock), body)
    assert seen == [*["committed"] * 4, *["SECURITY.AGGREGATE.OUTBOUND_BYTES"] * 2, "committed"]
    assert len(mailbox.messages) == 5


def test_a_run_that_ends_within_one_poll_is_still_caught(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Issue 12, tried from outside: an agent mails faster than the monitor polls and its
    run ends within one poll. The kernel refuses the crossing mail itself, and the
    stopping Security Agent reads the log a last time: breach logged, agent isolated."""
    config.save()
    path = config.data_dir / "config.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "security": {"external_destinations_per_week": 1}}))

    async def main() -> list[str]:
        async with configured_kernel(config.data_dir) as k:
            token = await _mailer(k)
            return [await _mail(k, token, to, f"m{n}") for n, to in enumerate(RECIPIENTS)]

    seen = asyncio.run(main())
    assert seen[0] == "committed"
    assert set(seen[1:]) == {"SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS"}

    async def after(k: Kernel) -> tuple[AgentStatus, int]:
        return k.registry.agent("mailer").status, len(_breaches(k))

    assert with_kernel(config, after) == (AgentStatus.ISOLATED, 3)
    assert mailbox.recipients() == RECIPIENTS[:1]


def test_a_restarted_monitor_acts_on_breaches_already_in_the_log(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Issue 12: a refusal logged while no Security Agent ran is acted on by the next one
    that starts; a third one finds it answered and does nothing twice."""

    async def body(k: Kernel) -> tuple[str, int, int]:
        token = await _mailer(k)
        k.view.aggregate.configure([Threshold("external_destinations", 1, 3600.0)])
        await _mail(k, token, RECIPIENTS[0], "m0")
        refused = await _mail(k, token, RECIPIENTS[1], "m1")
        first = SecurityAgent(k, [Threshold("external_destinations", 1, 3600.0)])
        acted = len(await first.poll())
        await k.set_agent_status("mailer", AgentStatus.ACTIVE)  # the Commander resumes
        second = SecurityAgent(k, [Threshold("external_destinations", 1, 3600.0)])
        again = len(await second.poll())
        assert k.registry.agent("mailer").status is AgentStatus.ACTIVE
        return refused, acted, again

    assert with_kernel(config, body) == ("SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS", 1, 0)


def test_monitoring_only_mode_logs_would_be_breaches_and_refuses_nothing(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Calibration (seed: the first month): figures past a limit are logged, not acted on."""

    async def body(k: Kernel) -> list[dict[str, object]]:
        token = await _mailer(k)
        security = SecurityAgent(
            k,
            [Threshold("external_destinations", 1, 3600.0)],
            policy=CascadePolicy(monitor_only=True),
        )
        for n, to in enumerate(RECIPIENTS[:3]):
            assert await _mail(k, token, to, f"m{n}") == "committed"
        await security.poll()
        assert k.registry.agent("mailer").status is AgentStatus.ACTIVE
        return _breaches(k)

    breaches = with_kernel(config, body)
    assert [(b["value"], b["acting"], b["before_effect"]) for b in breaches] == [
        (2.0, False, False),
        (3.0, False, False),
    ]
    assert len(mailbox.messages) == 3


def test_signals_move_an_agent_up_the_cascade_and_a_clean_window_steps_it_down(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Danger signals (DSC denials by code) raise one score; stages follow it, each a
    logged transition with its cause; 30 quiet minutes of the kernel's clock step the
    agent down one stage at a time."""
    clock = Clock()

    async def body(k: Kernel) -> list[str]:
        token = await _mailer(k)
        security = SecurityAgent(k, interval_s=3600)
        stages = []

        async def denied_read() -> None:  # R4: reading MAOS's own data dir
            frame = intent_frame(token, "fs.read", str(config.data_dir / "wal.sqlite3"), "r")
            out = await k.submit(frame, agent_id="mailer")
            assert out.code.startswith("RULE.R4"), out.code
            await security.poll()
            stages.append(k.registry.agent("mailer").stage.value)

        await denied_read()  # 3: observation
        clock.now += 60
        await denied_read()  # ~5.9: still observation
        await denied_read()  # ~8.9: soft isolation
        for _ in range(2):
            clock.now += 31 * 60
            await security.poll()
            stages.append(k.registry.agent("mailer").stage.value)
        return stages

    stages = with_kernel(replace(config, clock=clock), body)
    assert stages == [
        "observation",
        "observation",
        "soft_isolation",
        "observation",
        "normal",
    ]


def test_the_running_sums_are_restored_from_the_log_at_boot(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Issue 12: the figures live in the kernel and are a fold of the log, so a kernel
    booted on the same data dir refuses the crossing mail as the first one would have."""
    limit = [Threshold("external_destinations", 2, 3600.0)]

    async def first(k: Kernel) -> str:
        token = await _mailer(k)
        for n, to in enumerate(RECIPIENTS[:2]):
            assert await _mail(k, token, to, f"m{n}") == "committed"
        return token

    token = with_kernel(config, first)

    async def second(k: Kernel) -> tuple[str, str, dict[str, float]]:
        k.view.aggregate.configure(limit)
        refused = await _mail(k, token, RECIPIENTS[2], "m2")
        known = await _mail(k, token, RECIPIENTS[0], "m3")  # not a new destination
        return refused, known, k.view.aggregate.figures("mailer", k.clock())

    refused, known, figures = with_kernel(config, second)
    assert (refused, known) == ("SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS", "committed")
    assert figures["external_destinations"] == 2
    assert mailbox.recipients() == [*RECIPIENTS[:2], RECIPIENTS[0]]


def test_the_commander_is_told_by_mail_and_webhook_when_an_agent_is_isolated(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Issue 12: soft isolation and beyond reach the Commander outside the page, through
    the kernel's own SMTP and HTTP adapters, to the targets config.json names."""
    with loopback_http({"/hook": b"ok"}) as site:
        config.save()
        path = config.data_dir / "config.json"
        raw = json.loads(path.read_text())
        security = {
            "external_destinations_per_week": 1,
            "notify_mail": "boss@example.com",
            "notify_webhook": site.url("/hook"),
        }
        path.write_text(json.dumps({**raw, "security": security}))

        async def main() -> list[str]:
            async with configured_kernel(config.data_dir) as k:
                token = await _mailer(k)
                return [await _mail(k, token, to, f"m{n}") for n, to in enumerate(RECIPIENTS[:2])]

        assert asyncio.run(main())[1] == "SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS"
        [(where, body)] = site.bodies
    assert where == "/hook" and json.loads(body)["stage"] == "soft_isolation"
    told = [m for m in mailbox.messages if m.rcpt_tos == ["boss@example.com"]]
    assert len(told) == 1 and "soft isolation" in str(told[0].message["Subject"])
    assert "SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS" in told[0].message.get_content()

    async def notified(k: Kernel) -> list[tuple[str, bool]]:
        return [
            (str(r.body["channel"]), bool(r.body["ok"]))
            for r in k.wal.read(kinds=["security.notified"])
        ]

    assert with_kernel(config, notified) == [("mail", True), ("webhook", True)]


def test_a_notification_target_that_is_not_an_address_is_refused(config: KernelConfig) -> None:
    config.save()
    path = config.data_dir / "config.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "security": {"notify_webhook": "ftp://x"}}))
    with pytest.raises(InputError) as refused:
        load_settings(config.data_dir)
    assert refused.value.code == "BAD_INPUT.CONFIG"
    assert "security.notify_webhook" in refused.value.message


def test_an_empty_security_section_boots_the_security_agents_own_defaults() -> None:
    """The defaults are written once (`maos.kernel.stages`); what boot builds from a
    config without a ``security`` section - minutes to seconds, every weight by name -
    is the policy a Security Agent gets when none is given."""
    assert cascade_policy(SecuritySettings()) == CascadePolicy()
    assert set(DangerWeights.model_fields) == set(DEFAULT_WEIGHTS)


def test_an_agent_under_observation_has_every_effect_evaluated_and_nothing_restricted(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Issue 12, stage 1: more monitoring, no restriction. With no SSE configured, an
    observed agent's effects go to the heuristic evaluator (as in fever); a mail carrying
    a credential is refused, a plain one still goes out; back in normal, nothing asks."""
    key = "AKIAIOSFODNN7EXAMPLE"

    async def body(k: Kernel) -> list[str]:
        token = await _mailer(k)

        async def stage(to: Stage) -> None:
            order = cascade.stage_order(
                k.registry, "mailer", to, cause="test", principal="commander", at=k.clock()
            )
            await k.cascade(order)

        seen = [await _mail(k, token, RECIPIENTS[0], "n0", f"key {key}")]
        await stage(Stage.OBSERVATION)
        seen += [
            await _mail(k, token, RECIPIENTS[0], "o1", f"key {key}"),
            await _mail(k, token, RECIPIENTS[0], "o2", "plain"),
        ]
        await stage(Stage.NORMAL)
        seen.append(await _mail(k, token, RECIPIENTS[0], "n1", f"key {key}"))
        return seen

    seen = with_kernel(config, body, fever_sse=HeuristicEvaluator())
    assert seen == ["committed", "SSE.EXFILTRATION", "committed", "committed"]
