"""The one manifest validator (issue 8): strict manifests, every target a call holds, and
exact decimal amounts. The gateway's and the DSC's side are in tests/pod/test_gateways.py
and tests/kernel/dsc/test_grants_by_class.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maos.kernel.manifest import MAX_TARGETS, ManifestError, ToolManifest, parse_manifest
from maos.kernel.types import EffectClass


def raw(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "invite",
        "description": "Invite people.",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": ["string", "array"]},
                "cc": {"type": ["array", "null"], "items": {"type": "string"}},
                "attendees": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"email": {"type": "string"}}},
                },
                "count": {"type": "integer"},
                "amount": {"type": "number"},
                "cents": {"type": "integer"},
                "currency": {"type": "string"},
            },
        },
        "effect_classes": ["send"],
        "targets": {"to": "recipient"},
        "result_label": {"conf": "internal", "integrity": "untrusted"},
    }
    base.update(over)
    return base


def invite(targets: dict[str, Any], **over: Any) -> ToolManifest:
    return parse_manifest(raw(targets=targets, **over))


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": "Bad-Name"}, "name"),
        ({"effect_classes": "teleport"}, "effect_classes"),
        ({"effect_classes": []}, "effect_classes"),
        ({"effect_classes": ["kernel"]}, "effect_classes"),
        ({"targets": {"nope": "recipient"}}, "targets.nope"),
        ({"targets": {"to": "pigeon"}}, "targets.to"),
        ({"targets": {"count": "recipient"}}, "targets.count"),  # an int is no target
        ({"targets": {"to.x": "recipient"}}, "targets.to.x"),  # a string has no fields
        ({"targets": {"attendees[].name": "recipient"}}, "targets.attendees[].name"),
        ({"targets": {"attendees.email": "recipient"}}, "targets.attendees.email"),
        ({"targets": {"to": {"kind": "recipient", "optional": "yes"}}}, "targets.to"),
        ({"targets": {"to": {"kind": "recipient", "extra": 1}}}, "targets.to"),
        ({"targets": {"to[": "recipient"}}, "targets.to["),
        ({"targets": {"to" + ".a" * 9: "recipient"}}, "targets.to"),
        ({"amount": "amount"}, "amount"),  # cents must be an integer parameter
        ({"amount": {"param": "cents", "unit": "pence"}}, "amount"),
        ({"amount": {"param": "amount", "unit": "decimal", "currency_param": "count"}}, "amount"),
        ({"result_label": {"conf": "internal"}}, "result_label"),
        ({"accepts": "everyone"}, "accepts"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"parameters": {"type": "array"}}, "parameters"),
        ({"surprise": True}, "surprise"),
        ({"effect_class": "send"}, "effect_class"),  # both the old and the new key
    ],
)
def test_a_bad_manifest_is_refused_naming_its_field_issue_8(
    over: dict[str, Any], field: str
) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest(raw(**over))
    assert err.value.code == "TOOL.BAD_MANIFEST"
    assert err.value.fields["field"].startswith(field.split("[")[0][:9])
    assert field.split(".")[0] in err.value.message


def test_the_normalised_record_reads_back_the_same_and_its_digest_sees_every_change() -> None:
    m = invite(
        {"to": "recipient", "cc": {"kind": "recipient", "optional": True}},
        effect_classes=["send", "irreversible", "send"],
        amount={"param": "amount", "unit": "decimal", "currency_param": "currency"},
    )
    record = m.record()
    assert list(record["targets"]) == ["cc", "to"]  # path order, whatever was written
    assert record["effect_classes"] == ["delete", "send"]  # most severe first, once each
    assert record["targets"] == {
        "to": {"kind": "recipient", "optional": False},
        "cc": {"kind": "recipient", "optional": True},
    }
    assert record["amount"] == {"param": "amount", "unit": "decimal", "currency_param": "currency"}
    assert parse_manifest(record) == m
    assert m.effect_class is EffectClass.DELETE and m.external is True
    changed = parse_manifest({**record, "description": "Invite people. Also pay."})
    assert changed.manifest_sha256 != m.manifest_sha256


def test_records_written_before_issue_8_still_replay() -> None:
    old = raw(targets={"to": "recipient"}, amount_param="cents", external=True, accepts="public")
    old["effect_class"] = old.pop("effect_classes")[0]
    old["amount_param"] = old.pop("amount_param")
    m = parse_manifest(old)
    assert m.effect_classes == (EffectClass.SEND,) and m.amount is not None


SHAPES = {
    "to": "recipient",
    "cc": {"kind": "recipient", "optional": True},
    "attendees[].email": "recipient",
}


@pytest.mark.parametrize(
    ("args", "found"),
    [
        (
            {"to": "a@x.example", "attendees": [{"email": "b@x.example"}]},
            ["attendees[0].email", "to"],
        ),
        (
            {"to": ["a@x.example", "c@x.example"], "cc": None, "attendees": [{"email": "b@x"}]},
            ["attendees[0].email", "to[0]", "to[1]"],
        ),
        (
            {"to": "a@x", "cc": ["d@x", "e@x"], "attendees": [{"email": "b@x"}, {"email": "f@x"}]},
            ["attendees[0].email", "attendees[1].email", "cc[0]", "cc[1]", "to"],
        ),
        ({"to": "a@x", "cc": [], "attendees": [{"email": "b@x"}]}, ["attendees[0].email", "to"]),
    ],
)
def test_every_value_at_a_declared_path_is_a_target_in_order_issue_8(
    args: dict[str, Any], found: list[str]
) -> None:
    targets = invite(SHAPES).targets_of(args)
    assert [t.where for t in targets] == found
    assert all(t.kind == "recipient" and t.value in str(args) for t in targets)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"attendees": [{"email": "b@x"}]}, "TOOL.TARGET_MISSING"),  # required, absent
        ({"to": None, "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_MISSING"),
        ({"to": "", "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_MISSING"),
        ({"to": [], "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_MISSING"),
        ({"to": "a@x", "attendees": []}, "TOOL.TARGET_MISSING"),
        # one attendee without an address would be invited unchecked
        ({"to": "a@x", "attendees": [{"email": "b@x"}, {"name": "Eve"}]}, "TOOL.TARGET_MISSING"),
        ({"to": 7, "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": ["a@x", ["b@x"]], "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": ["a@x", ""], "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": {"email": "a@x"}, "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": "a@x", "attendees": {"email": "b@x"}}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": "a@x", "attendees": ["b@x"]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": "a@x", "attendees": [{"email": 5}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": "a@x\nb@x", "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": "  ", "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        ({"to": "a@x", "cc": 3, "attendees": [{"email": "b@x"}]}, "TOOL.TARGET_UNCHECKABLE"),
        (
            {"to": [f"u{i}@x" for i in range(MAX_TARGETS)], "attendees": [{"email": "b@x"}]},
            "TOOL.TARGET_UNCHECKABLE",
        ),
    ],
)
def test_a_target_that_cannot_be_checked_is_a_refusal_never_dropped_issue_8(
    args: dict[str, Any], code: str
) -> None:
    with pytest.raises(ManifestError) as err:
        invite(SHAPES).targets_of(args)
    assert err.value.code == code


def test_an_optional_target_left_out_sends_nothing_and_a_targetless_tool_has_none() -> None:
    m = invite({"cc": {"kind": "recipient", "optional": True}})
    assert m.targets_of({}) == () and m.targets_of({"cc": None}) == ()
    assert invite({}).targets_of({"to": "anyone@x"}) == ()


@pytest.mark.parametrize(
    ("value", "cents"),
    [(12, 1200), (12.34, 1234), ("12.34", 1234), ("0.1", 10), (0.1, 10), ("12.340", 1234)],
)
def test_decimal_amounts_convert_exactly_issue_8(value: object, cents: int) -> None:
    m = invite({}, amount={"param": "amount", "unit": "decimal"})
    assert m.amount_cents({"amount": value}) == cents


@pytest.mark.parametrize(
    "value",
    [12.345, "12.345", -1, "-1", "NaN", float("nan"), float("inf"), "1e3", "12,34", True, "", [1]],
)
def test_a_decimal_amount_that_is_not_exact_cents_is_refused_issue_8(value: object) -> None:
    m = invite({}, amount={"param": "amount", "unit": "decimal"})
    with pytest.raises(ManifestError) as err:
        m.amount_cents({"amount": value})
    assert err.value.code == "TOOL.BAD_AMOUNT"


def test_amounts_in_cents_are_whole_and_not_negative() -> None:
    m = invite({}, amount="cents")
    assert m.amount_cents({"cents": 250}) == 250 and m.amount_cents({}) == 0
    for bad in (-5, 2.5, "250", True):
        with pytest.raises(ManifestError):
            m.amount_cents({"cents": bad})


# -- property: whatever the arguments, every string at a declared path is a target ----

PATHS = ["a", "a[]", "a.b", "a[].b", "a.b[].c", "a[].b[]"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", " ", "x@y", "z"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner),
    max_leaves=10,
)


def reference(value: Any, steps: list[str | None]) -> list[str] | None:
    """The strings at ``steps`` below ``value`` (a list at the end: its elements), or None
    where the value has a shape the path does not fit - a plain reading of the grammar
    (``None`` and ``""`` are nothing there)."""
    if value is None or value == "":
        return []
    if not steps:
        items = value if isinstance(value, list) else [value]
        return (
            [v for v in items if isinstance(v, str)]
            if all(isinstance(v, str) for v in items)
            else None
        )
    step, rest = steps[0], steps[1:]
    if step is None:
        if not isinstance(value, list):
            return None
        out: list[str] = []
        for item in value:
            got = reference(item, rest)
            if got is None:
                return None
            out += got
        return out
    return reference(value.get(step), rest) if isinstance(value, dict) else None


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), optional=st.booleans(), value=JSON)
def test_any_value_at_any_declared_shape_is_checked_or_refused_issue_8(
    path: str, optional: bool, value: Any
) -> None:
    props = {"a": {}}
    m = parse_manifest(
        raw(
            parameters={"type": "object", "properties": props},
            targets={path: {"kind": "recipient", "optional": optional}},
        )
    )
    steps = [None if s == "[]" else s for s in re.findall(r"\[\]|(?<=\.)\w+", path)]
    expected = reference(value, steps)
    try:
        found = m.targets_of({"a": value})
    except ManifestError as exc:
        assert exc.code in ("TOOL.TARGET_MISSING", "TOOL.TARGET_UNCHECKABLE")
        return
    # Not refused: then every string there is a target - none is dropped - and each is
    # a non-empty line (an empty or blank one would have been refused).
    assert expected is not None, (path, value)
    assert sorted(t.value for t in found) == sorted(expected)
    assert found or optional  # a required path with nothing there is refused
    assert all(t.value.strip() for t in found)
