"""OpenAI chat completions over the pod's channel: the one model client every framework gets.

A framework's agent loop talks to "OpenAI" through the official ``openai`` SDK (the
Agents SDK, ``langchain-openai`` and pydantic-ai all do). Inside a pod there is no
network and no key; instead this module hands the SDK a transport (``httpx2``, the
``openai`` SDK's own HTTP client) that
answers ``POST <anything>/chat/completions`` itself, by sending the request as one
``llm.complete`` gateway request (`maos.sdk`): the kernel checks it (capability, the
task's token budget, R6 on what the context holds), logs it, asks the configured
providers through the LLM gateway, and its answer comes back as an OpenAI response.
Nothing of the request leaves the pod any other way: no socket is opened, and any
other path is a 404.

    client = openai_client()                  # an openai.OpenAI that reaches the kernel
    aclient = async_openai_client()           # its asyncio twin

What cannot cross the channel is refused here with a clear error rather than dropped:
streaming, ``n`` > 1, and content other than text. Sampling settings the gateway does
not carry (temperature, tool_choice, ...) are ignored, as a provider may. The kernel's
refusals become HTTP errors the SDK raises as exceptions naming the MAOS code: 403 for a
denial (``DSC.BUDGET.*``, ``RULE.R6.*``), 503 for Rule-Based Mode (no provider answers,
``LLM.*``), 502 for a failed call. The clients are built with ``max_retries=0``: every
attempt is a logged, budgeted intent, so retrying is the agent's decision, not a
library's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx2

from maos import sdk
from maos.sdk.errors import LLM_DOWN, SdkError

__all__ = [
    "BASE_URL",
    "MODEL",
    "ChannelTransport",
    "TransportRefusal",
    "async_http_client",
    "async_openai_client",
    "complete",
    "http_client",
    "openai_client",
]

BASE_URL = "http://maos.llm.gateway/v1"
"""A name the transport answers for; it is never resolved (the pod has no network)."""
MODEL = "maos"
"""The model name frameworks pass; the kernel's configured providers decide the real one."""
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter"})


class TransportRefusal(SdkError):
    """A request this transport cannot carry: answered as an HTTP error, never sent."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


def _text(content: Any) -> str | None:
    """Message content as text: a string, or the text parts of a list (the newer shape)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise TransportRefusal(
                    400, "ADAPTER.UNSUPPORTED", f"message content of type {kind!r} (text only)"
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise TransportRefusal(400, "ADAPTER.BAD_REQUEST", "message content is text")


def _message(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TransportRefusal(400, "ADAPTER.BAD_REQUEST", "a message is an object")
    role = raw.get("role")
    if role == "tool":
        return {
            "role": "tool",
            "content": _text(raw.get("content")) or "",
            "tool_call_id": str(raw.get("tool_call_id", "")),
        }
    if role not in _ROLES:
        raise TransportRefusal(400, "ADAPTER.BAD_REQUEST", f"unknown message role {role!r}")
    out: dict[str, Any] = {"role": _ROLES[role], "content": _text(raw.get("content"))}
    calls = raw.get("tool_calls") or []
    if calls:
        out["tool_calls"] = [
            {
                "id": str(c.get("id", "")),
                "name": str((c.get("function") or {}).get("name", "")),
                "arguments": str((c.get("function") or {}).get("arguments", "") or ""),
            }
            for c in calls
            if isinstance(c, dict)
        ]
    return out


def _tool(raw: Any) -> dict[str, Any]:
    fn = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or raw.get("type") != "function" or not isinstance(fn, dict):
        raise TransportRefusal(400, "ADAPTER.UNSUPPORTED", "only function tools are supported")
    return {
        "name": str(fn.get("name", "")),
        "description": str(fn.get("description") or ""),
        "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
    }


def complete(body: dict[str, Any]) -> dict[str, Any]:
    """One chat-completions request body, asked through the kernel; the OpenAI response.

    `TransportRefusal` for what the channel cannot carry; `maos.sdk.SdkError` for the
    kernel's refusal."""
    if body.get("stream"):
        raise TransportRefusal(400, "ADAPTER.UNSUPPORTED", "streaming is not supported in a pod")
    if body.get("n") not in (None, 1):
        raise TransportRefusal(400, "ADAPTER.UNSUPPORTED", "one choice per request (n=1)")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise TransportRefusal(400, "ADAPTER.BAD_REQUEST", "messages is a non-empty list")
    messages = [_message(m) for m in raw_messages]
    tools = [_tool(t) for t in body.get("tools") or ()]
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or 1024
    if type(limit) is not int or limit < 1:
        raise TransportRefusal(400, "ADAPTER.BAD_REQUEST", "max_tokens is a positive integer")
    answer = sdk.llm.complete(messages, max_tokens=min(limit, 200_000), tools=tools)
    return _response(answer.value, str(body.get("model") or MODEL))


def _response(value: Any, asked: str) -> dict[str, Any]:
    value = value if isinstance(value, dict) else {}
    message = value.get("message") or {}
    calls = [
        {
            "id": str(c.get("id", "")),
            "type": "function",
            "function": {"name": str(c.get("name", "")), "arguments": str(c.get("arguments", ""))},
        }
        for c in value.get("tool_calls") or ()
    ]
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if calls:
        out["tool_calls"] = calls
    finish = "tool_calls" if calls else str(value.get("finish_reason") or "stop")
    usage = value.get("usage") or {}
    prompt, done = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {
        "id": f"chatcmpl-maos-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(value.get("model") or asked),
        "choices": [
            {
                "index": 0,
                "message": out,
                "finish_reason": finish if finish in _FINISH else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "total_tokens": prompt + done,
        },
    }


def _error(status: int, code: str, message: str) -> httpx2.Response:
    body = {"error": {"message": f"{code}: {message}", "type": "maos", "code": code}}
    return httpx2.Response(status, json=body)


def _answer(request: httpx2.Request) -> httpx2.Response:
    if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
        why = f"{request.method} {request.url.path}: only chat completions reach the kernel"
        return _error(404, "ADAPTER.NOT_FOUND", why)
    try:
        body = json.loads(request.content or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body is not a JSON object")
        return httpx2.Response(200, json=complete(body))
    except ValueError as exc:
        return _error(400, "ADAPTER.BAD_REQUEST", str(exc))
    except TransportRefusal as no:
        return _error(no.status, no.code, no.reason)
    except sdk.PendingApproval as parked:
        return _error(403, parked.code or "APPROVAL.PENDING", f"parked as {parked.approval_id}")
    except sdk.Denied as no:
        return _error(403, no.code, no.reason)
    except sdk.SdkError as failed:
        return _error(503 if failed.code in LLM_DOWN else 502, failed.code, failed.reason)


class ChannelTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport (sync and async) whose only peer is the kernel's LLM gateway.

    The async side runs the blocking channel request in a worker thread, so a framework's
    event loop keeps running its other tasks meanwhile; the pod's client sends one frame
    at a time whichever thread asks."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        return _answer(request)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return await asyncio.to_thread(_answer, request)


def http_client() -> httpx2.Client:
    """An HTTP client whose only peer is the kernel (for SDKs that take one)."""
    return httpx2.Client(transport=ChannelTransport())


def async_http_client() -> httpx2.AsyncClient:
    """The asyncio twin of `http_client`."""
    return httpx2.AsyncClient(transport=ChannelTransport())


def openai_client(**kwargs: Any) -> Any:
    """An ``openai.OpenAI`` whose requests go to the kernel (``kwargs`` go to it too)."""
    import openai

    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=BASE_URL, api_key="maos", http_client=http_client(), **kwargs)


def async_openai_client(**kwargs: Any) -> Any:
    """An ``openai.AsyncOpenAI`` whose requests go to the kernel (``kwargs`` go to it too)."""
    import openai

    kwargs.setdefault("max_retries", 0)
    http = async_http_client()
    return openai.AsyncOpenAI(base_url=BASE_URL, api_key="maos", http_client=http, **kwargs)
