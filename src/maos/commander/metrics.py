"""``/metrics`` on `maos up`: what the kernel decides and holds, in Prometheus' text format.

Who may read it: the Commander's bearer token, or ``telemetry.metrics_token`` from
``config.json`` - a token that reads these figures and nothing else, for the scraper's
``authorization`` setting. The dashboard's Host check applies as to every route.

Three sources, each the cheapest that is exact (docs/observability.md lists the metrics):

- **Observed intents** (`maos.kernel.trace.Tracing.observe`): every intent this kernel
  answers, counted by status and code and timed from the kernel taking it to its answer,
  and every frame a pod's Sentry refused (counted, not timed: the kernel never saw it).
- **The log, folded on each scrape** from where the last scrape stopped: the Commit
  Layer's latency (``intent.prepared`` to its outcome, by the records' commit times, so
  effects carried out by another process count too) and pods by isolation level and
  status (``pod.started``, ``pod.frozen``, ``pod.thawed``, ``pod.exited``).
- **The kernel's state at scrape time**: approvals waiting, effects in doubt, agents by
  ring and status, the log's size, the degradation mode.

The registry is this server's own (never prometheus_client's global one): two kernels in
one process - tests, the bench - never mix their figures.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import Iterator

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel
from maos.kernel.modes import Mode
from maos.kernel.trace import Observed

__all__ = ["MODES", "KernelMetrics", "current_mode", "metrics_route"]

MODES = tuple(m.value for m in Mode)
"""The degradation modes, least severe first (`maos.kernel.modes.Mode`)."""
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds: a decision takes tens of microseconds, a durable commit a millisecond or
two, an SMTP delivery or a model call up to many seconds."""
_OUTCOMES = ("intent.committed", "intent.failed", "intent.resolved")
_POD_KINDS = ("pod.started", "pod.frozen", "pod.thawed", "pod.exited")
_POD_STATUS = {"pod.started": "running", "pod.thawed": "running", "pod.frozen": "frozen"}


def current_mode(kernel: Kernel) -> str:
    """The effective degradation mode (`Kernel.mode`: the most severe demand, MSS
    whenever Minimal Safe State is on)."""
    return kernel.mode().value


class KernelMetrics:
    """The figures of one kernel, in a registry of their own."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "maos_decisions",
            "Intents the kernel answered, by outcome status and decision code.",
            ["status", "code"],
            registry=self.registry,
        )
        self.intents = Counter(
            "maos_intents",
            "Intents the kernel answered, by op and outcome status.",
            ["op", "status"],
            registry=self.registry,
        )
        self.intent_seconds = Histogram(
            "maos_intent_seconds",
            "From the kernel taking an intent to its answer (the effect included), by status.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "maos_commit_seconds",
            "Commit Layer: intent.prepared durable to its outcome durable (log commit times).",
            ["result"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._folded = 0
        self._prepared: dict[str, float] = {}
        self._pods: dict[str, tuple[int, str]] = {}
        self.registry.register(_State(self))
        kernel.trace.observe(self.observe)

    def observe(self, seen: Observed) -> None:
        status = seen.outcome.status.value
        self.decisions.labels(status, seen.outcome.code).inc()
        self.intents.labels(seen.op, status).inc()
        if not seen.sentry:  # timed by the kernel; the Sentry's refusals are not
            self.intent_seconds.labels(status).observe(seen.seconds)

    def render(self) -> bytes:
        """The text exposition, with the log folded up to now."""
        self.fold()
        return generate_latest(self.registry)

    def fold(self) -> None:
        """Records logged since the last scrape: commit latencies and pod lifecycles."""
        kinds = ("intent.prepared", *_OUTCOMES, *_POD_KINDS)
        for rec in self.kernel.wal.read(since_seq=self._folded, kinds=kinds):
            self._folded = rec.seq
            if rec.kind == "intent.prepared" and rec.idem_key is not None:
                self._prepared[rec.idem_key] = rec.ts
            elif rec.kind in _OUTCOMES and rec.idem_key is not None:
                began = self._prepared.pop(rec.idem_key, None)
                if began is not None:
                    result = rec.kind.removeprefix("intent.")
                    self.commit_seconds.labels(result).observe(max(0.0, rec.ts - began))
            elif rec.kind in _POD_KINDS:
                agent = str(rec.body.get("agent_id", ""))
                known = self._pods.get(agent)
                level = rec.body.get("level", None if known is None else known[0])
                if isinstance(level, int):  # else: a pod whose start this log never saw
                    self._pods[agent] = (level, _POD_STATUS.get(rec.kind, "exited"))


class _State(Collector):
    """Gauges read from the kernel at scrape time."""

    def __init__(self, metrics: KernelMetrics) -> None:
        self._m = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed per scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        kernel = self._m.kernel
        waiting = GaugeMetricFamily(
            "maos_approvals_waiting", "Intents parked for the Commander's decision."
        )
        waiting.add_metric([], len(kernel.approvals.pending()))
        yield waiting
        doubt = GaugeMetricFamily(
            "maos_effects_in_doubt", "Effects recovery could not settle, awaiting a verdict."
        )
        doubt.add_metric([], len(kernel.commit.in_doubt()))
        yield doubt
        yield from _agents(kernel)
        pods = GaugeMetricFamily(
            "maos_pods", "Agents' pods by isolation level and status.", labels=["level", "status"]
        )
        counts: dict[tuple[str, str], int] = {}
        for level, status in self._m._pods.values():
            key = (str(level), status)
            counts[key] = counts.get(key, 0) + 1
        for (lvl, st), n in sorted(counts.items()):
            pods.add_metric([lvl, st], n)
        yield pods
        yield from _log_size(kernel)
        mode = GaugeMetricFamily(
            "maos_mode", "The degradation mode: 1 for the one in effect.", labels=["mode"]
        )
        now = current_mode(kernel)
        for name in MODES:
            mode.add_metric([name], 1 if name == now else 0)
        yield mode


def _agents(kernel: Kernel) -> Iterator[Metric]:
    agents = GaugeMetricFamily(
        "maos_agents", "Registered agents by ring and status.", labels=["ring", "status"]
    )
    counts = {(str(r), s.value): 0 for r in (2, 3) for s in AgentStatus}
    for agent in kernel.registry.agents.values():
        key = (str(agent.ring), agent.status.value)
        counts[key] = counts.get(key, 0) + 1
    for (ring, status), n in sorted(counts.items()):
        agents.add_metric([ring, status], n)
    yield agents


def _log_size(kernel: Kernel) -> Iterator[Metric]:
    records = GaugeMetricFamily("maos_wal_records", "Records in the write-ahead log.")
    records.add_metric([], kernel.wal.tail_seq())
    yield records
    size = 0
    for suffix in ("", "-wal"):  # SQLite's own write-ahead file holds the newest pages
        with contextlib.suppress(FileNotFoundError):
            size += os.stat(f"{kernel.wal.path}{suffix}").st_size
    on_disk = GaugeMetricFamily("maos_wal_bytes", "The log's size on disk (with SQLite's -wal).")
    on_disk.add_metric([], size)
    yield on_disk


def metrics_route(kernel: Kernel, token: str) -> Route:
    """``GET /metrics`` for the dashboard's app: the Commander's ``token`` or the
    configured scrape-only token reads it; anything else is 401."""
    metrics = KernelMetrics(kernel)
    telemetry = kernel.config.telemetry
    accepted = [token.encode()]
    if telemetry is not None and telemetry.metrics_token is not None:
        accepted.append(telemetry.metrics_token.encode())

    async def endpoint(request: Request) -> Response:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        value = given.strip().encode("latin-1", "replace")
        ok = [hmac.compare_digest(value, t) for t in accepted]  # each compared, always
        if scheme.lower() != "bearer" or not any(ok):
            return _refused()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", endpoint, methods=["GET"])


def _refused() -> Response:
    body = {
        "error": "AUTH.TOKEN_REQUIRED",
        "message": "send the Commander's token or telemetry.metrics_token as a bearer token",
    }
    return Response(orjson.dumps(body), 401, media_type="application/json")
