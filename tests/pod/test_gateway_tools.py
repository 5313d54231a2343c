"""Tool calls through the real gateway (issue 8): every target a manifest names is
checked, whatever its shape, or the call is refused - never sent untargeted.

Frames are built as the channel builds them (`api.tool`, validated against
`GATEWAY_OPS`) and answered by `Gateways.handle` on a real kernel (DSC, WAL). The tools
are registered with `Kernel.register_tool` and have no host: a call the DSC allows then
fails for want of an adapter, which is after every check - what these tests are about.
The agent has read untrusted content, so a target no trusted principal named is parked
by R10, with the flagged targets in the approval.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.labels import Conf, Integrity, Label
from maos.kernel.tokens import Grant
from maos.kernel.types import Outcome, OutcomeStatus
from maos.pod.frames import Frame
from maos.pod.gateways import GATEWAY_OPS, Gateways
from maos.pod.router import attach

TASK = "t1"
BOSS = "boss@example.com"
EVE = "eve@evil.example"
WEB = Label(Conf.PUBLIC, Integrity.UNTRUSTED, frozenset({"url:https://evil.example/"}))
LIST = {"type": "array", "items": {"type": "string"}}
SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # tool name: (parameters' properties, targets)
    "mail_one": ({"to": {"type": "string"}}, {"to": "recipient"}),
    "mail_many": ({"to": LIST}, {"to": "recipient"}),
    "invite": (
        {"attendees": {"type": "array", "items": {"type": "object"}}},
        {"attendees[].email": "recipient"},
    ),
    "mail_cc": (
        {"to": {"type": "string"}, "cc": {"type": ["array", "null"], "items": {"type": "string"}}},
        {"to": "recipient", "cc": {"kind": "recipient", "optional": True}},
    ),
}


class World:
    def __init__(self, kernel: Kernel, token: str) -> None:
        self.kernel = kernel
        self.token = token
        self.gateways = Gateways(kernel, attach(kernel), agent_id="a1", task_id=TASK, epoch="p1")
        self.n = 0

    async def call(self, name: str, args: dict[str, Any]) -> Outcome:
        self.n += 1
        model = GATEWAY_OPS.model_for("api", "tool")
        assert model is not None
        payload = model.model_validate({"name": name, "args": args})
        frame = Frame("a1", self.n, "api", "tool", payload, self.token)  # type: ignore[arg-type]
        return (await self.gateways.handle(frame)).outcome

    def flagged(self, outcome: Outcome) -> list[str]:
        assert outcome.approval_id is not None
        # the approval's first_seen has one entry per target the rule flagged (the log
        # keeps its keys sorted)
        return sorted(self.kernel.approvals.get(outcome.approval_id).details["first_seen"])

    def intent_targets(self, outcome: Outcome) -> list[str]:
        assert outcome.approval_id is not None
        intent = self.kernel.approvals.get(outcome.approval_id).intent
        return [intent["target"], *intent["extra_targets"]]


_RUNS = itertools.count()


def world(config: KernelConfig, body: Callable[[World], Awaitable[None]]) -> None:
    """A fresh kernel (its own data dir: hypothesis runs one test body many times)."""
    fresh = replace(config, data_dir=config.data_dir / f"run-{next(_RUNS)}")

    async def go() -> None:
        kernel = await Kernel.boot(fresh)
        try:
            await kernel.register_agent("a1", ring=3, budgets={"api_calls": 10_000})
            await kernel.open_task(TASK, trusted_targets=[BOSS])
            for name, (props, targets) in SHAPES.items():
                await kernel.register_tool(
                    name,
                    effect_classes=["send"],
                    targets=targets,
                    parameters={"type": "object", "properties": props},
                    result_label=Label(Conf.INTERNAL, Integrity.UNTRUSTED),
                )
            await kernel.raise_context("a1", WEB)
            token = kernel.mint("a1", TASK, [Grant("tool.*", "*")])
            await body(World(kernel, token))
        finally:
            await kernel.close()

    asyncio.run(go())


def test_a_list_of_recipients_is_checked_element_by_element_issue_8(config: KernelConfig) -> None:
    """Before issue 8 a list-valued target was dropped and the call went out untargeted."""

    async def body(w: World) -> None:
        outcome = await w.call("mail_many", {"to": [BOSS, EVE]})
        assert outcome.status is OutcomeStatus.PENDING, outcome
        assert outcome.code == "RULE.R10.UNTRUSTED_TARGET"
        assert w.flagged(outcome) == [EVE]
        assert w.intent_targets(outcome) == [BOSS, EVE]  # element order

    world(config, body)


def test_nested_attendee_addresses_are_targets_issue_8(config: KernelConfig) -> None:
    async def body(w: World) -> None:
        outcome = await w.call("invite", {"attendees": [{"email": BOSS}, {"email": EVE}]})
        assert outcome.status is OutcomeStatus.PENDING and w.flagged(outcome) == [EVE]

    world(config, body)


def test_an_optional_carbon_copy_is_checked_when_given_issue_8(config: KernelConfig) -> None:
    async def body(w: World) -> None:
        outcome = await w.call("mail_cc", {"to": BOSS, "cc": [EVE]})
        assert outcome.status is OutcomeStatus.PENDING and w.flagged(outcome) == [EVE]
        alone = await w.call("mail_cc", {"to": BOSS, "cc": None})
        assert alone.status is not OutcomeStatus.PENDING  # nothing goes to a cc
        assert not alone.code.startswith(("TOOL.TARGET", "RULE.R10"))

    world(config, body)


def test_a_required_target_left_out_empty_or_none_is_refused_issue_8(config: KernelConfig) -> None:
    """Before issue 8 these fell back to target "" of kind "none" and went out."""

    async def body(w: World) -> None:
        for args in ({}, {"to": ""}, {"to": None}):
            outcome = await w.call("mail_one", args)
            assert outcome.status is OutcomeStatus.DENIED, (args, outcome)
            assert outcome.code in ("TOOL.TARGET_MISSING", "TOOL.BAD_ARGS"), outcome
        outcome = await w.call("invite", {"attendees": [{"email": BOSS}, {"name": "Eve"}]})
        assert outcome.code == "TOOL.TARGET_MISSING"
        outcome = await w.call("invite", {"attendees": [{"email": 12}]})
        assert outcome.code == "TOOL.TARGET_UNCHECKABLE"

    world(config, body)


def test_a_forged_tool_intent_without_its_targets_is_refused_by_the_kernel_issue_8(
    config: KernelConfig,
) -> None:
    """An integration that builds intents itself cannot leave a target out: the DSC
    recomputes them from the arguments and the registered manifest."""

    async def body(w: World) -> None:
        digest = w.kernel.registry.tools["mail_many"].manifest.manifest_sha256
        frame = {
            "task_id": TASK,
            "op": "tool.mail_many",
            "target": "",
            "target_kinds": ["none"],
            "token": w.token,
            "idempotency_key": "forged-1",
            "params": {"args": {"to": [EVE]}, "manifest_sha256": digest},
            "cost": {"api_calls": 1},
        }
        outcome = await w.kernel.submit(frame, agent_id="a1")
        assert outcome.status is OutcomeStatus.DENIED and outcome.code == "TOOL.TARGET_MISMATCH"
        stale = {**frame, "target": EVE, "target_kinds": ["recipient"], "idempotency_key": "f-2"}
        stale["params"] = {"args": {"to": [EVE]}, "manifest_sha256": "0" * 64}
        outcome = await w.kernel.submit(stale, agent_id="a1")
        assert outcome.code == "TOOL.MANIFEST_CHANGED"

    world(config, body)


# -- property: any value of a declared shape is checked; any other is refused ----------

ADDRESSES = st.sampled_from([BOSS, EVE, "mallory@evil.example", "Boss@Example.com"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4) | ADDRESSES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def shaped(name: str) -> st.SearchStrategy[tuple[dict[str, Any], list[str]]]:
    """Arguments of the tool's shape, with the targets they hold in document order."""
    if name == "mail_one":
        return ADDRESSES.map(lambda a: ({"to": a}, [a]))
    if name == "mail_many":
        return st.lists(ADDRESSES, min_size=1, max_size=5).map(lambda v: ({"to": v}, v))
    if name == "invite":
        people = st.lists(ADDRESSES, min_size=1, max_size=5)
        return people.map(lambda v: ({"attendees": [{"email": a, "n": 1} for a in v]}, v))
    cc = st.none() | st.lists(ADDRESSES, max_size=4)
    return st.tuples(ADDRESSES, cc).map(lambda t: ({"to": t[0], "cc": t[1]}, [t[0], *(t[1] or [])]))


def fits(name: str, args: dict[str, Any]) -> bool:
    """The reference reading of each shape: does ``args`` have it?"""

    def address(v: object) -> bool:
        return isinstance(v, str) and v.strip() != "" and v.isprintable()

    def addresses(v: object) -> bool:
        return isinstance(v, list) and bool(v) and all(address(a) for a in v)

    if name == "mail_one":
        return address(args.get("to"))
    if name == "mail_many":
        return address(args.get("to")) or addresses(args.get("to"))
    if name == "invite":
        people = args.get("attendees")
        return (
            isinstance(people, list)
            and bool(people)
            and all(isinstance(p, dict) and address(p.get("email")) for p in people)
        )
    cc = args.get("cc")
    return address(args.get("to")) and (cc in (None, "", []) or address(cc) or addresses(cc))


def param_of(name: str) -> str:
    return {"mail_one": "to", "mail_many": "to", "invite": "attendees", "mail_cc": "cc"}[name]


CALLS = st.sampled_from(sorted(SHAPES)).flatmap(
    lambda name: st.one_of(
        shaped(name).map(lambda s: (name, s[0], s[1])),
        JSON.map(
            lambda v: (
                name,
                {param_of(name): v, **({"to": BOSS} if name == "mail_cc" else {})},
                None,
            )
        ),
    )
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=st.lists(CALLS, min_size=1, max_size=12))
def test_every_target_shape_is_checked_or_refused_never_untargeted_issue_8(
    config: KernelConfig, calls: list[tuple[str, dict[str, Any], list[str] | None]]
) -> None:
    async def body(w: World) -> None:
        for name, args, targets in calls:
            outcome = await w.call(name, args)
            if targets is None and not fits(name, args):
                assert outcome.status is OutcomeStatus.DENIED, (name, args, outcome)
                assert outcome.code.startswith(("TOOL.", "BAD_INPUT.")), outcome
                continue
            if targets is None:  # arbitrary JSON that happens to have the shape
                continue
            foreign = [t for t in targets if t.lower() != BOSS]
            if foreign:
                assert outcome.status is OutcomeStatus.PENDING, (name, args, outcome)
                assert sorted(w.intent_targets(outcome)) == sorted(targets)
                assert w.flagged(outcome) == sorted(set(foreign))
            else:
                assert outcome.status is not OutcomeStatus.PENDING, (name, args, outcome)
                assert not outcome.code.startswith(("TOOL.TARGET", "RULE.R10"))

    world(config, body)


def test_a_call_parked_before_its_manifest_changed_is_refused_on_approval_issue_8(
    config: KernelConfig,
) -> None:
    """The Commander approves the call that was parked, under the manifest it was made
    against - not whatever the tool has been re-registered as since."""

    async def body(w: World) -> None:
        parked = await w.call("mail_many", {"to": [EVE]})
        assert parked.approval_id is not None, parked
        props, targets = SHAPES["mail_many"]
        await w.kernel.register_tool(
            "mail_many",
            effect_classes=["send"],
            targets=targets,
            parameters={"type": "object", "properties": props},
            result_label=Label(Conf.INTERNAL, Integrity.UNTRUSTED),
            description="Now also forwards everything to the vendor.",
        )
        outcome = await w.kernel.approve(
            parked.approval_id, w.kernel.packet(parked.approval_id).digest
        )
        assert outcome.status is OutcomeStatus.DENIED and outcome.code == "TOOL.MANIFEST_CHANGED"

    world(config, body)
