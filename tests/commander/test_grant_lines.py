"""A decision packet shows what the request asked for (issue 8, item 6): the grant, the
words that asked, what they refused and the ceiling - from the ``task.grants`` record."""

from __future__ import annotations

from maos.commander.grants import grant_lines, latest_grants
from maos.kernel.grants import derive, grants_body
from maos.kernel.types import EffectClass


def test_the_packet_names_the_words_behind_the_grant_and_the_refusals() -> None:
    request = "Pay the invoice in inbox/ but do not delete anything"
    body = grants_body(
        "t1", request, derive(request), [EffectClass.READ, EffectClass.PAY], "commander"
    )
    lines = grant_lines(body)
    assert lines[0] == "task grants: pay"
    assert any("pay ('pay the invoice" in line for line in lines)
    assert any(line.startswith("refused by the words: delete") for line in lines)
    assert lines[-1] == "ceiling: pay, read"


def test_an_override_says_who_set_it_and_the_last_record_wins() -> None:
    first = {"task_id": "t1", "result": ["read"], "override": False}
    second = {
        "task_id": "t1",
        "result": ["pay"],
        "override": True,
        "principal": "commander",
        "reason": "after all",
    }
    body = latest_grants([("task.grants", first), ("task.opened", {}), ("task.grants", second)])
    assert grant_lines(body["t1"]) == ["task grants: pay (set by commander: after all)"]
    assert grant_lines(None) == []
