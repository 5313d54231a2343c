"""The probes of the services in the kernel's process that had no supervision (issue 12
point 6): the Message Router, Observability and the dashboard. Each beats while healthy;
its real resource broken (a message lost from an inbox, the span exporter shut down, the
server's listening socket shut) is found, recorded, fails the service past a strict
policy - which moves the health mode - and the restart after the cool-down repairs what
was broken (the inbox rebuilt from the log, a fresh exporter, a fresh socket), which
moves it back. On the stepped clock: the cool-down is stepped through, never slept."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
from svckit import logged

from maos.boot import observability_probe, router_probe
from maos.cli.up import dashboard_probe
from maos.commander.web import Dashboard
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.labels import BOTTOM
from maos.kernel.modes import Mode
from maos.kernel.telemetry import TelemetrySettings
from maos.kernel.tokens import Grant
from maos.kernel.trace import Observed
from maos.kernel.types import OutcomeStatus
from maos.pod.router import attach
from maos.services.manager import RestartPolicy, ServiceManager
from maos.services.sse import HeuristicEvaluator
from maos.services.supervised import in_thread
from maos.testing import StepClock, eventually, intent_frame, with_kernel
from maos.testing.otlp import loopback_otlp

PERIOD = 0.05
ONCE = RestartPolicy(max_restarts=0, window_s=60.0, backoff_s=0.05, cooldown_s=30.0)
"""No restart within the window: the first failure is *failed*, so the mode moves."""


async def _beats(k: Kernel, name: str, n: int = 10) -> None:
    """``name`` is beaten for through ``n`` more beats, and nothing was logged meanwhile."""
    seen = k.wal.tail_seq()
    await eventually(lambda: f"service:{name}" in k.watchdog.members)
    first = k.watchdog.members[f"service:{name}"].counter
    await eventually(lambda: k.watchdog.members[f"service:{name}"].counter >= first + n)
    assert k.watchdog.alive(f"service:{name}")
    assert k.wal.tail_seq() == seen, "a healthy probe wrote to the log"


async def _fails_and_recovers(
    k: Kernel, clock: StepClock, manager: ServiceManager, name: str, down: Mode
) -> dict[str, object]:
    """Until ``name`` is failed and the mode is ``down``; then the cool-down stepped
    through and the mode back to normal. The failure's ``service.exited``."""
    await eventually(lambda: manager.runs[name].state == "failed")
    await eventually(lambda: k.mode() is down)
    [exited] = logged(k, "service.exited")
    assert exited["service"] == name and exited["principal"] == "service:manager"
    clock.now += ONCE.cooldown_s  # no life runs while it is failed: nothing to miss
    await eventually(lambda: manager.runs[name].state == "up" and k.mode() is Mode.NORMAL)
    return exited


def _run(config: KernelConfig, name: str, body: Callable[..., object], **boot: object) -> None:
    clock = StepClock(1_000_000.0)

    async def go(k: Kernel) -> None:
        manager = ServiceManager(k, policies={name: ONCE})
        try:
            await body(k, clock, manager)  # type: ignore[misc]
        finally:
            await manager.stop()

    with_kernel(replace(config, clock=clock), go, **boot)


# -- the Message Router -------------------------------------------------------------------


async def _send(k: Kernel, token: str, key: str, body: str) -> None:
    params = {"body": body, "sender": "a1", "label": BOTTOM.to_dict()}
    sent = await k.submit(intent_frame(token, "msg.send", "b1", key, **params), agent_id="a1")
    assert sent.status is OutcomeStatus.COMMITTED, sent


async def _receive(k: Kernel, token: str, key: str) -> list[str]:
    got = await k.submit(intent_frame(token, "msg.receive", "b1", key, max_items=5), agent_id="b1")
    assert got.status is OutcomeStatus.COMMITTED, got
    return [str(m["body"]) for m in (got.value or {})["messages"]]


def test_the_router_probe_finds_a_lost_message_and_its_restart_rebuilds_the_inbox(
    config: KernelConfig,
) -> None:
    """The router's inboxes against the log: sends and receives keep it healthy; a
    message lost from an inbox (the router's queue broken) is found and fails the
    router (critical: degraded-2); its restart rebuilds the inbox from the log, and the
    message is delivered after all."""

    async def body(k: Kernel, clock: StepClock, manager: ServiceManager) -> None:
        for agent in ("a1", "b1"):
            await k.register_agent(agent, ring=3)
        await k.open_task("t1")
        grants = [Grant("msg.send", "*"), Grant("msg.receive", "*")]
        sender, reader = k.mint("a1", "t1", grants), k.mint("b1", "t1", grants)
        router = attach(k)
        await _send(k, sender, "m1", "first")  # before the probe: its first look folds it
        probe = router_probe(k, PERIOD)
        assert probe is not None and k.commit.adapter("msg") is router
        manager.start_task("router", probe, every_s=PERIOD)
        await _beats(k, "router")
        assert await _receive(k, reader, "r1") == ["first"]
        await _send(k, sender, "m2", "second")
        await _send(k, sender, "m3", "third")
        await _beats(k, "router")  # the log and the inboxes still agree
        router._inboxes["b1"].popleft()  # "second" lost from the queue: the log has it
        assert router.pending("b1") == 1
        exited = await _fails_and_recovers(k, clock, manager, "router", Mode.DEGRADED_2)
        assert str(exited["reason"]).startswith("raised StateError: ROUTER.DOWN: the inbox of")
        assert "1 unread message(s) missing" in str(exited["reason"])
        await eventually(lambda: router.pending("b1") == 2)  # rebuilt in place: the gateways
        # hold this router (the restart's repair runs as the new life begins)
        assert await _receive(k, reader, "r2") == ["second", "third"]
        await _beats(k, "router")
        modes = [b["mode"] for b in logged(k, "kernel.mode") if b["source"] == "health"]
        assert modes == ["degraded-2", "normal"]

    _run(config, "router", body)


# -- Observability ------------------------------------------------------------------------


async def _traced(k: Kernel, collector: object, key: str) -> None:
    """A denied intent, and its span at the collector."""
    token = k.mint("a1", "t1", [Grant("fs.read", "*")])
    out = await k.submit(intent_frame(token, "fs.delete", "x.txt", key), agent_id="a1")
    assert out.status is OutcomeStatus.DENIED
    spans = await asyncio.to_thread(
        collector.wait_for,  # type: ignore[attr-defined]
        lambda s: s.name == "maos.intent" and s.attributes.get("maos.intent_id") == out.intent_id,
    )
    assert spans


def test_the_observability_probe_finds_a_stopped_exporter_and_its_restart_makes_a_fresh_one(
    config: KernelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tracing on, spans reach a loopback collector; the batch processor shut down (its
    exporter thread gone: no span would leave) is found and fails Observability
    (non-critical: degraded-1); its restart makes a fresh exporter and spans flow again."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the SDK's batch delay, in ms

    with loopback_otlp() as collector:

        async def body(k: Kernel, clock: StepClock, manager: ServiceManager) -> None:
            await k.register_agent("a1", ring=2)
            await k.open_task("t1")
            manager.start_task("observability", observability_probe(k, PERIOD), every_s=PERIOD)
            await _beats(k, "observability")
            await _traced(k, collector, "d1")
            exporting = k.trace._export
            assert exporting is not None
            exporting.current.shutdown()  # its thread ends: the exporter is gone
            exited = await _fails_and_recovers(k, clock, manager, "observability", Mode.DEGRADED_1)
            assert exited["reason"] == (
                "raised StateError: OBSERVABILITY.DOWN: "
                "the span exporter's thread has stopped: no span is sent"
            )
            await _beats(k, "observability")
            await _traced(k, collector, "d2")  # the fresh exporter sends

        traced = replace(config, telemetry=TelemetrySettings(otlp_endpoint=collector.endpoint))
        _run(traced, "observability", body, sse=HeuristicEvaluator())


def test_the_observability_probe_finds_an_observer_that_raises(config: KernelConfig) -> None:
    """An observer of the kernel's trace that raises (``/metrics`` or the JSON log would
    miss that intent) is logged and ignored by the kernel, and the probe counts it."""
    broken = [True]

    def observer(seen: Observed) -> None:
        if broken[0]:
            raise OSError("the log stream is closed")

    async def body(k: Kernel, clock: StepClock, manager: ServiceManager) -> None:
        await k.register_agent("a1", ring=2)
        await k.open_task("t1")
        k.trace.observe(observer)
        manager.start_task("observability", observability_probe(k, PERIOD), every_s=PERIOD)
        await _beats(k, "observability")
        token = k.mint("a1", "t1", [Grant("fs.read", "*")])
        await k.submit(intent_frame(token, "fs.delete", "x.txt", "d1"), agent_id="a1")
        broken[0] = False
        exited = await _fails_and_recovers(k, clock, manager, "observability", Mode.DEGRADED_1)
        assert exited["reason"] == (
            "raised StateError: OBSERVABILITY.DOWN: 1 observer call(s) raised since the "
            "last look: OSError: the log stream is closed"
        )
        await _beats(k, "observability")

    _run(config, "observability", body)


# -- the dashboard --------------------------------------------------------------------------


def test_the_dashboard_probe_finds_its_socket_shut_and_its_restart_serves_again(
    config: KernelConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The dashboard's health route answers without the token and says nothing else; its
    listening socket shut under the running server (it answers nobody, its serve goes
    on) fails it (non-critical: degraded-1); the restart serves again on a fresh socket
    at the same address, and the same server coroutine goes on."""

    # Until the restart, asyncio logs each failed accept of the broken socket: kept out
    # of the capture, which would otherwise hold thousands of tracebacks.
    caplog.set_level(logging.CRITICAL, logger="asyncio")

    async def body(k: Kernel, clock: StepClock, manager: ServiceManager) -> None:
        dashboard = Dashboard(k, "t" * 40)
        serving = asyncio.create_task(dashboard.serve())
        try:
            await dashboard.started()
            health = dashboard.url + "health"
            answer = await asyncio.to_thread(httpx.get, health, trust_env=False)
            assert (answer.status_code, answer.text) == (200, "ok\n")
            manager.start_task("dashboard", dashboard_probe(dashboard, PERIOD), every_s=PERIOD)
            await _beats(k, "dashboard")
            dashboard._sock.shutdown(socket.SHUT_RDWR)  # no more connections accepted
            exited = await _fails_and_recovers(k, clock, manager, "dashboard", Mode.DEGRADED_1)
            assert str(exited["reason"]).startswith(
                "raised StateError: DASHBOARD.DOWN: /health does not answer: ConnectError"
            )
            await _beats(k, "dashboard")
            loop = asyncio.get_running_loop()
            end = loop.time() + 20.0
            while await in_thread(dashboard.answers) is not None:  # the rebind's new server
                assert loop.time() < end, "the dashboard was not served again"
                await asyncio.sleep(0.05)
            answer = await asyncio.to_thread(httpx.get, health, trust_env=False)
            assert (answer.status_code, answer.text) == (200, "ok\n")
            assert not serving.done()  # the same serve() went on: `maos up` did not end
        finally:
            await manager.stop_task("dashboard")
            dashboard.stop()
            await serving

    _run(config, "dashboard", body)
