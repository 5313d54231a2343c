"""The TSCA, Trusted System Control Agent (seed §38.7): recovery from a fixed repertoire,
within a budget, each significant step confirmed by the Watchdog first.

On an incident (a service down, an agent misbehaving) it diagnoses from the log and the
Service Manager's health, then acts - only from this repertoire:

    restart_service  NAME    the Service Manager restarts it now
    rotate_token     TOKEN   the token is revoked and a fresh one with the same grants minted
    isolate_agent    AGENT   soft isolation (nothing outbound)
    enter_mode       MODE    a degradation mode demanded as source ``tsca``

Every action counts against the incident's budget (``resilience.tsca_budget``). The
significant ones (all but entering a mode, which only ever restricts) first ask the
Watchdog to re-check the fact they rest on - the service really is down, the agent
really is misbehaving - and the Watchdog logs its answer (``watchdog.confirmed``) before
anything runs; an action whose fact is not confirmed is not taken. If the TSCA runs out
of budget without resolving the incident, or fails itself, it hands over: Minimal Safe
State (mode ``mss`` from source ``tsca``), waiting for the Commander, who lifts it with
``maos mode normal --source tsca`` once the incident is understood.

Its records (``tsca.incident``, ``tsca.action``, ``tsca.handover``) go through the kernel
as ``service:tsca``; the orders it gives for the Commander (revocations, isolations) are
logged as ``commander:tsca``, an automaton acting on the Commander's standing order, as
the pod runtime's are ``commander:kernel``. It needs no LLM (a rule-based cell).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel
from maos.kernel.modes import Mode
from maos.services.manager import ServiceManager

__all__ = ["Action", "Incident", "Tsca"]

SERVICE = "tsca"
PRINCIPAL = "service:tsca"
ACTING_FOR_COMMANDER = "commander:tsca"


class Action(StrEnum):
    RESTART_SERVICE = "restart_service"
    ROTATE_TOKEN = "rotate_token"
    ISOLATE_AGENT = "isolate_agent"
    ENTER_MODE = "enter_mode"


FACTS: Mapping[Action, str] = {
    Action.RESTART_SERVICE: "service_down",
    Action.ROTATE_TOKEN: "agent_misbehaving",
    Action.ISOLATE_AGENT: "agent_misbehaving",
}
"""The fact each significant action rests on (what the Watchdog re-checks)."""


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    kind: str
    """``service_down`` (subject: a service name) or ``agent_misbehaving`` (an agent id)."""
    subject: str
    token: str | None = None
    """The misbehaving agent's token, to rotate."""


@dataclass
class _Budget:
    left: int
    spent: list[str] = field(default_factory=list)


class Tsca:
    def __init__(
        self, kernel: Kernel, manager: ServiceManager, *, recovery_s: float = 10.0
    ) -> None:
        self._kernel = kernel
        self._manager = manager
        self._cap = kernel.services.capability(SERVICE)
        self._budget = kernel.config.resilience.tsca_budget
        self._recovery_s = recovery_s
        """How long a restarted service has to beat again before the next step."""
        self.rotated: dict[str, str] = {}
        """Agent -> the fresh token that replaced a rotated one, for whoever restarts it."""

    def watch(self, manager: ServiceManager) -> None:
        """Take an incident each time ``manager`` gives a service up as failed (one at a
        time per service: a failure during its own incident is part of that incident)."""
        working: set[str] = set()

        async def failed(name: str) -> str:
            if name in working:
                return "in_progress"
            working.add(name)
            try:
                seq = self._kernel.wal.tail_seq()
                return await self.handle(Incident(f"svc-{name}-{seq}", "service_down", name))
            finally:
                working.discard(name)

        manager.on_failed = failed

    async def handle(self, incident: Incident) -> str:
        """Work one incident: ``resolved``, ``handed_over`` (MSS) or ``unconfirmed``."""
        budget = _Budget(self._budget)
        try:
            await self._record(
                "tsca.incident", {**_body(incident), "diagnosis": self._diagnose(incident)}
            )
            if incident.kind == "service_down":
                return await self._service_down(incident, budget)
            if incident.kind == "agent_misbehaving":
                return await self._agent(incident, budget)
            return await self._hand_over(incident, budget, f"no repertoire for {incident.kind}")
        except Exception as exc:  # the TSCA failing is itself an incident: MSS
            return await self._hand_over(
                incident, budget, f"TSCA failed: {type(exc).__name__}: {exc}"
            )

    # -- diagnosis ---------------------------------------------------------------------

    def _diagnose(self, incident: Incident) -> dict[str, Any]:
        """What the log and health say about the subject: its last exits, its state."""
        if incident.kind == "service_down":
            exits = [
                {"code": r.body.get("code"), "reason": r.body.get("reason")}
                for r in self._kernel.wal.read(kinds=["service.exited"])
                if r.body.get("service") == incident.subject
            ]
            health = self._manager.health().get(incident.subject, {})
            return {"state": health.get("state", "unknown"), "exits": exits[-3:]}
        agent = self._kernel.registry.agents.get(incident.subject)
        if agent is None:
            return {"agent": "unknown"}
        return {"status": agent.status.value, "stage": agent.stage.value, "danger": agent.danger}

    # -- the plans ---------------------------------------------------------------------

    async def _service_down(self, incident: Incident, budget: _Budget) -> str:
        member = f"service:{incident.subject}"
        while True:
            taken = await self._act(incident, budget, Action.RESTART_SERVICE, incident.subject)
            if taken is None:
                return await self._hand_over(incident, budget, "budget spent, service still down")
            if not taken:
                return "unconfirmed"
            if await self._recovers(member):
                return "resolved"

    async def _agent(self, incident: Incident, budget: _Budget) -> str:
        taken = await self._act(incident, budget, Action.ISOLATE_AGENT, incident.subject)
        if taken is None:
            return await self._hand_over(incident, budget, "budget spent")
        if not taken:
            return "unconfirmed"
        if incident.token is not None:
            rotated = await self._act(incident, budget, Action.ROTATE_TOKEN, incident.subject)
            if rotated is None:
                return await self._hand_over(incident, budget, "budget spent before the rotation")
        return "resolved"

    async def _recovers(self, member: str) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + self._recovery_s
        while loop.time() < end:
            beat = self._kernel.watchdog.members.get(member)
            if beat is not None and beat.counter >= 0 and self._kernel.watchdog.alive(member):
                return True
            await asyncio.sleep(0.05)
        return False

    # -- acting ------------------------------------------------------------------------

    async def _act(
        self, incident: Incident, budget: _Budget, action: Action, subject: str
    ) -> bool | None:
        """One action: None when the budget is spent, False when its fact was not
        confirmed (not taken), True when it was taken."""
        if budget.left <= 0:
            return None
        budget.left -= 1
        budget.spent.append(action.value)
        fact = FACTS.get(action)
        if fact is not None:
            confirmed = await self._kernel.watchdog.confirm(fact, subject, asked_by=PRINCIPAL)
            if not confirmed:
                await self._record(
                    "tsca.action",
                    {
                        **_body(incident),
                        "action": action.value,
                        "target": subject,
                        "taken": False,
                        "why": f"the Watchdog did not confirm {fact}",
                    },
                )
                return False
        detail = await self._run(action, subject, incident)
        await self._record(
            "tsca.action",
            {
                **_body(incident),
                "action": action.value,
                "target": subject,
                "taken": True,
                "detail": detail,
                "budget_left": budget.left,
            },
        )
        return True

    async def _run(self, action: Action, subject: str, incident: Incident) -> str:
        k = self._kernel
        if action is Action.RESTART_SERVICE:
            self._manager.restart(subject)
            return "restart requested"
        if action is Action.ISOLATE_AGENT:
            await k.set_agent_status(subject, AgentStatus.ISOLATED, principal=ACTING_FOR_COMMANDER)
            return "soft isolation"
        if action is Action.ROTATE_TOKEN:
            assert incident.token is not None
            info = k.tokens.inspect(incident.token)
            await k.revoke(incident.token, principal=ACTING_FOR_COMMANDER)
            self.rotated[info.agent_id] = k.mint(info.agent_id, info.task_id, list(info.grants))
            return "revoked; a fresh token with the same grants minted"
        await k.demand_mode("tsca", Mode(subject), cause=incident.incident_id, principal=PRINCIPAL)
        return f"mode {subject}"

    async def _hand_over(self, incident: Incident, budget: _Budget, why: str) -> str:
        await self._kernel.demand_mode(
            "tsca", Mode.MSS, cause=f"{incident.incident_id}: {why}", principal=PRINCIPAL
        )
        await self._record(
            "tsca.handover", {**_body(incident), "why": why, "actions": budget.spent}
        )
        return "handed_over"

    async def _record(self, kind: str, body: Mapping[str, Any]) -> None:
        await self._kernel.services.submit(self._cap, kind, body)


def _body(incident: Incident) -> dict[str, Any]:
    return {"incident": incident.incident_id, "kind": incident.kind, "subject": incident.subject}
