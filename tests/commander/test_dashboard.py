"""The Commander's dashboard and API (`maos up`): a real kernel, a real uvicorn server on
loopback, a real SMTP server, and requests over real HTTP.

What a decision does is judged by what the SMTP server received and what the log holds,
not by what the API answered. The last tests drive the page in a real browser: Debian's
Chromium (`scripts/sysdeps.sh test` installs it) through Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashkit import EXAMPLE_PLAN, in_browser
from dashkit import client as _client
from dashkit import park_stranger_mail as _park_stranger_mail
from dashkit import run as _run

from maos.commander.web import Dashboard
from maos.kernel import cascade
from maos.kernel.approvals import ApprovalStatus
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.stages import Stage
from maos.kernel.types import Intent, OutcomeStatus
from maos.kernel.walconfig import anchored_wal
from maos.testing import Mailbox, crash_after_prepare, intent_frame


def test_the_api_wants_the_token_and_its_own_host_name(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async with _client(dashboard, None) as anonymous:
            refused = await anonymous.get("api/state")
            assert refused.status_code == 401
            assert refused.json()["error"] == "AUTH.TOKEN_REQUIRED"
            wrong = await anonymous.get(
                "api/state", headers={"Authorization": "Bearer " + "x" * 43}
            )
            assert wrong.status_code == 401
            page = await anonymous.get("")
            assert page.status_code == 200 and "MAOS Commander" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
        async with _client(dashboard, token) as client:
            rebound = await client.get(
                "api/state", headers={"Host": f"evil.example:{dashboard.port}"}
            )
            assert rebound.status_code == 421
            assert rebound.json()["error"] == "AUTH.BAD_HOST"
            assert (await client.get("api/state")).status_code == 200

    _run(config, body)
    token_file = config.data_dir / "commander.token"
    assert token_file.stat().st_mode & 0o077 == 0


def test_a_parked_mail_shows_its_packet_and_approving_it_sends_it_once(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> list[str]:
        _, approval_id = await _park_stranger_mail(kernel)
        async with _client(dashboard, token) as client:
            state = (await client.get("api/state")).json()
            [pending] = state["pending_approvals"]
            assert pending["approval_id"] == approval_id
            assert pending["rule"].startswith("R10")
            [line] = [p for p in pending["packet"] if p.startswith("flagged stranger")]
            assert line.startswith(
                "flagged stranger@evil.example: first seen only in untrusted content"
                " (in fs.read:inbox/mail.txt, field content, intent "
            )  # issue 8: the result and the field it came in
            assert line.endswith("; fs:inbox/mail.txt; handed to a1)")
            assert any(r["kind"] == "approval.pending" for r in state["recent"])
            assert mailbox.messages == []
            blind = await client.post(f"api/approvals/{approval_id}/approve", json={})
            assert blind.status_code == 409  # issue 10: an approval names the packet it saw
            assert blind.json()["error"] == "APPROVAL.PACKET_REQUIRED"
            assert mailbox.messages == []
            shown = {"packet_digest": pending["packet_digest"]}
            done = await client.post(f"api/approvals/{approval_id}/approve", json=shown)
            assert done.status_code == 200 and done.json()["status"] == "committed"
            again = await client.post(f"api/approvals/{approval_id}/approve", json={})
            assert again.status_code == 409
            assert again.json()["error"] == "APPROVAL.ALREADY_DECIDED"
            assert (await client.get("api/state")).json()["pending_approvals"] == []
            return [r.kind for r in kernel.wal.read(kinds=["approval.approved"])]

    assert _run(config, body) == ["approval.approved"]
    assert mailbox.recipients() == ["stranger@evil.example"]


def test_deny_kill_and_safe_state_through_the_api(config: KernelConfig, mailbox: Mailbox) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        agent_token, approval_id = await _park_stranger_mail(kernel)
        async with _client(dashboard, token) as client:
            denied = await client.post(
                f"api/approvals/{approval_id}/deny", json={"note": "not a colleague"}
            )
            assert denied.json()["code"] == "APPROVAL.DENIED"
            assert kernel.approvals.get(approval_id).note == "not a colleague"
            on = await client.post("api/safe-state", json={"on": True, "reason": "drill"})
            assert on.json()["safe_state"]["reason"] == "drill"
            mail = intent_frame(agent_token, "email.send", "boss@example.com", "m2", subject="s")
            refused = await kernel.submit(mail, agent_id="a1")
            assert refused.code == "RULE.R8.MINIMAL_SAFE_STATE"
            await client.post("api/safe-state", json={"on": False})
            killed = await client.post("api/agents/a1/status", json={"status": "killed"})
            assert killed.status_code == 200
            assert kernel.registry.agent("a1").status is AgentStatus.KILLED
            mail = intent_frame(agent_token, "email.send", "boss@example.com", "m3", subject="s")
            assert (await kernel.submit(mail, agent_id="a1")).status is OutcomeStatus.DENIED

    _run(config, body)
    assert mailbox.messages == []


def test_safe_state_from_the_dashboard_expires_what_waits_and_says_so(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """issue 9: an approval outlived MSS and, approved later, still mailed."""

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        _, approval_id = await _park_stranger_mail(kernel)
        async with _client(dashboard, token) as client:
            await client.post("api/safe-state", json={"on": True, "reason": "drill"})
            await client.post("api/safe-state", json={"on": False})
            state = (await client.get("api/state")).json()
            assert state["pending_approvals"] == []
            [expired] = [r for r in state["recent"] if r["kind"] == "approval.expired"]
            assert expired["body"]["approval_ids"] == [approval_id]
            late = await client.post(f"api/approvals/{approval_id}/approve", json={})
            assert late.status_code == 409 and late.json()["error"] == "APPROVAL.EXPIRED"

    _run(config, body)
    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("api/agents/a1/status", b'{"status": "god"}', 400, "BAD_INPUT.BODY"),
        ("api/agents/a1/status", b"not json", 400, "BAD_INPUT.BODY"),
        ("api/agents/nobody/status", b'{"status": "killed"}', 404, "STATE.UNKNOWN_AGENT"),
        ("api/approvals/nope/approve", b"{}", 404, "APPROVAL.NOT_FOUND"),
        ("api/safe-state", b'{"on": true, "extra": 1}', 400, "BAD_INPUT.BODY"),
        ("api/in-doubt/a1%2Fnope/resolve", b'{"happened": true}', 409, "STATE.NOT_IN_DOUBT"),
        ("api/in-doubt/a1%2Fnope/resolve", b'{"happened": "yes"}', 400, "BAD_INPUT.BODY"),
    ],
)
def test_bad_requests_get_a_stable_code_and_change_nothing(
    config: KernelConfig, path: str, body: bytes, status: int, code: str
) -> None:
    async def run(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await kernel.register_agent("a1", ring=3)
        seq = kernel.wal.tail_seq()
        async with _client(dashboard, token) as client:
            answer = await client.post(path, content=body)
        assert (answer.status_code, answer.json()["error"]) == (status, code)
        assert kernel.wal.tail_seq() == seq
        assert kernel.registry.agent("a1").status is AgentStatus.ACTIVE

    _run(config, run)


def _maos(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("maos")), *args]


@contextlib.contextmanager
def _maos_up(data_dir: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`maos up` as a process: its base URL and token; stopped with SIGINT after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = _maos("up", "-d", str(data_dir), "--port", "0")
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("MAOS Commander on http://127.0.0.1:"), line + proc.stderr.read()
            url, _, token = line.split()[-1].partition("#token=")
            yield url, token, proc
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()


def test_maos_up_serves_until_interrupted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _maos_up(data_dir) as (url, token, _):
        assert token == (data_dir / "commander.token").read_text().strip()
        assert (data_dir / "commander.url").read_text().strip() == url
        state = httpx.get(url + "api/state", headers={"Authorization": f"Bearer {token}"})
        assert state.status_code == 200 and state.json()["data_dir"] == str(data_dir)
        status = subprocess.run(
            _maos("status", "-d", str(data_dir)), capture_output=True, text=True, check=True
        )
        assert f"dashboard     {url}  (maos up" in status.stdout
    assert not (data_dir / "commander.url").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "api/state")


def test_maos_up_stops_on_sigint_while_a_live_stream_is_open(tmp_path: Path) -> None:
    """Issue 10: a pushed stream never ends on its own; SIGINT must still stop `maos up`
    (exit 0), and the stream's reader sees its end rather than hanging."""
    ended: list[str] = []

    def listen(url: str, token: str, first: threading.Event) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            ticket = http.post("api/stream/ticket", json={}).json()["ticket"]
            with http.stream("GET", "api/stream", params={"ticket": ticket}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: state"):
                        first.set()
            ended.append("end of stream")

    with _maos_up(tmp_path / "data") as (url, token, _):
        first = threading.Event()
        reader = threading.Thread(target=listen, args=(url, token, first), daemon=True)
        reader.start()
        assert first.wait(60), "no state event arrived"
    reader.join(60)
    assert ended == ["end of stream"]


def test_maos_run_hands_its_plan_to_the_serving_maos_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: x\nsteps: {}\nbogus: 1\n")
    with _maos_up(data_dir) as (url, token, _):
        run = subprocess.run(
            _maos("run", str(EXAMPLE_PLAN), "-d", str(data_dir)),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "run 1 of q3-report on the kernel `maos up` serves" in run.stdout
        assert "plan     q3-report done" in run.stdout
        headers = {"Authorization": f"Bearer {token}"}
        bad = httpx.post(url + "api/plans", json={"path": str(broken)}, headers=headers)
        assert (bad.status_code, bad.json()["error"]) == (400, "PLAN.INVALID")
        [plan] = httpx.get(url + "api/state", headers=headers).json()["plans"]
        assert (plan["task"], plan["status"]) == ("q3-report", "done")
    final = data_dir / "workspaces" / "q3-report" / "reports" / "final.md"
    assert final.read_text().strip(), "the publisher wrote the report"


def test_the_page_shows_injected_markup_as_text_and_a_click_denies(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> str:
        _, approval_id = await _park_stranger_mail(kernel)

        async def act(page: Any) -> None:
            card = page.locator(f'article[data-approval-id="{approval_id}"]')
            await card.wait_for()
            packet = await card.locator(".packet").inner_text()
            assert "flagged stranger@evil.example: first seen only in untrusted content" in packet
            assert "<img src=x onerror=" in packet  # shown as text ...
            assert await page.locator("article img").count() == 0  # ... never as an element
            assert await page.title() == "MAOS Commander"
            assert "token=" not in page.url  # the fragment is dropped once read
            await asyncio.sleep(2)  # pushed states redraw the page; the card must stay put
            await card.locator(".note").fill("not one of ours")
            await card.locator(".deny").click()
            await page.locator("#no-approvals").wait_for(state="visible")
            assert await page.title() == "MAOS Commander"

        await in_browser(dashboard, act)
        return approval_id

    approval_id = _run(config, body)
    asyncio.run(_check_denied(config, approval_id))
    assert mailbox.messages == []


async def _check_denied(config: KernelConfig, approval_id: str) -> None:
    async with await Kernel.boot(config, follow=False) as kernel:
        item = kernel.approvals.get(approval_id)
        assert (item.status, item.note) == (ApprovalStatus.DENIED, "not one of ours")


def test_killing_an_agent_from_the_page(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await kernel.register_agent("a1", ring=3)

        async def act(page: Any) -> None:
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            row = page.locator('tr[data-agent-id="a1"]')
            await row.locator("button.kill").click()
            await row.locator("td.status-killed").wait_for()

        await in_browser(dashboard, act)
        assert kernel.registry.agent("a1").status.value == "killed"

    _run(config, body)


def test_the_page_shows_an_agents_cascade_stage_score_and_evidence(config: KernelConfig) -> None:
    """Issue 12: the stage, the danger score that put the agent there and its evidence."""

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await kernel.register_agent("a1", ring=3)
        evidence = [{"seq": 7, "kind": "prefilter", "code": "DSC.PREFILTER.INJECTION", "weight": 3}]
        order = cascade.stage_order(
            kernel.registry,
            "a1",
            Stage.SOFT_ISOLATION,
            cause="prefilter (DSC.PREFILTER.INJECTION)",
            principal="commander:security",
            at=kernel.clock(),
            score=6.5,
            evidence=evidence,
        )
        await kernel.cascade(order)

        async def act(page: Any) -> None:
            cell = page.locator('tr[data-agent-id="a1"] .stage-soft_isolation')
            await cell.wait_for()
            assert await cell.inner_text() == "soft isolation (danger 6.5)"
            row = await page.locator('tr[data-agent-id="a1"]').inner_text()
            assert "evidence: DSC.PREFILTER.INJECTION +3" in row

        await in_browser(dashboard, act)

    _run(config, body)


def test_running_a_plan_from_the_page(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async def act(page: Any) -> None:
            await page.locator("#plan-path").fill(str(EXAMPLE_PLAN))
            await page.locator("#plan-run").click()
            done = page.locator("#plans li", has_text="q3-report: done")
            await done.wait_for(timeout=180_000)

        await in_browser(dashboard, act)

    _run(config, body)
    final = config.data_dir / "workspaces" / "q3-report" / "reports" / "final.md"
    assert final.read_text().strip()


def test_judging_an_effect_in_doubt_from_the_page(config: KernelConfig, mailbox: Mailbox) -> None:
    """A crash left a mail prepared with no outcome; the boot puts it in doubt, and the
    person says it did not happen: the key answers so, and nothing is sent."""
    config.data_dir.mkdir(parents=True)
    mail = Intent("i9", "a1", "t1", "email.send", "boss@example.com", "a1/m9", {"body": "x"})
    with anchored_wal(config) as wal:  # the kernel that died held the key
        crash_after_prepare(wal, mail, idempotent=False)

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        [doubt] = kernel.commit.in_doubt()

        async def act(page: Any) -> None:
            item = page.locator(f'#in-doubt li[data-idem-key="{doubt.idem_key}"]')
            await item.locator("button.not-happened").click()
            await item.wait_for(state="detached")

        await in_browser(dashboard, act)
        assert kernel.commit.in_doubt() == []
        retry = await kernel.commit.run(mail)
        assert (retry.status, retry.code) == (OutcomeStatus.FAILED, "EFFECT.NOT_HAPPENED")

    _run(config, body)
    assert mailbox.messages == []
