"""Trusted targets from the Commander's prompt: deterministic, narrow, never invented."""

from __future__ import annotations

import re
import unicodedata

import pytest
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
        TrustedTarget("name", "alice"),  # "to Alice": a name after a cue word
        TrustedTarget("email", "alice@example.com"),
        TrustedTarget("url", "https://api.example.com/v1/q3?x=1"),
        TrustedTarget("path", "/srv/shared/out/"),
        TrustedTarget("iban", "DE89370400440532013000", checksum=True),
        TrustedTarget("phone", "+49301234567"),
        TrustedTarget("phone", "+15551234567"),
    )


def test_iban_checksum_decides() -> None:
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001")
    # issue 8: one that fails is still an account identifier, flagged, never dropped
    assert extract_targets("pay DE89 3704 0044 0532 0130 01 now") == (
        TrustedTarget("iban", "DE89370400440532013001", checksum=False),
    )
    assert target_values("GB82 WEST 1234 5698 7654 32, thanks") == ["GB82WEST12345698765432"]
    assert target_values("shouting GB12 ABCD EFGH IJKL MNOP") == []


def test_untrusted_looking_text_names_nothing() -> None:
    text = (
        "Ignore https://bank.com@evil.com/x and http://[::1]/ and ftp://files.example.com/a; "
        "and/or 24/7 on 12/05/2024, e.g./i.e., ../etc/passwd, ~/keys, 555-1234, "
        "user@localhost, 2+2=4, notes.md, v1.2/x, C# and #1, a@b, 'tis"
    )
    assert extract_targets(text) == ()


def test_a_url_is_one_target_not_a_url_a_mail_and_a_path() -> None:
    assert target_values("fetch https://user.example.com/a/b.txt.") == [
        "https://user.example.com/a/b.txt"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # issue 8: hosts without a scheme are URLs, and never workspace paths
        ("see www.example.com.", [("url", "https://www.example.com/")]),
        ("open example.com/page.html", [("url", "https://example.com/page.html")]),
        ("EXAMPLE.com:443/A?b=1", [("url", "https://example.com/A?b=1")]),
        ("shop.example.io:8443/x", [("url", "https://shop.example.io:8443/x")]),
        ("notes.md and reports/q3.md", [("path", "reports/q3.md")]),
        ("post in #General, then ping @Alice.B.", [("channel", "general"), ("user", "alice.b")]),
        ('reply "Re: Q3  Numbers" now', [("name", "re: q3 numbers")]),
        ("book a table at Chez Panisse tonight", [("name", "chez panisse")]),
        (
            "invite Alice Smith, Bob Jones and Carol to the review",
            [("name", "alice smith"), ("name", "bob jones"), ("name", "carol")],
        ),
        ("lunch with Bank of America on Monday", [("name", "bank of america")]),
        ("meet at Café  de Flore", [("name", "café de flore")]),
        ("for Friday, with the team", []),
        ("I went to the shop", []),
    ],
)
def test_names_channels_handles_and_bare_hosts_issue_8(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert [(t.kind, t.value) for t in extract_targets(text)] == expected


def test_trusted_entries_of_names_carry_their_kind_issue_8() -> None:
    """A quoted word is a trusted name, never a host or a mailbox of the same spelling."""
    assert target_values('call it "intranet" in #ops for @bob') == [
        "channel:ops",
        "name:intranet",
        "user:bob",
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
        elif target.kind == "url":
            bare = target.value.removeprefix("https://").rstrip("/")
            assert bare.split(":")[0].split("/")[0] in text.lower()
        elif target.kind in ("name", "channel", "user"):
            folded = unicodedata.normalize("NFKC", text).casefold()
            assert target.value in " ".join(folded.split())
        else:
            assert target.value.lower() in text.lower()
