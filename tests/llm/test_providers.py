"""Providers, the fallback chain and Rule-Based Mode, through the real SDKs on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from maos.llm import (
    Anthropic,
    ChatRequest,
    FallbackChain,
    LlmError,
    Message,
    Mode,
    NoProvider,
    OpenAICompatible,
    Provider,
    ProviderFailed,
    ProviderHealth,
    Tool,
    ToolCall,
)
from maos.testing import ChatReply, StepClock, loopback_openai

T = TypeVar("T")

WEATHER = Tool(
    "weather",
    "Today's weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}},
)
ASK = ChatRequest((Message("system", "be brief"), Message("user", "weather in Oslo?")), (WEATHER,))


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def _openai(url: str, name: str = "openai", **kw: Any) -> OpenAICompatible:
    kw.setdefault("retries", 0)
    kw.setdefault("timeout", 5.0)
    return OpenAICompatible(url, "sk-test", "gpt-test", name=name, **kw)


async def _complete(provider: Provider | FallbackChain, request: ChatRequest = ASK) -> Any:
    try:
        return await provider.complete(request)
    finally:
        await provider.aclose()


def test_completion_with_tool_calls_through_the_openai_sdk() -> None:
    reply = ChatReply(content=None, tool_calls=(("weather", {"city": "Oslo"}),))
    with loopback_openai([reply]) as server:
        done = _run(lambda: _complete(_openai(server.url)))
    assert done.message.role == "assistant" and done.message.content is None
    [call] = done.message.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("weather", {"city": "Oslo"})
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (11, 7)
    assert (done.provider, done.model, done.finish_reason) == ("openai", "gpt-test", "tool_calls")
    [(path, body)] = server.requests
    assert path == "/v1/chat/completions" and body["model"] == "gpt-test"
    assert body["messages"][1] == {"role": "user", "content": "weather in Oslo?"}
    assert body["tools"][0]["function"]["name"] == "weather" and body["max_tokens"] == 1024


def test_a_tool_answer_goes_back_in_the_openai_shape() -> None:
    call = ToolCall("call_1", "weather", '{"city": "Oslo"}')
    follow = ChatRequest(
        (
            Message("user", "weather in Oslo?"),
            Message("assistant", None, (call,)),
            Message("tool", "sunny", tool_call_id="call_1"),
        )
    )
    with loopback_openai([ChatReply(content="It is sunny.")]) as server:
        done = _run(lambda: _complete(_openai(server.url), follow))
    assert done.message.content == "It is sunny." and done.message.tool_calls == ()
    sent = server.requests[0][1]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": call.arguments}
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_the_sdk_retries_inside_one_provider_before_giving_up() -> None:
    with loopback_openai([ChatReply(status=503), ChatReply(content="second try")]) as server:
        done = _run(lambda: _complete(_openai(server.url, retries=1)))
    assert done.message.content == "second try" and len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (ChatReply(status=500), "LLM.PROVIDER_ERROR"),
        (ChatReply(status=401), "LLM.PROVIDER_ERROR"),
        (ChatReply(hang=True), "LLM.TIMEOUT"),
        (ChatReply(raw=b'{"choices": []}'), "LLM.BAD_RESPONSE"),
        (ChatReply(raw=b"not json at all"), "LLM.BAD_RESPONSE"),
    ],
)
def test_openai_failures_become_maos_errors_with_stable_codes(reply: ChatReply, code: str) -> None:
    with loopback_openai([reply]) as server, pytest.raises(ProviderFailed) as caught:
        _run(lambda: _complete(_openai(server.url, timeout=0.3)))
    assert caught.value.code == code and caught.value.fields["provider"] == "openai"
    assert caught.value.__cause__ is not None  # raise ... from exc: the SDK's error is kept


def test_a_refused_connection_is_a_provider_error() -> None:
    with loopback_openai() as server:
        url = server.url
    with pytest.raises(ProviderFailed) as caught:
        _run(lambda: _complete(_openai(url)))
    assert caught.value.code == "LLM.PROVIDER_ERROR"


def test_anthropic_completion_with_tool_use_through_its_sdk() -> None:
    reply = ChatReply(content="Let me look.", tool_calls=(("weather", {"city": "Oslo"}),))
    with loopback_openai([reply]) as server:
        provider = Anthropic(server.anthropic_url, "sk-ant", "claude-test", retries=0)
        done = _run(lambda: _complete(provider))
    assert done.message.content == "Let me look."
    [call] = done.message.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("weather", {"city": "Oslo"})
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.provider) == (
        11,
        7,
        "anthropic",
    )
    [(path, body)] = server.requests
    assert path == "/v1/messages" and body["system"] == "be brief"
    assert body["messages"] == [{"role": "user", "content": "weather in Oslo?"}]
    assert body["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}


@pytest.mark.parametrize(
    ("reply", "code"),
    [(ChatReply(status=529), "LLM.PROVIDER_ERROR"), (ChatReply(hang=True), "LLM.TIMEOUT")],
)
def test_anthropic_failures_become_maos_errors(reply: ChatReply, code: str) -> None:
    with loopback_openai([reply]) as server, pytest.raises(ProviderFailed) as caught:
        provider = Anthropic(server.anthropic_url, "k", "claude-test", timeout=0.3, retries=0)
        _run(lambda: _complete(provider))
    assert caught.value.code == code and caught.value.fields["provider"] == "anthropic"


def test_fallback_moves_to_the_next_provider_when_one_fails() -> None:
    with (
        loopback_openai([ChatReply(status=500)]) as bad,
        loopback_openai([ChatReply(content="from backup")]) as good,
    ):
        chain = FallbackChain([_openai(bad.url, "primary"), _openai(good.url, "backup")])
        done = _run(lambda: _complete(chain))
    assert (done.message.content, done.provider) == ("from backup", "backup")
    assert len(bad.requests) == 1 and len(good.requests) == 1
    assert chain.health.mode is Mode.NORMAL and chain.health.last_provider == "backup"


def test_all_down_enters_rule_based_mode_then_recovers_on_a_due_probe() -> None:
    clock = StepClock(1000.0)
    health = ProviderHealth(clock=clock, probe_interval=30.0)

    async def scenario(a_url: str, b_url: str) -> list[str]:
        chain = FallbackChain([_openai(a_url, "a"), _openai(b_url, "b")], health=health)
        seen = []
        for step in range(4):
            if step == 2:
                clock.now += 31  # the probe is due
                a.down = False
            try:
                seen.append((await chain.complete(ASK)).provider)
            except LlmError as exc:
                seen.append(exc.code)
        await chain.aclose()
        return seen

    with loopback_openai([ChatReply(content="back")] * 2) as a, loopback_openai() as b:
        a.down = b.down = True
        seen = _run(lambda: scenario(a.url, b.url))
        # Call 1 reached both servers; call 2 was refused with no network at all.
        assert seen == ["LLM.ALL_PROVIDERS_DOWN", "LLM.RULE_BASED_MODE", "a", "a"]
        assert (len(a.requests), len(b.requests)) == (3, 1)
    assert health.mode is Mode.NORMAL
    report = health.to_dict()
    assert report["mode"] == "normal" and report["outages"] == 1 and report["last_provider"] == "a"


def test_rule_based_mode_is_visible_with_its_reason() -> None:
    clock = StepClock(1000.0)
    health = ProviderHealth(clock=clock, probe_interval=10.0)
    with loopback_openai() as server:
        server.down = True
        chain = FallbackChain([_openai(server.url, "solo")], health=health)
        with pytest.raises(NoProvider) as caught:
            _run(lambda: _complete(chain))
    assert caught.value.code == "LLM.ALL_PROVIDERS_DOWN"
    report = health.to_dict()
    assert report["mode"] == "rule_based" and report["next_probe"] == clock.now + 10.0
    assert "solo: LLM.PROVIDER_ERROR" in report["last_error"]


def test_a_chain_needs_a_provider() -> None:
    with pytest.raises(ValueError):
        FallbackChain([])
