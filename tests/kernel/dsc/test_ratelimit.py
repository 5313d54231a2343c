"""Check 2: token buckets per agent and per op, driven only by the input's clock."""

from __future__ import annotations

import pytest
from dsc_support import NOW, code_of, make_input

from maos.kernel.dsc.ratelimit import AgentRates, RateLimit, RateLimitCheck


def limited(overall: RateLimit, **per_op: RateLimit) -> RateLimitCheck:
    check = RateLimitCheck()
    ops = {op.replace("_", "."): limit for op, limit in per_op.items()}
    check.configure("a1", AgentRates(overall=overall, per_op=ops))
    return check


def test_r11_agent_without_configured_limits_is_denied() -> None:
    decision = RateLimitCheck()(make_input())
    assert code_of(decision) == "RULE.R11.NO_LIMITS"
    assert "a1" in decision.reason  # type: ignore[union-attr]


def test_burst_is_allowed_then_the_next_intent_is_denied() -> None:
    check = limited(RateLimit(rate=1, burst=3))
    assert [code_of(check(make_input())) for _ in range(4)] == ["ALLOW"] * 3 + ["DSC.RATE.EXCEEDED"]


def test_tokens_refill_with_the_input_clock() -> None:
    check = limited(RateLimit(rate=2, burst=1))
    assert code_of(check(make_input(now=NOW))) == "ALLOW"
    assert code_of(check(make_input(now=NOW + 0.25))) == "DSC.RATE.EXCEEDED"
    assert code_of(check(make_input(now=NOW + 0.5))) == "ALLOW"


def test_a_clock_stepping_backwards_refills_nothing() -> None:
    check = limited(RateLimit(rate=1, burst=1))
    assert code_of(check(make_input(now=NOW))) == "ALLOW"
    assert code_of(check(make_input(now=NOW - 1000))) == "DSC.RATE.EXCEEDED"
    assert code_of(check(make_input(now=NOW))) == "DSC.RATE.EXCEEDED"


def test_per_op_bucket_limits_one_op_without_starving_the_others() -> None:
    check = limited(RateLimit(rate=1, burst=100), email_send=RateLimit(rate=0.1, burst=1))
    assert code_of(check(make_input("email.send", "x@example.com"))) == "ALLOW"
    denied = check(make_input("email.send", "x@example.com"))
    assert code_of(denied) == "DSC.RATE.EXCEEDED"
    assert "email.send" in denied.reason  # type: ignore[union-attr]
    assert code_of(check(make_input("fs.write", "a.txt"))) == "ALLOW"


def test_default_limits_throttle_outbound_mail_harder_than_writes() -> None:
    check = RateLimitCheck({"a1": AgentRates()})
    mails = [code_of(check(make_input("email.send", "x@example.com"))) for _ in range(6)]
    assert mails.count("ALLOW") == 5


def test_agents_do_not_share_buckets() -> None:
    check = RateLimitCheck({"a1": AgentRates(RateLimit(1, 1)), "a2": AgentRates(RateLimit(1, 1))})
    assert code_of(check(make_input())) == "ALLOW"
    assert code_of(check(make_input())) == "DSC.RATE.EXCEEDED"
    assert code_of(check(make_input(agent_id="a2"))) == "ALLOW"


def test_removed_agent_fails_closed() -> None:
    check = limited(RateLimit())
    check.remove("a1")
    assert code_of(check(make_input())) == "RULE.R11.NO_LIMITS"


def test_unknown_ops_share_one_bucket_so_they_cannot_mint_new_ones() -> None:
    check = limited(RateLimit(rate=1, burst=100))
    check.configure("a1", AgentRates(op_default=RateLimit(rate=0.01, burst=2)))
    results = [code_of(check(make_input(f"x.op_{c}", "t"))) for c in "abc"]
    assert results == ["ALLOW", "ALLOW", "DSC.RATE.EXCEEDED"]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0.5)])
def test_nonsensical_limits_are_rejected(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        RateLimit(rate=rate, burst=burst)
