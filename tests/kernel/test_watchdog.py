"""The Watchdog (issue 12 item 6) on the kernel's injectable clock: beats are
authenticated and never replayed, silence is recorded once, a frozen pod is known frozen
(no miss, its silence counts from its thaw), and `confirm` re-checks facts itself."""

from __future__ import annotations

from dataclasses import replace

from maos.kernel.cascade import release_order, stage_order
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.stages import Stage
from maos.kernel.watchdog import beat_mac
from maos.testing import StepClock, with_kernel


def _missed(k: Kernel) -> list[str]:
    return [str(r.body["member"]) for r in k.wal.read(kinds=["service.missed", "pod.missed"])]


def test_beats_are_authenticated_and_a_miss_is_recorded_once(config: KernelConfig) -> None:
    clock = StepClock(1_000_000.0)

    async def body(k: Kernel) -> None:
        dog = k.watchdog
        key = dog.enrol("service:beacon")
        other = dog.enrol("service:other")
        assert dog.beat("service:beacon", 1, beat_mac(key, "service:beacon", 1))
        assert not dog.beat("service:beacon", 1, beat_mac(key, "service:beacon", 1))  # replay
        assert not dog.beat("service:beacon", 2, beat_mac(other, "service:beacon", 2))
        assert not dog.beat("service:beacon", 3, beat_mac(key, "service:other", 3))
        assert not dog.beat("service:ghost", 1, "00")
        assert dog.members["service:beacon"].bad == 3
        dog.beat("service:other", 1, beat_mac(other, "service:other", 1))
        clock.now += dog.limit_s * 0.9
        assert dog.beat("service:beacon", 2, beat_mac(key, "service:beacon", 2))
        clock.now += dog.limit_s * 0.9  # other silent 1.8 limits, beacon 0.9
        assert await dog.sweep() == ["service:other"]
        assert await dog.sweep() == []  # once per silence
        assert _missed(k) == ["service:other"]
        assert dog.alive("service:beacon") and not dog.alive("service:other")

    with_kernel(replace(config, clock=clock), body)


def test_a_member_has_its_start_grace_for_the_first_beat(config: KernelConfig) -> None:
    clock = StepClock(1_000_000.0)

    async def body(k: Kernel) -> None:
        dog = k.watchdog
        dog.enrol("service:slow")
        clock.now += dog.limit_s * 3
        assert await dog.sweep() == []  # still starting (importing MAOS)
        clock.now += dog.grace_s
        assert await dog.sweep() == ["service:slow"]

    with_kernel(replace(config, clock=clock), body)


def test_a_frozen_pod_is_known_frozen_and_never_missed(config: KernelConfig) -> None:
    """Issue 12: hard isolation freezes the pod; its silence is by design."""
    clock = StepClock(1_000_000.0)

    async def body(k: Kernel) -> None:
        await k.register_agent("a1", ring=3)
        dog = k.watchdog
        key = dog.enrol("pod:a1")
        dog.beat("pod:a1", 1, beat_mac(key, "pod:a1", 1))
        hard = stage_order(
            k.registry, "a1", Stage.HARD_ISOLATION, cause="t", principal="commander", at=clock()
        )
        await k.cascade(hard)
        assert dog.frozen("pod:a1")
        clock.now += dog.grace_s * 10
        assert await dog.sweep() == []
        assert dog.report()["pod:a1"]["frozen"] is True
        await k.cascade(
            release_order(k.registry, "a1", Stage.OBSERVATION, principal="commander", at=clock())
        )
        assert not dog.frozen("pod:a1")
        await dog.sweep()  # thawed: its silence counts from now, not from the freeze
        assert dog.alive("pod:a1")
        clock.now += dog.limit_s * 2
        assert await dog.sweep() == []  # a pod's limit is longer than a service's
        clock.now += dog.pod_limit_s
        assert await dog.sweep() == ["pod:a1"]
        assert _missed(k) == ["pod:a1"]

    with_kernel(replace(config, clock=clock), body)


def test_confirm_rechecks_the_fact_and_logs_before_anyone_acts(config: KernelConfig) -> None:
    clock = StepClock(1_000_000.0)

    async def body(k: Kernel) -> None:
        await k.register_agent("good", ring=3)
        dog = k.watchdog
        key = dog.enrol("service:beacon")
        dog.beat("service:beacon", 1, beat_mac(key, "service:beacon", 1))
        assert not await dog.confirm("service_down", "beacon", asked_by="service:tsca")
        clock.now += dog.limit_s * 2
        assert await dog.confirm("service_down", "beacon", asked_by="service:tsca")
        assert not await dog.confirm("agent_misbehaving", "good", asked_by="service:tsca")
        assert not await dog.confirm("moon_is_full", "good", asked_by="service:tsca")
        said = [(r.body["fact"], r.body["holds"]) for r in k.wal.read(kinds=["watchdog.confirmed"])]
        assert said == [
            ("service_down", False),
            ("service_down", True),
            ("agent_misbehaving", False),
            ("moon_is_full", False),
        ]

    with_kernel(replace(config, clock=clock), body)
