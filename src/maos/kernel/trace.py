"""Traces of the intent path (OpenTelemetry), and the hook metrics and logs observe it by.

    maos.intent            one span per intent: agent, op, task, decision status and code
      maos.sentry          the pod's Sentry on the frame (frames from pods): its verdict
      maos.dsc             the seven checks: each one's answer, and the decision
      maos.sse             the semantic evaluator, when one is asked: pass or its code
      maos.commit          prepared -> outcome, with the outcome's status and code
        maos.adapter       the adapter's call (an `EffectError` is recorded on it)

Off (no ``telemetry.otlp_endpoint``, the default) there is no tracer: `Tracing.intent`
hands back the awaitable it was given, and each seam's helper reads one context variable
and hands back what it was given, so no span, attribute or event is built. On, each
kernel holds its own TracerProvider - never the process-global one, so two kernels in one
process (tests, the bench) never share an exporter - and a batch processor sends spans to
the collector from its own thread, off the event loop. The OpenTelemetry packages are
imported only once tracing is on, so a command that never traces does not load them.

Where the root comes from: a pod's frame opens it in `Sentry.admit` (as `Tracing.sentry`)
and closes it in `Sentry.record` (`Tracing.frame_done`), the two calls the pod runtime
makes around the kernel's answer in one task; an intent handed to the kernel directly
(an approval carried out, the MCP gateway) gets a root of its own. Children find their
root through a context variable, which `asyncio.shield` and `wait_for` copy into their
tasks. Observability never decides: an observer that raises is logged and ignored.

Observers (`Tracing.observe`) see each intent's outcome and wall time: ``/metrics`` and the
JSON logs. With no observer and tracing off, `Tracing.intent` adds nothing at all.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from maos.kernel.telemetry import TelemetrySettings
from maos.kernel.types import Decision, Deny, Intent, Outcome, OutcomeStatus, Pending

if TYPE_CHECKING:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from maos.effects.base import EffectCall
    from maos.kernel.labels import Label
    from maos.kernel.sse import SemanticEvaluator, SseVerdict

__all__ = [
    "Observed",
    "Observer",
    "Tracing",
    "active",
    "adapter",
    "checked",
    "commit",
    "dsc",
    "sse",
]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_NULL: AbstractContextManager[None] = contextlib.nullcontext()
"""What every seam gets while no intent is traced: enters to None, allocates nothing."""


@dataclass(frozen=True, slots=True)
class Observed:
    """One intent as an observer sees it, once the kernel has answered."""

    agent_id: str
    op: str
    """``?`` when the frame was refused before it parsed as an intent."""
    task_id: str
    outcome: Outcome
    seconds: float
    """From the kernel taking the intent to its answer (the caller's wait, approvals apart)."""
    approved: bool
    """Carried out after the Commander approved it (not an agent's fresh request)."""
    sentry: bool = False
    """Refused by the pod's Sentry: the kernel never saw it (``seconds`` is 0)."""


Observer = Callable[[Observed], None]


@dataclass(slots=True)
class _Root:
    tracer: otel.Tracer
    span: Span
    frame: bool
    """Opened by a pod's Sentry, closed by `Tracing.frame_done`; the kernel only joins it."""
    joined: bool = False


_ACTIVE: ContextVar[_Root | None] = ContextVar("maos_trace_root", default=None)


def active() -> bool:
    """Whether an intent is being traced in this context (one context-variable read)."""
    return _ACTIVE.get() is not None


class _Exporting:
    """The batch processor spans go through now, and how to make a fresh one (the
    provider holds a relay to it, so Observability's restart can swap it)."""

    def __init__(self, make: Callable[[], SpanProcessor]) -> None:
        self.make = make
        self.current = make()


class Tracing:
    """A kernel's tracer (or none) and its observers; build with `start` or `exporting`."""

    __slots__ = ("_export", "_failed", "_observers", "_provider", "_tracer", "on")

    def __init__(
        self, provider: TracerProvider | None = None, export: _Exporting | None = None
    ) -> None:
        self._provider = provider
        self._export = export
        self._tracer = None if provider is None else provider.get_tracer("maos.kernel")
        self.on = provider is not None
        """Spans are made (an exporter is configured)."""
        self._observers: list[Observer] = []
        self._failed: list[str] = []
        """The errors of observer calls that raised since the last `down` (the last ten)."""

    @classmethod
    def start(cls, settings: TelemetrySettings | None, *, node_id: str) -> Tracing:
        """What ``config.json`` asks for: spans batched to the OTLP endpoint, or off."""
        if settings is None or settings.traces_url is None:
            return cls()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        url, timeout = settings.traces_url, settings.export_timeout_s

        def batch() -> SpanProcessor:
            exporter = OTLPSpanExporter(endpoint=url, timeout=timeout)
            return BatchSpanProcessor(exporter, export_timeout_millis=1000 * timeout)

        export = _Exporting(batch)
        relay = _relay(export)
        return cls(_provider(relay, settings.service_name, node_id, settings.sample_ratio), export)

    @classmethod
    def exporting(cls, exporter: SpanExporter, *, node_id: str = "local") -> Tracing:
        """Every span handed to ``exporter`` as it ends, in the caller's thread (tests, the
        bench: the cost of a span, with no batching to hide it)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls(_provider(SimpleSpanProcessor(exporter), "maos", node_id, 1.0))

    def shutdown(self) -> None:
        """Flush what is batched (waiting at most the export timeout) and stop exporting."""
        if self._provider is not None:
            self._provider.shutdown()

    def observe(self, observer: Observer) -> None:
        """Call ``observer`` with every intent from now on (metrics, logs)."""
        self._observers.append(observer)

    # -- Observability's health (the Service Manager's probe, docs/resilience.md) -----------

    def down(self) -> str | None:
        """Why Observability is not working now, or None: the span exporter's thread has
        stopped (tracing on: no span would leave), or an observer raised since the last
        look (``/metrics`` or the JSON log is missing what it raised on). A collector that
        does not answer is not this: the exporter drops spans, as designed."""
        failed, self._failed = self._failed, []
        if failed:
            return f"{len(failed)} observer call(s) raised since the last look: {failed[-1]}"
        if self._export is None:
            return None
        batch = getattr(self._export.current, "_batch_processor", None)
        worker = getattr(batch, "_worker_thread", None)
        if not isinstance(worker, threading.Thread):
            return "the span exporter's thread cannot be found (an unknown OpenTelemetry SDK)"
        if getattr(batch, "_shutdown", False) or not worker.is_alive():
            return "the span exporter's thread has stopped: no span is sent"
        return None

    def restart_export(self) -> None:
        """Observability's restart: a fresh batch processor and exporter in place of the
        one in use. The old one is shut down in a thread of its own: its last flush may
        wait on the collector, never on the kernel's loop."""
        if self._export is None:
            return
        old, self._export.current = self._export.current, self._export.make()
        threading.Thread(target=old.shutdown, name="maos-otel-retired", daemon=True).start()

    # -- the kernel's root ------------------------------------------------------------------

    def intent(
        self, run: Awaitable[Outcome], intent: Intent | None, *, agent_id: str, approved: bool
    ) -> Awaitable[Outcome]:
        """``run`` (the kernel deciding and carrying out one intent) traced and observed,
        or ``run`` itself when nothing listens. ``intent`` is None for a frame that did
        not parse."""
        if self._tracer is None and not self._observers:
            return run
        return self._intent(run, intent, agent_id, approved)

    async def _intent(
        self, run: Awaitable[Outcome], intent: Intent | None, agent_id: str, approved: bool
    ) -> Outcome:
        began = time.perf_counter()
        if self._tracer is None:
            outcome = await run
        else:
            with self.root(agent_id) as span:
                assert span is not None
                if intent is not None:
                    span.set_attributes(_intent_attributes(intent, approved))
                outcome = await run
                span.set_attributes(_outcome_attributes(outcome))
        if self._observers:
            op, task = ("?", "") if intent is None else (intent.op, intent.task_id)
            took = time.perf_counter() - began
            self._notify(Observed(agent_id, op, task, outcome, took, approved))
        return outcome

    def refused(self, agent_id: str, op: str, code: str, reason: str) -> None:
        """A frame the Sentry refused before the kernel saw it: observers count it as a
        denial (``/metrics`` would otherwise never see a ``SENTRY.*`` code)."""
        if self._observers:
            outcome = Outcome("", OutcomeStatus.DENIED, code=code, reason=reason)
            self._notify(Observed(agent_id, op, "", outcome, 0.0, False, sentry=True))

    def _notify(self, seen: Observed) -> None:
        for observer in self._observers:
            try:
                observer(seen)
            except Exception as exc:  # observability never decides, nor stops a decision
                _log.exception("an intent observer failed")
                self._failed = [*self._failed[-9:], f"{type(exc).__name__}: {exc}"[:200]]

    def root(self, agent_id: str) -> AbstractContextManager[Span | None]:
        """An intent's span (joining the frame's the Sentry opened, if any), current for
        the block, with the seams' spans inside it; None while off."""
        if self._tracer is None:
            return _NULL
        return self._root(self._tracer, agent_id)

    @contextlib.contextmanager
    def _root(self, tracer: otel.Tracer, agent_id: str) -> Iterator[Span]:
        from opentelemetry import trace as otel

        held = _ACTIVE.get()
        if held is not None and held.frame and not held.joined:  # the Sentry's frame
            held.joined = True
            with otel.use_span(held.span, end_on_exit=False):
                yield held.span
            return
        span = tracer.start_span("maos.intent", attributes={"maos.agent_id": agent_id})
        token = _ACTIVE.set(_Root(tracer, span, frame=False))
        try:
            with otel.use_span(span, end_on_exit=True):
                yield span
        finally:
            _ACTIVE.reset(token)

    # -- a pod's frame (the Sentry) ---------------------------------------------------------

    def sentry(self, agent_id: str, gw: str, op: str) -> AbstractContextManager[Span | None]:
        """Open the frame's root and, inside it, the Sentry's span; None while off."""
        if self._tracer is None:
            return _NULL
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel

        self._abandon()
        root = self._tracer.start_span(
            "maos.intent",
            context=otel_context.Context(),  # a frame is a trace of its own
            attributes={"maos.agent_id": agent_id, "maos.gateway": gw, "maos.frame_op": op},
        )
        _ACTIVE.set(_Root(self._tracer, root, frame=True))
        return self._tracer.start_as_current_span(
            "maos.sentry", context=otel.set_span_in_context(root)
        )

    def frame_done(self, status: str, code: str) -> None:
        """The frame was answered (or ended by a violation): close its root."""
        held = _ACTIVE.get()
        if held is None or not held.frame:
            return
        if not held.joined:  # the Sentry refused it: the kernel never saw it
            held.span.set_attributes({"maos.decision.status": status, "maos.decision.code": code})
        held.span.end()
        _ACTIVE.set(None)

    def _abandon(self) -> None:
        """A frame whose answer never went out (the channel closed first) ends here."""
        held = _ACTIVE.get()
        if held is not None and held.frame:
            held.span.set_attribute("maos.abandoned", True)
            held.span.end()
            _ACTIVE.set(None)


def _relay(export: _Exporting) -> SpanProcessor:
    """A span processor that hands every span to ``export``'s current one."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Relay(SpanProcessor):
        def on_start(
            self, span: SdkSpan, parent_context: otel_context.Context | None = None
        ) -> None:
            export.current.on_start(span, parent_context)

        def _on_ending(self, span: SdkSpan) -> None:
            export.current._on_ending(span)

        def on_end(self, span: ReadableSpan) -> None:
            export.current.on_end(span)

        def shutdown(self) -> None:
            export.current.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return export.current.force_flush(timeout_millis)

    return Relay()


def _provider(processor: SpanProcessor, service: str, node_id: str, ratio: float) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": service, "maos.node_id": node_id})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(processor)
    return provider


def _intent_attributes(intent: Intent, approved: bool) -> dict[str, Any]:
    return {
        "maos.intent_id": intent.intent_id,
        "maos.op": intent.op,
        "maos.task_id": intent.task_id,
        "maos.approved": approved,
    }


def _outcome_attributes(outcome: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {
        "maos.intent_id": outcome.intent_id,
        "maos.decision.status": outcome.status.value,
        "maos.decision.code": outcome.code,
    }
    if outcome.approval_id is not None:
        out["maos.approval_id"] = outcome.approval_id
    if outcome.wal_seq is not None:
        out["maos.wal_seq"] = outcome.wal_seq
    return out


# -- the seams (each: one context-variable read while off) -----------------------------------


def dsc(decide: Callable[[Any, list[str] | None], Decision], inp: Any) -> Decision:
    """The DSC's run in its span; ``decide`` notes each check's answer (`checked`), which
    the span carries as one list (``maos.dsc.checks``): an event per check would cost
    more than the seven checks themselves (`maos bench`, ``telemetry``)."""
    held = _ACTIVE.get()
    if held is None:
        return decide(inp, None)
    with held.tracer.start_as_current_span("maos.dsc") as span:
        seen: list[str] = []
        decision = decide(inp, seen)
        span.set_attributes(_decision_attributes(decision))
        span.set_attribute("maos.dsc.checks", seen)
        return decision


def checked(seen: list[str], name: str, decision: object) -> None:
    """One check's answer: ``name=Allow``, ``name=Deny:CODE``, ``name=Pending:CODE``."""
    kind = type(decision).__name__
    code = decision.code if isinstance(decision, Deny | Pending) else None
    seen.append(f"{name}={kind}" if code is None else f"{name}={kind}:{code}")


def _decision_attributes(decision: Decision) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "maos.decision.kind": type(decision).__name__,
        "maos.decision.check": decision.check,
    }
    if isinstance(decision, Deny | Pending):
        attrs["maos.decision.code"] = decision.code
    return attrs


def sse(evaluator: SemanticEvaluator, intent: Intent, context: Label) -> Awaitable[SseVerdict]:
    held = _ACTIVE.get()
    if held is None:
        return evaluator.evaluate(intent, context)
    return _sse(held.tracer, evaluator, intent, context)


async def _sse(
    tracer: otel.Tracer, evaluator: SemanticEvaluator, intent: Intent, context: Label
) -> SseVerdict:
    name = str(getattr(evaluator, "name", "sse"))
    with tracer.start_as_current_span("maos.sse", attributes={"maos.sse.evaluator": name}) as span:
        verdict = await evaluator.evaluate(intent, context)
        span.set_attribute("maos.sse.verdict", str(getattr(verdict, "code", "pass")))
        return verdict


def commit(run: Awaitable[Outcome], intent: Intent) -> Awaitable[Outcome]:
    held = _ACTIVE.get()
    if held is None:
        return run
    return _commit(held.tracer, run, intent)


async def _commit(tracer: otel.Tracer, run: Awaitable[Outcome], intent: Intent) -> Outcome:
    with tracer.start_as_current_span("maos.commit", attributes={"maos.op": intent.op}) as span:
        outcome = await run
        span.set_attributes(_outcome_attributes(outcome))
        return outcome


def adapter(run: Awaitable[T], call: EffectCall) -> Awaitable[T]:
    held = _ACTIVE.get()
    if held is None:
        return run
    return _adapter(held.tracer, run, call)


async def _adapter(tracer: otel.Tracer, run: Awaitable[T], call: EffectCall) -> T:
    attrs = {"maos.op": call.op, "maos.adapter": call.op.split(".")[0]}
    with tracer.start_as_current_span("maos.adapter", attributes=attrs) as span:
        try:
            return await run
        except Exception as exc:
            code = getattr(exc, "code", None)
            if isinstance(code, str):
                span.set_attribute("maos.effect.code", code)
            raise
