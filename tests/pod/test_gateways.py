"""Gateways map sanitized frames to kernel intents; checked against a real kernel.

No pod here: frames are built exactly as the channel builds them (validated against
`GATEWAY_OPS`), so these tests pin what each gateway asks of the kernel - targets, derived
costs and keys, the answers for LLM and approvals - with the real DSC, WAL and adapters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.pod.frames import (
    BASE_OPS,
    ApiRequestArgs,
    Frame,
    FsPathArgs,
    FsWriteArgs,
    OutMsgSendArgs,
)
from maos.pod.gateways import GATEWAY_OPS, Answer, Gateways, describe, reply_for
from maos.pod.router import attach
from maos.testing import Mailbox

TASK = "t1"


def frame(agent: str, n: int, gw: str, op: str, cap: str | None = None, **args: Any) -> Frame:
    model = GATEWAY_OPS.model_for(gw, op)
    assert model is not None
    return Frame(agent, n, gw, op, model.model_validate(args), cap)  # type: ignore[arg-type]


class World:
    def __init__(self, kernel: Kernel, tokens: dict[str, str]) -> None:
        self.kernel = kernel
        self.tokens = tokens
        self.router = attach(kernel)

    def gateways(self, agent: str, epoch: str = "p1") -> Gateways:
        return Gateways(self.kernel, self.router, agent_id=agent, task_id=TASK, epoch=epoch)

    async def ask(self, agent: str, n: int, gw: str, op: str, **args: Any) -> Answer:
        f = frame(agent, n, gw, op, self.tokens[agent], **args)
        return await self.gateways(agent).handle(f)


def world(
    config: KernelConfig,
    body: Callable[[World], Awaitable[None]],
    grants: list[Grant] | None = None,
    api_calls: int = 100,
) -> None:
    async def go() -> None:
        kernel = await Kernel.boot(config)
        try:
            for agent in ("a1", "a2"):
                await kernel.register_agent(agent, ring=3, budgets={"api_calls": api_calls})
            await kernel.open_task(TASK, trusted_targets=["boss@example.com"])
            mine = grants or [
                Grant("fs.*", "*"),
                Grant("email.send", "*"),
                Grant("msg.*", "*"),
                Grant("llm.complete", "*"),
                Grant("admin.*", "*"),
            ]
            tokens = {a: kernel.mint(a, TASK, mine) for a in ("a1", "a2")}
            await body(World(kernel, tokens))
        finally:
            await kernel.close()

    asyncio.run(go())


def test_gateway_models_extend_the_base_ones_so_the_sentry_whitelists_apply() -> None:
    for (gw, op), base in {
        ("fs", "read"): FsPathArgs,
        ("fs", "write"): FsWriteArgs,
        ("api", "request"): ApiRequestArgs,
        ("outmsg", "send"): OutMsgSendArgs,
        ("outmsg", "email"): OutMsgSendArgs,
    }.items():
        model = GATEWAY_OPS.model_for(gw, op)
        assert model is not None and issubclass(model, base), (gw, op)
    assert BASE_OPS.model_for("outmsg", "email") is None  # mail is this layer's addition


def test_describe_names_the_kernel_op_and_target_of_every_frame() -> None:
    cases = {
        ("fs", "write", (("path", "a.txt"), ("content", "x"))): ("fs.write", "a.txt"),
        ("api", "request", (("method", "GET"), ("url", "http://h"))): ("http.request", "http://h"),
        ("outmsg", "email", (("to", "b@x.org"), ("body", "hi"))): ("email.send", "b@x.org"),
        ("outmsg", "send", (("to", "a2"), ("body", "hi"))): ("msg.send", "a2"),
        ("inmsg", "recv", ()): ("msg.receive", "a1"),
        ("admin", "wait", (("approval_id", "ap-1"),)): ("admin.wait", "ap-1"),
        ("admin", "heartbeat", ()): ("admin.heartbeat", "a1"),
    }
    for (gw, op, args), expected in cases.items():
        assert describe(frame("a1", 1, gw, op, **dict(args))) == expected


def test_fs_frames_become_workspace_intents_and_replies_carry_the_outcome(
    config: KernelConfig,
) -> None:
    async def body(w: World) -> None:
        wrote = await w.ask("a1", 1, "fs", "write", path="notes/a.md", content="hi")
        assert (wrote.op, wrote.target) == ("fs.write", "notes/a.md")
        assert wrote.outcome.status is OutcomeStatus.COMMITTED
        assert (config.workspaces / TASK / "notes" / "a.md").read_text() == "hi"
        read = await w.ask("a1", 2, "fs", "read", path="notes/a.md")
        reply = reply_for(2, read.outcome)
        assert reply.ok and reply.error is None
        assert read.outcome.value["content"] == "hi"
        assert reply.result == {
            "status": "committed",
            "value": read.outcome.value,
            "label": read.outcome.label.to_dict(),
            "code": "",
            "reason": "",
            "approval_id": None,
        }
        assert read.outcome.label.to_dict()["conf"] == "internal"
        denied = reply_for(3, (await w.ask("a1", 3, "fs", "read", path="/etc/passwd")).outcome)
        assert not denied.ok and denied.error is not None
        assert isinstance(denied.result, dict) and denied.result["status"] != "committed"
        assert denied.error.code == denied.result["code"] != ""

    world(config, body)


def test_derived_keys_never_collide_across_pods_but_sdk_keys_dedup(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(w: World) -> None:
        args = {"to": "boss@example.com", "subject": "s", "body": "hello"}
        f = frame("a1", 1, "outmsg", "email", w.tokens["a1"], **args)
        for epoch in ("pod-a", "pod-b"):  # a restarted pod starts again at frame id 1
            out = (await w.gateways("a1", epoch).handle(f)).outcome
            assert out.status is OutcomeStatus.COMMITTED
        keyed = frame("a1", 2, "outmsg", "email", w.tokens["a1"], key="report-1", **args)
        for epoch in ("pod-a", "pod-b"):
            out = (await w.gateways("a1", epoch).handle(keyed)).outcome
            assert out.status is OutcomeStatus.COMMITTED

    world(config, body)
    assert len(mailbox.messages) == 3  # two derived keys, one SDK key answered twice


def test_costs_are_derived_by_the_gateway_not_declared_by_the_agent(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(w: World) -> None:
        first = await w.ask("a1", 1, "outmsg", "email", to="boss@example.com", body="1")
        second = await w.ask("a1", 2, "outmsg", "email", to="boss@example.com", body="2")
        assert first.outcome.status is OutcomeStatus.COMMITTED
        assert second.outcome.code == "DSC.BUDGET.EXCEEDED"

    world(config, body, api_calls=1)


def test_mail_cc_recipients_are_checked_like_the_main_one(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(w: World) -> None:
        answer = await w.ask(
            "a1", 1, "outmsg", "email", to="boss@example.com", body="x", cc=["eve@evil.example"]
        )
        assert answer.outcome.status is OutcomeStatus.PENDING
        assert answer.outcome.code == "RULE.R7.APPROVAL_REQUIRED"

    world(config, body)
    assert mailbox.messages == []


def test_llm_is_unavailable_without_a_provider_but_still_needs_its_capability(
    config: KernelConfig,
) -> None:
    messages = [{"role": "user", "content": "summarise"}]

    async def body(w: World) -> None:
        answer = await w.ask("a1", 1, "llm", "complete", messages=messages)
        assert answer.outcome.status is OutcomeStatus.FAILED
        assert answer.outcome.code == "LLM.UNAVAILABLE"
        assert "Rule-Based Mode" in answer.outcome.reason

    world(config, body)

    async def without_grant(w: World) -> None:
        answer = await w.ask("a1", 1, "llm", "complete", messages=messages)
        assert answer.outcome.code.startswith("DSC.CAPABILITY.")

    config2 = KernelConfig(data_dir=config.data_dir.with_name("other"), smtp=config.smtp)
    world(config2, without_grant, grants=[Grant("fs.read", "*")])


def test_admin_wait_answers_only_the_agent_that_asked(config: KernelConfig) -> None:
    async def body(w: World) -> None:
        parked = await w.ask("a1", 1, "outmsg", "email", to="eve@evil.example", body="x")
        approval_id = parked.outcome.approval_id
        assert approval_id is not None
        other = await w.ask("a2", 1, "admin", "wait", approval_id=approval_id)
        assert other.outcome.code == "GATEWAY.APPROVAL.NOT_YOURS"
        unknown = await w.ask("a1", 2, "admin", "wait", approval_id="ap-nope")
        assert unknown.outcome.status is OutcomeStatus.DENIED
        assert unknown.outcome.code.startswith("APPROVAL.")
        early = await w.ask("a1", 3, "admin", "wait", approval_id=approval_id, timeout_ms=0)
        assert early.outcome.status is OutcomeStatus.PENDING
        assert early.outcome.code == "APPROVAL.STILL_PENDING"
        waiting = asyncio.create_task(w.ask("a1", 4, "admin", "wait", approval_id=approval_id))
        await w.kernel.deny(approval_id, note="no")
        assert (await waiting).outcome.code == "APPROVAL.DENIED"

    world(config, body)


def test_messages_to_unknown_agents_fail_and_receives_take_each_message_once(
    config: KernelConfig,
) -> None:
    async def body(w: World) -> None:
        lost = await w.ask("a1", 1, "outmsg", "send", to="nobody", body="hi")
        assert lost.outcome.status is OutcomeStatus.FAILED
        assert lost.outcome.code == "EFFECT.MSG.UNKNOWN_RECIPIENT"
        sent = await w.ask("a1", 2, "outmsg", "send", to="a2", body="hi")
        assert sent.outcome.status is OutcomeStatus.COMMITTED
        got = await w.ask("a2", 1, "inmsg", "recv", max_items=5)
        messages = got.outcome.value["messages"]
        assert [(m["sender"], m["body"]) for m in messages] == [("a1", "hi")]
        assert "agent:a1" in got.outcome.label.sources
        again = await w.ask("a2", 2, "inmsg", "recv", max_items=5)
        assert again.outcome.value["messages"] == []

    world(config, body)


def test_a_receive_waiting_for_mail_ends_when_the_pod_is_gone(config: KernelConfig) -> None:
    async def body(w: World) -> None:
        gateways = w.gateways("a2")
        f = frame("a2", 1, "inmsg", "recv", w.tokens["a2"], timeout_ms=60_000)
        waiting = asyncio.create_task(gateways.handle(f))
        await asyncio.sleep(0)
        gateways.abort()
        answer = await asyncio.wait_for(waiting, 30)
        assert answer.outcome.value["messages"] == []

    world(config, body)


def test_unread_messages_survive_a_restart_and_read_ones_stay_read(
    config: KernelConfig,
) -> None:
    async def before(w: World) -> None:
        for n, text in enumerate(("read before", "still unread"), 1):
            sent = await w.ask("a1", n, "outmsg", "send", to="a2", body=text)
            assert sent.outcome.status is OutcomeStatus.COMMITTED
        got = await w.ask("a2", 1, "inmsg", "recv", max_items=1)
        assert [m["body"] for m in got.outcome.value["messages"]] == ["read before"]

    world(config, before)

    async def after(w: World) -> None:  # a new kernel process, a new router: from the log
        got = await w.ask("a2", 2, "inmsg", "recv", max_items=10)
        messages = got.outcome.value["messages"]
        assert [(m["sender"], m["body"]) for m in messages] == [("a1", "still unread")]
        assert "agent:a1" in got.outcome.label.sources

    world(config, after)


def test_ring_1_services_have_no_inbox(config: KernelConfig) -> None:
    async def body(w: World) -> None:
        for n, service in enumerate(("orchestrator", "kernel", "sse", "commander"), 1):
            sent = await w.ask("a1", n, "outmsg", "send", to=service, body="let me in")
            assert sent.outcome.code == "EFFECT.MSG.UNKNOWN_RECIPIENT", service

    world(config, body)
