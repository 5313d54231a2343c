"""Grants derived from the Commander's words (issue 8, item 6): the grammar line by line,
the intersection with the ceiling, the ``task.grants`` record, R2 on it, the override."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.grants import ALL_CLASSES, derive, source_matches
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass, OutcomeStatus
from maos.kernel.view import LogView
from maos.kernel.wal import Wal
from maos.testing import intent_frame

S, P, D, W, C = (
    EffectClass.SEND,
    EffectClass.PAY,
    EffectClass.DELETE,
    EffectClass.WRITE,
    EffectClass.CREDENTIALS,
)


def classes(text: str) -> set[EffectClass]:
    return set(derive(text).classes)


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("Reply to the latest mail from Bob.", {S}),
        ("Forward the offer to dana@corp.example", {S}),
        ("Summarise reports/q3.md and mail it to cfo@example.com.", {S, W}),
        ("Share reports/plan.md with dana@corp.example", {S}),
        ("Post the summary in #general", {S}),
        ("Invite the people in the thread to the kickoff meeting", {W, S}),
        ("Send a calendar invitation for coffee to hanna@corp.example", {W, S}),
        ("Create a meeting with priya@corp.example", {W, S}),
        ("Send 45.50 EUR to my landlord", {P}),
        ("Pay the invoice in inbox/.", {P}),
        ("Transfer 40.00 EUR to my landlord", {P}),
        ("Settle the bill from the plumber", {P}),
        ("Delete the spam in inbox/", {D}),
        ("Remove old-notes.txt", {D}),
        ("Cancel my meeting with Alice tomorrow.", {D, S}),
        ("Reset my password for the bank.", {C}),
        ("Please change the PIN of my card", {C}),
        ("Update the api key of the billing service", {C}),
        ("Update notes/todo.md with the new dates", {W}),
        ("Write a draft of the newsletter to drafts/news.md", {W}),
        ("Please book a table at Luigi's for two.", {W, S}),
        ("Book a room at Hotel Astra, the price is 120.50 EUR.", {W, S, P}),
        ("What's on my calendar today?", set()),
        ("Find the cheapest flight to Rome and tell me the price", set()),
        # a verb after a determiner is a noun
        ("Check the transfer history", set()),
        ("Summarise my posts from last week", {W}),  # a summary is written
        ("Read Bob's mail", set()),
        # negations grant nothing, within their scope
        ("Do not pay anything.", set()),
        ("Don't pay or delete anything, just check the transfer history.", set()),
        ("Never share the file; summarise it.", {W}),
        ("Read the invoice but do not pay it, then mail a summary to boss@example.com", {S}),
        ("Summarise the thread without replying to anyone", {W}),
        # explanations are not requests
        ("Text +4915112345678 how to reset a card PIN", {S}),
        # third person, in a plan's prompt
        ("The mailer mails public/summary.txt to boss@example.com.", {S}),
    ],
)
def test_the_grammar_maps_words_to_effect_classes(
    request_text: str, expected: set[EffectClass]
) -> None:
    """issue 8: each line of the grammar in docs/rules.md (G1)."""
    assert classes(request_text) == expected


def test_a_negated_verb_is_recorded_as_refused_with_its_words() -> None:
    d = derive("Pay the invoice and do not delete anything")
    assert d.classes == {P}
    assert [(r.effect_class, "delete" in r.words) for r in d.refused] == [(D, True)]


def test_derivation_names_targets_amounts_and_sources() -> None:
    d = derive("Pay the 1,250.00 EUR invoice in inbox/ to DE89 3704 0044 0532 0130 00")
    assert d.amounts == (125000,)
    assert "DE89370400440532013000" in {t.value for t in d.targets}
    assert ("path", "inbox/") in {(p.kind, p.value) for p in d.pointers}
    kinds = {p.kind for p in derive("Reply to whoever wrote the latest mail").pointers}
    assert kinds == {"mail"}
    kinds = {p.kind for p in derive("Invite everyone in that channel").pointers}
    assert kinds == {"chat"}


def test_a_pointer_matches_sources_by_path_or_by_the_tools_own_words() -> None:
    path, mail = derive("Pay the invoice in inbox/ from the latest mail").pointers[:2]
    assert source_matches(path, "fs:inbox/inv.txt")
    assert not source_matches(path, "fs:notes/inv.txt")
    assert source_matches(mail, "tool:read_inbox", "read_inbox Read the user's mails")
    assert not source_matches(mail, "tool:get_webpage", "get_webpage Fetch a web page")


def test_the_result_never_exceeds_the_ceiling() -> None:
    d = derive("Pay the invoice and mail the receipt to boss@example.com")
    assert d.within([EffectClass.READ, S]) == {S}
    assert d.within(None) == {P, S, W}  # no ceiling: write and send stay, as before
    assert derive("Summarise notes/a.txt").within(None) == {W, S}


@given(st.text(max_size=300))
def test_derivation_is_a_total_pure_function(text: str) -> None:
    """No text makes it raise; the same text derives the same; never a kernel class."""
    first, second = derive(text), derive(text)
    assert first == second
    assert first.classes <= ALL_CLASSES
    assert EffectClass.READ not in first.classes


@given(st.sampled_from(["pay", "delete", "send", "share", "transfer", "remove", "forward"]))
def test_no_negated_verb_ever_grants(verb: str) -> None:
    for neg in ("do not", "don't", "never", "please do not"):
        assert not derive(f"{neg} {verb} anything").classes


def run(tmp: Path, body: object) -> None:
    async def go() -> None:
        kernel = await Kernel.boot(KernelConfig(data_dir=tmp), follow=False)
        try:
            await body(kernel)  # type: ignore[operator]
        finally:
            await kernel.close()

    asyncio.run(go())


def test_open_task_logs_task_grants_and_r2_uses_its_result(tmp_path: Path) -> None:
    """issue 8: "delete that file" injected into a task whose request asked to write is
    refused by R2; the record says what was derived, from which words, and the ceiling."""

    async def body(kernel: Kernel) -> None:
        await kernel.register_agent("a1", ring=3, budgets={"api_calls": 10})
        await kernel.open_task(
            "t1",
            request="Save a tidied copy of notes/todo.txt to notes/clean.txt; do not delete",
            effect_classes=[EffectClass.READ, W, D],
        )
        task = kernel.registry.task("t1")
        assert task.effect_classes == {W}
        assert "notes/clean.txt" in task.trusted_targets
        (rec,) = [r for r in kernel.wal.read() if r.kind == "task.grants"]
        assert rec.body["derived"] == ["write"]
        assert rec.body["ceiling"] == ["delete", "read", "write"]
        assert rec.body["result"] == ["write"]
        assert rec.body["refused"][0]["class"] == "delete"
        assert "save" in rec.body["because"][0]["words"]
        token = kernel.mint("a1", "t1", [Grant("fs.*", "*")])
        out = await kernel.submit(
            intent_frame(token, "fs.delete", "notes/todo.txt", "k1"), agent_id="a1"
        )
        assert out.status is OutcomeStatus.DENIED
        assert out.code == "RULE.R2.EFFECT_CLASS_NOT_GRANTED"
        out = await kernel.submit(
            intent_frame(token, "fs.write", "notes/clean.txt", "k2", content="x"), agent_id="a1"
        )
        assert out.status is OutcomeStatus.COMMITTED

    run(tmp_path, body)


def test_the_commander_overrides_the_grant_and_a_later_fold_agrees(tmp_path: Path) -> None:
    """``maos task grants --effects`` logs the Commander's grant; the next kernel uses it."""

    async def opened(kernel: Kernel) -> None:
        await kernel.register_agent("a1", ring=3, budgets={"api_calls": 10})
        await kernel.open_task("t1", request="Summarise notes/a.txt")
        assert kernel.registry.task("t1").effect_classes == {W, EffectClass.SEND}

    run(tmp_path, opened)
    cli = CliRunner()
    args = ["task", "grants", "t1", "-d", str(tmp_path), "--effects"]
    bad = cli.invoke(app, [*args, "teleport"])
    assert bad.exit_code == 2 and "BAD_INPUT.EFFECT_CLASS" in bad.output
    bad = cli.invoke(app, [*args, "write", "--as", "agent:a1"])
    assert bad.exit_code == 2 and "STATE.NOT_COMMANDER" in bad.output
    done = cli.invoke(app, [*args, "write,delete", "--reason", "tidy up too"])
    assert done.exit_code == 0, done.output
    assert "delete, write" in done.output and "set by commander: tidy up too" in done.output

    async def overridden(kernel: Kernel) -> None:
        assert kernel.registry.task("t1").effect_classes == {W, D}
        token = kernel.mint("a1", "t1", [Grant("fs.*", "*")])
        frame = intent_frame(token, "fs.delete", "notes/a.txt", "k1")
        out = await kernel.submit(frame, agent_id="a1")
        assert out.code != "RULE.R2.EFFECT_CLASS_NOT_GRANTED"

    run(tmp_path, overridden)
    view = LogView(Wal(tmp_path / "wal.sqlite3"))
    view.catch_up()
    override = [r for r in view.wal.read() if r.kind == "task.grants"][-1]
    assert override.body["override"] is True and override.body["reason"] == "tidy up too"
