"""Issue 10 section 4, "a dashboard worth watching": the live stream and its tickets, the
log search, the decisions chart, the agent page, declassify and revoke - over real HTTP
against a real kernel, and in Debian's Chromium. What an order did is read from the
kernel's folds and the log, not from what the API answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from dashkit import MARKUP, client, in_browser, park_stranger_mail, run

from maos.commander.stream import MAX_STREAMS, MAX_TICKETS, TICKET_TTL, StreamTickets
from maos.commander.web import Dashboard
from maos.kernel import cascade
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.labels import Conf
from maos.kernel.stages import Stage
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import intent_frame, task_with_untrusted_mail

READ_AND_MAIL = [Grant("fs.read", "*"), Grant("email.send", "*")]


async def _events(response: httpx.Response) -> Any:
    """The stream's events, each as (event, id, data) once its blank line arrives."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def _opens(http: httpx.AsyncClient, **params: str) -> tuple[int, dict[str, Any]]:
    """The status of ``GET /api/stream`` and its error body; a stream that opens is left
    at its headers (read as a plain GET, it would never end)."""
    async with http.stream("GET", "api/stream", params=params) as answer:
        if answer.status_code == 200:
            return 200, {}
        return answer.status_code, json.loads(await answer.aread())


async def _three_decisions(kernel: Kernel) -> str:
    """a1 on t1: one read allowed, one delete denied (its token has no fs.delete), one stranger mail
    parked (R10) - the token a1 holds."""
    token = await task_with_untrusted_mail(kernel, READ_AND_MAIL)
    read = await kernel.submit(
        intent_frame(token, "fs.read", "inbox/mail.txt", "r1"), agent_id="a1"
    )
    assert read.status is OutcomeStatus.COMMITTED, read
    delete = await kernel.submit(
        intent_frame(token, "fs.delete", "inbox/mail.txt", "d1"), agent_id="a1"
    )
    assert delete.status is OutcomeStatus.DENIED, delete
    mail = intent_frame(token, "email.send", "stranger@evil.example", "m1", subject="s")
    assert (await kernel.submit(mail, agent_id="a1")).status is OutcomeStatus.PENDING
    return token


# -- the stream and its tickets ---------------------------------------------------------


def test_the_event_stream_opens_only_with_a_fresh_single_use_ticket(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async with client(dashboard, None) as anonymous, client(dashboard, token) as me:
            assert (await anonymous.post("api/stream/ticket", json={})).status_code == 401
            bare, error = await _opens(anonymous)
            assert (bare, error["error"]) == (401, "AUTH.TICKET_REQUIRED")
            # the long-lived token is not a ticket: it must never be put in a URL
            assert (await _opens(anonymous, ticket=token))[0] == 401
            ticket = (await me.post("api/stream/ticket", json={})).json()["ticket"]
            rebound = await anonymous.get(
                "api/stream",
                params={"ticket": ticket},
                headers={"Host": f"evil.example:{dashboard.port}"},
            )
            assert rebound.status_code == 421
            async with anonymous.stream("GET", "api/stream", params={"ticket": ticket}) as live:
                assert live.status_code == 200
                assert live.headers["content-type"].startswith("text/event-stream")
                assert "script-src 'self'" in live.headers["content-security-policy"]
                event, seq, state = await anext(_events(live))
                assert event == "state" and int(seq or 0) == kernel.wal.tail_seq()
                assert state["wal_records"] == kernel.wal.tail_seq()
            spent, _ = await _opens(anonymous, ticket=ticket)
            assert spent == 401, "a ticket opens one stream, once"
            bad_body = await me.post("api/stream/ticket", json={"ttl": 3600})
            assert bad_body.status_code == 400

    run(config, body)


def test_streams_past_the_cap_are_refused_not_queued(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async with client(dashboard, token) as me, contextlib.AsyncExitStack() as open_:
            readers = []  # an abandoned reader would close its stream when collected
            for _ in range(MAX_STREAMS):
                ticket = (await me.post("api/stream/ticket", json={})).json()["ticket"]
                live = await open_.enter_async_context(
                    me.stream("GET", "api/stream", params={"ticket": ticket})
                )
                readers.append(_events(live))
                await anext(readers[-1])  # served: it holds a place
            ticket = (await me.post("api/stream/ticket", json={})).json()["ticket"]
            status, error = await _opens(me, ticket=ticket)
            assert (status, error["error"]) == (429, "STATE.TOO_MANY_STREAMS")

    run(config, body)


def test_a_stream_ticket_expires_and_unspent_ones_are_bounded() -> None:
    now = [1000.0]
    tickets = StreamTickets(clock=lambda: now[0])
    late = tickets.issue()
    now[0] += TICKET_TTL + 0.1
    assert not tickets.redeem(late)
    first = tickets.issue()
    for _ in range(MAX_TICKETS):
        tickets.issue()
    assert not tickets.redeem(first), "the oldest unspent ticket made room"
    assert not tickets.redeem("")


def test_a_committed_intent_is_pushed_on_the_open_stream(config: KernelConfig) -> None:
    """Issue 10: the page polled every 1.5 s; now the server pushes the change."""

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        agent_token = await task_with_untrusted_mail(kernel, READ_AND_MAIL)
        async with client(dashboard, token) as me:
            ticket = (await me.post("api/stream/ticket", json={})).json()["ticket"]
            async with me.stream("GET", "api/stream", params={"ticket": ticket}) as live:
                events = _events(live)
                _, _, first = await anext(events)
                frame = intent_frame(agent_token, "fs.read", "inbox/mail.txt", "r1")
                done = await kernel.submit(frame, agent_id="a1")
                assert done.status is OutcomeStatus.COMMITTED
                assert done.wal_seq is not None and done.wal_seq > first["wal_records"]
                while True:  # the states pushed as the intent was prepared, then committed
                    _, seq, pushed = await asyncio.wait_for(anext(events), 20)
                    assert int(seq or 0) == pushed["wal_records"]
                    if pushed["wal_records"] >= done.wal_seq:
                        break
                assert done.wal_seq in [r["seq"] for r in pushed["recent"]]

    run(config, body)


# -- search, chart, agent page ----------------------------------------------------------


def test_the_log_search_filters_on_the_server_within_bounds(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await _three_decisions(kernel)
        await kernel.register_agent("a2", ring=3)
        async with client(dashboard, token) as me, client(dashboard, None) as anonymous:

            async def find(**params: Any) -> list[dict[str, Any]]:
                answer = await me.get("api/log", params=params)
                assert answer.status_code == 200, answer.text
                return list(answer.json()["records"])

            mine = await find(agent="a2")
            assert [r["kind"] for r in mine] == ["agent.registered"]
            assert {r["kind"] for r in await find(code="RULE.R10")} == {"approval.pending"}
            denied = await find(code="DSC.CAPABILITY")
            assert [r["body"]["op"] for r in denied] == ["fs.delete"]
            assert [r["kind"] for r in await find(agent="a1", op="fs.read", kind="intent.c")] == [
                "intent.committed"
            ]
            assert await find(since=time.time() + 3600) == []
            everything = await find(task="t1")
            assert everything and all(
                "t1" in (r["body"].get("task_id"), r["body"].get("intent", {}).get("task_id"))
                for r in everything
            )
            page = await find(limit=2)
            older = await find(limit=2, before=page[-1]["seq"])
            assert older[0]["seq"] < page[-1]["seq"]
            for params, code in [
                ({"limit": "201"}, "BAD_INPUT.BODY"),
                ({"agnet": "a1"}, "BAD_INPUT.BODY"),
                ({"agent": "a1' OR 1=1 --"}, "BAD_INPUT.BODY"),
            ]:
                refused = await me.get("api/log", params=params)
                assert (refused.status_code, refused.json()["error"]) == (400, code)
            twice = await me.get("api/log?agent=a1&agent=a2")
            assert twice.json()["error"] == "BAD_INPUT.DUPLICATE_KEY"
            assert (await anonymous.get("api/log")).status_code == 401

    run(config, body)


def test_the_chart_counts_allowed_denied_and_parked_by_code(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await _three_decisions(kernel)
        async with client(dashboard, token) as me:
            chart = (await me.get("api/chart", params={"buckets": "10"})).json()
            assert chart["totals"] == {"allowed": 1, "denied": 1, "parked": 1}
            assert chart["codes"]["denied"] == {"DSC.CAPABILITY.NOT_COVERED": 1}
            assert chart["codes"]["parked"] == {"RULE.R10.UNTRUSTED_TARGET": 1}
            assert len(chart["buckets"]) == 10
            past = await me.get("api/chart", params={"since": "1", "until": "2"})
            assert past.json()["totals"] == {"allowed": 0, "denied": 0, "parked": 0}
            backwards = await me.get("api/chart", params={"since": "5", "until": "2"})
            assert backwards.status_code == 400

    run(config, body)


def test_the_agent_page_has_its_budget_tokens_and_intents(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        agent_token = await _three_decisions(kernel)
        async with client(dashboard, token) as me:
            page = (await me.get("api/agents/a1")).json()
            assert (page["ring"], page["status"], page["stage"]) == (3, "active", "normal")
            assert page["context"]["integrity"] == "untrusted"
            assert page["budget"]["limit"]["api_calls"] == 100
            [seen] = page["tokens"]
            info = kernel.tokens.inspect(agent_token)
            assert seen["revocation_id"] == info.revocation_ids[0] and not seen["revoked"]
            for path in ("api/agents/a1", "api/state", "api/log?kind=approval."):
                shown = (await me.get(path)).text
                assert agent_token not in shown, f"{path} handed out the agent's token"
            kinds = [r["kind"] for r in page["intents"]]
            assert kinds == ["approval.pending", "intent.denied", "intent.committed"]
            missing = await me.get("api/agents/nobody")
            assert (missing.status_code, missing.json()["error"]) == (404, "STATE.UNKNOWN_AGENT")

    run(config, body)


# -- declassify and revoke: the kernel's own orders ---------------------------------------


def test_declassify_and_revoke_through_the_api_are_the_kernels_orders(
    config: KernelConfig,
) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        agent_token = await _three_decisions(kernel)
        rid = kernel.tokens.inspect(agent_token).revocation_ids[0]
        async with client(dashboard, token) as me, client(dashboard, None) as anonymous:
            seq = kernel.wal.tail_seq()
            for path, payload, status in [
                ("api/tasks/t1/declassify", {"to": "secret", "reason": "x"}, 400),
                ("api/tasks/t1/declassify", {"to": "public"}, 400),
                ("api/tasks/nope/declassify", {"to": "public", "reason": "x"}, 404),
                ("api/tokens/revoke", {"revocation_ids": ["not-hex"]}, 400),
                ("api/tokens/revoke", {"revocation_ids": []}, 400),
            ]:
                assert (await me.post(path, json=payload)).status_code == status, path
            no_token = await anonymous.post("api/tokens/revoke", json={"revocation_ids": [rid]})
            assert no_token.status_code == 401
            assert kernel.wal.tail_seq() == seq, "a refused order wrote to the log"
            ok = await me.post("api/tasks/t1/declassify", json={"to": "public", "reason": "ok"})
            assert ok.status_code == 200
            assert kernel.registry.task("t1").declassified_to is Conf.PUBLIC
            [record] = list(kernel.wal.read(since_seq=seq, kinds=["task.declassified"]))
            assert record.body["principal"] == "commander" and record.body["reason"] == "ok"
            revoked = await me.post("api/tokens/revoke", json={"revocation_ids": [rid]})
            assert revoked.status_code == 200
        again = intent_frame(agent_token, "fs.read", "inbox/mail.txt", "r2")
        refused = await kernel.submit(again, agent_id="a1")
        assert refused.code == "DSC.CAPABILITY.REVOKED"

    run(config, body)


# -- in the browser ---------------------------------------------------------------------


def test_without_the_token_the_page_says_so_and_takes_one(config: KernelConfig) -> None:
    """Issue 10: opened without the token (as `maos status` prints the URL) the page said
    "Nothing waits for a decision" - a false all-clear."""

    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await park_stranger_mail(kernel)

        async def act(page: Any) -> None:
            auth = page.locator("#auth")
            await auth.wait_for()
            assert "Not authorised" in await auth.inner_text()
            assert not await page.locator("#no-approvals").is_visible()
            assert not await page.locator("#overview").is_visible()
            await page.locator("#token-input").fill("x" * 43)
            await page.locator("#token-use").click()
            await page.locator("#auth-why", has_text="refused").wait_for()
            assert await auth.is_visible()
            await page.locator("#token-input").fill(token)
            await page.locator("#token-input").press("Enter")
            await page.locator("article.approval").wait_for()
            await page.locator("#connection", has_text="live").wait_for()
            assert not await auth.is_visible()
            assert token not in page.url

        await in_browser(dashboard, act, url=dashboard.url)

    run(config, body)


def test_a_committed_intent_arrives_in_the_page_without_a_reload_or_a_poll(
    config: KernelConfig,
) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        agent_token = await task_with_untrusted_mail(kernel, READ_AND_MAIL)

        async def act(page: Any) -> None:
            await page.locator("#connection", has_text="live").wait_for()
            await page.evaluate("window.stillHere = true")
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url) if "/api/state" in r.url else None)
            frame = intent_frame(agent_token, "fs.read", "inbox/mail.txt", "r1")
            done = await kernel.submit(frame, agent_id="a1")
            row = page.locator(f'#recent li[data-seq="{done.wal_seq}"]')
            await row.wait_for(timeout=20_000)
            assert "intent.committed" in await row.inner_text()
            assert await page.evaluate("window.stillHere") is True  # no reload
            assert fetched == [], "the change came over the stream, not a fetch"

        await in_browser(dashboard, act)

    run(config, body)


def test_the_agent_page_in_the_browser_and_revoking_from_it(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        agent_token = await _three_decisions(kernel)
        markup = intent_frame(agent_token, "fs.delete", MARKUP, "x1")  # its refusal names it
        assert (await kernel.submit(markup, agent_id="a1")).status is OutcomeStatus.DENIED
        evidence = [{"seq": 7, "kind": "prefilter", "code": "DSC.PREFILTER.INJECTION", "weight": 3}]
        order = cascade.stage_order(
            kernel.registry,
            "a1",
            Stage.OBSERVATION,
            cause="prefilter (DSC.PREFILTER.INJECTION)",
            principal="commander:security",
            at=kernel.clock(),
            score=4.5,
            evidence=evidence,
        )
        await kernel.cascade(order)

        async def act(page: Any) -> None:
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.locator('tr[data-agent-id="a1"] a.agent-link').click()
            view = page.locator('#agent-view[data-agent-id="a1"]')
            await view.wait_for()
            assert await page.locator("#agent-stages li.current").inner_text() == "observation"
            assert "danger 4.5" in await page.locator("#agent-danger").inner_text()
            assert "DSC.PREFILTER.INJECTION" in await page.locator("#agent-evidence").inner_text()
            limit = page.locator('#agent-budget tr[data-row="limit"]')
            assert "100" in await limit.inner_text()
            intents = await page.locator("#agent-intents").inner_text()
            assert "approval.pending" in intents and "intent.denied" in intents
            assert "<img src=x onerror=" in intents  # the agent's markup, as text ...
            assert await page.locator("#agent-view img").count() == 0  # ... never an element
            rid = kernel.tokens.inspect(agent_token).revocation_ids[0]
            await page.locator(f'tr[data-revocation-id="{rid}"] button.revoke').click()
            await page.locator(f'tr.revoked[data-revocation-id="{rid}"]').wait_for()
            assert await page.title() == "MAOS Commander"

        await in_browser(dashboard, act)
        again = await kernel.submit(intent_frame(agent_token, "fs.read", "a", "r9"), agent_id="a1")
        assert again.code == "DSC.CAPABILITY.REVOKED"

    run(config, body)


def test_filtering_the_log_from_the_page(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await _three_decisions(kernel)
        await kernel.register_agent("a2", ring=3)

        async def act(page: Any) -> None:
            await page.locator("#connection", has_text="live").wait_for()
            await page.locator('#log-filter input[name="code"]').fill("DSC.CAPABILITY")
            await page.locator("#log-search").click()
            await page.locator("#log-mode", has_text="Search: 1 record(s)").wait_for()
            [row] = await page.locator("#recent li").all_inner_texts()
            assert "intent.denied" in row and "DSC.CAPABILITY.NOT_COVERED" in row
            await kernel.register_agent("a3", ring=3)  # pushed, but the search result stays
            await asyncio.sleep(0.5)
            assert await page.locator("#recent li").count() == 1
            await page.locator("#log-clear").click()
            await page.locator("#recent li", has_text="agent_id=a3").wait_for()

        await in_browser(dashboard, act)

    run(config, body)


def test_the_chart_on_the_page_draws_the_counts(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await _three_decisions(kernel)
        await kernel.register_agent("a2", ring=3)  # not a decision: counted nowhere

        async def act(page: Any) -> None:
            chart = page.locator('#chart[data-allowed="1"][data-denied="1"][data-parked="1"]')
            await chart.wait_for()
            for outcome in ("allowed", "denied", "parked"):
                bars = page.locator(f'#chart rect[data-outcome="{outcome}"]')
                counts = [
                    int(c)
                    for c in await bars.evaluate_all(
                        "bars => bars.map((b) => b.getAttribute('data-count'))"
                    )
                ]
                assert sum(counts) == 1, outcome
            row = page.locator('#chart-codes tr[data-code="RULE.R10.UNTRUSTED_TARGET"]')
            assert (await row.inner_text()).split() == ["parked", "RULE.R10.UNTRUSTED_TARGET", "1"]

        await in_browser(dashboard, act)

    run(config, body)


def test_declassifying_a_task_from_the_page(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await _three_decisions(kernel)

        async def act(page: Any) -> None:
            row = page.locator('#tasks tr[data-task-id="t1"]')
            await row.locator("select").select_option("internal")
            await row.locator("input").fill("the report goes to the team")
            await row.locator("button.declassify-go").click()
            await page.locator(
                '#tasks tr[data-task-id="t1"] td.flow', has_text="internal"
            ).wait_for()

        await in_browser(dashboard, act)
        assert kernel.registry.task("t1").declassified_to is Conf.INTERNAL
        [record] = list(kernel.wal.read(kinds=["task.declassified"]))
        assert record.body["reason"] == "the report goes to the team"

    run(config, body)


@pytest.mark.parametrize("width", [1280, 1366, 1400])
def test_issue10_the_agents_table_does_not_wrap_letter_by_letter(
    config: KernelConfig, width: int
) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        await kernel.register_agent("invoice-reader-7", ring=3)
        await kernel.set_agent_status("invoice-reader-7", AgentStatus.QUARANTINED)

        async def act(page: Any) -> None:
            row = page.locator('tr[data-agent-id="invoice-reader-7"]')
            await row.wait_for()
            line = await page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
            for cell in ("td.id", "td.status", "td.context"):
                box = await row.locator(cell).bounding_box()
                assert box is not None and box["height"] < 2 * line + 8, (cell, box)

        await in_browser(dashboard, act, width=width)

    run(config, body)


def test_empty_sections_say_they_are_empty(config: KernelConfig) -> None:
    async def body(kernel: Kernel, dashboard: Dashboard, token: str) -> None:
        async def act(page: Any) -> None:
            await page.locator("#connection", has_text="live").wait_for()
            for node in ("#no-approvals", "#no-doubt", "#no-decided", "#no-agents", "#no-tasks"):
                assert await page.locator(node).is_visible(), node

        await in_browser(dashboard, act)

    run(config, body)
