"""``llm.complete`` as an effect: the kernel asks a model through the Commit Layer.

    kernel.add_adapter("llm", LlmAdapter(FallbackChain([...])))

Params (validated here; JSON as logged in ``intent.prepared``)::

    {"messages": [{"role", "content", "tool_calls"?, "tool_call_id"?}, ...],
     "tools": [{"name", "description"?, "parameters"?}, ...]?,
     "max_tokens": int, "temperature": float?}

Value of the committed record::

    {"message": {...}, "tool_calls": [{"id", "name", "arguments"}],
     "usage": {"prompt_tokens", "completion_tokens"}, "provider", "model", "finish_reason"}

Budgets (check 3). The submitter declares ``cost.tokens = reserve_tokens(params)``: the
completion cap ``max_tokens`` plus an estimate of the prompt (`estimate_prompt_tokens`),
so the check can refuse before anything is spent. That declared figure is *reserved* at
the check and *booked* in full when the record commits (and when it goes in doubt); the
real ``usage`` is in the value for the Commander and for metering, and a failed call books
nothing. Since the provider is held to ``max_tokens``, the booking overstates the
completion and estimates the prompt.

A completion costs money and is not repeatable byte for byte, so it is never idempotent:
one interrupted by a crash goes ``in_doubt`` and is not asked again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.kernel.dsc import budget
from maos.llm import errors
from maos.llm.chain import FallbackChain
from maos.llm.errors import LlmError
from maos.llm.health import ProviderHealth
from maos.llm.types import ChatRequest, Message, Tool, ToolCall

__all__ = ["LlmAdapter", "estimate_prompt_tokens", "parse_request", "reserve_tokens"]

_ROLES = ("system", "user", "assistant", "tool")


def estimate_prompt_tokens(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
) -> int:
    """A deterministic, tokenizer-free estimate of a prompt's size in tokens (the kernel's
    rule, `maos.kernel.dsc.budget`, which pods' LLM gateways reserve by too)."""
    return budget.estimate_prompt_tokens(messages, tools)


def reserve_tokens(params: Mapping[str, Any]) -> int:
    """What an ``llm.complete`` intent declares as ``cost.tokens``: cap + prompt estimate."""
    return budget.reserve_tokens(params)


def _bad(why: str) -> EffectError:
    return EffectError(errors.BAD_REQUEST, why)


def _tool_call(raw: Any) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise _bad("a tool call is an object")
    nested = raw.get("function")
    fn: Mapping[str, Any] = nested if isinstance(nested, Mapping) else raw
    return ToolCall(str(raw.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments", "")))


def parse_request(params: Mapping[str, Any]) -> ChatRequest:
    """The logged params as a `ChatRequest`; `EffectError` ``LLM.BAD_REQUEST`` if malformed."""
    raw_messages = params.get("messages")
    if not isinstance(raw_messages, Sequence) or not raw_messages:
        raise _bad("messages must be a non-empty list")
    messages = []
    for m in raw_messages:
        if not isinstance(m, Mapping) or m.get("role") not in _ROLES:
            raise _bad(f"a message needs a role among {_ROLES}")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise _bad("a message's content is text")
        calls = tuple(_tool_call(c) for c in m.get("tool_calls") or ())
        call_id = m.get("tool_call_id")
        messages.append(
            Message(m["role"], content, calls, None if call_id is None else str(call_id))
        )
    tools = []
    for t in params.get("tools") or ():
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
            raise _bad("a tool needs a name")
        schema = t.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(schema, Mapping):
            raise _bad("a tool's parameters are a JSON schema object")
        tools.append(Tool(t["name"], str(t.get("description", "")), schema))
    max_tokens = params.get("max_tokens")
    if type(max_tokens) is not int or not 1 <= max_tokens <= 200_000:
        raise _bad("max_tokens must be an int in 1..200000")
    temperature = params.get("temperature")
    if temperature is not None and not isinstance(temperature, int | float):
        raise _bad("temperature is a number")
    return ChatRequest(
        tuple(messages),
        tuple(tools),
        max_tokens,
        None if temperature is None else float(temperature),
    )


class LlmAdapter:
    """The ``llm`` family of effects, over a `FallbackChain` the kernel's owner configures."""

    ops = frozenset({"llm.complete"})

    def __init__(self, chain: FallbackChain) -> None:
        self.chain = chain

    @property
    def health(self) -> ProviderHealth:
        return self.chain.health

    def idempotent(self, call: EffectCall) -> bool:
        return False  # a completion costs money; an interrupted one goes in doubt

    async def execute(self, call: EffectCall) -> EffectResult:
        request = parse_request(call.params)
        try:
            completion = await self.chain.complete(request)
        except LlmError as exc:
            raise EffectError(exc.code, exc.message) from exc
        message = completion.message
        return EffectResult(
            {
                "message": message.to_dict(),
                "tool_calls": [c.to_dict() for c in message.tool_calls],
                "usage": completion.usage.to_dict(),
                "provider": completion.provider,
                "model": completion.model,
                "finish_reason": completion.finish_reason,
            }
        )

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        return None  # never asked: not idempotent

    async def aclose(self) -> None:
        await self.chain.aclose()
