"""``/metrics`` on `maos up` (issue 10 §5): scraped over real HTTP from a real server,
parsed with prometheus_client's own parser, and moved by real intents - in process, and
from a `maos up` process running a real plan in real pods."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from maos.commander.web import Dashboard, load_or_create_token
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.modes import Mode
from maos.kernel.registry import COMMANDER
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import Mailbox, intent_frame

EXAMPLE_PLAN = Path(__file__).parents[2] / "examples" / "plans" / "report.yaml"
SCRAPE_TOKEN = "scrape-" + "s" * 40

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@contextlib.asynccontextmanager
async def _served(config: KernelConfig) -> AsyncIterator[tuple[Kernel, Dashboard, str]]:
    kernel = await Kernel.boot(config)
    token = load_or_create_token(config.data_dir)
    dashboard = Dashboard(kernel, token)
    server = asyncio.create_task(dashboard.serve())
    try:
        await asyncio.wait_for(dashboard.started(), 30)
        yield kernel, dashboard, token
    finally:
        dashboard.stop()
        await server
        await kernel.close()


def test_issue_10_metrics_parse_and_move_with_real_intents(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body() -> tuple[Samples, Samples, Samples, Samples, int, int]:
        async with _served(config) as (kernel, dashboard, token):
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=dashboard.url, timeout=30) as http:
                anonymous = (await http.get("metrics")).status_code
                wrong = (
                    await http.get("metrics", headers={"Authorization": "Bearer x"})
                ).status_code
                before = _parse((await http.get("metrics", headers=auth)).text)
                await kernel.register_agent("a1", ring=3, budgets={"api_calls": 100})
                await kernel.open_task(
                    "t1", trusted_targets=["boss@example.com"], budgets={"api_calls": 100}
                )
                agent = kernel.mint("a1", "t1", [Grant("email.send", "*")])
                mail = intent_frame(agent, "email.send", "boss@example.com", "m1", subject="s")
                assert (await kernel.submit(mail, agent_id="a1")).status is OutcomeStatus.COMMITTED
                for n in range(2):
                    frame = intent_frame(agent, "fs.delete", "x", f"d{n}")
                    await kernel.submit(frame, agent_id="a1")
                stranger = intent_frame(agent, "email.send", "x@example.net", "m2", subject="s")
                assert (
                    await kernel.submit(stranger, agent_id="a1")
                ).status is OutcomeStatus.PENDING
                reply = await http.get("metrics", headers=auth)
                assert reply.headers["content-type"].startswith("text/plain"), reply.headers
                after = _parse(reply.text)
                await kernel.demand_mode(
                    "commander", Mode.DEGRADED_2, cause="drill", principal=COMMANDER
                )
                degraded = _parse((await http.get("metrics", headers=auth)).text)
                await kernel.set_safe_state(True, reason="drill")
                safe = _parse((await http.get("metrics", headers=auth)).text)
        return before, after, degraded, safe, anonymous, wrong

    before, after, degraded, safe, anonymous, wrong = asyncio.run(body())
    assert (anonymous, wrong) == (401, 401)
    denied = {"status": "denied", "code": "DSC.CAPABILITY.NOT_COVERED"}
    assert _value(before, "maos_decisions_total", **denied) == 0
    assert _value(after, "maos_decisions_total", **denied) == 2
    assert _value(after, "maos_decisions_total", status="committed", code="") == 1
    assert (
        _value(after, "maos_decisions_total", status="pending", code="RULE.R7.APPROVAL_REQUIRED")
        == 1
    )
    assert _value(after, "maos_intents_total", op="fs.delete", status="denied") == 2
    assert _value(after, "maos_intent_seconds_count", status="denied") == 2
    assert _value(after, "maos_commit_seconds_count", result="committed") == 1
    assert _value(after, "maos_approvals_waiting") == 1
    assert _value(after, "maos_agents", ring="3", status="active") == 1
    assert _value(after, "maos_wal_records") > _value(before, "maos_wal_records") > 0
    assert _value(after, "maos_wal_bytes") > 0
    assert _value(before, "maos_mode", mode="normal") == 1
    assert _value(after, "maos_mode", mode="normal") == 1
    assert _value(degraded, "maos_mode", mode="degraded-2") == 1
    assert _value(degraded, "maos_mode", mode="normal") == 0
    assert (_value(safe, "maos_mode", mode="mss"), _value(safe, "maos_mode", mode="normal")) == (
        1,
        0,
    )
    assert mailbox.recipients() == ["boss@example.com"]


def _maos(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("maos")), *args]


@contextlib.contextmanager
def _maos_up(data_dir: Path, *flags: str) -> Iterator[tuple[str, list[str]]]:
    """`maos up` as a process: its URL, and what it wrote on stderr once stopped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = _maos("up", "-d", str(data_dir), "--port", "0", *flags)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("MAOS Commander on http://127.0.0.1:"), line + proc.stderr.read()
            stderr: list[str] = []
            yield line.split()[-1].partition("#token=")[0], stderr
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
            stderr.extend(proc.stderr.read().splitlines())
        finally:
            proc.kill()


def test_issue_10_scrape_token_reads_metrics_of_a_plan_in_pods_and_json_logs_go_to_stderr(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.json").write_text(
        json.dumps({"telemetry": {"metrics_token": SCRAPE_TOKEN}})
    )
    scrape = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    with _maos_up(data_dir, "--log-json") as (url, stderr):
        run = subprocess.run(
            _maos("run", str(EXAMPLE_PLAN), "-d", str(data_dir)),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        metrics = httpx.get(url + "metrics", headers=scrape)
        state = httpx.get(url + "api/state", headers=scrape)
    logged = [json.loads(line) for line in stderr]  # every line is one JSON object
    decided = [e for e in logged if e["logger"] == "maos.intent"]
    assert {"committed"} <= {e["status"] for e in decided}, logged
    assert all(e["agent_id"] and e["op"] and e["intent_id"] for e in decided)
    assert metrics.status_code == 200
    assert state.status_code == 401  # the scrape token is not the Commander's
    samples = _parse(metrics.text)
    committed = sum(
        v for (name, labels), v in samples.items()
        if name == "maos_decisions_total" and ("status", "committed") in labels
    )  # fmt: skip
    assert committed >= 3  # the plan's agents read, write and publish
    exited = sum(
        v for (name, labels), v in samples.items()
        if name == "maos_pods" and ("status", "exited") in labels
    )  # fmt: skip
    assert exited >= 2  # one pod per agent of the plan, each logged pod.started then exited
    assert _value(samples, "maos_mode", mode="normal") == 1
