"""The LLM gateway with a provider configured: the pod's frame reaches a real model server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.llm import FallbackChain, LlmAdapter, OpenAICompatible, reserve_tokens
from maos.pod.frames import Frame
from maos.pod.gateways import GATEWAY_OPS, Gateways
from maos.pod.router import attach
from maos.testing import ChatReply, loopback_openai

TASK = "t1"
MESSAGES = [
    {"role": "system", "content": "You summarise mail."},
    {"role": "user", "content": "Three new messages, one from the bank about a café bill."},
]


def _frame(cap: str, n: int, **args: Any) -> Frame:
    model = GATEWAY_OPS.model_for("llm", "complete")
    assert model is not None
    return Frame("a1", n, "llm", "complete", model.model_validate(args), cap)


def test_the_gateway_returns_the_models_answer_and_reserves_the_llm_estimate(
    tmp_path: Path,
) -> None:
    with loopback_openai([ChatReply(content="One bill to pay.")]) as server:

        async def go() -> tuple[Any, Any, Any]:
            adapter = LlmAdapter(FallbackChain([OpenAICompatible(server.url, "k", "m")]))
            kernel = await Kernel.boot(KernelConfig(data_dir=tmp_path / "d"), follow=False)
            try:
                kernel.add_adapter("llm", adapter)
                await kernel.register_agent("a1", ring=3, budgets={"tokens": 10_000})
                await kernel.open_task(TASK, budgets={"tokens": 10_000})
                cap = kernel.mint("a1", TASK, [Grant("llm.complete", "*")])
                gateways = Gateways(kernel, attach(kernel), agent_id="a1", task_id=TASK, epoch="e")
                answer = await gateways.handle(_frame(cap, 1, messages=MESSAGES, max_tokens=64))
                usage = kernel.ledger.usage(agent_id="a1")
                booked = [
                    r.body["cost"]["tokens"] for r in kernel.wal.read(kinds=("intent.prepared",))
                ]
                return answer, usage, booked
            finally:
                await adapter.aclose()
                await kernel.close()

        answer, usage, booked = asyncio.run(go())
    assert answer.outcome.status is OutcomeStatus.COMMITTED, answer.outcome
    assert answer.outcome.value["message"]["content"] == "One bill to pay."
    expected = reserve_tokens({"messages": MESSAGES, "max_tokens": 64})
    assert booked == [expected] and usage is not None and usage.spent.tokens == expected
