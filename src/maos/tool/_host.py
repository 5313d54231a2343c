"""The tool host's inside: runs in a sandboxed pod and serves the kernel's tool calls.

The kernel's side (`maos.pod.toolhost`) launches this with the user's tool module as
text. Calls come as answers to the host's own requests, so the pod channel keeps its one
direction (the pod asks, the kernel answers) and its sanitizer:

    host:   admin.serve {hello: [manifest, ...]}            kernel: {call: {...}} | {stop}
    host:   admin.serve {done: {id, ok, value | error}}      kernel: the next call

One call at a time; a call that outlives its timeout gets the whole host killed by the
kernel (and a fresh one started), so nothing here needs to be interruptible.
"""

from __future__ import annotations

import json
import sys
import traceback

from maos.tool import ToolError, check_args, collect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from maos.tool import Tool

MAX_ERROR = 2000


def serve(source: str, filename: str) -> None:
    """Define the module's tools, announce their manifests, then answer calls forever."""
    client: Any = sys.modules["maos_pod_client"]
    namespace: dict[str, Any] = {"__name__": "maos_tools", "__file__": filename}
    try:
        exec(compile(source, filename, "exec"), namespace)
        tools = {t.name: t for t in collect(namespace)}
        hello: dict[str, Any] = {"hello": [t.manifest() for t in tools.values()]}
    except ToolError as exc:
        hello = {"failed": {"code": exc.code, "message": exc.message}}
        tools = {}
    except Exception:
        hello = {"failed": {"code": "TOOL.IMPORT", "message": _tail()}}
        tools = {}
    reply = client.request("admin", "serve", hello)
    while True:
        call = (reply.get("result") or {}).get("call")
        if not isinstance(call, dict):
            return  # the kernel is done with this host (or the hello failed)
        reply = client.request("admin", "serve", {"done": _run(tools, call)})


def _run(tools: dict[str, Tool], call: dict[str, Any]) -> dict[str, Any]:
    done: dict[str, Any] = {"id": call.get("id"), "ok": False}
    tool = tools.get(str(call.get("name")))
    args = call.get("args")
    try:
        if tool is None or not isinstance(args, dict):
            raise ToolError("TOOL.UNKNOWN", f"no tool {call.get('name')!r} in this host")
        check_args(tool.parameters, args)
        value = tool.fn(**args)
    except ToolError as exc:
        return {**done, "error": {"code": exc.code, "message": exc.message}}
    except Exception:
        return {**done, "error": {"code": "TOOL.RAISED", "message": _tail()}}
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        why = f"the result is not JSON: {exc}"
        return {**done, "error": {"code": "TOOL.BAD_RESULT", "message": why}}
    return {**done, "ok": True, "value": value}


def _tail() -> str:
    return traceback.format_exc(limit=3)[-MAX_ERROR:]
