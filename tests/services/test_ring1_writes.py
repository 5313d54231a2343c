"""Ring 1 is read yes, write no (issue 12 item 5): a service's record reaches the log only
through the kernel, with its capability and within its charter, and carries the
service's principal; the Security Agent process works that way end to end."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from maos.boot import configured_kernel
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import StateError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.pod.channel import decode_request
from maos.pod.frames import BASE_OPS, Frame
from maos.pod.sentry import Sentry, SentryProfile, sentry_log
from maos.testing import Mailbox, intent_frame, with_kernel


def test_a_service_without_its_capability_is_refused_and_logged(config: KernelConfig) -> None:
    """issue 12: a capability for another service, a forged one, or a kind outside the
    charter: refused, logged as service.denied, nothing else written."""

    async def body(k: Kernel) -> None:
        await k.register_agent("a1", ring=3)
        desk = k.services
        stage = {"agent_id": "a1", "stage": "hard_isolation", "status": "quarantined"}
        for cap, code in (
            (desk.capability("beacon"), "SERVICE.NOT_CHARTERED"),
            ("svc1.security." + "0" * 48, "SERVICE.BAD_CAPABILITY"),
            (None, "SERVICE.BAD_CAPABILITY"),
        ):
            with pytest.raises(StateError) as err:
                await desk.submit(cap, "agent.stage", stage)
            assert err.value.code == code
        assert k.registry.agent("a1").status is AgentStatus.ACTIVE
        denied = [r.body["code"] for r in k.wal.read(kinds=["service.denied"])]
        assert denied == [
            "SERVICE.NOT_CHARTERED",
            "SERVICE.BAD_CAPABILITY",
            "SERVICE.BAD_CAPABILITY",
        ]
        seq = await desk.submit(
            desk.capability("beacon"), "beacon.note", {"text": "hi", "principal": "commander"}
        )
        [note] = [r for r in k.wal.read(kinds=["beacon.note"])]
        assert note.seq == seq and note.body["principal"] == "service:beacon"  # not the Commander

    with_kernel(config, body)


def test_the_security_agent_process_isolates_through_the_kernel(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """A serving kernel's Security Agent is its own process: the breach and the soft
    isolation it decides reach the log as its orders, with principal service:security."""
    config.save()
    path = config.data_dir / "config.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "security": {"external_destinations_per_week": 1}}))

    async def main() -> None:
        async with configured_kernel(config.data_dir) as k:
            await k.register_agent("mailer", ring=3)
            await k.open_task("t1", trusted_targets=["a@x.example", "b@x.example"])
            token = k.mint("mailer", "t1", [Grant("email.send", "*")])
            for n, to in enumerate(("a@x.example", "b@x.example")):
                frame = intent_frame(token, "email.send", to, f"m{n}", subject="s", body="b")
                await k.submit(frame, agent_id="mailer")
            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while k.registry.agent("mailer").status is not AgentStatus.ISOLATED:
                assert loop.time() < end
                await asyncio.sleep(0.05)

    asyncio.run(main())

    async def after(k: Kernel) -> None:
        [breach] = [r.body for r in k.wal.read(kinds=["security.breach"])]
        stages = [r.body for r in k.wal.read(kinds=["agent.stage"])]
        assert breach["principal"] == "service:security"
        assert stages and all(s["principal"] == "service:security" for s in stages)
        started = [r.body for r in k.wal.read(kinds=["service.started"])]
        assert started[0]["service"] == "security" and started[0]["pid"] != 0

    with_kernel(config, after)


def test_the_sentrys_records_go_through_the_kernel_as_the_sentry(config: KernelConfig) -> None:
    """issue 12: the Sentry's egress records are Ring 1 writes: chartered, principal
    service:sentry (the kernel's desk, not a direct append)."""

    async def body(k: Kernel) -> None:
        profile = SentryProfile.standard().with_net_hosts("ok.com")
        sentry = Sentry("a1", profile, log=sentry_log(k), clock=k.clock)
        raw = orjson.dumps(
            {
                "v": 1,
                "id": 1,
                "gw": "api",
                "op": "request",
                "args": {"method": "GET", "url": "https://ok.com/"},
            }
        )
        req, model = decode_request(raw, expected_id=1, ops=BASE_OPS)
        frame = Frame("a1", req.id, req.gw, req.op, model, req.cap)
        await sentry.admit(frame)
        await sentry.record(frame, status=OutcomeStatus.COMMITTED)
        [egress] = [r.body for r in k.wal.read(kinds=["sentry.egress"])]
        assert egress["principal"] == "service:sentry" and egress["agent_id"] == "a1"

    with_kernel(config, body)


def test_the_sentries_records_go_in_batches_each_checked(config: KernelConfig) -> None:
    """issue 12 item 5: twenty pods' Sentries recording at once make one order of twenty
    records through the desk, each durable and the Sentry's; an order with one record
    outside the charter is refused whole, nothing of it logged."""

    def frame(agent: str) -> Frame:
        raw = orjson.dumps(
            {
                "v": 1,
                "id": 1,
                "gw": "api",
                "op": "request",
                "args": {"method": "GET", "url": "https://ok.com/"},
            }
        )
        req, model = decode_request(raw, expected_id=1, ops=BASE_OPS)
        return Frame(agent, req.id, req.gw, req.op, model, req.cap)

    async def body(k: Kernel) -> None:
        profile = SentryProfile.standard().with_net_hosts("ok.com")
        sentries = [Sentry(f"a{i}", profile, log=sentry_log(k), clock=k.clock) for i in range(20)]
        frames = [frame(s.agent_id) for s in sentries]
        for sentry, f in zip(sentries, frames, strict=True):
            await sentry.admit(f)
        orders = k.services.batched("sentry").orders
        await asyncio.gather(
            *(
                s.record(f, status=OutcomeStatus.COMMITTED)
                for s, f in zip(sentries, frames, strict=True)
            )
        )
        assert k.services.batched("sentry").orders == orders + 1
        egress = [r.body for r in k.wal.read(kinds=["sentry.egress"])]
        assert sorted(str(b["agent_id"]) for b in egress) == sorted(f"a{i}" for i in range(20))
        assert {b["principal"] for b in egress} == {"service:sentry"}
        cap = k.services.capability("sentry")
        with pytest.raises(StateError) as refused:
            await k.services.submit_batch(
                cap, [("sentry.egress", {"agent_id": "x"}), ("agent.stage", {"agent_id": "x"})]
            )
        assert refused.value.code == "SERVICE.NOT_CHARTERED"
        assert len(list(k.wal.read(kinds=["sentry.egress"]))) == 20  # nothing of it logged
        [denied] = [r.body for r in k.wal.read(kinds=["service.denied"])]
        assert denied["service"] == "sentry" and denied["kind"] == "agent.stage"

    with_kernel(config, body)
