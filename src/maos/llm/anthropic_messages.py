"""Anthropic's Messages API through the official SDK's ``AsyncAnthropic``.

The chat shape is translated here: system turns become the ``system`` parameter, tool
calls become ``tool_use`` blocks and tool answers ``tool_result`` blocks in a user turn.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from maos.llm import errors
from maos.llm._sdk import SdkProvider
from maos.llm.types import ChatRequest, Completion, Message, ToolCall, Usage

__all__ = ["Anthropic"]


def _turns(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    system = "\n\n".join(m.content or "" for m in messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.tool_call_id or "",
                "content": m.content,
            }
            turns.append({"role": "user", "content": [block]})
        elif m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": m.content}] if m.content else []
            )
            for c in m.tool_calls:
                try:
                    args = json.loads(c.arguments or "{}")
                except ValueError:
                    args = {}
                blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": args})
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": m.role, "content": m.content or ""})
    return system, turns


class Anthropic(SdkProvider):
    """A `Provider` over ``/v1/messages``."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        name: str = "anthropic",
    ) -> None:
        self.name = name
        self.model = model
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=retries
        )

    async def complete(self, request: ChatRequest) -> Completion:
        system, turns = _turns(request.messages)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": request.max_tokens,
        }
        if system:
            kwargs["system"] = system
        if request.tools:
            kwargs["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ]
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        reply = await self._ask(anthropic, self._client.messages.create(**kwargs))
        return self._completion(reply)

    def _completion(self, reply: Any) -> Completion:
        try:
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in reply.content:
                if block.type == "text":
                    texts.append(str(block.text))
                elif block.type == "tool_use":
                    calls.append(ToolCall(str(block.id), str(block.name), json.dumps(block.input)))
            return Completion(
                message=Message("assistant", "".join(texts) if texts else None, tuple(calls)),
                usage=Usage(int(reply.usage.input_tokens), int(reply.usage.output_tokens)),
                provider=self.name,
                model=str(reply.model or self.model),
                finish_reason=str(reply.stop_reason or ""),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise self._failed(errors.BAD_RESPONSE, "no usable content", exc) from exc

    async def aclose(self) -> None:
        await self._client.close()
