"""The TSCA (issue 12 item 8): it acts only on what the Watchdog confirms, logged before
the action; it stops at its per-incident budget and hands over to Minimal Safe State."""

from __future__ import annotations

from dataclasses import replace

from maos.kernel.cascade import stage_order
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.modes import Mode
from maos.kernel.resilience import ResilienceSettings
from maos.kernel.stages import Stage
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.services.manager import RestartPolicy, ServiceManager
from maos.services.tsca import Incident, Tsca
from maos.testing import eventually, intent_frame, with_kernel


def _seqs(k: Kernel, kind: str) -> list[tuple[int, dict[str, object]]]:
    return [(r.seq, dict(r.body)) for r in k.wal.read(kinds=[kind])]


def test_a_tsca_out_of_budget_hands_over_to_mss(config: KernelConfig) -> None:
    """issue 12: a service that never comes back; two restarts (the budget), then MSS,
    waiting for the Commander; agents' requests are refused meanwhile."""
    settings = ResilienceSettings(tsca_budget=2, start_grace_s=0.5)

    async def body(k: Kernel) -> None:
        await k.register_agent("a1", ring=2)
        await k.open_task("t1")
        token = k.mint("a1", "t1", [Grant("fs.*", "*")])
        never = RestartPolicy(restart=False)
        # A service whose process dies at once, every time: /bin/false as its interpreter.
        manager = ServiceManager(k, policies={"beacon": never}, python="/bin/false")
        manager.start("beacon")
        try:
            await eventually(lambda: manager.runs["beacon"].state == "failed")
            tsca = Tsca(k, manager, recovery_s=1.0)
            outcome = await tsca.handle(Incident("inc-1", "service_down", "beacon"))
            assert outcome == "handed_over"
            assert k.mode() is Mode.MSS
            taken = [b for _, b in _seqs(k, "tsca.action")]
            assert [b["action"] for b in taken] == ["restart_service", "restart_service"]
            [(_, handover)] = _seqs(k, "tsca.handover")
            assert handover["principal"] == "service:tsca"
            read = intent_frame(token, "fs.read", "x", "r1")
            assert (await k.submit(read, agent_id="a1")).code == "MODE.MSS"
            await k.demand_mode("tsca", Mode.NORMAL, cause="understood", principal="commander")
            assert k.mode() is not Mode.MSS  # the Commander lifts the hand-over
        finally:
            await manager.stop()

    with_kernel(replace(config, resilience=settings), body)


def test_an_action_the_watchdog_does_not_confirm_is_not_taken(config: KernelConfig) -> None:
    """issue 12: the incident says the beacon is down and agent 'good' misbehaves; the
    Watchdog finds the beacon beating and 'good' clean: nothing is done, and the
    Watchdog's answer is logged before the TSCA's record of what it did not do."""

    async def body(k: Kernel) -> None:
        await k.register_agent("good", ring=3)
        manager = ServiceManager(k)
        manager.start("beacon")
        try:
            await eventually(
                lambda: (
                    k.watchdog.alive("service:beacon")
                    and k.watchdog.members["service:beacon"].counter > 0
                )
            )
            pid = manager.runs["beacon"].pid
            tsca = Tsca(k, manager)
            assert await tsca.handle(Incident("inc-2", "service_down", "beacon")) == "unconfirmed"
            assert (
                await tsca.handle(Incident("inc-3", "agent_misbehaving", "good")) == "unconfirmed"
            )
            assert manager.runs["beacon"].pid == pid
            assert k.registry.agent("good").status is AgentStatus.ACTIVE
            confirmed = _seqs(k, "watchdog.confirmed")
            actions = _seqs(k, "tsca.action")
            assert [b["holds"] for _, b in confirmed] == [False, False]
            assert [b["taken"] for _, b in actions] == [False, False]
            assert all(c < a for (c, _), (a, _) in zip(confirmed, actions, strict=True))
        finally:
            await manager.stop()

    with_kernel(config, body)


def test_a_confirmed_misbehaving_agent_is_isolated_and_its_token_rotated(
    config: KernelConfig,
) -> None:
    async def body(k: Kernel) -> None:
        await k.register_agent("bad", ring=3)
        await k.open_task("t1")
        token = k.mint("bad", "t1", [Grant("fs.*", "*")])
        watch = stage_order(
            k.registry,
            "bad",
            Stage.OBSERVATION,
            cause="signals",
            principal="commander",
            at=k.clock(),
            score=4.0,
        )
        await k.cascade(watch)
        manager = ServiceManager(k)
        tsca = Tsca(k, manager)
        incident = Incident("inc-4", "agent_misbehaving", "bad", token=token)
        assert await tsca.handle(incident) == "resolved"
        assert k.registry.agent("bad").status is AgentStatus.ISOLATED
        out = await k.submit(intent_frame(token, "fs.read", "x", "r1"), agent_id="bad")
        assert out.status is OutcomeStatus.DENIED and out.code == "DSC.CAPABILITY.REVOKED"
        fresh = tsca.rotated["bad"]
        out = await k.submit(intent_frame(fresh, "fs.list", ".", "l1"), agent_id="bad")
        assert out.code != "DSC.CAPABILITY.REVOKED"  # the replacement works
        [(c, confirmed)] = _seqs(k, "watchdog.confirmed")[:1]
        first_action = _seqs(k, "tsca.action")[0][0]
        assert confirmed["holds"] is True and c < first_action

    with_kernel(config, body)


def test_a_service_given_up_on_is_an_incident_the_tsca_takes(config: KernelConfig) -> None:
    """The manager's service.failed starts the TSCA on its own; a service that cannot
    come back ends, through its budget, in MSS."""
    settings = ResilienceSettings(tsca_budget=1, start_grace_s=0.5)

    async def body(k: Kernel) -> None:
        policy = RestartPolicy(max_restarts=1, backoff_s=0.01, cooldown_s=3600.0)
        manager = ServiceManager(k, policies={"beacon": policy}, python="/bin/false")
        Tsca(k, manager, recovery_s=0.5).watch(manager)
        manager.start("beacon")
        try:
            await eventually(lambda: k.mode() is Mode.MSS)
            incident = _seqs(k, "tsca.incident")[0][1]
            assert incident["subject"] == "beacon" and incident["kind"] == "service_down"
        finally:
            await manager.stop()

    with_kernel(replace(config, resilience=settings), body)
