"""Traces of the intent path (issue 10 §5): one span per intent, a child per stage, the
decision code on it, exported over OTLP/HTTP to a collector stand-in on loopback that
decodes the protobuf as a real collector would."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from maos.kernel import trace
from maos.kernel.config import read_config
from maos.kernel.dsc.pipeline import CHECK_ORDER
from maos.kernel.errors import InputError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.telemetry import TelemetrySettings
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.services.sse import HeuristicEvaluator
from maos.testing import Mailbox, intent_frame, with_kernel
from maos.testing.otlp import ReceivedSpan, loopback_otlp


async def _agent(k: Kernel) -> str:
    await k.register_agent("a1", ring=3, budgets={"api_calls": 100})
    await k.open_task("t1", trusted_targets=["boss@example.com"], budgets={"api_calls": 100})
    return k.mint("a1", "t1", [Grant("email.send", "*"), Grant("fs.read", "*")])


def _by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def test_issue_10_spans_reach_a_loopback_otlp_collector_with_the_decision_code(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    with loopback_otlp() as collector:
        settings = TelemetrySettings(otlp_endpoint=collector.endpoint, service_name="maos-test")
        traced = replace(config, telemetry=settings)

        async def body(k: Kernel) -> tuple[str, str]:
            token = await _agent(k)
            sent = await k.submit(
                intent_frame(token, "email.send", "boss@example.com", "m1", subject="s", body="b"),
                agent_id="a1",
            )
            assert sent.status is OutcomeStatus.COMMITTED, sent
            refused = await k.submit(
                intent_frame(token, "fs.delete", "notes.txt", "d1"), agent_id="a1"
            )
            assert refused.status is OutcomeStatus.DENIED, refused
            return sent.intent_id, refused.intent_id

        sent_id, refused_id = with_kernel(traced, body, sse=HeuristicEvaluator())
        # close() flushed the batch: the collector has it (or gets it within the wait)
        spans = collector.wait_for(
            lambda s: s.name == "maos.intent" and s.attributes.get("maos.intent_id") == refused_id
        )

    roots = {s.attributes["maos.intent_id"]: s for s in _by_name(spans, "maos.intent")}
    sent, refused = roots[sent_id], roots[refused_id]
    assert refused.attributes["maos.decision.code"] == "DSC.CAPABILITY.NOT_COVERED"
    assert refused.attributes["maos.decision.status"] == "denied"
    assert sent.attributes["maos.decision.status"] == "committed"
    assert sent.attributes["maos.op"] == "email.send"
    assert sent.resource["service.name"] == "maos-test"
    assert mailbox.recipients() == ["boss@example.com"]

    in_sent = {s.name: s for s in spans if s.trace_id == sent.trace_id}
    assert set(in_sent) == {"maos.intent", "maos.dsc", "maos.sse", "maos.commit", "maos.adapter"}
    for child in ("maos.dsc", "maos.sse", "maos.commit"):
        assert in_sent[child].parent_span_id == sent.span_id, child
    assert in_sent["maos.adapter"].parent_span_id == in_sent["maos.commit"].span_id
    assert in_sent["maos.sse"].attributes["maos.sse.verdict"] == "pass"
    assert in_sent["maos.commit"].attributes["maos.decision.status"] == "committed"
    checks = in_sent["maos.dsc"].attributes["maos.dsc.checks"]
    assert [c.partition("=")[0] for c in checks] == list(CHECK_ORDER)
    assert {c.partition("=")[2] for c in checks} == {"Allow"}

    in_refused = {s.name: s for s in spans if s.trace_id == refused.trace_id}
    assert set(in_refused) == {"maos.intent", "maos.dsc"}  # denied: no SSE, no commit
    dsc = in_refused["maos.dsc"]
    assert dsc.attributes["maos.decision.code"] == "DSC.CAPABILITY.NOT_COVERED"
    assert dsc.attributes["maos.dsc.checks"] == ["capability=Deny:DSC.CAPABILITY.NOT_COVERED"]


def test_issue_10_an_approved_intent_is_a_trace_of_its_own_naming_it_approved(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    exporter = InMemorySpanExporter()

    async def body(k: Kernel) -> None:
        k.trace = trace.Tracing.exporting(exporter)
        token = await _agent(k)
        parked = await k.submit(
            intent_frame(token, "email.send", "stranger@example.net", "m2", subject="s", body="b"),
            agent_id="a1",
        )
        assert parked.status is OutcomeStatus.PENDING, parked
        assert parked.approval_id is not None
        done = await k.approve(parked.approval_id, k.packet(parked.approval_id).digest)
        assert done.status is OutcomeStatus.COMMITTED, done

    with_kernel(config, body)
    roots = [s for s in exporter.get_finished_spans() if s.name == "maos.intent"]
    seen = [(r.attributes["maos.approved"], r.attributes["maos.decision.status"]) for r in roots]
    # approve() and the kernel's follower may both carry it out; the log answers the second
    assert seen[0] == (False, "pending") and set(seen[1:]) == {(True, "committed")}, seen
    assert roots[0].attributes["maos.decision.code"] == "RULE.R7.APPROVAL_REQUIRED"
    assert roots[0].context.trace_id != roots[1].context.trace_id
    assert mailbox.recipients() == ["stranger@example.net"]


def test_issue_10_untraced_stages_see_no_trace_and_observers_still_see_every_intent(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    seen: list[tuple[str, str, str]] = []
    inside: list[bool] = []

    async def body(k: Kernel) -> None:
        assert not k.trace.on  # no telemetry section: the default is off
        k.trace.observe(lambda o: seen.append((o.op, o.outcome.status.value, o.outcome.code)))
        k.trace.observe(lambda o: inside.append(trace.active()))
        k.trace.observe(lambda o: 1 / 0)  # a broken observer decides nothing
        token = await _agent(k)
        await k.submit(intent_frame(token, "fs.delete", "x", "d1"), agent_id="a1")
        await k.submit({"op": 5}, agent_id="a1")

    with_kernel(config, body)
    assert seen[0] == ("fs.delete", "denied", "DSC.CAPABILITY.NOT_COVERED")
    assert seen[1][0] == "?" and seen[1][1] == "denied" and seen[1][2].startswith("BAD_INPUT")
    assert inside == [False, False]


def test_issue_10_a_bad_telemetry_section_is_refused_naming_the_field(
    config: KernelConfig,
) -> None:
    config.data_dir.mkdir(parents=True)
    path = config.data_dir / "config.json"
    for raw, field in (
        ('{"telemetry": {"otlp_endpoint": "ftp://x"}}', "telemetry.otlp_endpoint"),
        ('{"telemetry": {"sample_ratio": 2}}', "telemetry.sample_ratio"),
        ('{"telemetry": {"metrics_token": "short"}}', "telemetry.metrics_token"),
        ('{"telemetry": {"json_logs": "yes"}}', "telemetry.json_logs"),
        ('{"telemetry": {"endpoint": "http://x:4318"}}', "telemetry.endpoint"),
    ):
        path.write_text(raw)
        with pytest.raises(InputError) as err:
            read_config(config.data_dir)
        assert err.value.code == "BAD_INPUT.CONFIG"
        assert err.value.message.startswith(field), err.value.message
    path.write_text('{"telemetry": {"otlp_endpoint": "http://127.0.0.1:4318/"}}')
    loaded = KernelConfig.load(config.data_dir)
    assert loaded.telemetry is not None
    assert loaded.telemetry.traces_url == "http://127.0.0.1:4318/v1/traces"


def test_issue_10_an_unreachable_collector_never_stops_the_kernel(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """Spans are dropped, decisions are not: the exporter fails off the event loop."""
    settings = TelemetrySettings(otlp_endpoint="http://127.0.0.1:9", export_timeout_s=0.5)

    async def body(k: Kernel) -> OutcomeStatus:
        token = await _agent(k)
        out = await k.submit(
            intent_frame(token, "email.send", "boss@example.com", "m1", subject="s", body="b"),
            agent_id="a1",
        )
        await asyncio.sleep(0)
        return out.status

    status = with_kernel(replace(config, telemetry=settings), body)
    assert status is OutcomeStatus.COMMITTED
    assert mailbox.recipients() == ["boss@example.com"]
