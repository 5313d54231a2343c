"""Providers from ``config.json`` and the environment, served by a real kernel and logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from maos.kernel.errors import InputError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import Outcome, OutcomeStatus
from maos.llm import Mode, NoProvider, ProviderHealth, reserve_tokens
from maos.llm.config import ConfiguredLlm, build_llm, load_llm, load_settings
from maos.testing import ChatReply, ChatServer, loopback_openai

T = TypeVar("T")
SECRET = "sk-test-9f8e7d6c5b4a3210"


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def _config(data: Path, **sections: Any) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    (data / "config.json").write_text(json.dumps(sections))
    return data


def _openai(server: ChatServer, name: str = "loop", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "openai",
        "name": name,
        "base_url": server.url,
        "model": "m1",
        "retries": 0,
        **extra,
    }


@contextlib.asynccontextmanager
async def _serving(data: Path, environ: Mapping[str, str]) -> AsyncIterator[Kernel]:
    """A kernel with the configured chain attached; the chain closed before the kernel."""
    llm = load_llm(data, environ)
    assert llm is not None
    kernel: Kernel | None = None
    try:
        kernel = await Kernel.boot(KernelConfig.load(data), follow=False)
        await llm.attach(kernel)
        yield kernel
    finally:
        await llm.aclose()
        if kernel is not None:
            await kernel.close()


async def _thinker(kernel: Kernel) -> str:
    await kernel.register_agent("thinker", ring=3, budgets={"tokens": 100_000})
    await kernel.open_task("t1", budgets={"tokens": 100_000})
    return kernel.mint("thinker", "t1", [Grant("llm.complete", "*")])


async def _complete(kernel: Kernel, token: str, key: str) -> Outcome:
    params = {"messages": [{"role": "user", "content": "hello?"}], "max_tokens": 50}
    frame = {
        "task_id": "t1",
        "op": "llm.complete",
        "target": "default",
        "token": token,
        "idempotency_key": key,
        "params": params,
        "cost": {"api_calls": 1, "tokens": reserve_tokens(params)},
    }
    return await kernel.submit(frame, agent_id="thinker")


def _records(data: Path, *kinds: str) -> list[tuple[str, dict[str, Any]]]:
    from maos.kernel.wal import Wal

    with Wal(KernelConfig(data_dir=data).wal_path) as wal:
        return [(r.kind, dict(r.body)) for r in wal.read(kinds=kinds or None)]


def test_a_configured_provider_serves_llm_complete_and_the_log_names_it_without_its_key(
    tmp_path: Path,
) -> None:
    with loopback_openai([ChatReply(content="hello from the loop")]) as server:
        data = _config(
            tmp_path / "d",
            node_id="local",
            llm={"providers": [_openai(server, api_key_env="LOOP_KEY")], "probe_interval_s": 5},
        )

        async def go() -> Outcome:
            async with _serving(data, {"LOOP_KEY": SECRET}) as kernel:
                return await _complete(kernel, await _thinker(kernel), "k1")

        out = _run(go)
        [(path, body)] = server.requests
    assert out.status is OutcomeStatus.COMMITTED, out
    assert out.value["message"]["content"] == "hello from the loop"
    assert out.value["provider"] == "loop"
    assert (path, body["model"]) == ("/v1/chat/completions", "m1")
    assert _records(data, "llm.configured") == [
        (
            "llm.configured",
            {
                "providers": [
                    {"name": "loop", "kind": "openai", "model": "m1", "base_url": server.url}
                ],
                "probe_interval_s": 5.0,
            },
        )
    ]
    assert all(SECRET not in json.dumps(body) for _, body in _records(data))


def test_an_outage_flips_to_rule_based_and_a_probe_back_and_each_flip_is_logged(
    tmp_path: Path,
) -> None:
    with loopback_openai() as server:
        data = _config(tmp_path / "d", llm={"providers": [_openai(server)], "probe_interval_s": 0})

        async def go() -> tuple[Outcome, Outcome]:
            async with _serving(data, {}) as kernel:
                token = await _thinker(kernel)
                server.down = True
                down = await _complete(kernel, token, "k1")
                server.down = False
                server.script.append(ChatReply(content="back"))
                back = await _complete(kernel, token, "k2")  # the probe: interval 0
                return down, back

        down, back = _run(go)
    assert (down.status, down.code) == (OutcomeStatus.FAILED, "LLM.ALL_PROVIDERS_DOWN")
    assert back.status is OutcomeStatus.COMMITTED and back.value["message"]["content"] == "back"
    flips = [body for _, body in _records(data, "llm.mode")]
    assert [(f["mode"], f["outages"], f["last_provider"]) for f in flips] == [
        ("rule_based", 1, None),
        ("normal", 1, "loop"),
    ]
    assert "loop: LLM.PROVIDER_ERROR" in flips[0]["last_error"]


def test_an_outage_met_before_attaching_is_logged_after_llm_configured(tmp_path: Path) -> None:
    """The SSE judge asks during boot (approved intents), before the chain is attached."""
    with loopback_openai() as server:
        server.down = True
        data = _config(tmp_path / "d", llm={"providers": [_openai(server)]})

        async def go() -> None:
            llm = load_llm(data, {})
            assert llm is not None
            kernel: Kernel | None = None
            try:
                with pytest.raises(NoProvider):
                    await llm.ask("judge", "allow?")
                kernel = await Kernel.boot(KernelConfig.load(data), follow=False)
                await llm.attach(kernel)
            finally:
                await llm.aclose()
                if kernel is not None:
                    await kernel.close()

        _run(go)
    kinds = [
        (kind, body.get("mode")) for kind, body in _records(data, "llm.configured", "llm.mode")
    ]
    assert kinds == [("llm.configured", None), ("llm.mode", "rule_based")]


def test_ask_is_one_short_completion_through_the_chain(tmp_path: Path) -> None:
    with loopback_openai([ChatReply(content="ALLOW: fine")]) as server:
        llm = build_llm(load_settings(_config(tmp_path, llm={"providers": [_openai(server)]})).llm)
        assert isinstance(llm, ConfiguredLlm)

        async def go() -> str:
            try:
                return await llm.ask("be a judge", "is this fine?")
            finally:
                await llm.aclose()

        assert _run(go) == "ALLOW: fine"
        [(_, body)] = server.requests
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("system", "be a judge"),
        ("user", "is this fine?"),
    ]
    assert body["max_tokens"] == 64
    assert llm.health.mode is Mode.NORMAL


def test_the_environment_adds_one_openai_provider_after_the_files(tmp_path: Path) -> None:
    with loopback_openai() as first, loopback_openai([ChatReply(content="from env")]) as second:
        first.down = True
        data = _config(tmp_path, llm={"providers": [_openai(first, name="file")]})
        environ = {"MAOS_LLM_BASE_URL": second.url, "MAOS_LLM_MODEL": "m2"}
        settings = load_settings(data, environ)
        llm = build_llm(settings.llm, environ)
        assert llm is not None

        async def go() -> str:
            try:
                return await llm.ask("s", "u")
            finally:
                await llm.aclose()

        assert _run(go) == "from env"
        assert len(first.requests) >= 1 and second.requests[0][1]["model"] == "m2"
    assert [(p.name, p.kind) for p in settings.llm.providers] == [
        ("file", "openai"),
        ("env", "openai"),
    ]


def test_no_provider_means_no_adapter(tmp_path: Path) -> None:
    assert load_llm(tmp_path, {}) is None  # no config.json at all
    assert load_llm(_config(tmp_path, node_id="n1", sse={"heuristic": True}), {}) is None


def test_an_anthropic_key_comes_from_its_variable_and_an_unset_one_is_refused(
    tmp_path: Path,
) -> None:
    with loopback_openai([ChatReply(content="claude here")]) as server:
        provider = {
            "kind": "anthropic",
            "name": "claude",
            "base_url": server.anthropic_url,
            "model": "claude-test",
            "api_key_env": "MAOS_TEST_ANTHROPIC_KEY",
            "retries": 0,
        }
        data = _config(tmp_path, llm={"providers": [provider]})
        with pytest.raises(InputError) as caught:
            load_llm(data, {"OTHER": "x"})
        assert caught.value.code == "BAD_INPUT.CONFIG"
        assert caught.value.fields["path"] == "llm.providers[0].api_key_env"
        assert "MAOS_TEST_ANTHROPIC_KEY is not set" in caught.value.message

        llm = load_llm(data, {"MAOS_TEST_ANTHROPIC_KEY": SECRET})
        assert llm is not None

        async def go() -> str:
            try:
                return await llm.ask("s", "u")
            finally:
                await llm.aclose()

        assert _run(go) == "claude here"
        assert server.requests[0][0] == "/v1/messages"
    # The key reached the SDK client (the loopback server does not check keys).
    assert llm.adapter.chain.providers[0]._client.api_key == SECRET  # type: ignore[attr-defined]


def test_an_openai_provider_whose_variable_is_unset_runs_keyless(tmp_path: Path) -> None:
    with loopback_openai([ChatReply(content="local")]) as server:
        data = _config(tmp_path, llm={"providers": [_openai(server, api_key_env="NOT_SET_HERE")]})
        llm = load_llm(data, {})
        assert llm is not None

        async def go() -> str:
            try:
                return await llm.ask("s", "u")
            finally:
                await llm.aclose()

        assert _run(go) == "local"


BAD = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("sections", "path", "says"),
    [
        (
            {"llm": {"providers": [{"kind": "openai", "model": "m"}]}},
            "llm.providers[0].base_url",
            "required",
        ),
        (
            {"llm": {"providers": [{"kind": "gemini", "model": "m"}]}},
            "llm.providers[0]",
            "'gemini'",
        ),
        (
            {"llm": {"providers": [{"model": "m", "base_url": BAD}]}},
            "llm.providers[0]",
            "needs a kind",
        ),
        (
            {
                "llm": {
                    "providers": [
                        {"kind": "openai", "base_url": BAD, "model": "m", "timeout_s": "60"}
                    ]
                }
            },
            "llm.providers[0].timeout_s",
            "number",
        ),
        (
            {
                "llm": {
                    "providers": [
                        {"kind": "openai", "base_url": BAD, "model": "m", "retries": True}
                    ]
                }
            },
            "llm.providers[0].retries",
            "integer",
        ),
        (
            {
                "llm": {
                    "providers": [{"kind": "openai", "base_url": BAD, "model": "m", "timeout_s": 0}]
                }
            },
            "llm.providers[0].timeout_s",
            "greater than 0",
        ),
        (
            {
                "llm": {
                    "providers": [
                        {"kind": "openai", "base_url": BAD, "model": "m", "api_key": SECRET}
                    ]
                }
            },
            "llm.providers[0]",
            "api_key_env",
        ),
        (
            {
                "llm": {
                    "providers": [
                        {"kind": "openai", "base_url": BAD, "model": "m", "api_key_env": SECRET}
                    ]
                }
            },
            "llm.providers[0].api_key_env",
            "environment variable",
        ),
        (
            {
                "llm": {
                    "providers": [{"kind": "openai", "base_url": "http://u:pw@h/v1", "model": "m"}]
                }
            },
            "llm.providers[0].base_url",
            "credentials",
        ),
        (
            {"llm": {"providers": [{"kind": "openai", "base_url": "file:///etc", "model": "m"}]}},
            "llm.providers[0].base_url",
            "http",
        ),
        (
            {"llm": {"providers": [{"kind": "anthropic", "model": "m"}]}},
            "llm.providers[0].api_key_env",
            "required",
        ),
        (
            {
                "llm": {
                    "providers": [
                        {"kind": "openai", "base_url": BAD, "model": "a"},
                        {"kind": "openai", "base_url": BAD, "model": "b"},
                    ]
                }
            },
            "llm.providers",
            "two providers are named 'openai'",
        ),
        ({"llm": {"probe_interval_s": -1}}, "llm.probe_interval_s", "greater than or equal"),
        ({"llm": {"provider": []}}, "llm.provider", "not a known setting"),
        ({"llm": []}, "llm", "must be an object"),
        ({"sse": {"heuristic": "yes"}}, "sse.heuristic", "boolean"),
        ({"sse": {"judge": True}}, "sse.judge", "not a known setting"),
        ({"sse": {"llm_judge": True}}, "sse.llm_judge", "needs a provider"),
        ({"security": {"outbound_bytes_per_day": 0}}, "security.outbound_bytes_per_day", "greater"),
        ({"security": {"limit": 5}}, "security.limit", "not a known setting"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(
    tmp_path: Path, sections: dict[str, Any], path: str, says: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_settings(_config(tmp_path, **sections), {})
    assert caught.value.code == "BAD_INPUT.CONFIG"
    assert caught.value.fields["path"] == path
    assert caught.value.message.startswith(f"{path}: ") and says in caught.value.message
    assert SECRET not in caught.value.message


def test_a_config_that_is_not_json_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("config.json").write_text('{"llm": ')
    with pytest.raises(InputError) as caught:
        load_settings(tmp_path, {})
    assert caught.value.code == "BAD_INPUT.CONFIG" and "not valid JSON" in caught.value.message


@pytest.mark.parametrize(
    ("environ", "path"),
    [
        ({"MAOS_LLM_BASE_URL": "http://127.0.0.1:9/v1"}, "MAOS_LLM_MODEL"),
        ({"MAOS_LLM_MODEL": "m", "MAOS_LLM_API_KEY_ENV": "K"}, "MAOS_LLM_BASE_URL"),
        ({"MAOS_LLM_BASE_URL": "127.0.0.1:9", "MAOS_LLM_MODEL": "m"}, "MAOS_LLM_BASE_URL"),
        (
            {"MAOS_LLM_BASE_URL": BAD, "MAOS_LLM_MODEL": "m", "MAOS_LLM_API_KEY_ENV": "sk-x"},
            "MAOS_LLM_API_KEY_ENV",
        ),
    ],
)
def test_a_bad_environment_override_names_the_variable(
    tmp_path: Path, environ: dict[str, str], path: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_settings(tmp_path, environ)
    assert caught.value.code == "BAD_INPUT.CONFIG"
    assert caught.value.fields["path"] == path and caught.value.message.startswith(f"{path}: ")


def test_all_is_the_documented_api() -> None:
    import maos.llm.config

    assert sorted(maos.llm.config.__all__) == sorted(
        [
            "CONFIGURED",
            "ENV_API_KEY_ENV",
            "ENV_BASE_URL",
            "ENV_MODEL",
            "ENV_PROVIDER",
            "MODE",
            "AnthropicProviderConfig",
            "ConfiguredLlm",
            "LlmSettings",
            "OpenAIProviderConfig",
            "ProviderConfig",
            "SecuritySettings",
            "Settings",
            "SseSettings",
            "build_llm",
            "llm_status",
            "load_llm",
            "load_settings",
        ]
    )


def test_reading_the_config_and_the_status_does_not_import_the_provider_sdks() -> None:
    """``maos status`` and a kernel without a model must not pay seconds for two SDKs."""
    probe = (
        "import sys, maos.cli, maos.llm, maos.llm.config\n"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_status_follows_the_kernel_that_booted_last(tmp_path: Path) -> None:
    from maos.kernel.wal import Wal
    from maos.llm.config import llm_status

    with loopback_openai() as server:
        data = _config(tmp_path / "d", llm={"providers": [_openai(server)], "probe_interval_s": 7})

        async def with_llm() -> None:
            async with _serving(data, {}):
                pass

        async def without() -> None:
            async with await Kernel.boot(KernelConfig(data_dir=data), follow=False):
                pass

        _run(with_llm)
        with Wal(KernelConfig(data_dir=data).wal_path) as wal:
            served = llm_status(wal)
        _run(without)
        with Wal(KernelConfig(data_dir=data).wal_path) as wal:
            after = llm_status(wal)
    assert (served["configured"], served["mode"], served["probe_interval_s"]) == (
        True,
        "normal",
        7.0,
    )
    assert [p["name"] for p in served["providers"]] == ["loop"]
    assert (after["configured"], after["mode"], after["providers"]) == (False, "not_configured", [])


def test_health_reports_each_flip_once_with_its_state() -> None:
    seen: list[dict[str, Any]] = []
    health = ProviderHealth(clock=lambda: 5.0, probe_interval=10, on_change=seen.append)
    health.all_failed("a: LLM.TIMEOUT")
    health.all_failed("a: LLM.PROVIDER_ERROR")  # still the same outage
    health.answered("a")
    health.answered("b")
    assert [(s["mode"], s["last_error"], s["outages"]) for s in seen] == [
        ("rule_based", "a: LLM.TIMEOUT", 1),
        ("normal", "a: LLM.PROVIDER_ERROR", 1),
    ]
