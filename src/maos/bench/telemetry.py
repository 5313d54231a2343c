"""What observability costs (issue 10 §5), each figure against its baseline in the same run.

- **DSC decision, tracing off / on**: the seven checks on `maos.bench.dsc`'s intent
  (a mail with a 1 KB body, a real Biscuit token, cached), per decision, in rounds that
  interleave three ways of running it: *bare* (the check loop with no span, what the
  pipeline cost before it was instrumented), *off* (the default: `Pipeline.decide` with
  no intent traced - one context-variable read and one test per check) and *on* (inside
  an open intent span: a ``maos.dsc`` span with one event per check, handed to a batch
  processor whose exporter drops them, so the figure is the kernel's side of tracing).
- **TDP on a big log**: `maos tdp --once` as a process on 100,000 records (10,000 with
  ``--quick``) appended through the WAL's batch path, against `maos wal verify` on the
  same log (the same full chain and anchor check without the fold and the screen) and
  against `maos --help` (the interpreter and the CLI starting). The chain check alone,
  in process, is reported beside them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from maos.bench import dsc
from maos.kernel import walcheck
from maos.kernel.anchor import HeadAnchor
from maos.kernel.dsc.base import CheckInput
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.trace import Tracing
from maos.kernel.walconfig import anchored_wal

__all__ = ["measure", "rows"]


class _Drop(SpanExporter):
    """Takes every batch and keeps nothing: the collector's side costs the kernel nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _per_call_ns(call: Callable[[], object], settle: Callable[[], None], n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - t0)
        settle()
    return out


def _dsc(quick: bool) -> dict[str, Any]:
    rounds, n = (3, 2_000) if quick else (5, 6_000)
    provider = TracerProvider(resource=Resource.create({"service.name": "maos-bench"}))
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=8192))
    tracing = Tracing(provider)
    samples: dict[str, list[int]] = {"bare": [], "off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="maos-bench-") as tmp:
        pipeline, inputs, _, ledger = dsc._world(Path(tmp), 10)
        one: CheckInput = inputs[0]

        def settle() -> None:
            ledger.settle(one.intent.intent_id, committed=False)

        for inp in inputs:  # verify each token once, as the kernel's cache does
            pipeline.decide(inp)
            ledger.settle(inp.intent.intent_id, committed=False)
        try:
            for _ in range(rounds):
                samples["bare"] += _per_call_ns(lambda: pipeline._decide(one, None), settle, n)
                samples["off"] += _per_call_ns(lambda: pipeline.decide(one), settle, n)
                with tracing.root("bench-agent"):
                    samples["on"] += _per_call_ns(lambda: pipeline.decide(one), settle, n)
        finally:
            provider.shutdown()
    med = {k: statistics.median(v) / 1000 for k, v in samples.items()}
    return {
        "dsc_bare_p50_us": round(med["bare"], 2),
        "dsc_tracing_off_p50_us": round(med["off"], 2),
        "dsc_tracing_on_p50_us": round(med["on"], 2),
        "ratio_dsc_tracing_off_vs_bare": round(med["off"] / med["bare"], 3),
        "ratio_dsc_tracing_on_vs_off": round(med["on"] / med["off"], 3),
    }


async def _build_log(data_dir: Path, records: int) -> None:
    """A kernel's data dir (keys, anchor, an agent, a task, a parked decision), then
    ``records`` more records through the anchored WAL's group commit."""
    config = KernelConfig(data_dir=data_dir)
    kernel = await Kernel.boot(config, follow=False)
    try:
        await kernel.register_agent("a1", ring=3, budgets={"api_calls": 10})
        await kernel.open_task("t1", trusted_targets=["boss@example.com"])
        token = kernel.mint("a1", "t1", [Grant("email.send", "*")])
        frame = {
            "task_id": "t1",
            "op": "email.send",
            "target": "stranger@example.net",
            "token": token,
            "idempotency_key": "p1",
            "params": {"subject": "s", "body": "b"},
            "cost": {"api_calls": 1},
        }
        await kernel.submit(frame, agent_id="a1")  # parked: the TDP shows it waiting
    finally:
        await kernel.close()
    wal = anchored_wal(config)
    try:
        body = {
            "agent_id": "a1",
            "op": "fs.delete",
            "code": "DSC.CAPABILITY.NOT_COVERED",
            "reason": "the token does not cover fs.delete on notes.txt",
        }
        burst = 1024  # two group commits of MAX_BATCH in flight
        for start in range(0, records, burst):
            count = min(burst, records - start)
            await asyncio.gather(
                *(
                    wal.append("intent.denied", {**body, "intent_id": f"i{start + i}"})
                    for i in range(count)
                )
            )
    finally:
        wal.close()


def _seconds(argv: list[str], runs: int) -> float:
    took = []
    env = {**os.environ, "COLUMNS": "120"}
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, check=False)
        took.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[2:]} exited {done.returncode}: {done.stderr[-500:]!r}")
    return statistics.median(took)


def _tdp(quick: bool) -> dict[str, Any]:
    records = 10_000 if quick else 100_000
    runs = 1 if quick else 2
    maos = [sys.executable, "-c", "from maos.cli import main; main()"]
    with tempfile.TemporaryDirectory(prefix="maos-bench-tdp-") as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        asyncio.run(_build_log(data, records))
        built = time.perf_counter() - t0
        config = KernelConfig(data_dir=data)
        t0 = time.perf_counter()
        report = walcheck.check(config.wal_path, HeadAnchor(data), full=True)
        chain = time.perf_counter() - t0
        if not report.ok:
            raise RuntimeError(f"the bench log does not verify: {report.code}")
        tdp = _seconds([*maos, "tdp", "-d", str(data), "--once"], runs)
        verify = _seconds([*maos, "wal", "verify", "-d", str(data)], runs)
        bare = _seconds([*maos, "--help"], runs)
    return {
        "tdp_records": records,
        "tdp_log_built_s": round(built, 2),
        "tdp_once_s": round(tdp, 3),
        "wal_verify_s": round(verify, 3),
        "cli_start_s": round(bare, 3),
        "tdp_chain_check_in_process_s": round(chain, 3),
        "ratio_tdp_once_vs_wal_verify": round(tdp / verify, 3),
        "ratio_tdp_once_vs_cli_start": round(tdp / bare, 3),
    }


def measure(*, quick: bool) -> dict[str, Any]:
    return {**_dsc(quick), **_tdp(quick)}


def rows(t: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The section's lines in `maos bench`'s table."""
    return [
        ("DSC decision, no instrumentation (baseline)", f"{t['dsc_bare_p50_us']} µs", ""),
        (
            "DSC decision, tracing off",
            f"{t['dsc_tracing_off_p50_us']} µs",
            f"{t['ratio_dsc_tracing_off_vs_bare']} × uninstrumented",
        ),
        (
            "DSC decision, tracing on",
            f"{t['dsc_tracing_on_p50_us']} µs",
            f"{t['ratio_dsc_tracing_on_vs_off']} × off",
        ),
        (
            f"maos tdp --once, {t['tdp_records']:,} records",
            f"{t['tdp_once_s']} s",
            f"{t['ratio_tdp_once_vs_wal_verify']} × wal verify, "
            f"{t['ratio_tdp_once_vs_cli_start']} × CLI start",
        ),
        ("  chain check alone, in process", f"{t['tdp_chain_check_in_process_s']} s", ""),
    ]
