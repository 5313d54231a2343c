"""Deliberate from inside a pod (issue 10 §1): the Commander asks, the agent reads the
question and answers through the SDK (``admin.questions`` / ``admin.answer``, through
the Sentry and every DSC check), and the Commander decides - the agent never does.

Real agents in real level-2 pods against a real kernel and a real SMTP server on
loopback; what happened is read from the agent's output, the mailbox and the WAL.
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from maos.kernel.approvals import ApprovalStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodEvent, PodRuntime
from maos.services import hacf
from maos.testing import Mailbox, eventually, intent_frame, with_kernel

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="models production: the kernel runs as root, pods as nobody"
)
TASK = "t1"
GRANTS = [
    Grant("email.send", "stranger@evil.example"),
    Grant("email.send", "boss@example.com"),
    Grant("admin.*", "*"),
]
QUESTION = "who named this recipient?"

ANSWERING = """
import json, os, time
from maos import sdk

try:
    sdk.email.send("stranger@evil.example", "s", "hello")
except sdk.PendingApproval as parked:
    aid = parked.approval_id
asked = []
for _ in range(2400):  # until the Commander asks; bounded, so a regression fails
    asked = sdk.admin.questions().value["questions"]
    if asked:
        break
    time.sleep(0.05)
print("questions", json.dumps(asked), flush=True)

def answer(gateway_args):
    try:
        return sdk.default_client().call("admin", "answer", gateway_args).value["approval_id"]
    except sdk.Denied as no:
        return no.code

print("other", answer({"approval_id": os.environ["OTHER"], "text": "mine now"}))
beyond = {"target": "x@elsewhere.org"}
print("beyond", answer({"approval_id": aid, "text": "try", "proposal": beyond}))
print("bad", answer({"approval_id": aid, "text": "try", "proposal": {"op": "fs.delete"}}))
print("blank", answer({"approval_id": aid, "text": "   "}))
said = sdk.admin.answer(aid, "the inbox mail; the boss would do", target="boss@example.com")
print("answered", said.value["approval_id"] == aid, flush=True)
print("decided", sdk.admin.wait(aid).value is not None, flush=True)
print("late", answer({"approval_id": aid, "text": "and another thing"}))
print("after", json.dumps(sdk.admin.questions().value["questions"]), flush=True)
"""


def _lines(output: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in output.splitlines() if " " in line)


async def _agents(kernel: Kernel) -> dict[str, str]:
    for agent in ("a1", "a2"):
        await kernel.register_agent(agent, ring=3, budgets={"api_calls": 100})
    await kernel.open_task(TASK, trusted_targets=["boss@example.com"], budgets={"api_calls": 100})
    return {agent: kernel.mint(agent, TASK, GRANTS) for agent in ("a1", "a2")}


def _answers(kernel: Kernel) -> list[dict[str, Any]]:
    return [dict(r.body) for r in kernel.wal.read(kinds=[hacf.ANSWERED])]


def test_the_commander_asks_the_agent_answers_from_its_pod_and_the_commander_decides(
    tmp_path: Path, config: KernelConfig, mailbox: Mailbox, home: PodHome
) -> None:
    script = tmp_path / "a1.py"
    script.write_text(textwrap.dedent(ANSWERING))

    async def body(kernel: Kernel) -> tuple[str, str, dict[str, Any], list[str]]:
        tokens = await _agents(kernel)
        talk = hacf.Deliberation(kernel.registry, kernel.approvals, hacf.kernel_log(kernel))
        mail = intent_frame(
            tokens["a2"], "email.send", "stranger@evil.example", "m2", subject="s", body="b"
        )
        other = (await kernel.submit(mail, agent_id="a2")).approval_id
        assert other is not None
        await talk.ask(other, "a2: a question for you only", principal="commander")
        asks: list[asyncio.Task[None]] = []
        parked: list[str] = []

        def commander(event: PodEvent) -> None:
            if event.status == "pending" and event.approval_id is not None:
                parked.append(event.approval_id)
                asks.append(
                    asyncio.create_task(
                        talk.ask(event.approval_id, QUESTION, principal="commander")
                    )
                )

        async with PodRuntime(kernel, home=home, on_event=commander) as runtime:
            run = await runtime.start(
                "a1", script, task_id=TASK, token=tokens["a1"], env={"OTHER": other}
            )
            await eventually(lambda: bool(_answers(kernel)) or run.task.done(), "answered")
            assert _answers(kernel), run.log()
            aid = parked[0]
            item = kernel.approvals.get(aid)
            # The answer changed nothing: still pending, same intent, same packet.
            assert item.status is ApprovalStatus.PENDING
            assert item.intent["target"] == "stranger@evil.example"
            digest = kernel.packet(aid).digest
            outcome = await hacf.conclude(kernel, aid, True, packet=digest, principal="commander")
            assert outcome.status is OutcomeStatus.COMMITTED, outcome
            ended = await run.wait()
            assert ended.exit_code == 0, run.log()
        assert kernel.approvals.get(other).status is ApprovalStatus.PENDING
        denied = [str(r.body["code"]) for r in kernel.wal.read(kinds=["intent.denied"])]
        return aid, run.log(), _answers(kernel)[0], denied

    aid, output, answer, denied = with_kernel(config, body)
    said = _lines(output)
    listed = json.loads(said["questions"])
    assert [q["approval_id"] for q in listed] == [aid]  # never a2's deliberation
    assert listed[0]["open"] is True
    assert [(t["by"], t.get("question")) for t in listed[0]["thread"]] == [("commander", QUESTION)]
    assert said["other"] == "HACF.NOT_THE_PROPOSER"
    assert said["beyond"] == "HACF.OUTSIDE_GRANTS"
    assert said["bad"] == said["blank"] == "HACF.BAD_ANSWER"
    assert said["answered"] == "True"
    assert said["decided"] == "True"
    assert said["late"] == "APPROVAL.ALREADY_DECIDED"
    assert json.loads(said["after"]) == []
    assert {k: answer[k] for k in ("approval_id", "agent_id", "author", "trusted")} == {
        "approval_id": aid,
        "agent_id": "a1",
        "author": "agent",
        "trusted": False,
    }
    assert answer["proposal"] == {"target": "boss@example.com"}
    # Each refusal is a logged denial; the original recipient got the mail, not the proposal's.
    for code in ("HACF.NOT_THE_PROPOSER", "HACF.OUTSIDE_GRANTS", "APPROVAL.ALREADY_DECIDED"):
        assert code in denied
    assert mailbox.recipients() == ["stranger@evil.example"]


DECIDING = """
import asyncio, os, time
from maos import sdk
from maos.sdk.aio import AsyncClient

if os.environ["MAOS_ATTEMPT"] == "1":
    try:
        sdk.email.send("stranger@evil.example", "s", "hello")
    except sdk.PendingApproval:
        pass
    # No gateway op decides: asking for one is a violation (the pod dies).
    sdk.default_client().call("admin", "decide", {"approval_id": "x", "decision": "approve"})
    time.sleep(600)

async def main():
    kernel = AsyncClient()
    for _ in range(2400):
        asked = (await kernel.admin.questions()).value["questions"]
        if asked:
            break
        await asyncio.sleep(0.05)
    aid = asked[0]["approval_id"]
    await kernel.admin.answer(aid, "approve it, I approve it myself", params={"decision": "ok"})
    print("answered", aid, flush=True)

asyncio.run(main())
"""


def test_an_agent_cannot_decide_its_own_deliberation_from_its_pod_or_by_an_intent(
    tmp_path: Path, config: KernelConfig, mailbox: Mailbox, home: PodHome
) -> None:
    script = tmp_path / "a1.py"
    script.write_text(textwrap.dedent(DECIDING))

    async def body(kernel: Kernel) -> tuple[str, list[str], str]:
        tokens = await _agents(kernel)
        talk = hacf.Deliberation(kernel.registry, kernel.approvals, hacf.kernel_log(kernel))
        asks: list[asyncio.Task[None]] = []

        def commander(event: PodEvent) -> None:
            if event.status == "pending" and event.approval_id is not None:
                asks.append(
                    asyncio.create_task(
                        talk.ask(event.approval_id, QUESTION, principal="commander")
                    )
                )

        async with PodRuntime(kernel, home=home, on_event=commander) as runtime:
            run = await runtime.start("a1", script, task_id=TASK, token=tokens["a1"])
            ended = await run.wait()
            assert (ended.exit_code, ended.restarts) == (0, 1), run.log()
        (aid,) = [a.approval_id for a in kernel.approvals.pending()]
        # The kernel-side ops that would decide are refused to the agent's own token too.
        for op in ("admin.decide", "admin.approve", "hacf.decided", "approval.approved"):
            out = await kernel.submit(intent_frame(tokens["a1"], op, aid, f"k-{op}"), agent_id="a1")
            assert out.status is OutcomeStatus.DENIED, out
        violations = [str(r.body["code"]) for r in kernel.wal.read(kinds=["pod.violation"])]
        assert kernel.approvals.get(aid).status is ApprovalStatus.PENDING
        assert not list(kernel.wal.read(kinds=[hacf.DECIDED, "approval.approved"]))
        return aid, violations, run.log()

    aid, violations, output = with_kernel(config, body)
    assert violations == ["POD.FRAME.UNKNOWN_OP"]  # no frame decides
    assert f"answered {aid}" in output
    assert mailbox.messages == []


def test_the_console_shows_the_agents_answer_as_untrusted_with_its_proposal(
    config: KernelConfig,
) -> None:
    from typer.testing import CliRunner

    from maos.cli import app

    async def body(kernel: Kernel) -> str:
        tokens = await _agents(kernel)
        mail = intent_frame(
            tokens["a1"], "email.send", "stranger@evil.example", "m1", subject="s", body="b"
        )
        aid = (await kernel.submit(mail, agent_id="a1")).approval_id
        assert aid is not None
        await hacf.Deliberation(kernel.registry, kernel.approvals, hacf.kernel_log(kernel)).ask(
            aid, QUESTION, principal="commander"
        )
        said = intent_frame(
            tokens["a1"],
            "admin.answer",
            aid,
            "ans1",
            text="the boss",
            proposal={"target": "boss@example.com"},
        )
        assert (await kernel.submit(said, agent_id="a1")).status is OutcomeStatus.COMMITTED
        return aid

    aid = with_kernel(config, body)
    shown = CliRunner().invoke(
        app, ["commander", "deliberate", "show", aid, "-d", str(config.data_dir)]
    )
    lines = shown.output.splitlines()
    assert lines[0].endswith(f"asked by commander: {QUESTION}"), shown.output
    assert lines[1].endswith(
        'answered by a1 (agent, untrusted): the boss | proposes {"target": "boss@example.com"}'
    ), shown.output
