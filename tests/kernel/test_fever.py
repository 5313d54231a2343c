"""Security Fever (seed: "when 2+ agents are in quarantine the system becomes more
restrictive: rate limits halved, all Ring 3 agents receive SSE evaluation").

A real kernel mails through a real SMTP server on loopback; the clock stands still, so
a bucket never refills during a test and the counts below are exact."""

from __future__ import annotations

from dataclasses import replace

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.services.sse import HeuristicEvaluator
from maos.testing import Mailbox, intent_frame, with_kernel

NOW = 1_900_000_000.0
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


async def _agents(k: Kernel) -> dict[str, str]:
    """Two agents to quarantine, and a Ring 3 and a Ring 2 mailer with their tokens."""
    await k.open_task("t1", trusted_targets=["boss@example.com"], budgets={"api_calls": 100})
    tokens = {}
    for agent_id, ring in (("q1", 3), ("q2", 3), ("mailer", 3), ("trusted", 2)):
        await k.register_agent(agent_id, ring=ring, budgets={"api_calls": 100})
        tokens[agent_id] = k.mint(agent_id, "t1", [Grant("email.send", "*")])
    return tokens


async def _mails_until_refused(k: Kernel, token: str, agent_id: str) -> tuple[int, str]:
    """How many mails the agent's email.send bucket lets through, and the refusal."""
    for n in range(20):
        frame = intent_frame(token, "email.send", "boss@example.com", f"{agent_id}-{n}", body="hi")
        out = await k.submit(frame, agent_id=agent_id)
        if out.status is not OutcomeStatus.COMMITTED:
            return n, f"{out.code}: {out.reason}"
    raise AssertionError("the bucket never ran dry")


def test_two_quarantined_agents_halve_every_rate_limit(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(k: Kernel) -> list[tuple[bool, int, str]]:
        tokens = await _agents(k)
        seen = []
        await k.set_agent_status("q1", AgentStatus.QUARANTINED)  # one: no fever yet
        sent, refusal = await _mails_until_refused(k, tokens["mailer"], "mailer")
        seen.append((k.registry.fever, sent, refusal))
        await k.set_agent_status("q2", AgentStatus.QUARANTINED)
        sent, refusal = await _mails_until_refused(k, tokens["trusted"], "trusted")
        seen.append((k.registry.fever, sent, refusal))
        assert k.status()["fever"] == {"on": True, "quarantined": ["q1", "q2"]}
        return seen

    [(calm, calm_sent, calm_refusal), (fever, fever_sent, fever_refusal)] = with_kernel(
        replace(config, clock=lambda: NOW), body
    )
    assert (calm, calm_sent) == (False, 5)  # email.send: burst 5
    assert calm_refusal.startswith("DSC.RATE.EXCEEDED") and "Fever" not in calm_refusal
    assert (fever, fever_sent) == (True, 2)  # 5 tokens at 2 an attempt
    assert fever_refusal.startswith("DSC.RATE.EXCEEDED")
    assert "burst 2.5; halved in Security Fever" in fever_refusal
    assert len(mailbox.messages) == calm_sent + fever_sent


def test_in_fever_ring_3_effects_go_to_the_sse_and_it_ends_with_the_quarantines(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(k: Kernel) -> list[tuple[str, str]]:
        tokens = await _agents(k)

        async def leak(agent_id: str, key: str) -> tuple[str, str]:
            frame = intent_frame(
                tokens[agent_id], "email.send", "boss@example.com", key, body=f"key {AWS_KEY}"
            )
            out = await k.submit(frame, agent_id=agent_id)
            return out.status.value, out.code

        seen = [await leak("mailer", "calm")]  # no SSE configured: nothing asks
        await k.set_agent_status("q1", AgentStatus.QUARANTINED)
        await k.set_agent_status("q2", AgentStatus.QUARANTINED)
        seen += [await leak("mailer", "fever"), await leak("trusted", "fever-ring2")]
        await k.set_agent_status("q2", AgentStatus.ACTIVE)
        seen.append(await leak("mailer", "cooled"))
        return seen

    seen = with_kernel(config, body, fever_sse=HeuristicEvaluator())
    assert seen == [
        ("committed", ""),
        ("denied", "SSE.EXFILTRATION"),  # Ring 3 in fever: the heuristic sees the key
        ("committed", ""),  # Ring 2 is not asked
        ("committed", ""),  # one quarantine left: the fever is over
    ]
    assert len(mailbox.messages) == 3
