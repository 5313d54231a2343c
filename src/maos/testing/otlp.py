"""An OpenTelemetry collector stand-in on loopback: it accepts OTLP/HTTP protobuf on
``/v1/traces`` and keeps every span it decodes, as a real collector would receive them.

    with loopback_otlp() as collector:
        settings = TelemetrySettings(otlp_endpoint=collector.endpoint)
        ...                                   # a kernel exporting there
        spans = collector.wait_for(lambda s: s.name == "maos.commit")

Decoded with ``opentelemetry-proto`` (what the exporter encodes with), so a span that
reaches `spans` went over the wire as any collector would see it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from maos.testing import _serving

__all__ = ["OtlpCollector", "ReceivedSpan", "loopback_otlp"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as decoded from the wire."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: tuple[tuple[str, dict[str, Any]], ...]
    resource: dict[str, Any]


@dataclass
class OtlpCollector:
    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    content_types: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def endpoint(self) -> str:
        """The base URL to configure (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    def wait_for(
        self, match: Callable[[ReceivedSpan], bool], *, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Every span received so far once one matches; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(match(s) for s in self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({s.name for s in self.spans})
                    raise AssertionError(f"no matching span within {timeout}s; got {names}")
                self._cond.wait(left)
            return list(self.spans)

    def _take(self, request: ExportTraceServiceRequest) -> None:
        got = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    got.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            events=tuple(
                                (e.name, {a.key: _value(a.value) for a in e.attributes})
                                for e in span.events
                            ),
                            resource=resource,
                        )
                    )
        with self._cond:
            self.requests += 1
            self.spans.extend(got)
            self._cond.notify_all()


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return None if kind is None else getattr(v, kind)


def _handler(collector: OtlpCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            collector.content_types.append(ctype)
            if self.path != "/v1/traces" or ctype != "application/x-protobuf":
                self.send_response(404 if self.path != "/v1/traces" else 415)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)  # a body that is not OTLP raises: the test fails
            collector._take(request)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


@contextmanager
def loopback_otlp() -> Iterator[OtlpCollector]:
    """A collector stand-in on 127.0.0.1 for the block."""
    collector = OtlpCollector()
    with _serving(_handler(collector)) as collector.port:
        yield collector
