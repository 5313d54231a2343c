"""Issue 9: JSON from outside, with every key once and a bounded size."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maos.kernel import strictjson
from maos.kernel.errors import InputError


def code(data: bytes, limit: int = 1 << 20) -> str:
    with pytest.raises(InputError) as info:
        strictjson.loads(data, limit=limit, what="doc")
    return info.value.code


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',  # compact: what our own encoders write
        b'{"a": 1, "a": 2}',
        b'{"x": [{"k": 1, "k": 1}]}',  # nested, and the same value twice
        b'{"\\u0061": 1, "a": 2}',  # an escape spelling the same key
    ],
)
def test_issue9_a_key_given_twice_anywhere_is_refused(data: bytes) -> None:
    assert code(data) == "BAD_INPUT.DUPLICATE_KEY"


def test_issue9_size_and_syntax_have_their_own_codes() -> None:
    assert code(b'{"a": "' + b"x" * 100 + b'"}', limit=50) == "BAD_INPUT.TOO_LARGE"
    assert code(b'{"a": ') == "BAD_INPUT.JSON"
    assert code(b"[" * 5000 + b"]" * 5000) == "BAD_INPUT.JSON"


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_documents_without_duplicates_parse_as_orjson_parses_them(value: object) -> None:
    for text in (orjson.dumps(value), json.dumps(value, indent=1).encode()):
        assert strictjson.loads(text, limit=1 << 20, what="doc") == orjson.loads(text)
