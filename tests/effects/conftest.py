"""Real servers on loopback for the adapter tests: an HTTP server and an SMTP relay."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from maos.testing import EphemeralController

HUGE = 2 * 1024 * 1024


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HttpServer:
    port: int
    requests: list[SeenRequest] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up on purpose (size caps, timeouts) are expected here."""


def _handler(state: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.requests.append(SeenRequest(self.command, self.path, headers))
            if self.path == "/ok":
                self._reply(200, b"hello", {"Content-Type": "text/plain", "Set-Cookie": "s=1"})
            elif self.path == "/echo":
                echo = {"method": self.command, "headers": headers, "body": body.decode()}
                self._reply(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})
            elif self.path == "/huge":
                self._reply(200, b"x" * HUGE)
            elif self.path == "/huge-undeclared":
                # No Content-Length: only counting while streaming can catch this one.
                self.send_response(200)
                self.end_headers()
                for _ in range(HUGE // 65536):
                    self.wfile.write(b"y" * 65536)
            elif self.path == "/gzip-bomb":
                packed = gzip.compress(b"\0" * HUGE)
                self._reply(200, packed, {"Content-Encoding": "gzip"})
            elif self.path == "/redirect":
                target = state.url("/ok", host="localhost")
                self._reply(302, b"", {"Location": target})
            elif self.path == "/slow":
                state.release.wait(30)
                self._reply(200, b"late")
            elif self.path == "/binary":
                self._reply(200, b"ok \xff\xfe end")
            else:
                self._reply(404, b"no such route")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _route

    return Handler


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    state = HttpServer(port=0)
    server = _QuietServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that is bound but never listens: connecting is refused at once, no race."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[Received] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        tls = session.ssl is not None
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, tls))
        return "250 OK"


USER, PASSWORD = "maos", "correct horse"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535 itself


@dataclass
class SmtpServer:
    port: int
    handler: RecordingHandler
    user: str = USER
    password: str = PASSWORD
    cafile: Path | None = None
    """The self-signed certificate a STARTTLS relay presents, for the client to trust."""


def _start_smtp(**kwargs: Any) -> tuple[Controller, SmtpServer]:
    handler = RecordingHandler()
    controller = EphemeralController(
        handler, hostname="127.0.0.1", port=0, server_hostname="localhost", **kwargs
    )
    controller.start()
    return controller, SmtpServer(controller.port, handler)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    controller, server = _start_smtp(authenticator=_authenticator, auth_require_tls=False)
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """A relay that insists on STARTTLS before AUTH or mail, with a throwaway certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller, server = _start_smtp(
        authenticator=_authenticator, tls_context=context, require_starttls=True
    )
    server.cafile = cert
    try:
        yield server
    finally:
        controller.stop()
