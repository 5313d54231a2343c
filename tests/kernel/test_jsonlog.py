"""Structured logs (issue 10 §5): every line on the stream is one JSON object, with the
caller's fields and the traceback, and MAOS's info lines but not other libraries'."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from maos.boot import configured_kernel
from maos.kernel import jsonlog


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = jsonlog.install(out)
    try:
        yield out
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger("maos").setLevel(logging.NOTSET)


def test_issue_10_log_lines_are_json_with_fields_and_traceback(stream: io.StringIO) -> None:
    log = logging.getLogger("maos.kernel.commit")
    log.info("adapter %s answered", "fs", extra={"op": "fs.read", "seq": 7})
    try:
        raise ValueError("broken adapter")
    except ValueError:
        log.exception("adapter failed")
    logging.getLogger("httpx").info("HTTP Request: GET http://agent-chosen.example/")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["logger"], e["msg"]) for e in lines] == [
        ("info", "maos.kernel.commit", "adapter fs answered"),
        ("error", "maos.kernel.commit", "adapter failed"),
    ]
    assert (lines[0]["op"], lines[0]["seq"]) == ("fs.read", 7)
    assert "ValueError: broken adapter" in lines[1]["exc"]
    assert lines[0]["ts"].endswith("+00:00")


def test_issue_10_installing_twice_keeps_one_handler(stream: io.StringIO) -> None:
    again = jsonlog.install(io.StringIO())
    assert isinstance(again.formatter, jsonlog.JsonFormatter)
    logging.getLogger("maos.x").warning("once")
    assert len(stream.getvalue().splitlines()) == 1


def test_issue_10_telemetry_json_logs_makes_a_configured_kernel_log_each_intent(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.json").write_text('{"telemetry": {"json_logs": true}}')

    async def go() -> None:
        async with configured_kernel(data_dir, follow=False) as kernel:
            await kernel.submit({"op": "fs.read"}, agent_id="a1")

    try:
        asyncio.run(go())
    finally:
        for handler in list(logging.getLogger().handlers):
            if isinstance(handler.formatter, jsonlog.JsonFormatter):
                logging.getLogger().removeHandler(handler)
        logging.getLogger("maos").setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    [intent] = [e for e in lines if e["logger"] == "maos.intent"]
    assert (intent["agent_id"], intent["status"]) == ("a1", "denied")
    assert intent["code"].startswith("BAD_INPUT.")
