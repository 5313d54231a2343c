"""Real servers on loopback and a throwaway kernel, for MAOS's tests and for yours.

A test of an agent should meet what the agent meets in production: a real SMTP server
that receives the mail, a real HTTP server that answers, a real kernel with its own data
directory. These helpers start them on 127.0.0.1 with ephemeral ports.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from aiosmtpd.controller import Controller

__all__ = [
    "EphemeralController",
    "Mailbox",
    "Received",
    "StaticSite",
    "loopback_http",
    "loopback_smtp",
]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    """What a loopback SMTP server received, in order."""

    port: int = 0
    messages: list[Received] = field(default_factory=list)

    def recipients(self) -> list[str]:
        return [r for m in self.messages for r in m.rcpt_tos]

    def message_ids(self) -> list[str]:
        return [str(m.message["Message-ID"]) for m in self.messages]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)  # the default policy builds EmailMessage
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


class EphemeralController(Controller):
    """Binds port 0 and learns the real port before aiosmtpd's readiness probe connects."""

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def loopback_smtp(**controller_kwargs: Any) -> Iterator[Mailbox]:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it receives."""
    box = Mailbox()
    controller = EphemeralController(
        box, hostname="127.0.0.1", port=0, server_hostname="localhost", **controller_kwargs
    )
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class StaticSite:
    """A loopback HTTP server answering fixed bodies by path; records what it was asked."""

    pages: dict[str, bytes]
    port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _site_handler(site: StaticSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            site.seen.append((self.command, self.path))
            body = site.pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            payload = body if body is not None else b"not found"
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

    return Handler


@contextmanager
def loopback_http(pages: dict[str, bytes]) -> Iterator[StaticSite]:
    """A threaded stdlib HTTP server on 127.0.0.1 serving ``pages``."""
    site = StaticSite(dict(pages))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _site_handler(site))
    server.daemon_threads = True
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
