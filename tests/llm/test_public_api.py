"""The public surface of maos.llm is what the docs name, and nothing leaks SDK types."""

from __future__ import annotations

import maos.llm


def test_all_is_the_documented_api() -> None:
    assert sorted(maos.llm.__all__) == sorted(
        [
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
    )
    for name in maos.llm.__all__:
        assert getattr(maos.llm, name).__module__.startswith("maos.llm")


def test_llm_errors_are_maos_errors() -> None:
    from maos.kernel.errors import MaosError

    assert issubclass(maos.llm.ProviderFailed, MaosError)
    assert issubclass(maos.llm.NoProvider, maos.llm.LlmError)
