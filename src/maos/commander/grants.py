"""What a task may do and why, in words: the ``task.grants`` record for a person.

The grant of a task is derived from the Commander's own words (`maos.kernel.grants`) or
set by the Commander (``maos task grants``); a decision packet shows it next to the
parked intent, so the person deciding sees what the request asked for, which words asked
for it, and what the request refused - facts from the log, never from the agent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["grant_lines", "latest_grants"]


def latest_grants(records: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Mapping[str, Any]]:
    """Task id -> its last ``task.grants`` body, from (kind, body) pairs in log order."""
    out: dict[str, Mapping[str, Any]] = {}
    for kind, body in records:
        if kind == "task.grants":
            out[str(body["task_id"])] = body
    return out


def grant_lines(body: Mapping[str, Any] | None) -> list[str]:
    """The grant as a packet shows it; nothing when the task has no ``task.grants``."""
    if body is None:
        return []
    result = ", ".join(body.get("result") or ()) or "nothing beyond reading"
    if body.get("override"):
        return [f"task grants: {result} (set by {body.get('principal')}: {body.get('reason')})"]
    lines = [f"task grants: {result}"]
    request = str(body.get("request", ""))
    if request:
        lines.append(f"the request: {request[:200]!r}")
    asked = [f"{b['class']} ({b['words']!r})" for b in body.get("because") or ()]
    if asked:
        lines.append(f"asked for by the words: {'; '.join(asked)}")
    refused = [f"{b['class']} ({b['words']!r})" for b in body.get("refused") or ()]
    if refused:
        lines.append(f"refused by the words: {'; '.join(refused)}")
    ceiling = body.get("ceiling")
    lines.append("ceiling: " + (", ".join(ceiling) if ceiling is not None else "none named"))
    return lines
