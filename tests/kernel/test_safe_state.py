"""Minimal Safe State (R8): the Commander stops everything; nothing an agent does can
prevent it or get around it, and apoptosis (R9) still works."""

from __future__ import annotations

import pytest

from maos.kernel.errors import StateError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import intent_frame, with_kernel


async def _agent(k: Kernel) -> str:
    await k.register_agent("a1", ring=3)
    await k.open_task("t1")
    return k.mint("a1", "t1", [Grant("fs.*", "*")])


def test_in_safe_state_every_request_but_apoptosis_is_refused(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        token = await _agent(k)
        write = intent_frame(token, "fs.write", "a.txt", "w1", content="x")
        assert (await k.submit(write, agent_id="a1")).status is OutcomeStatus.COMMITTED
        await k.set_safe_state(True, reason="odd payments")
        refused = await k.submit(intent_frame(token, "fs.read", "a.txt", "r1"), agent_id="a1")
        assert refused.code == "RULE.R8.MINIMAL_SAFE_STATE"
        assert k.status()["safe_state"]["reason"] == "odd payments"
        end = await k.submit(
            {**intent_frame(token, "admin.apoptosis", "", "bye"), "params": {}}, agent_id="a1"
        )
        assert end.status is OutcomeStatus.COMMITTED  # R9 holds in the safe state too

    with_kernel(config, body)


def test_safe_state_survives_a_restart_and_only_the_commander_leaves_it(
    config: KernelConfig,
) -> None:
    async def enter(k: Kernel) -> None:
        await _agent(k)
        await k.set_safe_state(True, reason="incident 7")
        with pytest.raises(StateError):
            await k.set_safe_state(False, reason="let me out", principal="a1")

    with_kernel(config, enter)

    async def after(k: Kernel) -> None:
        token = k.mint("a1", "t1", [Grant("fs.*", "*")])
        frame = intent_frame(token, "fs.read", "a.txt", "r2")
        assert (await k.submit(frame, agent_id="a1")).code == "RULE.R8.MINIMAL_SAFE_STATE"
        await k.set_safe_state(False, reason="incident closed", principal="commander:ops")
        write = intent_frame(token, "fs.write", "a.txt", "w2", content="y")
        assert (await k.submit(write, agent_id="a1")).status is OutcomeStatus.COMMITTED

    with_kernel(config, after)
