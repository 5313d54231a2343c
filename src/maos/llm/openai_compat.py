"""Any server that speaks OpenAI chat completions: OpenAI, Ollama, vLLM, llama.cpp, LM Studio.

Built on the official SDK's ``AsyncOpenAI``; its own retry loop (``retries``, with the
SDK's backoff or the server's ``retry-after-ms``) runs inside one `complete` call, and
the `FallbackChain` moves on only once that is exhausted.
"""

from __future__ import annotations

from typing import Any

import openai

from maos.llm import errors
from maos.llm._sdk import SdkProvider
from maos.llm.types import ChatRequest, Completion, Message, ToolCall, Usage

__all__ = ["OpenAICompatible"]


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
    return out


class OpenAICompatible(SdkProvider):
    """A `Provider` over ``/v1/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.model = model
        # Local servers ignore the key, but the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=retries
        )

    async def complete(self, request: ChatRequest) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
        }
        if request.tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in request.tools
            ]
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        reply = await self._ask(openai, self._client.chat.completions.create(**kwargs))
        return self._completion(reply)

    def _completion(self, reply: Any) -> Completion:
        try:
            choice = reply.choices[0]
            msg = choice.message
            calls = tuple(
                ToolCall(str(c.id), str(c.function.name), str(c.function.arguments or ""))
                for c in (msg.tool_calls or ())
            )
            content = msg.content if isinstance(msg.content, str) else None
            usage = reply.usage
            return Completion(
                message=Message("assistant", content, calls),
                usage=Usage(
                    int(usage.prompt_tokens) if usage else 0,
                    int(usage.completion_tokens) if usage else 0,
                ),
                provider=self.name,
                model=str(getattr(reply, "model", "") or self.model),
                finish_reason=str(choice.finish_reason or ""),
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise self._failed(errors.BAD_RESPONSE, "no usable choice", exc) from exc

    async def aclose(self) -> None:
        await self._client.close()
