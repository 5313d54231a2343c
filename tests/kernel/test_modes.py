"""The degradation modes (issue 12 item 7, `maos.kernel.modes`): each mode refuses what it
must and allows what it must, on a real kernel with real intents; the effective mode is
the most severe demand; R8 orders work in every mode."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.config import KernelConfig, read_config
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import InputError, StateError
from maos.kernel.kernel import Kernel
from maos.kernel.modes import Mode
from maos.kernel.resilience import ResilienceSettings
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import Mailbox, intent_frame, with_kernel

BOSS = "boss@example.com"
GRANTS = [Grant("fs.*", "*"), Grant("email.send", "*"), Grant("admin.*", "*")]


async def _agents(k: Kernel) -> tuple[str, str]:
    """r2 (verified) and r3 (untrusted) on one task that may mail the boss."""
    await k.register_agent("r2", ring=2)
    await k.register_agent("r3", ring=3)
    await k.open_task("t1", trusted_targets=[BOSS], budgets={"api_calls": 100})
    (k.config.workspaces / "t1" / "a.txt").write_text("hello")
    return k.mint("r2", "t1", GRANTS), k.mint("r3", "t1", GRANTS)


def _read(token: str, key: str) -> dict[str, object]:
    return intent_frame(token, "fs.read", "a.txt", key)


def _write(token: str, key: str) -> dict[str, object]:
    return intent_frame(token, "fs.write", "b.txt", key, content="x")


def _mail(token: str, key: str) -> dict[str, object]:
    return intent_frame(token, "email.send", BOSS, key, subject="s", body="b")


async def _code(k: Kernel, frame: dict[str, object], agent: str) -> str:
    out = await k.submit(frame, agent_id=agent)
    return "ok" if out.status is OutcomeStatus.COMMITTED else str(out.code)


def test_degraded_1_pauses_ring_3_and_admits_no_new_agent(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        t2, t3 = await _agents(k)
        await k.demand_mode("health", Mode.DEGRADED_1, cause="cron down", principal="kernel")
        assert k.mode() is Mode.DEGRADED_1
        assert await _code(k, _read(t3, "r3a"), "r3") == "MODE.DEGRADED_1"
        assert await _code(k, _mail(t2, "m2"), "r2") == "ok"  # Ring 2 keeps every feature
        with pytest.raises(StateError) as err:
            await k.register_agent("newcomer", ring=3)
        assert err.value.code == "STATE.MODE.NO_NEW_AGENTS"
        await k.register_agent("r3", ring=3, rate_per_s=5.0)  # a known agent's limits: fine
        await k.demand_mode("health", Mode.NORMAL, cause="cron back", principal="kernel")
        assert await _code(k, _read(t3, "r3b"), "r3") == "ok"
        await k.register_agent("newcomer", ring=3)

    with_kernel(config, body)


def test_degraded_2_keeps_only_the_critical_ops(config: KernelConfig, mailbox: Mailbox) -> None:
    async def body(k: Kernel) -> None:
        t2, t3 = await _agents(k)
        await k.demand_mode("health", Mode.DEGRADED_2, cause="security down", principal="kernel")
        assert await _code(k, _mail(t2, "m1"), "r2") == "MODE.DEGRADED_2"
        assert await _code(k, _write(t2, "w1"), "r2") == "ok"
        assert await _code(k, _read(t2, "r1"), "r2") == "ok"
        assert await _code(k, _read(t3, "r3"), "r3") == "MODE.DEGRADED_2"
        assert mailbox.messages == []

    with_kernel(config, body)


def test_critical_ops_come_from_config(config: KernelConfig, mailbox: Mailbox) -> None:
    settings = ResilienceSettings(critical_ops=("fs.read", "email.send"))
    configured = replace(config, resilience=settings)

    async def body(k: Kernel) -> None:
        t2, _ = await _agents(k)
        await k.demand_mode("tsca", Mode.DEGRADED_2, cause="incident 3", principal="service:tsca")
        assert await _code(k, _mail(t2, "m1"), "r2") == "ok"
        assert await _code(k, _write(t2, "w1"), "r2") == "MODE.DEGRADED_2"

    with_kernel(configured, body)
    assert len(mailbox.messages) == 1


def test_degraded_3_keeps_reads_only(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        t2, _ = await _agents(k)
        await k.demand_mode("health", Mode.DEGRADED_3, cause="two down", principal="kernel")
        assert await _code(k, _read(t2, "r1"), "r2") == "ok"
        assert await _code(k, _write(t2, "w1"), "r2") == "MODE.DEGRADED_3"
        beat = intent_frame(t2, "admin.heartbeat", "", "hb")
        assert await _code(k, beat, "r2") == "ok"
        assert not (k.config.workspaces / "t1" / "b.txt").exists()

    with_kernel(config, body)


def test_mss_from_a_source_refuses_all_but_apoptosis(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        t2, _ = await _agents(k)
        await k.demand_mode("tsca", Mode.MSS, cause="budget spent", principal="service:tsca")
        assert await _code(k, _read(t2, "r1"), "r2") == "MODE.MSS"
        bye = {**intent_frame(t2, "admin.apoptosis", "", "bye"), "params": {}}
        assert await _code(k, bye, "r2") == "ok"  # R9

    with_kernel(config, body)


def test_the_effective_mode_is_the_most_severe_demand_and_survives_restart(
    config: KernelConfig,
) -> None:
    async def first(k: Kernel) -> None:
        await _agents(k)
        await k.demand_mode("health", Mode.DEGRADED_3, cause="two down", principal="kernel")
        await k.demand_mode("federation", Mode.DEGRADED_1, cause="5 min", principal="kernel")
        assert k.mode() is Mode.DEGRADED_3  # the later, milder demand does not lower it
        await k.demand_mode("health", Mode.NORMAL, cause="back", principal="kernel")
        assert k.mode() is Mode.DEGRADED_1  # the federation's demand still holds
        await k.set_safe_state(True, reason="incident")
        assert k.mode() is Mode.MSS
        await k.set_safe_state(False, reason="over")

    with_kernel(config, first)

    async def after(k: Kernel) -> None:
        assert k.mode() is Mode.DEGRADED_1
        assert k.status()["mode"] == "degraded-1"
        t3 = k.mint("r3", "t1", GRANTS)
        assert await _code(k, _read(t3, "r3"), "r3") == "MODE.DEGRADED_1"

    with_kernel(config, after)


@pytest.mark.parametrize("mode", list(Mode))
def test_r8_orders_work_in_every_mode(config: KernelConfig, mode: Mode) -> None:
    async def body(k: Kernel) -> None:
        t2, _ = await _agents(k)
        await k.register_agent("r2b", ring=2)
        await k.demand_mode("commander", mode, cause="drill", principal="commander")
        await k.set_agent_status("r2", AgentStatus.PAUSED)
        await k.set_agent_status("r3", AgentStatus.QUARANTINED)
        await k.set_agent_status("r2b", AgentStatus.KILLED)
        assert k.registry.agent("r2").status is AgentStatus.PAUSED
        assert k.registry.agent("r3").status is AgentStatus.QUARANTINED
        assert k.registry.agent("r2b").status is AgentStatus.KILLED
        assert await _code(k, _read(t2, "r1"), "r2") == "RULE.R8.AGENT_PAUSED"
        await k.set_safe_state(True, reason="drill")
        assert k.mode() is Mode.MSS

    with_kernel(config, body)


def test_agents_and_strangers_demand_no_mode(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        await _agents(k)
        for principal in ("r3", "agent:r3"):
            with pytest.raises(StateError):
                await k.demand_mode("health", Mode.NORMAL, cause="x", principal=principal)
        with pytest.raises(StateError):  # the Commander's source takes the Commander
            await k.demand_mode("commander", Mode.NORMAL, cause="x", principal="service:tsca")
        with pytest.raises(StateError):
            await k.demand_mode("health", Mode.MSS, cause="x", principal="someone")
        with pytest.raises(InputError) as bad:
            await k.demand_mode("weather", Mode.MSS, cause="x", principal="kernel")
        assert bad.value.code == "BAD_INPUT.MODE_SOURCE"
        with pytest.raises(InputError) as bad:
            await k.demand_mode("health", "panic", cause="x", principal="kernel")  # type: ignore[arg-type]
        assert bad.value.code == "BAD_INPUT.MODE"
        assert k.mode() is Mode.NORMAL

    with_kernel(config, body)


def test_config_refuses_an_unknown_critical_op(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "config.json").write_text(json.dumps({"resilience": {"critical_ops": ["fs.rm"]}}))
    with pytest.raises(InputError) as err:
        read_config(data)
    assert err.value.code == "BAD_INPUT.CONFIG"
    assert "resilience.critical_ops" in err.value.message


def test_the_commander_demands_a_mode_and_status_shows_it(config: KernelConfig) -> None:
    async def made(k: Kernel) -> None:
        await _agents(k)

    with_kernel(config, made)
    data = str(config.data_dir)
    runner = CliRunner()
    out = runner.invoke(app, ["mode", "degraded-2", "--reason", "relay hit", "-d", data])
    assert out.exit_code == 0, out.output
    shown = runner.invoke(app, ["status", "--json", "-d", data])
    assert shown.exit_code == 0, shown.output
    mode = json.loads(shown.output)["mode"]
    assert mode["mode"] == "degraded-2"
    assert mode["demands"]["commander"]["cause"] == "relay hit"
    text = runner.invoke(app, ["status", "-d", data]).output
    assert "degraded-2" in text
    bad = runner.invoke(app, ["mode", "calm", "-d", data])
    assert bad.exit_code == 2
    assert "BAD_INPUT.MODE" in bad.output
