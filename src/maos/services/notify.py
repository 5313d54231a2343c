"""Telling the Commander outside the page when an agent reaches soft isolation or beyond.

The dashboard shows every stage, but nobody watches a page at 3 a.m. When the Security
Agent moves an agent to soft isolation, hard isolation or asks for its elimination, this
sends a mail through the kernel's SMTP adapter and/or POSTs a JSON webhook through its
HTTP adapter - the same adapters, with the same checks, that carry agents' effects - to
the targets ``config.json``'s ``security`` section names (``notify_mail``,
``notify_webhook``). Only the Commander configures them; no agent text chooses where
they go, and what is sent is the kernel's record (stage, cause, score, evidence codes).

Each attempt is logged as ``security.notified`` {agent_id, stage, channel, target, ok,
error}. A failed notification never stops the Security Agent: it is logged and the
cascade goes on.

HACF (`maos.services.hacf`) tells the Commander through the same channels when a
decision waits (an approval, an override, an agent's answer in a deliberation) and when
an inform-level effect was carried out (`tell`; ``stage`` is then ``hacf``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from maos.effects.base import EffectCall, EffectError
from maos.kernel.kernel import Kernel

__all__ = ["NOTIFIED", "CommanderNotifier"]

NOTIFIED = "security.notified"


class CommanderNotifier:
    """Sends one message per cascade step at or above soft isolation."""

    def __init__(
        self, kernel: Kernel, *, mail_to: str | None = None, webhook: str | None = None
    ) -> None:
        self._kernel = kernel
        self._mail_to = mail_to
        self._webhook = webhook

    async def notify(self, step: Mapping[str, Any], seq: int) -> None:
        """``step`` is the ``agent.stage`` record's body (or an elimination request's)."""
        agent, stage = str(step.get("agent_id")), str(step.get("stage", "elimination_asked"))
        codes = ", ".join(str(e.get("code")) for e in step.get("evidence", ()) or ())
        text = (
            f"Agent {agent} moved to {stage.replace('_', ' ')}.\n"
            f"Cause: {step.get('cause', '')}\nDanger score: {step.get('score', '')}\n"
            f"Evidence: {codes or '-'}\n\n`maos agent rca {agent}` has the details; "
            f"`maos agent release {agent} --to STAGE` lets it down."
        )
        key = f"notify-{agent}-{seq}"
        if self._mail_to is not None:
            call = EffectCall(
                "email.send",
                self._mail_to,
                key + "-mail",
                {"subject": f"MAOS: {agent} is in {stage.replace('_', ' ')}", "body": text},
            )
            await self._send("email", call, "mail", agent, stage)
        if self._webhook is not None:
            host = urlsplit(self._webhook).netloc
            payload = {"agent_id": agent, "stage": stage, "text": text, "seq": seq}
            call = EffectCall(
                "http.request",
                self._webhook,
                key + "-webhook",
                {"method": "POST", "json": payload},
                {"allowed_hosts": [host]},
            )
            await self._send("http", call, "webhook", agent, stage)

    async def tell(self, subject: str, text: str, agent: str, seq: int) -> None:
        """One HACF message (``subject`` and ``text`` are the kernel's record in words)."""
        key = f"hacf-{seq}"
        if self._mail_to is not None:
            call = EffectCall(
                "email.send", self._mail_to, key + "-mail", {"subject": subject, "body": text}
            )
            await self._send("email", call, "mail", agent, "hacf")
        if self._webhook is not None:
            payload = {"agent_id": agent, "stage": "hacf", "subject": subject, "text": text}
            call = EffectCall(
                "http.request",
                self._webhook,
                key + "-webhook",
                {"method": "POST", "json": {**payload, "seq": seq}},
                {"allowed_hosts": [urlsplit(self._webhook).netloc]},
            )
            await self._send("http", call, "webhook", agent, "hacf")

    async def _send(
        self, family: str, call: EffectCall, channel: str, agent: str, stage: str
    ) -> None:
        adapter = self._kernel.commit.adapter(family)
        error = ""
        if adapter is None:
            error = f"no {family} adapter is configured"
        else:
            try:
                await adapter.execute(call)
            except EffectError as exc:
                error = f"{exc.code}: {exc.message}"
            except Exception as exc:  # never let a notification break the cascade
                error = f"{type(exc).__name__}: {exc}"
        services = self._kernel.services  # a Ring 1 record: through the kernel, chartered
        await services.submit(
            services.capability("security"),
            NOTIFIED,
            {
                "agent_id": agent,
                "stage": stage,
                "channel": channel,
                "target": call.target,
                "ok": not error,
                "error": error,
            },
        )
