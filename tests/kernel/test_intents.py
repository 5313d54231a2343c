"""The Input Sanitizer: total over every input, specific about every refusal."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maos.kernel.errors import InputError
from maos.kernel.intents import (
    MAX_FRAME_BYTES,
    MAX_PARAMS_BYTES,
    intent_to_wire,
    parse_intent,
    thaw,
)
from maos.kernel.types import Cost, Intent


def frame(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task_id": "t1",
        "op": "email.send",
        "target": "cfo@example.com",
        "idempotency_key": "report-q3:1",
        "token": "EqUBCjsKB21haWxlchgDIgkKBwgKEgMY",
    }
    return {**base, **fields}


def parse(raw: object) -> Intent:
    return parse_intent(raw, agent_id="a1", intent_id="i-1")


def refused(raw: object) -> InputError:
    with pytest.raises(InputError) as info:
        parse(raw)
    return info.value


def test_valid_frame_becomes_an_intent_of_the_authenticated_agent() -> None:
    intent = parse(
        frame(
            params={"subject": "Q3", "body": "Numbers attached.", "attachments": ["a.pdf"]},
            cost={"api_calls": 1},
            extra_targets=["board@example.com"],
        )
    )
    assert intent.agent_id == "a1"
    assert intent.intent_id == "i-1"
    assert intent.targets == ("cfo@example.com", "board@example.com")
    assert intent.cost == Cost(api_calls=1)
    assert intent.params["attachments"] == ("a.pdf",)


def test_content_is_derived_from_every_key_and_string_in_params() -> None:
    intent = parse(frame(params={"subject": "Hi", "nested": {"deep": ["x", 1, "y"]}}))
    assert intent.content.split("\n") == ["subject", "Hi", "nested", "deep", "x", "y"]


def test_content_cannot_be_supplied_by_the_agent() -> None:
    error = refused(frame(content="harmless"))
    assert error.code == "BAD_INPUT.UNKNOWN_FIELD"
    assert "'content'" in error.message


def test_params_are_read_only_all_the_way_down() -> None:
    intent = parse(frame(params={"a": {"b": [1]}}))
    with pytest.raises(TypeError):
        intent.params["a"]["c"] = 2  # type: ignore[index]
    assert intent.params["a"]["b"] == (1,)
    assert thaw(intent.params) == {"a": {"b": [1]}}


def test_agent_id_in_the_frame_must_be_the_authenticated_one() -> None:
    assert parse(frame(agent_id="a1")).agent_id == "a1"
    assert refused(frame(agent_id="admin")).code == "BAD_INPUT.AGENT_MISMATCH"
    assert refused(frame(intent_id="i-2")).code == "BAD_INPUT.INTENT_MISMATCH"


@pytest.mark.parametrize("field", ["task_id", "op", "target", "idempotency_key", "token"])
def test_each_required_field_is_named_when_missing(field: str) -> None:
    raw = frame()
    del raw[field]
    error = refused(raw)
    assert error.code == "BAD_INPUT.MISSING_FIELD"
    assert error.fields["field"] == field
    assert field in error.message
    assert error.fields["intent_id"] == "i-1"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"idempotency_key": "has space"}, "BAD_INPUT.BAD_ID"),
        ({"idempotency_key": ""}, "BAD_INPUT.BAD_ID"),
        ({"idempotency_key": "k" * 129}, "BAD_INPUT.TOO_LARGE"),
        ({"task_id": "t/1"}, "BAD_INPUT.BAD_ID"),
        ({"task_id": 7}, "BAD_INPUT.TYPE"),
        ({"op": "Email.Send"}, "BAD_INPUT.BAD_OP"),
        ({"op": "email"}, "BAD_INPUT.BAD_OP"),
        ({"op": "email.send2"}, "BAD_INPUT.BAD_OP"),
        ({"target": "cfo@example.com\r\nBcc: x@evil.example"}, "BAD_INPUT.BAD_CHAR"),
        ({"target": "a\u202eexe.txt"}, "BAD_INPUT.BAD_CHAR"),
        ({"target": "a\u200bb"}, "BAD_INPUT.BAD_CHAR"),
        ({"target": "x" * 2049}, "BAD_INPUT.TOO_LARGE"),
        ({"token": "abc def"}, "BAD_INPUT.BAD_CHAR"),
        ({"token": None}, "BAD_INPUT.TYPE"),
        ({"params": []}, "BAD_INPUT.NOT_AN_OBJECT"),
        ({"params": {"body": "a\x00b"}}, "BAD_INPUT.BAD_CHAR"),
        ({"params": {"body": "ig\x08nore"}}, "BAD_INPUT.BAD_CHAR"),
        ({"params": {"body": "\ud800"}}, "BAD_INPUT.BAD_CHAR"),
        ({"params": {"n": float("nan")}}, "BAD_INPUT.TYPE"),
        ({"params": {"n": 2**64}}, "BAD_INPUT.RANGE"),
        ({"params": {"n": (1, 2)}}, "BAD_INPUT.TYPE"),
        ({"params": {"n": b"bytes"}}, "BAD_INPUT.TYPE"),
        ({"params": {1: "x"}}, "BAD_INPUT.BAD_KEY"),
        ({"params": {"": "x"}}, "BAD_INPUT.BAD_KEY"),
        ({"params": {"a\nb": "x"}}, "BAD_INPUT.BAD_KEY"),
        ({"params": {"body": "x" * (MAX_PARAMS_BYTES + 1)}}, "BAD_INPUT.TOO_LARGE"),
        ({"cost": {"tokens": -1}}, "BAD_INPUT.RANGE"),
        ({"cost": {"money_cents": 10**12 + 1}}, "BAD_INPUT.RANGE"),
        ({"cost": {"tokens": True}}, "BAD_INPUT.TYPE"),
        ({"cost": {"tokens": 1.0}}, "BAD_INPUT.TYPE"),
        ({"cost": {"euros": 1}}, "BAD_INPUT.UNKNOWN_FIELD"),
        ({"cost": 5}, "BAD_INPUT.NOT_AN_OBJECT"),
        ({"expected_version": -1}, "BAD_INPUT.RANGE"),
        ({"expected_version": "3"}, "BAD_INPUT.TYPE"),
        ({"extra_targets": "a@example.com"}, "BAD_INPUT.TYPE"),
        ({"extra_targets": [""]}, "BAD_INPUT.EMPTY"),
        ({"extra_targets": [f"u{i}@example.com" for i in range(64)]}, "BAD_INPUT.TOO_LARGE"),
        ({"surprise": 1}, "BAD_INPUT.UNKNOWN_FIELD"),
    ],
)
def test_malformed_fields_get_specific_codes(fields: dict[str, Any], code: str) -> None:
    assert refused(frame(**fields)).code == code


def test_unknown_but_well_formed_ops_are_left_to_rule_r1() -> None:
    assert parse(frame(op="bank.transfer")).op == "bank.transfer"


def test_params_depth_limit_is_eight_levels() -> None:
    ok: Any = "leaf"
    for _ in range(8):  # params itself is the first of eight containers
        ok = {"k": ok}
    parse(frame(params=ok))
    assert refused(frame(params={"k": ok})).code == "BAD_INPUT.TOO_DEEP"


def test_absurdly_deep_python_values_are_refused_without_recursion() -> None:
    deep: Any = []
    for _ in range(200_000):
        deep = [deep]
    assert refused(frame(params={"x": deep})).code == "BAD_INPUT.TOO_DEEP"


def test_frames_may_arrive_as_json_bytes_or_text() -> None:
    encoded = orjson.dumps(frame(params={"body": "hé"}))
    assert parse(encoded) == parse(encoded.decode())
    assert refused(b"{not json").code == "BAD_INPUT.JSON"
    assert refused(b"\xff\xfe").code == "BAD_INPUT.JSON"
    assert refused(b"[" * 5000 + b"]" * 5000).code == "BAD_INPUT.JSON"
    assert refused(b"[1, 2]").code == "BAD_INPUT.NOT_AN_OBJECT"
    assert refused(b" " * (MAX_FRAME_BYTES + 1)).code == "BAD_INPUT.TOO_LARGE"


@pytest.mark.parametrize("raw", [None, 3, [], "null", object(), {"a": 1}.keys()])
def test_non_objects_are_refused(raw: object) -> None:
    assert refused(raw).code in {"BAD_INPUT.NOT_AN_OBJECT", "BAD_INPUT.JSON"}


def test_dict_subclasses_are_not_trusted_to_behave() -> None:
    class Sneaky(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("ran code while being read")

    assert refused(frame(params=Sneaky(a=1))).code == "BAD_INPUT.NOT_AN_OBJECT"
    assert refused(Sneaky(frame())).code == "BAD_INPUT.NOT_AN_OBJECT"


# -- properties -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
weird_values = json_values | st.binary(max_size=20) | st.tuples(json_scalars) | st.just(object())
field_names = st.sampled_from(
    [
        "task_id",
        "op",
        "target",
        "idempotency_key",
        "token",
        "params",
        "cost",
        "expected_version",
        "extra_targets",
        "agent_id",
        "intent_id",
        "content",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names | st.text(max_size=10), weird_values, max_size=8))
def test_arbitrary_frames_raise_nothing_but_input_error(raw: dict[str, Any]) -> None:
    try:
        parse(raw)
    except InputError as exc:
        assert exc.code.startswith("BAD_INPUT.")
        assert exc.code != "BAD_INPUT.INVALID", exc.__cause__


@settings(max_examples=300, deadline=None)
@given(field_names, weird_values)
def test_one_bad_field_in_a_good_frame_raises_only_input_error(name: str, value: Any) -> None:
    try:
        parse(frame(**{name: value}))
    except InputError as exc:
        assert exc.code != "BAD_INPUT.INVALID", exc.__cause__


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_and_text_raise_nothing_but_input_error(raw: bytes | str) -> None:
    try:
        parse(raw)
    except InputError as exc:
        assert exc.code != "BAD_INPUT.INVALID", exc.__cause__


ids = st.text(alphabet="abcXYZ019._:-", min_size=1, max_size=20)
safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
).filter(lambda s: not any((c < " " and c not in "\t\n\r") or c == "\x7f" for c in s))
printable = st.text(max_size=30).filter(str.isprintable)
param_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(printable.filter(bool), inner, max_size=3)
    ),
    max_leaves=12,
)
valid_frames = st.fixed_dictionaries(
    {
        "task_id": ids,
        "op": st.from_regex(r"[a-z]{1,6}\.[a-z_]{1,8}", fullmatch=True),
        "target": printable,
        "idempotency_key": ids,
        "token": st.text(alphabet="AZaz09-_=", max_size=40),
    },
    optional={
        "params": st.dictionaries(printable.filter(bool), param_values, max_size=4),
        "cost": st.fixed_dictionaries(
            {},
            optional={
                "tokens": st.integers(0, 10**12),
                "api_calls": st.integers(0, 10**12),
                "money_cents": st.integers(0, 10**12),
            },
        ),
        "expected_version": st.none() | st.integers(0, 2**63 - 1),
        "extra_targets": st.lists(printable.filter(bool), max_size=4),
    },
)


@settings(max_examples=300, deadline=None)
@given(valid_frames)
def test_valid_intents_round_trip_through_the_wire(raw: dict[str, Any]) -> None:
    intent = parse(raw)
    wire = intent_to_wire(intent)
    assert parse(wire) == intent
    assert parse(orjson.dumps(wire)) == intent
    assert parse(orjson.dumps(intent_to_wire(intent), default=dict)) == intent


def test_issue9_a_frame_naming_a_key_twice_is_refused() -> None:
    frame = b'{"op": "fs.read", "target": "a", "target": "../../etc/passwd"}'
    with pytest.raises(InputError) as info:
        parse_intent(frame, agent_id="a1", intent_id="i1")
    assert info.value.code == "BAD_INPUT.DUPLICATE_KEY"
