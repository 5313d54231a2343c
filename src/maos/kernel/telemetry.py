"""``config.json``'s ``telemetry`` section: what MAOS tells the tools operators already run.

    {"telemetry": {"otlp_endpoint": "http://127.0.0.1:4318",   traces over OTLP/HTTP
                   "service_name": "maos",                    the resource's service.name
                   "sample_ratio": 1.0,                       share of intents traced
                   "export_timeout_s": 5,
                   "metrics_token": "...at least 32 chars",   a scrape-only bearer token
                   "json_logs": false}}                       JSON lines on stderr

Every key is optional and the section is off by default: without ``otlp_endpoint`` no
tracer exists and the kernel's path does not even build a span's attributes
(`maos.kernel.trace`). ``metrics_token`` lets Prometheus read ``/metrics`` on ``maos up``
and nothing else; the Commander's token reads it too (docs/observability.md).

Strict like the rest of the file (`maos.kernel.config`): an unknown key, a wrong type or
an endpoint that is not an http(s) URL is ``BAD_INPUT.CONFIG`` naming the field.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["TRACES_PATH", "TelemetrySettings"]

TRACES_PATH = "/v1/traces"
"""Appended to ``otlp_endpoint``, as OTEL_EXPORTER_OTLP_ENDPOINT is by the OTel SDKs."""


class TelemetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    otlp_endpoint: str | None = Field(default=None, min_length=8, max_length=2048)
    """The collector's OTLP/HTTP base URL (``http://host:4318``); None: no tracing."""
    service_name: str = Field(default="maos", min_length=1, max_length=128)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of intents whose trace is recorded (parent-based: a trace is whole or absent)."""
    export_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)
    metrics_token: str | None = Field(default=None, min_length=32, max_length=512)
    """A bearer token that reads ``/metrics`` only (Prometheus' ``authorization``)."""
    json_logs: bool = False
    """Log records of the kernel and services as JSON lines on stderr (like ``--log-json``)."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL like http://127.0.0.1:4318")
        if parts.query or parts.fragment:
            raise ValueError("must be the collector's base URL, without a query or fragment")
        return value.rstrip("/")

    @field_validator("metrics_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not (value.isascii() and value.isprintable()) or " " in value:
            raise ValueError("must be printable ASCII without spaces (it is an HTTP header)")
        return value

    @property
    def traces_url(self) -> str | None:
        return None if self.otlp_endpoint is None else self.otlp_endpoint + TRACES_PATH
