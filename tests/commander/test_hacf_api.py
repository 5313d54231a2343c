"""HACF on the dashboard's API (issue 10): a hijacked session - the bearer token and
nothing else - cannot override, while R8 stays one request away; a deliberation with an
edited proposal runs the edit, re-checked, and never the agent's original. Real kernel,
real uvicorn on loopback, real SMTP server, real TOTP codes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import pyotp

from maos.commander.web import Dashboard, load_or_create_token
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.hacfconfig import CommanderSection
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass, OutcomeStatus
from maos.services import hacf
from maos.testing import Mailbox, intent_frame, task_with_untrusted_mail
from maos.testing import StepClock as Clock


@contextlib.asynccontextmanager
async def _served(config: KernelConfig) -> AsyncIterator[tuple[Kernel, httpx.AsyncClient]]:
    kernel = await Kernel.boot(config)
    dashboard = Dashboard(kernel, load_or_create_token(config.data_dir))
    server = asyncio.create_task(dashboard.serve())
    try:
        await asyncio.wait_for(dashboard.started(), 30)
        headers = {"Authorization": f"Bearer {load_or_create_token(config.data_dir)}"}
        async with httpx.AsyncClient(base_url=dashboard.url, headers=headers, timeout=30) as c:
            yield kernel, c
    finally:
        dashboard.stop()
        await server
        await kernel.close()


def _run(config: KernelConfig, body: Callable[[Kernel, httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with _served(config) as (kernel, client):
            return await body(kernel, client)

    return asyncio.run(main())


async def _park(k: Kernel) -> str:
    token = await task_with_untrusted_mail(k, [Grant("fs.read", "*"), Grant("email.send", "*")])
    await k.submit(intent_frame(token, "fs.read", "inbox/mail.txt", "r1"), agent_id="a1")
    frame = intent_frame(token, "email.send", "stranger@evil.example", "m1", subject="s", body="x")
    out = await k.submit(frame, agent_id="a1")
    assert out.status is OutcomeStatus.PENDING and out.approval_id is not None, out
    return out.approval_id


def test_a_session_with_only_the_token_cannot_override_but_r8_stays_one_request(
    config: KernelConfig,
) -> None:
    clock = Clock()

    async def body(k: Kernel, client: httpx.AsyncClient) -> None:
        await _park(k)
        ov = hacf.Overrides(
            k.registry,
            hacf.kernel_log(k),
            clock,
            CommanderSection(),
            hacf.SecondFactor(k.config.data_dir, clock),
        )
        secret = await ov.enroll("commander")  # explicitly, as `maos commander enroll`
        quarantine = await client.post("api/agents/a1/status", json={"status": "quarantined"})
        assert quarantine.status_code == 200  # R8: one request
        lift = await client.post("api/agents/a1/status", json={"status": "active"})
        assert lift.status_code == 409 and lift.json()["error"] == "HACF.OVERRIDE_REQUIRED"
        asked = await client.post(
            "api/commander/overrides",
            json={"action": "resume", "subject": "a1", "to": "active", "reason": "mine"},
        )
        assert asked.status_code == 200, asked.text
        oid = asked.json()["override_id"]
        assert asked.json()["diff"] == {"status": ["quarantined", "active"]}
        for guess in ("000000", "123456"):
            bad = await client.post(f"api/commander/overrides/{oid}/confirm", json={"code": guess})
            assert bad.status_code == 409 and bad.json()["error"] == "HACF.BAD_CODE"
        assert k.registry.agent("a1").status is AgentStatus.QUARANTINED
        good = pyotp.TOTP(secret).at(clock.now)
        done = await client.post(f"api/commander/overrides/{oid}/confirm", json={"code": good})
        assert done.status_code == 200 and done.json()["status"] == "done"
        assert k.registry.agent("a1").status is AgentStatus.ACTIVE
        safe = await client.post("api/safe-state", json={"on": True, "reason": "drill"})
        assert safe.status_code == 200  # R8 again, with a factor enrolled

    config.data_dir.mkdir(parents=True)  # what the API reads: no cooling-off, for the test
    (config.data_dir / "config.json").write_text('{"commander": {"cooling_off_s": 0}}')
    _run(replace(config, clock=clock), body)


def test_deliberation_over_the_api_runs_the_edited_proposal_not_the_original(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(k: Kernel, client: httpx.AsyncClient) -> list[str]:
        aid = await _park(k)
        packet = (await client.get(f"api/approvals/{aid}/packet")).json()
        assert k.packets.verify(packet)
        asked = await client.post(
            f"api/approvals/{aid}/deliberate/ask", json={"question": "why them?"}
        )
        assert asked.status_code == 200
        edited = {"subject": "s", "body": "a shorter, checked text"}
        await client.post(f"api/approvals/{aid}/deliberate/edit", json={"params": edited})
        stale = await client.post(
            f"api/approvals/{aid}/deliberate/decide",
            json={"decision": "approve", "packet_digest": "0" * 64},
        )
        assert stale.status_code == 409 and stale.json()["error"] == "APPROVAL.PACKET_MISMATCH"
        decided = await client.post(
            f"api/approvals/{aid}/deliberate/decide",
            json={"decision": "approve", "packet_digest": packet["digest"]},
        )
        assert decided.status_code == 200, decided.text
        # the edit is a new intent through every check: an untrusted context still parks it
        assert decided.json()["status"] == "pending", (
            decided.json()["code"],
            decided.json()["reason"],
        )
        assert k.approvals.get(aid).note == "replaced by the Commander's edit"
        return [r.kind for r in hacf.thread(k.wal, aid)]

    kinds = _run(config, body)
    assert kinds == [hacf.ASKED, "hacf.edited", hacf.DECIDED]
    assert mailbox.messages == []  # the agent's original mail never went out


def test_the_api_runs_a_refused_intent_and_onboards_a_promotion_on_confirmation(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    clock = Clock()

    async def body(k: Kernel, client: httpx.AsyncClient) -> None:
        await k.register_agent("a1", ring=3, budgets={"api_calls": 10})
        await k.open_task(
            "t1",
            trusted_targets=["boss@example.com"],
            budgets={"api_calls": 10},
            effect_classes=[EffectClass.READ],
        )
        token = k.mint("a1", "t1", [Grant("email.send", "*")])
        frame = intent_frame(token, "email.send", "boss@example.com", "m1", subject="s", body="x")
        refused = await k.submit(frame, agent_id="a1")
        assert refused.code == "RULE.R2.EFFECT_CLASS_NOT_GRANTED", refused
        factor = hacf.SecondFactor(k.config.data_dir, clock)
        ov = hacf.Overrides(k.registry, hacf.kernel_log(k), clock, CommanderSection(), factor)
        secret = await ov.enroll("commander")
        answers = {}
        for action, subject, to in (("execute", refused.intent_id, ""), ("promote", "a1", "2")):
            asked = await client.post(
                "api/commander/overrides",
                json={"action": action, "subject": subject, "to": to, "reason": "r"},
            )
            assert asked.status_code == 200, asked.text
            oid = asked.json()["override_id"]
            code = pyotp.TOTP(secret).at(clock.now)
            done = await client.post(f"api/commander/overrides/{oid}/confirm", json={"code": code})
            assert done.status_code == 200, done.text
            answers[action] = done.json()
            clock.now += 30  # the next code is of the next time step
        assert answers["execute"]["outcome"]["status"] == "committed"
        assert answers["promote"]["promoted"] == "a1-r2"
        assert k.registry.agent("a1-r2").ring == 2

    config.data_dir.mkdir(parents=True)
    (config.data_dir / "config.json").write_text('{"commander": {"cooling_off_s": 0}}')
    _run(replace(config, clock=clock), body)
    assert mailbox.recipients() == ["boss@example.com"]
