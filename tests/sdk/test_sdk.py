"""The agent SDK: stdlib only, immutable answers, typed errors, sync and async in a pod."""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

import maos.sdk
from maos import sdk
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodEvent, PodRuntime

SDK_DIR = Path(maos.sdk.__file__).parent
POD_PYTHON = "/usr/bin/python3"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")


def test_public_api_is_what_agents_are_taught() -> None:
    assert sorted(sdk.__all__) == sorted(
        [
            "Client",
            "Denied",
            "EffectFailed",
            "Label",
            "LlmUnavailable",
            "Message",
            "PendingApproval",
            "Result",
            "SdkError",
            "a2a",
            "admin",
            "default_client",
            "email",
            "fs",
            "http",
            "llm",
            "msg",
            "tools",
        ]
    )


@pytest.mark.skipif(not os.access(POD_PYTHON, os.X_OK), reason="no Debian python3")
def test_a_bare_pod_interpreter_imports_the_sdk_cheaply_and_nothing_else_of_maos() -> None:
    home = PodHome()
    try:
        probe = textwrap.dedent(
            f"""
            import sys
            sys.path.append({str(home.pylib)!r})
            before = set(sys.modules)
            import maos.sdk
            new = sorted(set(sys.modules) - before)
            print("typing" in new, "dataclasses" in new, [m for m in new if m.startswith("maos")])
            import maos.sdk.aio
            try:
                import maos.kernel
            except ImportError:
                print("no kernel")
            """
        )
        out = subprocess.run(
            [POD_PYTHON, "-I", "-S", "-B", "-c", probe],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    finally:
        home.close()
    assert out[0] == "False False ['maos', 'maos.sdk', 'maos.sdk.client', 'maos.sdk.errors']"
    assert out[1] == "no kernel"


def test_answers_are_frozen_values() -> None:
    label = sdk.Label("secret", "untrusted", ["url:b", "url:a"])
    result = sdk.Result({"x": 1}, label)
    assert label.sources == ("url:a", "url:b") and not label.trusted
    assert result == sdk.Result({"x": 1}, sdk.Label("secret", "untrusted", ["url:a", "url:b"]))
    assert hash(label) == hash(sdk.Label("secret", "untrusted", ("url:a", "url:b")))
    for value, name in ((label, "conf"), (result, "value")):
        with pytest.raises(AttributeError):
            setattr(value, name, None)
        with pytest.raises(AttributeError):
            delattr(value, name)


def test_outside_a_pod_the_sdk_says_where_agents_run() -> None:
    with pytest.raises(sdk.SdkError) as err:
        sdk.Client(token="t").fs.read("a.txt")
    assert err.value.code == "SDK.NO_POD"
    assert "maos agent run" in err.value.reason


def test_honest_mistakes_are_sdk_errors_not_frames_the_kernel_kills_the_pod_for() -> None:
    client = sdk.Client(token="t")
    for call, code in (
        (lambda: client.fs.write("a.txt", "x" * 200_001), "SDK.TOO_LARGE"),
        (lambda: client.fs.write("a.txt", "é" * 40_000), "SDK.TOO_LARGE"),  # 6 bytes each
        (lambda: client.fs.read("a/" * 3000), "SDK.TOO_LARGE"),
        (lambda: client.msg.receive(max_items=0), "SDK.INVALID"),
        (lambda: client.llm.complete("hi", max_tokens=0), "SDK.INVALID"),
        (lambda: client.llm.complete([{"role": "root", "content": "x"}]), "SDK.INVALID"),
    ):
        with pytest.raises(sdk.SdkError) as err:
            call()
        assert err.value.code == code


@needs_root
def test_an_asyncio_agent_uses_the_async_client_in_a_pod(tmp_path: Path) -> None:
    agent = tmp_path / "async_agent.py"
    agent.write_text(
        textwrap.dedent(
            """
            import asyncio
            from maos import sdk
            from maos.sdk.aio import AsyncClient

            async def main() -> None:
                kernel = AsyncClient()
                wrote, beat = await asyncio.gather(
                    kernel.fs.write("a.txt", "async"), kernel.admin.heartbeat()
                )
                print("read", (await kernel.fs.read("a.txt")).value["content"])
                print("ring", (await kernel.admin.status()).value["ring"])
                try:
                    await kernel.llm.complete("hello")
                except sdk.LlmUnavailable as no:
                    print("llm", no.code, no.status)
                await kernel.admin.apoptosis("done")

            asyncio.run(main())
            """
        )
    )
    events: list[PodEvent] = []

    async def main() -> tuple[str, str, int]:
        kernel = await Kernel.boot(KernelConfig(data_dir=tmp_path / "data"))
        try:
            await kernel.register_agent("async-agent", ring=3)
            await kernel.open_task("t1")
            grants = [Grant("fs.*", "*"), Grant("admin.*", "*"), Grant("llm.complete", "*")]
            token = kernel.mint("async-agent", "t1", grants)
            async with PodRuntime(kernel, on_event=events.append) as runtime:
                run = await runtime.start("async-agent", agent, task_id="t1", token=token)
                ended = await run.wait()
                return run.log(), ended.reason, ended.exit_code
        finally:
            await kernel.close()

    output, reason, code = asyncio.run(main())
    assert (reason, code) == ("apoptosis", 0), output
    assert output.splitlines() == ["read async", "ring 3", "llm LLM.UNAVAILABLE failed"]
    ops = [e.op for e in events if e.kind == "intent"]
    assert sorted(ops[:2]) == ["admin.heartbeat", "fs.write"]  # one at a time, either order


class _CannedKernel:
    """A transport answering as the kernel does when its LLM chain is down."""

    def __init__(self, code: str) -> None:
        self.code = code

    def request(self, gw: str, op: str, args: dict[str, object], cap: str | None) -> object:
        outcome = {"status": "failed", "code": self.code, "reason": "no provider answers"}
        return {"v": 1, "id": 1, "ok": True, "result": outcome}


@pytest.mark.parametrize(
    "code", ["LLM.UNAVAILABLE", "LLM.RULE_BASED_MODE", "LLM.ALL_PROVIDERS_DOWN"]
)
def test_every_no_model_answer_is_llm_unavailable(code: str) -> None:
    client = sdk.Client(token="t", task_id="t1", transport=_CannedKernel(code))
    with pytest.raises(sdk.LlmUnavailable) as err:
        client.llm.complete([{"role": "user", "content": "hi"}])
    assert err.value.code == code
