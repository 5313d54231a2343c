"""The built-in tools an LLM agent offers its model, and how one call is answered.

The Cognitive Cell and the framework adapters (`maos.adapters`) give a model the same
tools: the built-ins below (each one gateway request) and the registered tools the token
grants (`maos.tool`, run by the kernel in a tool host). A call answers the model with
data - the value, the kernel's refusal with its code, or the approval it waits for -
never with an exception: one refused call (an injected one, typically) must not end the
user's task. Stdlib only, like the rest of `maos.sdk`: it runs inside pods.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import maos.sdk as sdk

TYPE_CHECKING = False  # typing costs a pod milliseconds at start-up; mypy honours this name
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    Record = dict[str, Any]

__all__ = [
    "BUILTINS",
    "MAX_TOOL_TEXT",
    "RATE_LIMITED",
    "call_tool",
    "model_text",
    "offered_tools",
    "patiently",
    "run_builtin",
]

MAX_TOOL_TEXT = 8_000
"""What a tool result may put in front of the model; the rest is cut (and said so)."""

BUILTINS: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "read_file": (
        "Read a text file of the task's workspace.",
        {"path": "string"},
        ["path"],
    ),
    "write_file": (
        "Write a text file in the task's workspace.",
        {"path": "string", "content": "string"},
        ["path", "content"],
    ),
    "list_files": ("List a directory of the task's workspace.", {"path": "string"}, []),
    "delete_file": ("Delete a file of the task's workspace.", {"path": "string"}, ["path"]),
    "http_get": ("Fetch a URL (GET).", {"url": "string"}, ["url"]),
    "http_post": ("POST a text body to a URL.", {"url": "string", "body": "string"}, ["url"]),
    "send_email": (
        "Send an e-mail.",
        {"to": "string", "subject": "string", "body": "string"},
        ["to", "subject", "body"],
    ),
    "send_message": (
        "Send a message to another agent of the task, by its agent id.",
        {"to": "string", "body": "string"},
        ["to", "body"],
    ),
    "receive_messages": (
        "Receive messages other agents sent to you (waits up to timeout_s for the first).",
        {"max_items": "integer", "timeout_s": "number"},
        [],
    ),
}


def _spec(name: str, description: str, props: dict[str, str], required: list[str]) -> Record:
    return {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {p: {"type": t} for p, t in props.items()},
            "required": required,
        },
    }


def offered_tools(wanted: Sequence[str] | None = None) -> list[Record]:
    """The tools offered to the model: the ``wanted`` built-ins and granted registered
    ones (``MAOS_TOOLS``, comma-separated, when None; every one when empty)."""
    if wanted is None:
        wanted = [t for t in os.environ.get("MAOS_TOOLS", "").split(",") if t]
    specs = [_spec(n, *BUILTINS[n]) for n in (wanted or BUILTINS) if n in BUILTINS]
    registered: list[Record] = []
    with contextlib.suppress(sdk.SdkError):  # none granted: the built-ins are all there is
        registered = sdk.tools.list().value.get("tools", [])
    for t in registered:
        if not wanted or t["name"] in wanted:
            specs.append({k: t[k] for k in ("name", "description", "parameters")})
    return specs


def run_builtin(name: str, args: Record) -> sdk.Result:
    if name == "read_file":
        return sdk.fs.read(args["path"])
    if name == "write_file":
        return sdk.fs.write(args["path"], args["content"])
    if name == "list_files":
        return sdk.fs.list(args.get("path") or ".")
    if name == "delete_file":
        return sdk.fs.delete(args["path"])
    if name == "http_get":
        return sdk.http.get(args["url"])
    if name == "http_post":
        return sdk.http.request("POST", args["url"], body=args.get("body", ""))
    if name == "send_email":
        return sdk.email.send(args["to"], args.get("subject", ""), args.get("body", ""))
    if name == "send_message":
        return sdk.msg.send(args["to"], args["body"])
    if name == "receive_messages":
        got = sdk.msg.receive(
            max_items=int(args.get("max_items") or 10), timeout=float(args.get("timeout_s") or 0)
        )
        messages = [{"from": m.sender, "body": m.body} for m in got.value]
        return sdk.Result({"messages": messages}, got.label)
    raise KeyError(name)


def call_tool(name: str, raw_args: str, wait_s: float) -> tuple[Record, Record]:
    """One tool call as the model asked; the answer the model sees, and a record of it."""
    try:
        args = json.loads(raw_args or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as exc:
        return {"error": "bad_arguments", "detail": str(exc)}, {"tool": name, "status": "invalid"}
    try:
        if name in BUILTINS:
            result = patiently(lambda: run_builtin(name, args))
        else:
            result = patiently(lambda: sdk.tools.call(name, **args))
        return {"value": result.value}, {"tool": name, "status": "committed"}
    except sdk.PendingApproval as parked:
        if wait_s > 0:
            try:
                result = parked.wait(timeout=wait_s)
                return {"value": result.value}, {"tool": name, "status": "committed"}
            except sdk.SdkError as exc:
                return _refusal(name, exc)
        answer = {"pending_approval": parked.approval_id, "code": parked.code}
        return answer, {"tool": name, "status": "pending", "code": parked.code}
    except (KeyError, TypeError) as exc:
        return {"error": "bad_arguments", "detail": repr(exc)}, {"tool": name, "status": "invalid"}
    except sdk.SdkError as exc:
        return _refusal(name, exc)


def _refusal(name: str, exc: sdk.SdkError) -> tuple[Record, Record]:
    status = "denied" if isinstance(exc, sdk.Denied) else "failed"
    answer = {"refused": exc.code, "reason": exc.reason}
    return answer, {"tool": name, "status": status, "code": exc.code}


RATE_LIMITED = frozenset({"SENTRY.TRAFFIC.RATE", "DSC.RATE.EXCEEDED"})
"""Refusals that pass: this agent asked faster than its pod's or its own limits allow."""


def patiently(ask: Callable[[], sdk.Result]) -> sdk.Result:
    """``ask()``, waiting out rate limits (at most a minute): a fast model must not turn a
    speed limit into a failed step."""
    for _ in range(100):
        try:
            return ask()
        except sdk.Denied as no:
            if no.code not in RATE_LIMITED:
                raise
            time.sleep(0.6)
    return ask()


def model_text(seen: Record) -> str:
    """A call's answer (`call_tool`'s first value) as the text of the model's tool turn."""
    text = json.dumps(seen, default=str)
    if len(text) > MAX_TOOL_TEXT:
        text = text[:MAX_TOOL_TEXT] + " ...[cut]"
    return text
