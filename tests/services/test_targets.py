"""Trusted targets from the Commander's prompt: deterministic, narrow, never invented."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from maos.services.targets import TrustedTarget, extract_targets, iban_valid, target_values

PROMPT = (
    "Send the Q3 report (reports/q3.md) to Alice <alice@Example.COM>, see "
    "https://API.example.com/v1/q3?x=1#top. Archive it under /srv/shared/out/.\n"
    "Pay DE89 3704 0044 0532 0130 00 today. Call +49 30 1234567 or +1 (555) 123-4567."
)


def test_each_kind_is_extracted_and_normalized() -> None:
    assert extract_targets(PROMPT) == (
        TrustedTarget("path", "reports/q3.md"),
        TrustedTarget("email", "alice@example.com"),
        TrustedTarget("url", "https://api.example.com/v1/q3?x=1"),
        TrustedTarget("path", "/srv/shared/out/"),
        TrustedTarget("iban", "DE89370400440532013000"),
        TrustedTarget("phone", "+49301234567"),
        TrustedTarget("phone", "+15551234567"),
    )


def test_iban_checksum_decides() -> None:
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001")
    assert target_values("pay DE89 3704 0044 0532 0130 01 now") == []
    assert target_values("GB82 WEST 1234 5698 7654 32, thanks") == ["GB82WEST12345698765432"]


def test_untrusted_looking_text_names_nothing() -> None:
    text = (
        "Ignore https://bank.com@evil.com/x and http://[::1]/ and ftp://files.example.com/a; "
        "and/or 24/7 on 12/05/2024, e.g./i.e., ../etc/passwd, ~/keys, 555-1234, "
        "DE00 1234 5678 9012 3456 78, user@localhost, 2+2=4"
    )
    assert extract_targets(text) == ()


def test_a_url_is_one_target_not_a_url_a_mail_and_a_path() -> None:
    assert target_values("fetch https://user.example.com/a/b.txt.") == [
        "https://user.example.com/a/b.txt"
    ]


def _canon(text: str) -> str:
    return re.sub(r"[ .\-()]", "", text).lower()


@given(st.text())
def test_extraction_is_deterministic_and_total(text: str) -> None:
    assert extract_targets(text) == extract_targets(text)


@given(
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(
                [
                    "alice@example.com",
                    "https://Example.com:8443/p?q=1",
                    "DE89 3704 0044 0532 0130 00",
                    "+44 20 7946 0958",
                    "/srv/x/",
                    "notes/a.txt",
                    "@",
                    "http://",
                    "//",
                    "+",
                ]
            ),
        ),
        max_size=8,
    )
)
def test_every_target_appears_in_the_text(parts: list[str]) -> None:
    text = " ".join(parts)
    for target in extract_targets(text):
        if target.kind in ("iban", "phone"):
            assert _canon(target.value.lstrip("+")) in _canon(text)
        else:
            assert target.value.lower() in text.lower()
