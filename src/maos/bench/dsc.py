"""DSC decision latency and throughput, with Biscuit's own authorizer as the baseline.

The intent is realistic: an email with about 1 KB of body text, checked by all seven
checks with a real Biscuit token (cached after its first verification, as in the
kernel). The baseline in the same run is one full Biscuit Datalog authorization of an
already-parsed token: what check 1 alone would cost without the compiled fast path.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import biscuit_auth

from maos.kernel.dsc.base import AgentView, CheckInput, TaskView
from maos.kernel.dsc.budget import Budget, BudgetLedger
from maos.kernel.dsc.capability import CapabilityCheck
from maos.kernel.dsc.locks import LockTable
from maos.kernel.dsc.pipeline import Pipeline, standard_pipeline
from maos.kernel.dsc.ratelimit import AgentRates, RateLimit, RateLimitCheck
from maos.kernel.intents import parse_intent
from maos.kernel.tokens import Grant, TokenAuthority
from maos.kernel.types import Allow

BODY = (
    "Hello Dana, please find the quarterly summary below. Revenue grew twelve percent "
    "against the same quarter last year, driven by the enterprise segment; churn held at "
    "two percent. Operating costs rose with the new support team. "
) * 5
TASK = "bench-task"
NODE = "bench-node"


def _world(
    tmp: Path, agents: int
) -> tuple[Pipeline, list[CheckInput], TokenAuthority, BudgetLedger]:
    authority = TokenAuthority(tmp / "keys", NODE)
    rates = RateLimitCheck()
    ledger = BudgetLedger()
    huge = Budget(tokens=10**12, api_calls=10**12, money_cents=0)
    ledger.set_limits(huge, task_id=TASK)
    wide_open = AgentRates(
        overall=RateLimit(10**9, 10**9), per_op={}, op_default=RateLimit(10**9, 10**9)
    )
    pipeline = standard_pipeline(
        CapabilityCheck(authority),
        ratelimit=rates,
        ledger=ledger,
        locks=LockTable(),
        protected=(str(tmp),),
    )
    task = TaskView(TASK, str(tmp / "ws"), frozenset({"dana@example.com"}))
    now = time.time()
    inputs = []
    for n in range(agents):
        agent_id = f"agent-{n}"
        rates.configure(agent_id, wide_open)
        ledger.set_limits(huge, agent_id=agent_id)
        token = authority.mint(
            agent_id=agent_id,
            task_id=TASK,
            grants=[Grant("fs.read", "reports/*"), Grant("email.send", "dana@example.com")],
            now=now,
        )
        raw = {
            "task_id": TASK,
            "op": "email.send",
            "target": "dana@example.com",
            "token": token,
            "idempotency_key": f"k-{n}",
            "params": {"subject": "Q3 summary", "body": BODY},
            "cost": {"api_calls": 1},
        }
        intent = parse_intent(raw, agent_id=agent_id, intent_id=f"i-{n}")
        inputs.append(CheckInput(intent, AgentView(agent_id, 3), task, now, NODE))
    return pipeline, inputs, authority, ledger


def _decide(pipeline: Pipeline, inp: CheckInput, ledger_settle: Any) -> None:
    decision = pipeline.decide(inp)
    if not isinstance(decision, Allow):
        raise RuntimeError(f"bench intent was not allowed: {decision}")
    ledger_settle(inp.intent.intent_id, committed=False)


def _biscuit_baseline(authority: TokenAuthority, token: str, n: int) -> float:
    """µs per full Datalog authorization of a parsed token (Biscuit's own path)."""
    parsed = biscuit_auth.Biscuit.from_base64(token, authority.public_key)
    facts = {
        "op": "email.send",
        "res": "dana@example.com",
        "now": datetime.now(tz=UTC),
        "node": NODE,
    }
    code = (
        "operation({op}); resource({res}); amount(0); time({now}); node({node}); "
        'holder("agent-0"); allow if true;'
    )
    start = time.perf_counter()
    for _ in range(n):
        builder = biscuit_auth.AuthorizerBuilder(code, facts)
        # The 1 ms default can deny on a busy machine; biscuit's stubs lag its runtime here.
        limits = builder.limits()  # type: ignore[attr-defined]
        limits.max_time = timedelta(seconds=10)
        builder.set_limits(limits)  # type: ignore[attr-defined]
        builder.build(parsed).authorize()
    return (time.perf_counter() - start) / n * 1e6


def measure(*, quick: bool) -> dict[str, Any]:
    samples = 5_000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="maos-bench-") as tmp:
        pipeline, inputs, authority, ledger = _world(Path(tmp), 1000)
        settle = ledger.settle
        one = inputs[0]
        for inp in inputs:  # fill the token cache: verification happens once per token
            _decide(pipeline, inp, settle)
        lat = []
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            pipeline.decide(one)
            lat.append(time.perf_counter_ns() - t0)
            settle(one.intent.intent_id, committed=False)
        lat.sort()
        start = time.perf_counter()
        total = 0
        for _ in range(samples // len(inputs) + 1):
            for inp in inputs:
                _decide(pipeline, inp, settle)
                total += 1
        rate = total / (time.perf_counter() - start)
        baseline = _biscuit_baseline(authority, one.intent.token, 500 if quick else 2_000)
    p50 = statistics.median(lat) / 1000
    return {
        "dsc_decision_p50_us": round(p50, 2),
        "dsc_decision_p99_us": round(lat[int(len(lat) * 0.99)] / 1000, 2),
        "dsc_decisions_per_s_1000_agents": round(rate),
        "biscuit_full_authorize_us": round(baseline, 2),
        "ratio_dsc_p50_vs_biscuit_authorize": round(p50 / baseline, 3),
        "target_dsc_p50_us": 30,
        "target_decisions_per_s": 50_000,
    }
