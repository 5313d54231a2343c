"""The OpenAI-compatible transport inside a pod (issue 13, item 5): model calls reach the
kernel's LLM gateway as ``llm.complete`` intents, and nothing else goes anywhere.

Real level-2 pods with the frameworks' runtime; the official ``openai`` SDK in the pod
talks to `maos.adapters.transport`; the model is a real HTTP server on loopback that the
kernel's gateway reaches. What happened is read from the agent's output and the WAL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from framework_scenario import run_example

from maos.kernel.kernel import KernelConfig
from maos.kernel.tokens import Grant
from maos.pod.isolation import PodHome
from maos.pod.upstream_runtime import Runtime
from maos.testing import ChatServer

PROBE = """
import json
import openai
from maos.adapters.transport import openai_client

client = openai_client()
def attempt(name, ask):
    try:
        ask()
        print("OUT " + json.dumps({"name": name, "ok": True}), flush=True)
    except openai.APIStatusError as exc:
        code = exc.body.get("code") if isinstance(exc.body, dict) else None
        out = {"name": name, "status": exc.status_code, "code": code}
        print("OUT " + json.dumps(out), flush=True)

hi = [{"role": "user", "content": "Your step: none"}]
attempt("models", lambda: client.models.list())
attempt("stream", lambda: client.chat.completions.create(model="m", messages=hi, stream=True))
attempt("image", lambda: client.chat.completions.create(model="m", messages=[{"role": "user",
    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]))
attempt("chat", lambda: client.chat.completions.create(model="m", messages=hi))
"""


def outputs(log: str) -> dict[str, dict[str, object]]:
    found = [json.loads(x[4:]) for x in log.splitlines() if x.startswith("OUT ")]
    return {o.pop("name"): o for o in found}


@pytest.mark.parametrize("level", [1, 2])
def test_issue_13_only_chat_completions_cross_and_each_is_an_llm_intent(
    tmp_path: Path,
    config: KernelConfig,
    home: PodHome,
    frameworks: Runtime,
    model_server: ChatServer,
    level: int,
) -> None:
    """At both levels that mount the runtime: level 1 (ring 2, the host's tree) and 2."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    run = run_example(probe, config, home, frameworks, model_server, level=level)
    assert run.exit_code == 0, run.log
    seen = outputs(run.log)
    assert seen["models"] == {"status": 404, "code": "ADAPTER.NOT_FOUND"}
    assert seen["stream"] == {"status": 400, "code": "ADAPTER.UNSUPPORTED"}
    assert seen["image"] == {"status": 400, "code": "ADAPTER.UNSUPPORTED"}
    assert seen["chat"] == {"ok": True}
    # Only the one chat completion reached the model, and through the kernel.
    asked = [b for k, b in run.records if k == "intent.prepared" and b["op"] == "llm.complete"]
    assert len(asked) == len(model_server.requests) == 1


def test_issue_13_rule_based_mode_reaches_the_framework_as_a_503_naming_the_code(
    tmp_path: Path,
    config: KernelConfig,
    home: PodHome,
    frameworks: Runtime,
    model_server: ChatServer,
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    run = run_example(probe, config, home, frameworks, model_server, llm=False)
    assert outputs(run.log)["chat"] == {"status": 503, "code": "LLM.UNAVAILABLE"}
    assert model_server.requests == []


def test_issue_13_a_token_without_llm_grant_is_a_403_naming_the_kernels_code(
    tmp_path: Path,
    config: KernelConfig,
    home: PodHome,
    frameworks: Runtime,
    model_server: ChatServer,
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    grants = [Grant("fs.read", "*")]
    run = run_example(probe, config, home, frameworks, model_server, grants=grants)
    chat = outputs(run.log)["chat"]
    assert chat["status"] == 403 and str(chat["code"]).startswith("DSC.CAPABILITY")
    assert model_server.requests == []
