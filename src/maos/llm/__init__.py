"""Ring 1: language-model providers and Rule-Based Mode.

Layering: ``maos.llm`` may import ``maos.kernel`` and ``maos.effects``; neither imports it. The
kernel reaches a model only as the ``llm.complete`` effect, through `LlmAdapter` registered
with ``kernel.add_adapter("llm", ...)``; agents reach it through the LLM gateway. SDK
exceptions never leave this package: they become `LlmError` (``LLM.*``). Which providers a
kernel uses is configuration: `maos.llm.config` reads it from ``config.json``.

The two provider classes are loaded on first use: their SDKs take seconds to import, and
most processes that touch this package (``maos status``, a kernel with no model) never
build a provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maos.llm.adapter import LlmAdapter, estimate_prompt_tokens, parse_request, reserve_tokens
from maos.llm.chain import FallbackChain
from maos.llm.errors import LlmError, NoProvider, ProviderFailed
from maos.llm.health import Mode, ProviderHealth
from maos.llm.types import ChatRequest, Completion, Message, Provider, Tool, ToolCall, Usage

if TYPE_CHECKING:
    from maos.llm.anthropic_messages import Anthropic
    from maos.llm.openai_compat import OpenAICompatible

__all__ = [
    "Anthropic",
    "ChatRequest",
    "Completion",
    "FallbackChain",
    "LlmAdapter",
    "LlmError",
    "Message",
    "Mode",
    "NoProvider",
    "OpenAICompatible",
    "Provider",
    "ProviderFailed",
    "ProviderHealth",
    "Tool",
    "ToolCall",
    "Usage",
    "estimate_prompt_tokens",
    "parse_request",
    "reserve_tokens",
]


def __getattr__(name: str) -> object:
    if name == "Anthropic":
        from maos.llm.anthropic_messages import Anthropic

        return Anthropic
    if name == "OpenAICompatible":
        from maos.llm.openai_compat import OpenAICompatible

        return OpenAICompatible
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
