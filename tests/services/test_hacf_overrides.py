"""Override beyond status and labels (issue 10 §1): loosening an aggregate threshold.

A real kernel with its injectable clock, real TOTP codes from the enrolled secret
(pyotp), the real SMTP server on loopback, and the console through typer's runner.
"""

from __future__ import annotations

import json
from typing import Any

import pyotp
import pytest

from maos.kernel import orders
from maos.kernel.aggregate import DEFAULT_THRESHOLDS
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import MaosError, StateError
from maos.kernel.hacfconfig import CommanderSection
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass, OutcomeStatus
from maos.services import hacf
from maos.testing import Mailbox, intent_frame, with_kernel
from maos.testing import StepClock as Clock

TASK = "t1"
COOLING = 60.0
METRIC = "external_destinations"
READ = EffectClass.READ
TRUSTED = ["boss@example.com", "ceo@example.com", "cfo@example.com"]


async def _agent(k: Kernel) -> str:
    await k.register_agent("a1", ring=3, budgets={"api_calls": 100})
    await k.open_task(TASK, trusted_targets=TRUSTED, budgets={"api_calls": 100})
    return k.mint("a1", TASK, [Grant("email.send", "*"), Grant("admin.*", "*")])


def _overrides(k: Kernel, clock: Clock) -> hacf.Overrides:
    section = CommanderSection(cooling_off_s=COOLING)
    factor = hacf.SecondFactor(k.config.data_dir, clock)
    return hacf.Overrides(k.registry, hacf.kernel_log(k), clock, section, factor, k.view)


async def _mail(k: Kernel, token: str, to: str) -> Any:
    key = "m-" + to.split("@")[0]
    frame = intent_frame(token, "email.send", to, key, subject="s", body="hello")
    return await k.submit(frame, agent_id="a1")


def _code(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(clock.now)


def _limit(k: Kernel) -> float:
    return k.view.aggregate.limits[METRIC].limit


def test_tightening_a_threshold_is_immediate_loosening_is_an_override_and_it_survives_a_restart(
    kconfig: KernelConfig, clock: Clock, mailbox: Mailbox
) -> None:
    async def body(k: Kernel) -> None:
        token = await _agent(k)
        ov = _overrides(k, clock)
        secret = await ov.enroll("commander")
        ledger = k.view.aggregate
        await k.cascade(orders.threshold(k.registry, ledger, METRIC, 1, "commander"))
        assert _limit(k) == 1  # tightening: at once, no override
        assert (await _mail(k, token, TRUSTED[0])).status is OutcomeStatus.COMMITTED
        refused = await _mail(k, token, TRUSTED[1])
        assert refused.code == "SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS", refused
        with pytest.raises(StateError) as err:  # loosening in one step: refused
            orders.threshold(k.registry, k.view.aggregate, METRIC, 3, "commander")
        assert err.value.code == "HACF.OVERRIDE_REQUIRED"
        with pytest.raises(MaosError) as err:  # and never by an agent, in any direction
            orders.threshold(k.registry, k.view.aggregate, METRIC, 0.5, "a1")
        assert err.value.code == "STATE.NOT_COMMANDER"
        with pytest.raises(StateError) as err:  # tightening needs no override
            await ov.request("threshold", METRIC, "0.5", reason="x", principal="commander")
        assert err.value.code == "HACF.NOTHING_TO_LIFT"
        asked = await ov.request("threshold", METRIC, "3", reason="board", principal="commander")
        assert dict(asked.diff) == {f"threshold.{METRIC}": ["1", "3"]}
        with pytest.raises(StateError) as err:
            await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert err.value.code == "HACF.COOLING_OFF"
        clock.now += COOLING
        with pytest.raises(StateError) as err:
            await ov.confirm(asked.override_id, "000000", principal="commander")
        assert err.value.code == "HACF.BAD_CODE"
        assert _limit(k) == 1
        done = await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert done.status == "done"
        assert _limit(k) == 3
        assert (await _mail(k, token, TRUSTED[1])).status is OutcomeStatus.COMMITTED

    with_kernel(kconfig, body)

    async def rebooted(k: Kernel) -> tuple[float, float]:
        folded = _limit(k)
        k.view.aggregate.configure(DEFAULT_THRESHOLDS)  # config.json read again at boot
        return folded, _limit(k)

    assert with_kernel(kconfig, rebooted) == (3, 3)  # the order is state, folded from the log
    assert mailbox.recipients() == TRUSTED[:2]


def test_a_threshold_for_one_agent_class_holds_its_agents_only_and_loosens_by_override(
    kconfig: KernelConfig, clock: Clock, mailbox: Mailbox
) -> None:
    async def body(k: Kernel) -> None:
        token = await _agent(k)  # a1, ring 3
        await k.register_agent("b2", ring=2, budgets={"api_calls": 100})
        other = k.mint("b2", TASK, [Grant("email.send", "*")])
        ov = _overrides(k, clock)
        secret = await ov.enroll("commander")
        ledger = k.view.aggregate
        order = orders.threshold(k.registry, ledger, METRIC, 1, "commander", agent_class="ring3")
        await k.cascade(order)
        assert (_limit(k), ledger.limit_for(METRIC, "a1").limit) == (50, 1)  # type: ignore[union-attr]
        for who, tok in (("a1", token), ("b2", other)):
            for n, to in enumerate(TRUSTED[:2]):
                frame = intent_frame(tok, "email.send", to, f"{who}-{n}", subject="s", body="b")
                out = await k.submit(frame, agent_id=who)
                expected = (
                    "SECURITY.AGGREGATE.EXTERNAL_DESTINATIONS" if (who, n) == ("a1", 1) else ""
                )
                assert out.code == expected, (who, to, out)
        with pytest.raises(MaosError) as err:
            orders.threshold(k.registry, ledger, METRIC, 2, "commander", agent_class="ring3")
        assert err.value.code == "HACF.OVERRIDE_REQUIRED"
        with pytest.raises(MaosError) as err:
            orders.threshold(k.registry, ledger, METRIC, 2, "commander", agent_class="ring9")
        assert err.value.code == "BAD_INPUT.AGENT_CLASS"
        asked = await ov.request(
            "threshold", f"{METRIC}@ring3", "2", reason="r", principal="commander"
        )
        assert dict(asked.diff) == {f"threshold.{METRIC}@ring3": ["1", "2"]}
        clock.now += COOLING
        await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert ledger.limit_for(METRIC, "a1").limit == 2  # type: ignore[union-attr]
        assert _limit(k) == 50

    with_kernel(kconfig, body)


def test_the_console_sets_and_lists_thresholds_and_refuses_loosening_once_enrolled(
    config: KernelConfig,
) -> None:
    from typer.testing import CliRunner

    from maos.cli import app

    with_kernel(config, _agent)
    data = str(config.data_dir)

    def maos(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "-d", data])

    listed = maos("security", "threshold", "list")
    assert f"{METRIC}" in listed.output and "(config)" in listed.output, listed.output
    loose = maos("security", "threshold", "set", METRIC, "70")  # before enrolment: one step
    assert loose.exit_code == 0 and f"{METRIC}: 50 -> 70" in loose.output, loose.output
    assert maos("commander", "enroll").exit_code == 0
    tight = maos("security", "threshold", "set", METRIC, "20")
    assert tight.exit_code == 0, tight.output
    again = maos("security", "threshold", "set", METRIC, "40")
    assert again.exit_code == 2 and "error HACF.OVERRIDE_REQUIRED" in again.output
    bad = maos("security", "threshold", "set", "nonsense", "4")
    assert bad.exit_code == 2 and "error BAD_INPUT.METRIC" in bad.output
    asked = maos(
        "commander", "override", "request", "threshold", METRIC, "--to", "40", "--reason", "r"
    )
    assert asked.exit_code == 0 and f"threshold.{METRIC}: 20 -> 40" in asked.output, asked.output
    ring3 = maos("security", "threshold", "set", METRIC, "5", "--agent-class", "ring3")
    assert ring3.exit_code == 0 and f"{METRIC}: 20 -> 5 for ring3 agents" in ring3.output
    shown = maos("security", "threshold", "list")
    rows = {ln.split()[0]: ln for ln in shown.output.splitlines()}
    assert rows[METRIC].split()[1] == "20" and "(order)" in rows[METRIC], shown.output
    assert rows[f"{METRIC}@ring3"].split()[1] == "5", shown.output


def test_a_refused_intent_runs_once_after_an_override_and_never_for_a_never_code(
    kconfig: KernelConfig, clock: Clock, mailbox: Mailbox
) -> None:
    async def body(k: Kernel) -> None:
        await k.register_agent("a1", ring=3, budgets={"api_calls": 100})
        await k.open_task(
            TASK, trusted_targets=TRUSTED, budgets={"api_calls": 100}, effect_classes=[READ]
        )
        token = k.mint("a1", TASK, [Grant("email.send", "*")])
        refused = await _mail(k, token, TRUSTED[0])  # the task never asked to send
        assert refused.code == "RULE.R2.EFFECT_CLASS_NOT_GRANTED", refused
        ov = _overrides(k, clock)
        secret = await ov.enroll("commander")
        with pytest.raises(MaosError) as err:  # never by an agent
            await ov.request("execute", refused.intent_id, "", reason="me", principal="a1")
        assert err.value.code == "STATE.NOT_COMMANDER"
        asked = await ov.request(
            "execute", refused.intent_id, "", reason="ok", principal="commander"
        )
        assert dict(asked.diff)["refused"] == ["RULE.R2.EFFECT_CLASS_NOT_GRANTED", "waived once"]
        assert dict(asked.diff)["runs"] == [None, f"email.send -> {TRUSTED[0]} as a1"]
        with pytest.raises(StateError) as err:
            await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert err.value.code == "HACF.COOLING_OFF"
        assert mailbox.messages == []
        clock.now += COOLING
        await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        ran = await hacf.execute_override(k, asked.override_id)
        assert ran.status is OutcomeStatus.COMMITTED, ran
        assert mailbox.recipients() == [TRUSTED[0]]
        clock.now += COOLING
        for again in (
            ov.confirm(asked.override_id, _code(secret, clock), principal="commander"),
            hacf.execute_override(k, asked.override_id),
            ov.request("execute", refused.intent_id, "", reason="again", principal="commander"),
        ):
            with pytest.raises(StateError) as err:
                await again
            assert err.value.code in ("HACF.OVERRIDE_DECIDED", "HACF.ALREADY_EXECUTED")
        # The waiver is for that code only: any other refusal still stands.
        second = await _mail(k, token, TRUSTED[1])
        asked = await ov.request(
            "execute", second.intent_id, "", reason="ok", principal="commander"
        )
        await k.set_agent_status("a1", AgentStatus.QUARANTINED)
        clock.now += COOLING
        await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        stopped = await hacf.execute_override(k, asked.override_id)
        assert stopped.code == "RULE.R8.AGENT_QUARANTINED", stopped
        # A refusal of a never-overridable code cannot even be asked about.
        await k.register_agent("a2", ring=3, budgets={"api_calls": 100})
        narrow = k.mint("a2", TASK, [Grant("email.send", "nobody@example.com")])
        frame = intent_frame(narrow, "email.send", TRUSTED[2], "m-a2", subject="s", body="b")
        uncovered = await k.submit(frame, agent_id="a2")
        assert uncovered.code.startswith("DSC.CAPABILITY."), uncovered
        for intent_id, code in (
            (uncovered.intent_id, "HACF.NOT_OVERRIDABLE"),
            ("nope", "HACF.NO_REFUSAL"),
        ):
            with pytest.raises(StateError) as err:
                await ov.request("execute", intent_id, "", reason="x", principal="commander")
            assert err.value.code == code
        executed = [r.body for r in k.wal.read(kinds=["hacf.override.executed"])]
        assert [b["outcome"]["status"] for b in executed] == ["committed", "denied"]

    with_kernel(kconfig, body)
    assert mailbox.recipients() == [TRUSTED[0]]


def test_the_console_runs_a_refused_intent_once_under_an_override(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    from typer.testing import CliRunner

    from maos.cli import app

    async def setup(k: Kernel) -> str:
        await k.register_agent("a1", ring=3, budgets={"api_calls": 100})
        await k.open_task(
            TASK, trusted_targets=TRUSTED, budgets={"api_calls": 100}, effect_classes=[READ]
        )
        token = k.mint("a1", TASK, [Grant("email.send", "*")])
        return str((await _mail(k, token, TRUSTED[0])).intent_id)

    intent_id = with_kernel(config, setup)
    smtp = {"host": "127.0.0.1", "port": mailbox.port}
    settings = {"commander": {"cooling_off_s": 0}, "smtp": smtp}
    (config.data_dir / "config.json").write_text(json.dumps(settings))
    data = str(config.data_dir)

    def maos(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "-d", data])

    enrolled = maos("commander", "enroll")
    secret = next(ln.split()[1] for ln in enrolled.output.splitlines() if ln.startswith("secret"))
    asked = maos("commander", "override", "request", "execute", intent_id, "--reason", "fp")
    assert asked.exit_code == 0, asked.output
    assert "refused: RULE.R2.EFFECT_CLASS_NOT_GRANTED -> waived once" in asked.output
    oid = asked.output.split()[0]
    done = maos("commander", "override", "confirm", oid, "--code", pyotp.TOTP(secret).now())
    assert done.exit_code == 0 and "ran: committed" in done.output, done.output
    assert mailbox.recipients() == [TRUSTED[0]]
    again = maos("commander", "override", "request", "execute", intent_id, "--reason", "twice")
    assert again.exit_code == 2 and "error HACF.ALREADY_EXECUTED" in again.output


# -- promotion ------------------------------------------------------------------------------


async def _ring3(k: Kernel) -> str:
    await k.register_agent("a1", ring=3, rate_per_s=7.0, budgets={"api_calls": 40})
    await k.open_task(TASK, trusted_targets=TRUSTED, budgets={"api_calls": 100})
    return k.mint("a1", TASK, [Grant("fs.*", "*"), Grant("admin.*", "*")])


def test_promotion_is_an_override_then_five_stages_of_onboarding_as_a_fresh_identity(
    kconfig: KernelConfig, clock: Clock
) -> None:
    async def body(k: Kernel) -> None:
        old_token = await _ring3(k)
        ov = _overrides(k, clock)
        with pytest.raises(StateError) as err:  # no factor: no promotion at all
            await ov.request("promote", "a1", "2", reason="r", principal="commander")
        assert err.value.code == "HACF.NOT_ENROLLED"
        secret = await ov.enroll("commander")
        with pytest.raises(StateError) as err:  # the one-step path stays closed (R5)
            await k.register_agent("a1", ring=2)
        assert err.value.code == "STATE.PROMOTION_NEEDS_ONBOARDING"
        asked = await ov.request("promote", "a1", "2", reason="clean", principal="commander")
        assert dict(asked.diff) == {"ring": [3, 2], "identity": ["a1", "a1-r2"]}
        with pytest.raises(StateError) as err:
            await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert err.value.code == "HACF.COOLING_OFF"
        clock.now += COOLING
        await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert await hacf.carry_out(k, asked.override_id, "commander") == {"promoted": "a1-r2"}
        new, old = k.registry.agent("a1-r2"), k.registry.agent("a1")
        assert (new.ring, new.status, new.rate_per_s) == (2, AgentStatus.ACTIVE, 7.0)
        assert k.ledger.limits_of("a1-r2") == k.ledger.limits_of("a1")
        assert old.status is AgentStatus.KILLED
        stages = [r.body["stage"] for r in k.wal.read(kinds=["agent.onboarding"])]
        assert stages == ["override", "checked", "identity", "retired"]
        (promoted,) = [r.body for r in k.wal.read(kinds=["agent.promoted"])]
        assert (promoted["from_ring"], promoted["ring"], promoted["stage"]) == (3, 2, "admitted")
        # Nothing the old identity held carries over: its token names its holder.
        reuse = intent_frame(old_token, "fs.list", ".", "l1")
        assert (await k.submit(reuse, agent_id="a1-r2")).code == "DSC.CAPABILITY.WRONG_HOLDER"
        assert (await k.submit(reuse, agent_id="a1")).code == "RULE.R8.AGENT_KILLED"
        fresh = k.mint("a1-r2", TASK, [Grant("fs.*", "*")])
        listed = await k.submit(intent_frame(fresh, "fs.list", ".", "l2"), agent_id="a1-r2")
        assert listed.status is OutcomeStatus.COMMITTED, listed
        clock.now += COOLING
        for again in (
            ov.confirm(asked.override_id, _code(secret, clock), principal="commander"),
            hacf.carry_out(k, asked.override_id, "commander"),
        ):
            with pytest.raises(StateError) as err:
                await again
            assert err.value.code in ("HACF.OVERRIDE_DECIDED", "HACF.ALREADY_EXECUTED")

    with_kernel(kconfig, body)


@pytest.mark.parametrize("source", ["health", "federation"])
def test_no_promotion_in_a_degraded_mode_or_cut_off_and_never_by_the_agent(
    kconfig: KernelConfig, clock: Clock, source: str
) -> None:
    from maos.kernel import promotion
    from maos.kernel.modes import Mode

    async def body(k: Kernel) -> None:
        token = await _ring3(k)
        ov = _overrides(k, clock)
        secret = await ov.enroll("commander")
        asked = await ov.request("promote", "a1", "2", reason="r", principal="commander")
        # A service down (health) or a node cut off from its parent (federation) demands
        # a degraded mode: the confirmation is refused before the code is spent.
        await k.demand_mode(source, Mode.DEGRADED_1, cause="down", principal=f"service:{source}")
        clock.now += COOLING
        with pytest.raises(StateError) as err:
            await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        assert err.value.code == "STATE.MODE.NO_PROMOTIONS"
        with pytest.raises(StateError) as err:
            await ov.request("promote", "a1", "2", reason="r", principal="commander")
        assert err.value.code == "STATE.MODE.NO_PROMOTIONS"
        await k.demand_mode(source, Mode.NORMAL, cause="up", principal=f"service:{source}")
        with pytest.raises(StateError) as err:  # a Sentinel that lost the Sovereign
            promotion.eligible(k.registry, "a1", 2, cut_off=True)
        assert err.value.code == "FED.CUT_OFF"
        # The agent: not as a principal, and not by any intent (R5).
        for who in ("a1", "agent:a1"):
            with pytest.raises(MaosError) as err:
                await ov.request("promote", "a1", "2", reason="me", principal=who)
            assert err.value.code == "STATE.NOT_COMMANDER"
            with pytest.raises(MaosError) as err:
                await promotion.onboard(k, asked.override_id, principal=who)
            assert err.value.code == "STATE.NOT_COMMANDER"
        for op in ("ring.set", "admin.promote", "onboarding.start", "agent.promote"):
            out = await k.submit(intent_frame(token, op, "a1", f"k-{op}"), agent_id="a1")
            assert out.status is OutcomeStatus.DENIED, out
        denied = {r.body["op"]: r.body["code"] for r in k.wal.read(kinds=["intent.denied"])}
        assert denied["admin.promote"] == "RULE.R5.NO_SELF_PROMOTION"  # its token covers admin.*
        await k.set_agent_status("a1", AgentStatus.QUARANTINED)
        with pytest.raises(StateError) as err:
            promotion.eligible(k.registry, "a1", 2)
        assert err.value.code == "STATE.PROMOTION.NOT_ELIGIBLE"
        assert k.registry.agent("a1").ring == 3
        assert "a1-r2" not in k.registry.agents

    with_kernel(kconfig, body)


def test_the_console_promotes_through_an_override_and_onboarding(config: KernelConfig) -> None:
    from typer.testing import CliRunner

    from maos.cli import app

    with_kernel(config, _ring3)
    (config.data_dir / "config.json").write_text('{"commander": {"cooling_off_s": 0}}')
    data = str(config.data_dir)

    def maos(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "-d", data])

    early = maos("agent", "promote", "a1", "--to", "2", "--reason", "r")
    assert early.exit_code == 2 and "error HACF.NOT_ENROLLED" in early.output
    enrolled = maos("commander", "enroll")
    secret = next(ln.split()[1] for ln in enrolled.output.splitlines() if ln.startswith("secret"))
    asked = maos("agent", "promote", "a1", "--to", "2", "--reason", "reviewed")
    assert asked.exit_code == 0 and "identity: a1 -> a1-r2" in asked.output, asked.output
    oid = asked.output.split()[0]
    done = maos("commander", "override", "confirm", oid, "--code", pyotp.TOTP(secret).now())
    assert done.exit_code == 0 and "onboarded: a1 is now a1-r2 (ring 2)" in done.output, done.output
    listed = maos("agent", "list", "--json")
    rings = {a["agent_id"]: (a["ring"], a["status"]) for a in json.loads(listed.output)}
    assert rings["a1-r2"] == (2, "active") and rings["a1"][1] == "killed", rings


@pytest.mark.parametrize("ran_before_the_crash", [False, True])
def test_an_override_confirmed_before_a_crash_is_carried_out_at_the_next_boot_once(
    kconfig: KernelConfig, clock: Clock, mailbox: Mailbox, ran_before_the_crash: bool
) -> None:
    """The deciding process dies after the confirmation was logged and before (or while)
    the intent ran: the next kernel to boot runs it, and a mail already sent is not sent
    again (its idempotency key answers from the log)."""
    import asyncio

    from maos.boot import configured_kernel
    from maos.kernel import refusals

    async def confirm_then_crash(k: Kernel) -> str:
        await k.register_agent("a1", ring=3, budgets={"api_calls": 100})
        await k.open_task(
            TASK, trusted_targets=TRUSTED, budgets={"api_calls": 100}, effect_classes=[READ]
        )
        token = k.mint("a1", TASK, [Grant("email.send", "*")])
        refused = await _mail(k, token, TRUSTED[0])
        ov = _overrides(k, clock)
        secret = await ov.enroll("commander")
        asked = await ov.request(
            "execute", refused.intent_id, "", reason="ok", principal="commander"
        )
        clock.now += COOLING
        await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        if ran_before_the_crash:  # what execute_override does before it logs the outcome
            code, wire = refusals.refusal(k.wal, refused.intent_id)
            assert (await k.execute_refused(wire, code)).status is OutcomeStatus.COMMITTED
        return asked.override_id

    override_id = with_kernel(kconfig, confirm_then_crash)
    assert mailbox.recipients() == ([TRUSTED[0]] if ran_before_the_crash else [])
    smtp = {"host": "127.0.0.1", "port": mailbox.port}
    (kconfig.data_dir / "config.json").write_text(json.dumps({"smtp": smtp}))

    async def boot() -> list[Any]:
        async with configured_kernel(kconfig.data_dir, follow=False) as k:
            return [r.body for r in k.wal.read(kinds=[refusals.EXECUTED])]

    executed = asyncio.run(boot())
    assert [(b["hacf_override"], b["outcome"]["status"]) for b in executed] == [
        (override_id, "committed")
    ]
    assert asyncio.run(boot()) == executed  # carried out once: a second boot does nothing
    assert mailbox.recipients() == [TRUSTED[0]]


@pytest.mark.parametrize("cut_after", ["checked", "identity", "killed"])
def test_a_promotion_a_crash_cut_short_is_finished_at_the_next_boot_once(
    kconfig: KernelConfig, clock: Clock, cut_after: str
) -> None:
    """The deciding process dies in the middle of onboarding (the log holds what it had
    done): the next boot finishes the stages not logged, each once, even when the old
    identity is already killed and so no longer eligible."""
    import asyncio

    from maos.boot import configured_kernel
    from maos.kernel import promotion
    from maos.kernel.orders import Order

    async def confirm_then_crash(k: Kernel) -> None:
        await _ring3(k)
        ov = _overrides(k, clock)
        secret = await ov.enroll("commander")
        asked = await ov.request("promote", "a1", "2", reason="clean", principal="commander")
        clock.now += COOLING
        await ov.confirm(asked.override_id, _code(secret, clock), principal="commander")
        base = {"agent_id": "a1", "new_id": "a1-r2", "ring": 2, "principal": "commander"}
        # what onboard had done when the process died, step by step as it does them
        await k.cascade(Order(promotion.ONBOARDING, {**base, "stage": "checked"}))
        if cut_after in ("identity", "killed"):
            await k.register_agent("a1-r2", ring=2, rate_per_s=7.0, budgets={"api_calls": 40})
            await k.cascade(Order(promotion.ONBOARDING, {**base, "stage": "identity"}))
        if cut_after == "killed":
            await k.set_agent_status("a1", AgentStatus.KILLED)

    with_kernel(kconfig, confirm_then_crash)
    (kconfig.data_dir / "config.json").write_text("{}")

    async def boot() -> tuple[list[str], list[Any], AgentStatus, AgentStatus]:
        async with configured_kernel(kconfig.data_dir, follow=False) as k:
            stages = [r.body["stage"] for r in k.wal.read(kinds=["agent.onboarding"])]
            promoted = [r.body["ring"] for r in k.wal.read(kinds=["agent.promoted"])]
            return stages, promoted, k.registry.agent("a1").status, k.registry.agent("a1-r2").status

    finished = asyncio.run(boot())
    assert finished == (
        ["override", "checked", "identity", "retired"],
        [2],
        AgentStatus.KILLED,
        AgentStatus.ACTIVE,
    )
    assert asyncio.run(boot()) == finished  # once: a second boot adds nothing
