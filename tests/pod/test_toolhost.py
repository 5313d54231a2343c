"""User-declared tools: manifests, the sandboxed tool host, and the kernel's checks on calls.

Agents run in real level-2 pods and call tools through `maos.sdk`; tools run in a real
tool host (a level-2 pod of their own). What happened is read from the agent's printed
lines and the WAL.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from maos.agents import script
from maos.effects.base import EffectError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.labels import Conf
from maos.kernel.manifest import ManifestError, parse_manifest
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodRuntime
from maos.pod.toolhost import ToolHostError, install_tools, start_tools
from maos.tool import ToolError, check_args, tool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")

EXAMPLE = script("office_tools")
IBAN = "DE89370400440532013000"
FOREIGN_IBAN = "GB33BUKB20201555555555"

HOSTILE = '''
import os, socket, time
from maos.tool import tool

@tool(effect="read-only")
def read_shadow() -> str:
    """Try to read a host secret."""
    return open("/etc/shadow").read()

@tool(effect="read-only")
def dial_out(host: str, port: int) -> str:
    """Try to reach the network."""
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(b"tool host was here")
    return "connected"

@tool(effect="read-only")
def kernel_data(path: str) -> str:
    """Try to read a file of the kernel's."""
    return open(path, "rb").read(16).hex()

@tool(effect="read-only", timeout_s=0.5)
def stall() -> str:
    """Never answers in time."""
    time.sleep(30)
    return "late"

@tool(effect="read-only")
def echo(text: str) -> str:
    """Say it back."""
    return text

@tool(effect="read-only")
def not_json() -> str:
    """Returns something the channel cannot carry."""
    return {1, 2}
'''


def agent_script(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(
        "import json\nfrom maos import sdk\n"
        "def out(**kw):\n    print('OUT ' + json.dumps(kw, sort_keys=True), flush=True)\n"
        + textwrap.dedent(code)
    )
    return path


def outputs(log: str) -> list[dict[str, Any]]:
    return [json.loads(line[4:]) for line in log.splitlines() if line.startswith("OUT ")]


def run_agent(
    tmp_path: Path,
    home: PodHome,
    modules: Sequence[Path],
    code: str,
    *,
    grants: Sequence[Grant],
    trusted: Sequence[str] = (),
    effect_classes: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]], str]:
    async def go() -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]], str]:
        kernel = await Kernel.boot(KernelConfig(data_dir=tmp_path / "data"))
        adapter = await install_tools(kernel, modules, home=home)
        runtime = PodRuntime(kernel, home=home)
        try:
            money = {"money_cents": 100_000}
            await kernel.register_agent("payer", ring=3, budgets=money)
            await kernel.open_task(
                "t1", trusted_targets=trusted, budgets=money, effect_classes=effect_classes
            )
            token = kernel.mint("payer", "t1", list(grants))
            run = await runtime.start(
                "payer", agent_script(tmp_path, code), task_id="t1", token=token
            )
            await run.wait()
            records = [(r.kind, dict(r.body)) for r in kernel.wal.read()]
            return outputs(run.log()), records, run.log()
        finally:
            await runtime.close()
            await adapter.aclose()
            await kernel.close()

    return asyncio.run(go())


PAY = """
def attempt(_tool, **args):
    try:
        r = sdk.tools.call(_tool, **args)
        out(name=_tool, status="committed", value=r.value, label=r.label.integrity)
    except sdk.PendingApproval as p:
        out(name=_tool, status="pending", code=p.code)
    except sdk.Denied as d:
        out(name=_tool, status="denied", code=d.code)
    except sdk.EffectFailed as f:
        out(name=_tool, status="failed", code=f.code)
"""


def test_tool_call_runs_in_the_host_with_the_manifests_label(tmp_path: Path, home: PodHome) -> None:
    code = (
        PAY
        + """
out(listed=sorted(t["name"] for t in sdk.tools.list().value["tools"]))
attempt("pay_invoice", iban="DE89 3704 0044 0532 0130 00", amount_cents=1200, reference="i-1")
attempt("lookup_contact", name="alice")
"""
    )
    grants = [Grant("tool.pay_invoice", "*"), Grant("tool.lookup_contact", "*")]
    out, records, _ = run_agent(
        tmp_path, home, [EXAMPLE], code, grants=grants, trusted=[IBAN], effect_classes=["pay"]
    )
    # Only what the token names is listed to the model.
    assert out[0] == {"listed": ["lookup_contact", "pay_invoice"]}
    paid, contact = out[1], out[2]
    assert paid["status"] == "committed" and paid["value"]["amount_cents"] == 1200
    assert paid["label"] == "trusted"
    # The directory's answer is third-party content: untrusted, as its manifest says.
    assert contact == {
        "name": "lookup_contact",
        "status": "committed",
        "value": {"name": "alice", "email": "alice@example.com", "phone": "+4915112345678"},
        "label": "untrusted",
    }
    registered = {b["name"]: b for k, b in records if k == "tool.registered"}
    assert registered["pay_invoice"]["effect_classes"] == ["pay"]
    assert registered["pay_invoice"]["targets"] == {"iban": {"kind": "account", "optional": False}}
    prepared = [b for k, b in records if k == "intent.prepared"]
    pay = next(i for i in prepared if i["op"] == "tool.pay_invoice")
    assert pay["cost"]["money_cents"] == 1200
    assert pay["params"]["args"]["reference"] == "i-1"


def test_an_unnamed_account_after_untrusted_content_goes_to_the_commander(
    tmp_path: Path, home: PodHome
) -> None:
    code = (
        PAY
        + f"""
attempt("lookup_contact", name="mallory")
attempt("pay_invoice", iban="{FOREIGN_IBAN}", amount_cents=500)
attempt("pay_invoice", iban="{IBAN}", amount_cents=500)
"""
    )
    grants = [Grant("tool.pay_invoice", "*"), Grant("tool.lookup_contact", "*")]
    out, records, _ = run_agent(
        tmp_path, home, [EXAMPLE], code, grants=grants, trusted=[IBAN], effect_classes=["pay"]
    )
    assert [o["status"] for o in out] == ["committed", "pending", "committed"]
    assert out[1]["code"] == "RULE.R10.UNTRUSTED_TARGET"
    pending = [b for k, b in records if k == "approval.pending"]
    assert pending[0]["details"]["targets"] == [FOREIGN_IBAN]
    assert pending[0]["intent"]["target_kinds"] == ["account"]
    assert FOREIGN_IBAN in pending[0]["details"]["first_seen"]


def test_a_class_the_task_never_asked_for_is_refused(tmp_path: Path, home: PodHome) -> None:
    code = PAY + 'attempt("change_password", account="ceo@example.com", new_password="pwned")\n'
    grants = [Grant("tool.change_password", "*")]
    out, _, _ = run_agent(
        tmp_path,
        home,
        [EXAMPLE],
        code,
        grants=grants,
        trusted=["ceo@example.com"],
        effect_classes=["pay", "send"],
    )
    assert out == [
        {
            "name": "change_password",
            "status": "denied",
            "code": "RULE.R2.EFFECT_CLASS_NOT_GRANTED",
        }
    ]


def test_without_a_grant_by_name_a_tool_is_refused(tmp_path: Path, home: PodHome) -> None:
    code = PAY + f'attempt("pay_invoice", iban="{IBAN}", amount_cents=1)\n'
    out, records, _ = run_agent(
        tmp_path,
        home,
        [EXAMPLE],
        code,
        grants=[Grant("tool.lookup_contact", "*")],
        trusted=[IBAN],
        effect_classes=["pay"],
    )
    assert out[0]["status"] == "denied" and out[0]["code"].startswith("DSC.CAPABILITY")
    assert not [b for k, b in records if k == "intent.prepared"]


def test_arguments_that_do_not_fit_the_manifest_never_reach_the_log(
    tmp_path: Path, home: PodHome
) -> None:
    code = (
        PAY
        + f"""
attempt("pay_invoice", iban="{IBAN}", amount_cents="12")
attempt("pay_invoice", iban="{IBAN}")
attempt("pay_invoice", iban="{IBAN}", amount_cents=1, extra="x")
attempt("pay_invoice", iban="{IBAN}", amount_cents=-5)
attempt("no_such_tool")
"""
    )
    out, records, _ = run_agent(
        tmp_path,
        home,
        [EXAMPLE],
        code,
        grants=[Grant("tool.*", "*")],
        trusted=[IBAN],
        effect_classes=["pay"],
    )
    codes = [o["code"] for o in out]
    assert codes[:3] == ["TOOL.BAD_ARGS"] * 3
    # -5 fits the schema but is no amount: the manifest refuses it (issue 8).
    assert codes[3] == "TOOL.BAD_AMOUNT"
    assert codes[4] == "GATEWAY.TOOL.UNKNOWN"
    assert not [b for k, b in records if k == "intent.prepared"]


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A real TCP listener on the host's loopback; what reached it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                seen.append(b"<connection>" + conn.recv(64))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def kernel_file() -> Iterator[Path]:
    """A file the kernel's user (and any host process) can read, outside /tmp, which
    level 1 replaces: only a sandbox that hides the host's files keeps a tool from it."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="maos-kernel-") as tmp:
        Path(tmp).chmod(0o755)
        path = Path(tmp) / "kernel.data"
        path.write_bytes(b"kernel-only data")
        path.chmod(0o644)
        yield path


def test_the_tool_host_is_a_sandbox(
    tmp_path: Path, home: PodHome, listener: tuple[int, list[bytes]], kernel_file: Path
) -> None:
    """issue 9: this passed with the host forced to level 1, because it dialled a port
    where nothing listened and read a file uid nobody could never read. Both targets
    are real now: the controls below reach them from the host."""
    port, seen = listener
    with socket.create_connection(("127.0.0.1", port), timeout=2) as control:
        control.sendall(b"control")
    assert kernel_file.read_bytes() == b"kernel-only data"
    module = tmp_path / "hostile.py"
    module.write_text(HOSTILE)
    code = (
        PAY
        + f"""
attempt("read_shadow")
attempt("dial_out", host="127.0.0.1", port={port})
attempt("kernel_data", path="{kernel_file}")
attempt("stall")
attempt("echo", text="still serving")
attempt("not_json")
"""
    )
    out, _, _ = run_agent(tmp_path, home, [module], code, grants=[Grant("tool.*", "*")])
    by_name = {o["name"]: o for o in out}
    for escape in ("read_shadow", "dial_out", "kernel_data"):
        assert by_name[escape]["status"] == "failed", escape
        assert by_name[escape]["code"] == "TOOL.RAISED", escape
    assert by_name["stall"]["code"] == "TOOL.TIMEOUT"
    # The killed host was replaced: the next call is served by a fresh one.
    assert by_name["echo"] == {
        "name": "echo",
        "status": "committed",
        "value": "still serving",
        "label": "untrusted",
    }
    assert by_name["not_json"]["code"] == "TOOL.BAD_RESULT"
    assert seen == [b"<connection>control"]  # the control only: the tool never got through


def test_a_host_restarted_after_its_module_was_edited_refuses_the_new_code(
    tmp_path: Path, home: PodHome
) -> None:
    """The same manifest over other code: the restart after a timeout runs nothing."""
    module = tmp_path / "hostile.py"
    module.write_text(HOSTILE)

    async def go() -> list[str]:
        adapter = await start_tools([module], home=home)
        [(host, _), *_] = adapter.served()
        codes = []
        try:
            assert await host.call("echo", {"text": "first"}, 5) == "first"
            for name in ("stall", "echo"):
                if name == "echo":  # the host is dead; its module is swapped meanwhile
                    module.write_text(HOSTILE.replace("return text", "return 'tampered'"))
                try:
                    await host.call(name, {"text": "second"} if name == "echo" else {}, 5)
                except EffectError as exc:
                    codes.append(exc.code)
            return codes
        finally:
            await adapter.aclose()

    assert asyncio.run(go()) == ["TOOL.TIMEOUT", "TOOL.MODULE_CHANGED"]


def test_a_module_that_does_not_declare_tools_properly_is_refused(
    tmp_path: Path, home: PodHome
) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from maos.tool import tool\n"
        "@tool(effect='teleport')\n"
        "def go(x: str) -> str:\n    return x\n"
    )
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")

    async def go(module: Path) -> str:
        kernel = await Kernel.boot(KernelConfig(data_dir=tmp_path / module.stem))
        try:
            with pytest.raises(ToolHostError) as err:
                await install_tools(kernel, [module], home=home)
            assert kernel.commit.adapter("tool") is None
            assert not [r for r in kernel.wal.read() if r.kind == "tool.registered"]
            return err.value.code
        finally:
            await kernel.close()

    assert asyncio.run(go(bad)) == "TOOL.BAD_MANIFEST"
    assert asyncio.run(go(broken)) == "TOOL.IMPORT"


def test_manifest_from_signature_and_strict_arguments() -> None:
    @tool(effect="external-communication", targets={"to": "recipient"})
    def notify(to: str, text: str, urgent: bool = False, cc: str | None = None) -> str:
        """Send a short notice.

        Longer text the model does not need."""
        return to

    manifest = parse_manifest(notify.manifest())  # the kernel's validator decides
    assert manifest.effect_classes == (EffectClass.SEND,) and manifest.external is True
    assert manifest.accepts is Conf.PUBLIC
    assert manifest.description == "Send a short notice."
    assert manifest.parameters["required"] == ["to", "text"]
    assert manifest.parameters["properties"]["cc"] == {"type": ["string", "null"]}
    check_args(notify.parameters, {"to": "a@b.example", "text": "hi", "cc": None})
    for bad in ({"to": "a@b.example"}, {"to": 1, "text": "x"}, {"to": "a", "text": "x", "z": 1}):
        with pytest.raises(ToolError):
            check_args(notify.parameters, bad)
    with pytest.raises(ToolError):
        check_args(notify.parameters, {"to": "a", "text": "x", "urgent": 1})
    with pytest.raises(ManifestError, match=r"targets\.nope"):
        parse_manifest(tool(effect="send", targets={"nope": "recipient"})(notify.fn).manifest())
    with pytest.raises(ManifestError, match="kind"):
        parse_manifest(tool(effect="send", targets={"to": "pigeon"})(notify.fn).manifest())
    with pytest.raises(ManifestError, match="string"):  # issue 8: a bool is no target
        parse_manifest(tool(effect="send", targets={"urgent": "user"})(notify.fn).manifest())
