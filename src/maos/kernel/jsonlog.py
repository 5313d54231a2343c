"""Structured logs: every log record of the process as one JSON object per line on stderr.

Asked for with ``maos up --log-json`` or ``config.json`` ``telemetry.json_logs``; this is
the one place that formats them. Each line carries ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``msg``, the fields the caller passed in ``extra``, and ``exc`` (the
traceback) when there is one. Besides what the kernel and services log through
`logging` (an adapter's crash, a collector that cannot be reached), each intent the
kernel answers is one ``maos.intent`` line (agent, op, task, status, code, seconds)
through the tracer's observer hook (`maos.kernel.trace`), so a log shipper sees
decisions without reading the WAL. What agents wrote (targets, parameters) is never in
them: the WAL is the record of that.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from maos.kernel.trace import Observed, Tracing

__all__ = ["JsonFormatter", "enable", "install", "log_intent"]

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
"""Attributes every `logging.LogRecord` has; anything else came in ``extra``."""
_intents = logging.getLogger("maos.intent")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def install(stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """The root logger writes JSON lines to ``stream`` (stderr): MAOS's own loggers from
    ``level`` up, other libraries' from their warnings (httpx logs every URL it fetches
    at info, and an agent chose those). Once per process: asking again changes nothing."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    logging.getLogger("maos").setLevel(level)
    return handler


def log_intent(seen: Observed) -> None:
    """One ``maos.intent`` line per answered intent (an observer for `Tracing.observe`)."""
    out = seen.outcome
    _intents.info(
        "intent %s",
        out.status.value,
        extra={
            "agent_id": seen.agent_id,
            "op": seen.op,
            "task_id": seen.task_id,
            "intent_id": out.intent_id,
            "status": out.status.value,
            "code": out.code,
            "approved": seen.approved,
            "by_sentry": seen.sentry,
            "approval_id": out.approval_id,
            "wal_seq": out.wal_seq,
            "seconds": round(seen.seconds, 6),
        },
    )


def enable(tracing: Tracing) -> None:
    """JSON lines on stderr, with one line per intent ``tracing``'s kernel answers."""
    install()
    tracing.observe(log_intent)
