"""A pod's frame is one trace (issue 10 §5): the Sentry opens its root, the kernel's stages
are children of it, and a frame the Sentry itself refuses is a trace too. A real agent
in a real pod; spans collected by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.trace import Tracing
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodRuntime
from maos.testing import Mailbox

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="models production: the kernel runs as root, pods as nobody"
)

AGENT = """
from maos import sdk

sdk.email.send("boss@example.com", "status", "all good")
for path in ("notes/x.md", "/etc/passwd"):
    try:
        sdk.fs.delete(path)
    except sdk.Denied as no:
        print("denied", no.code, flush=True)
    except Exception as exc:
        print("refused", type(exc).__name__, flush=True)
"""


def test_issue_10_a_pods_frame_is_one_trace_from_the_sentry_to_the_adapter(
    tmp_path: Path, config: KernelConfig, mailbox: Mailbox, home: PodHome
) -> None:
    exporter = InMemorySpanExporter()
    observed: list[tuple[str, str]] = []
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(AGENT))

    async def go() -> str:
        kernel = await Kernel.boot(config)
        kernel.trace = Tracing.exporting(exporter)
        kernel.trace.observe(lambda o: observed.append((o.op, o.outcome.code)))
        try:
            await kernel.register_agent("worker", ring=3)
            await kernel.open_task("t1", trusted_targets=["boss@example.com"])
            grants = [Grant("email.send", "*"), Grant("fs.read", "*"), Grant("admin.*", "*")]
            token = kernel.mint("worker", "t1", grants)
            async with PodRuntime(kernel, home=home, max_restarts=0) as runtime:
                run = await runtime.start("worker", script, task_id="t1", token=token)
                await run.wait()
                return run.log()
        finally:
            await kernel.close()

    output = asyncio.run(go())
    assert "denied DSC.CAPABILITY.NOT_COVERED" in output, output
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "maos.intent" and s.parent is None]
    by_op = {r.attributes.get("maos.frame_op"): r for r in roots if r.attributes}
    assert mailbox.recipients() == ["boss@example.com"]

    mail = next(r for r in roots if r.attributes.get("maos.op") == "email.send")
    assert mail.attributes["maos.gateway"] == "outmsg"  # the gateway mail leaves by
    assert mail.attributes["maos.decision.status"] == "committed"
    tree = {s.name: s for s in spans if s.context.trace_id == mail.context.trace_id}
    assert set(tree) == {
        "maos.intent",
        "maos.sentry",
        "maos.dsc",
        "maos.commit",
        "maos.adapter",
    }
    for child in ("maos.sentry", "maos.dsc", "maos.commit"):
        assert tree[child].parent is not None
        assert tree[child].parent.span_id == mail.context.span_id, child
    assert tree["maos.sentry"].attributes["maos.sentry.verdict"] == "allow"

    denied = [r for r in roots if r.attributes.get("maos.op") == "fs.delete"]
    assert [r.attributes["maos.decision.code"] for r in denied] == ["DSC.CAPABILITY.NOT_COVERED"]

    # /etc/passwd leaves the fs whitelist: the Sentry's violation ends the frame (and the pod)
    outside = [r for r in roots if r.attributes.get("maos.decision.status") == "violation"]
    assert [r.attributes["maos.decision.code"] for r in outside] == ["SENTRY.MAC.FS"], by_op
    assert ("fs.delete", "SENTRY.MAC.FS") in observed  # /metrics counts the Sentry's refusals
    assert ("fs.delete", "DSC.CAPABILITY.NOT_COVERED") in observed
    kids = [s.name for s in spans if s.context.trace_id == outside[0].context.trace_id]
    assert sorted(kids) == ["maos.intent", "maos.sentry"]  # the kernel never saw it
