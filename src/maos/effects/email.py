"""Mail effects through one SMTP relay the operator configures.

Sending mail is not idempotent: SMTP offers no way to ask a relay whether it already
took a message, so after a crash a send is in doubt and goes to the Commander. What the
adapter can do is make a resend recognisable: the ``Message-ID`` is derived from the
idempotency key, so receiving systems (and people) can spot the duplicate.

Addresses are checked strictly and ASCII only: one bare ``local@domain`` per field, no
display names, comments, quoting or route syntax, because every one of those has served
to smuggle a second recipient or a header past a lenient parser.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
import unicodedata
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate

from maos.effects.base import EffectCall, EffectError, EffectResult

__all__ = ["SmtpAdapter", "message_id", "valid_address"]

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 50
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(
    rf"(?P<local>[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*)@(?P<domain>{_LABEL}(?:\.{_LABEL})+)",
    re.ASCII,
)


def _fail(code: str, message: str) -> EffectError:
    return EffectError(f"EFFECT.EMAIL.{code}", message)


def valid_address(address: object) -> bool:
    """One bare ``local@domain`` with a dotted domain; nothing else is an address here."""
    if not isinstance(address, str) or len(address) > 254:
        return False
    match = _ADDRESS.fullmatch(address)
    return match is not None and len(match["local"]) <= 64


def _header_safe(value: str) -> bool:
    """No control characters and no Unicode line separators, which some parsers honour."""
    return not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value)


def _recipients(call: EffectCall) -> list[str]:
    cc = call.params.get("cc") or []
    if isinstance(cc, str) or not isinstance(cc, Sequence):
        raise _fail("BAD_ADDRESS", "'cc' must be a list of addresses.")
    seen: dict[str, str] = {}
    for address in (call.target, *cc):
        if not valid_address(address):
            raise _fail("BAD_ADDRESS", f"{address!r} is not a single plain address.")
        seen.setdefault(str(address).lower(), str(address))
    limit = int(call.constraints.get("max_recipients", DEFAULT_MAX_RECIPIENTS))
    if len(seen) > limit:
        raise _fail("TOO_MANY_RECIPIENTS", f"{len(seen)} recipients exceed the limit of {limit}.")
    return list(seen.values())


def message_id(key: str, domain: str) -> str:
    """The same logical send always carries the same Message-ID."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


class SmtpAdapter:
    """``email.send`` through ``host:port``, from the one ``sender`` the operator owns.

    Credentials travel only over STARTTLS, except to a relay on loopback.
    """

    ops = frozenset({"email.send"})

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        timeout: float = 30.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not valid_address(sender):
            raise ValueError(f"sender {sender!r} is not a single plain address")
        if username is not None and not starttls and host not in _LOOPBACK:
            raise ValueError("SMTP credentials require starttls=True off loopback")
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.starttls = starttls
        self._username = username
        self._password = password or ""
        self._ssl_context = ssl_context

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2]

    def idempotent(self, call: EffectCall) -> bool:
        return False

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        """Never answers None: that would ask the Commit Layer to send the mail again."""
        raise _fail("NOT_CONFIRMABLE", "SMTP cannot prove a message was delivered.")

    async def execute(self, call: EffectCall) -> EffectResult:
        if call.op not in self.ops:
            raise _fail("UNKNOWN_OP", f"{call.op!r} is not a mail operation.")
        recipients = _recipients(call)
        msg = self._build(call, recipients)
        refused = await asyncio.to_thread(self._send, msg, recipients)
        accepted = [r for r in recipients if r not in refused]
        return EffectResult(
            {"message_id": msg["Message-ID"], "recipients": accepted, "refused": sorted(refused)}
        )

    def _build(self, call: EffectCall, recipients: list[str]) -> EmailMessage:
        subject, body = call.params.get("subject", ""), call.params.get("body", "")
        if not isinstance(subject, str) or not _header_safe(subject):
            raise _fail("BAD_HEADER", "the subject must be one line of text without controls.")
        if not isinstance(body, str) or "\x00" in body:
            raise _fail("BAD_BODY", "the body must be text without NUL characters.")
        limit = int(call.constraints.get("max_bytes", DEFAULT_MAX_BYTES))
        if len(body.encode("utf-8")) > limit:
            raise _fail("TOO_LARGE", f"the body exceeds {limit} bytes.")
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = self.sender
        msg["To"] = recipients[0]
        if len(recipients) > 1:
            msg["Cc"] = ", ".join(recipients[1:])
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id(call.idempotency_key, self.domain)
        msg.set_content(body)
        return msg

    def _send(self, msg: EmailMessage, recipients: list[str]) -> set[str]:
        """Runs in a worker thread; returns the recipients the relay refused."""
        stage = "connect"
        try:
            with smtplib.SMTP(
                self.host, self.port, local_hostname=self.domain, timeout=self.timeout
            ) as smtp:
                if self.starttls:
                    stage = "starttls"
                    smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                if self._username is not None:
                    stage = "login"
                    smtp.login(self._username, self._password)
                stage = "send"
                refused = smtp.send_message(msg, self.sender, recipients)
                return set(refused)
        except smtplib.SMTPAuthenticationError as exc:
            raise _fail("AUTH", f"the relay refused the credentials: {exc.smtp_code}.") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            who = sorted(exc.recipients)
            raise _fail("REJECTED", f"the relay refused every recipient: {who}.") from exc
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise _fail("REJECTED", f"the relay refused the message: {exc}.") from exc
        except smtplib.SMTPNotSupportedError as exc:
            code = "TLS" if stage == "starttls" else "AUTH" if stage == "login" else "PROTOCOL"
            raise _fail(code, f"the relay does not support {stage}.") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise _fail("DISCONNECTED", f"the relay hung up during {stage}.") from exc
        except smtplib.SMTPException as exc:
            raise _fail("PROTOCOL", f"SMTP failed during {stage}: {exc}.") from exc
        except ssl.SSLError as exc:
            raise _fail("TLS", f"TLS with {self.host}:{self.port} failed: {exc}.") from exc
        except TimeoutError as exc:
            raise _fail("TIMEOUT", f"{self.host}:{self.port} timed out during {stage}.") from exc
        except OSError as exc:
            raise _fail("CONNECT", f"cannot reach {self.host}:{self.port}: {exc}.") from exc
