"""SmtpAdapter against a real aiosmtpd relay on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import TYPE_CHECKING, Any

import pytest

from maos.effects.base import EffectCall, EffectError
from maos.effects.email import SmtpAdapter, valid_address

if TYPE_CHECKING:
    from conftest import SmtpServer

SENDER = "agent@maos.example"


def adapter(port: int, **kw: Any) -> SmtpAdapter:
    return SmtpAdapter("127.0.0.1", port, SENDER, timeout=5, **kw)


def send(smtp: SmtpAdapter, to: str, key: str = "mail-1", **params: Any) -> Any:
    params.setdefault("subject", "Hello")
    params.setdefault("body", "Hi there.\n")
    return asyncio.run(smtp.execute(EffectCall("email.send", to, key, params))).value


def code(smtp: SmtpAdapter, to: str, **params: Any) -> str:
    with pytest.raises(EffectError) as info:
        send(smtp, to, **params)
    return info.value.code


def test_delivered_message_carries_derived_id_and_all_recipients(smtp_server: SmtpServer) -> None:
    got = send(
        adapter(smtp_server.port),
        "bob@example.com",
        key="k-7",
        cc=["carol@example.org", "BOB@example.com"],
        body="Line one\n.\nLine two\n",
    )
    expected_id = f"<{hashlib.sha256(b'k-7').hexdigest()[:32]}@maos.example>"
    assert got == {
        "message_id": expected_id,
        "recipients": ["bob@example.com", "carol@example.org"],
        "refused": [],
    }
    [received] = smtp_server.handler.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["bob@example.com", "carol@example.org"]
    msg = received.message
    assert msg["Message-ID"] == expected_id
    assert (msg["From"], msg["To"], msg["Cc"]) == (SENDER, "bob@example.com", "carol@example.org")
    assert msg["Subject"] == "Hello"
    assert msg.get_content() == "Line one\r\n.\r\nLine two\r\n"  # SMTP line endings


def test_resending_the_same_effect_reuses_its_message_id(smtp_server: SmtpServer) -> None:
    smtp = adapter(smtp_server.port)
    first, second = (send(smtp, "bob@example.com", key="same") for _ in range(2))
    assert first["message_id"] == second["message_id"]
    assert send(smtp, "bob@example.com", key="other")["message_id"] != first["message_id"]


def test_unicode_subject_and_body_survive(smtp_server: SmtpServer) -> None:
    send(adapter(smtp_server.port), "bob@example.com", subject="Grüße ✓", body="Zoë\n")
    msg = smtp_server.handler.messages[0].message
    assert (msg["Subject"], msg.get_content()) == ("Grüße ✓", "Zoë\r\n")


@pytest.mark.parametrize(
    "subject",
    ["Hi\r\nBcc: victim@example.com", "Hi\nX: y", "Hi\rX: y", "a\x00b", "a\u2028b", "a\x85b"],
)
def test_header_injection_in_subject_is_refused_and_nothing_sent(
    smtp_server: SmtpServer, subject: str
) -> None:
    assert code(adapter(smtp_server.port), "bob@example.com", subject=subject) == (
        "EFFECT.EMAIL.BAD_HEADER"
    )
    assert smtp_server.handler.messages == []


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.com\r\nRCPT TO:<eve@evil.com>",
        "Bob <bob@example.com>",
        "bob@example.com, eve@evil.com",
        "bob",
        "@example.com",
        "bob@",
        "bob@localhost",
        "bob@@example.com",
        "bob@exa mple.com",
        '"bob"@example.com',
        "bob@[127.0.0.1]",
        "bob.@example.com",
        "b..ob@example.com",
        "bob@-example.com",
        "bøb@example.com",
        "bob@example.com (comment)",
        "<bob@example.com>",
        "a" * 65 + "@example.com",
        "",
    ],
)
def test_bad_addresses_are_refused_as_target_or_cc(smtp_server: SmtpServer, address: str) -> None:
    assert not valid_address(address)
    smtp = adapter(smtp_server.port)
    assert code(smtp, address) == "EFFECT.EMAIL.BAD_ADDRESS"
    assert code(smtp, "bob@example.com", cc=[address]) == "EFFECT.EMAIL.BAD_ADDRESS"
    assert smtp_server.handler.messages == []


def test_cc_must_be_a_list(smtp_server: SmtpServer) -> None:
    smtp = adapter(smtp_server.port)
    assert code(smtp, "bob@example.com", cc="carol@example.org") == "EFFECT.EMAIL.BAD_ADDRESS"


def test_recipient_count_and_body_size_are_capped(smtp_server: SmtpServer) -> None:
    smtp = adapter(smtp_server.port)
    many = EffectCall(
        "email.send", "bob@example.com", "k", {"cc": ["c@example.org"]}, {"max_recipients": 1}
    )
    big = EffectCall("email.send", "bob@example.com", "k", {"body": "x" * 11}, {"max_bytes": 10})
    for call, expected in ((many, "TOO_MANY_RECIPIENTS"), (big, "TOO_LARGE")):
        with pytest.raises(EffectError) as info:
            asyncio.run(smtp.execute(call))
        assert info.value.code == f"EFFECT.EMAIL.{expected}"
    assert smtp_server.handler.messages == []


def test_nul_in_body_is_refused(smtp_server: SmtpServer) -> None:
    assert code(adapter(smtp_server.port), "bob@example.com", body="a\x00b") == (
        "EFFECT.EMAIL.BAD_BODY"
    )


def test_server_down_is_a_connect_error(closed_port: int) -> None:
    assert code(adapter(closed_port), "bob@example.com") == "EFFECT.EMAIL.CONNECT"


def test_login_with_the_right_password_delivers(smtp_server: SmtpServer) -> None:
    smtp = adapter(smtp_server.port, username=smtp_server.user, password=smtp_server.password)
    send(smtp, "bob@example.com")
    assert len(smtp_server.handler.messages) == 1


def test_wrong_password_is_an_auth_error(smtp_server: SmtpServer) -> None:
    smtp = adapter(smtp_server.port, username=smtp_server.user, password="wrong")
    assert code(smtp, "bob@example.com") == "EFFECT.EMAIL.AUTH"
    assert smtp_server.handler.messages == []


def test_starttls_against_a_relay_without_it_is_refused(smtp_server: SmtpServer) -> None:
    assert code(adapter(smtp_server.port, starttls=True), "bob@example.com") == "EFFECT.EMAIL.TLS"
    assert smtp_server.handler.messages == []


def test_credentials_in_clear_are_refused_off_loopback() -> None:
    with pytest.raises(ValueError, match="starttls"):
        SmtpAdapter("smtp.example.com", 25, SENDER, username="u", password="p")
    with pytest.raises(ValueError, match="sender"):
        SmtpAdapter("127.0.0.1", 25, "Agent <agent@maos.example>")


def test_sending_is_never_idempotent_nor_confirmable(smtp_server: SmtpServer) -> None:
    smtp = adapter(smtp_server.port)
    assert smtp.idempotent(EffectCall("email.send", "bob@example.com", "k")) is False
    with pytest.raises(EffectError) as info:
        asyncio.run(smtp.confirm(EffectCall("email.send", "bob@example.com", "k")))
    assert info.value.code == "EFFECT.EMAIL.NOT_CONFIRMABLE"
    with pytest.raises(EffectError) as info:
        asyncio.run(smtp.execute(EffectCall("email.read", "bob@example.com", "k")))
    assert info.value.code == "EFFECT.EMAIL.UNKNOWN_OP"


def test_starttls_protects_login_and_message(tls_smtp_server: SmtpServer) -> None:
    assert tls_smtp_server.cafile is not None
    context = ssl.create_default_context(cafile=str(tls_smtp_server.cafile))
    smtp = adapter(
        tls_smtp_server.port,
        starttls=True,
        ssl_context=context,
        username=tls_smtp_server.user,
        password=tls_smtp_server.password,
    )
    send(smtp, "bob@example.com")
    [received] = tls_smtp_server.handler.messages
    assert received.tls


def test_untrusted_certificate_is_a_tls_error(tls_smtp_server: SmtpServer) -> None:
    """The default context verifies: a self-signed relay is refused, nothing is sent."""
    assert code(adapter(tls_smtp_server.port, starttls=True), "bob@example.com") == (
        "EFFECT.EMAIL.TLS"
    )
    assert tls_smtp_server.handler.messages == []
