"""The egress relay (issue 13, item 2): real listeners on loopback, real tunnels.

A listener counts the connections it accepts, so "refused" means the destination never
saw a connection, not only that the client got an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maos.pod.egress import (
    MAX_CONNECTIONS,
    EgressError,
    EgressEvent,
    EgressRelay,
    parse_destination,
)
from maos.pod.isolation import PodHome, detect
from maos.pod.isolation.level1 import PYTHON
from maos.pod.isolation.level2 import landlock_abi
from maos.pod.upstream import upstream_pod


class Listener:
    """A real TCP server on 127.0.0.1 that answers 'hi' and counts what it accepts."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.sendall(b"hi")
            conn.close()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener]]:
    """Two listeners: one the allowlist names, one it does not."""
    pair = Listener(), Listener()
    yield pair
    for listener in pair:
        listener.close()


def _direct(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        return conn.recv(2)


async def _through(relay: EgressRelay, target: str, request: str | None = None) -> bytes:
    """What a client gets back from the relay for one CONNECT (or a raw request)."""
    reader, writer = await asyncio.open_unix_connection(str(relay.socket_path))
    writer.write((request or f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_parse_destination_normalises_and_refuses_ambiguous_hosts() -> None:
    assert str(parse_destination("API.Example.com.:443")) == "api.example.com:443"
    assert str(parse_destination("[::ffff:127.0.0.1]:80")) == "127.0.0.1:80"
    assert str(parse_destination("[0:0::1]:80")) == "[::1]:80"
    for bad in (
        "127.1:80",  # inet_aton reads it as 127.0.0.1
        "2130706433:80",
        "0x7f.1:80",
        "example.com",
        "example.com:0",
        "example.com:65536",
        "example.com:+80",
        "::1:80",
        "[example.com]:80",
        "a..b:80",
        "-a.com:80",
        "a_b.com:80",
    ):
        with pytest.raises(EgressError) as err:
            parse_destination(bad)
        assert err.value.code == "EGRESS.BAD_DESTINATION", bad


def test_relay_tunnels_only_to_its_allowlist_and_logs_each_connection_issue_13(
    tmp_path: Path, listeners: tuple[Listener, Listener]
) -> None:
    allowed, other = listeners
    assert _direct(other.port) == b"hi"  # control: both are really reachable
    assert _direct(allowed.port) == b"hi"
    before = allowed.accepted, other.accepted
    events: list[EgressEvent] = []

    async def go() -> list[bytes]:
        relay = EgressRelay(
            [f"127.0.0.1:{allowed.port}"], tmp_path / "e.sock", on_connect=events.append
        )
        async with relay:
            return [
                await _through(relay, f"127.0.0.1:{allowed.port}"),
                await _through(relay, f"127.0.0.1:{other.port}"),
                await _through(relay, f"[::ffff:127.0.0.1]:{allowed.port}"),
                await _through(relay, f"127.1:{allowed.port}"),
                await _through(relay, "", f"GET http://127.0.0.1:{allowed.port}/ HTTP/1.1\r\n\r\n"),
            ]

    ok, refused, mapped, ambiguous, plain = asyncio.run(go())
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\nhi")
    assert b"X-Maos-Code: EGRESS.NOT_ALLOWED" in refused
    assert mapped.endswith(b"hi")  # the same address written another way
    assert b"EGRESS.BAD_DESTINATION" in ambiguous
    assert b" 405 " in plain
    assert (allowed.accepted - before[0], other.accepted - before[1]) == (2, 0)
    assert [(e.destination, e.allowed, e.code) for e in events] == [
        (f"127.0.0.1:{allowed.port}", True, None),
        (f"127.0.0.1:{other.port}", False, "EGRESS.NOT_ALLOWED"),
        (f"127.0.0.1:{allowed.port}", True, None),
        (f"127.1:{allowed.port}", False, "EGRESS.BAD_DESTINATION"),
        (f"GET http://127.0.0.1:{allowed.port}/ HTTP/1.1", False, "EGRESS.BAD_REQUEST"),
    ]
    assert events[0].address == f"127.0.0.1:{allowed.port}"


def test_relay_refuses_a_name_that_resolves_to_an_internal_address_issue_13(
    tmp_path: Path, listeners: tuple[Listener, Listener]
) -> None:
    """DNS rebinding: an allowed *name* pointing at loopback is not an allowed address."""
    target, _ = listeners
    events: list[EgressEvent] = []

    async def go() -> bytes:
        allow = [f"localhost:{target.port}"]
        async with EgressRelay(allow, tmp_path / "e.sock", on_connect=events.append) as relay:
            return await _through(relay, f"localhost:{target.port}")

    before = target.accepted
    assert b"EGRESS.INTERNAL_ADDRESS" in asyncio.run(go())
    assert target.accepted == before
    assert [(e.allowed, e.code) for e in events] == [(False, "EGRESS.INTERNAL_ADDRESS")]


def test_relay_refuses_a_connection_it_cannot_log_issue_13(
    tmp_path: Path, listeners: tuple[Listener, Listener]
) -> None:
    target, _ = listeners

    def broken_log(event: EgressEvent) -> None:
        raise OSError("the log is gone")

    async def go() -> bytes:
        allow = [f"127.0.0.1:{target.port}"]
        async with EgressRelay(allow, tmp_path / "e.sock", on_connect=broken_log) as relay:
            return await _through(relay, f"127.0.0.1:{target.port}")

    before = target.accepted
    assert b"EGRESS.LOG_FAILED" in asyncio.run(go())
    assert target.accepted == before


def test_relay_refuses_a_bad_allowlist_entry() -> None:
    with pytest.raises(EgressError) as err:
        EgressRelay(["10.0.0.1"], Path("/nonexistent"), on_connect=print)
    assert err.value.code == "EGRESS.BAD_DESTINATION"


PROBE = r"""
import json, os, socket, sys
from urllib.parse import urlsplit

proxy = urlsplit(os.environ["HTTPS_PROXY"])
out = {"tcp": open("/proc/net/tcp").read()}
for family in (5, 16, 38):  # appletalk, netlink, alg: only unix/inet/inet6 pass the filter
    try:
        socket.socket(family, socket.SOCK_DGRAM if family == 5 else socket.SOCK_RAW).close()
        out[f"family:{family}"] = "opened"
    except OSError as exc:
        out[f"family:{family}"] = exc.errno
for port in sys.argv[1:]:
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=3).close()
        out["direct:" + port] = "connected"
    except OSError as exc:
        out["direct:" + port] = exc.errno
    with socket.create_connection((proxy.hostname, proxy.port), timeout=5) as conn:
        conn.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    out["proxy:" + port] = data.decode()
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="upstream pods run as nobody: needs root")
@pytest.mark.skipif(not detect(2).available, reason=detect(2).reason)
def test_sandboxed_upstream_reaches_only_its_allowlist_issue_13(
    home: PodHome, listeners: tuple[Listener, Listener]
) -> None:
    allowed, other = listeners
    assert _direct(other.port) == b"hi"  # control
    directory = home.root / "egress-probe"
    directory.mkdir(mode=0o755)
    probe = directory / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o444)
    events: list[EgressEvent] = []
    before = allowed.accepted, other.accepted

    async def go() -> dict[str, Any]:
        async with upstream_pod(
            PYTHON,
            [str(probe), str(allowed.port), str(other.port)],
            env={},
            home=home,
            files=[probe],
            egress=[f"127.0.0.1:{allowed.port}"],
            on_connect=events.append,
        ) as cmd:
            proc = await asyncio.create_subprocess_exec(
                cmd.command, *cmd.args, env=dict(cmd.env), stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
        assert proc.returncode == 0
        seen: dict[str, Any] = json.loads(out)
        return seen

    seen = asyncio.run(go())
    assert seen[f"proxy:{allowed.port}"].endswith("\r\n\r\nhi")
    assert "EGRESS.NOT_ALLOWED" in seen[f"proxy:{other.port}"]
    for port in (allowed.port, other.port):
        assert seen[f"direct:{port}"] != "connected"
        assert f":{port:04X} " not in seen["tcp"]  # a network namespace of its own
        if landlock_abi() >= 4:
            assert seen[f"direct:{port}"] == 13  # EACCES: Landlock allows the proxy port only
    assert [seen[f"family:{n}"] for n in (5, 16, 38)] == [1, 1, 1]  # EPERM from seccomp
    assert (allowed.accepted - before[0], other.accepted - before[1]) == (1, 0)
    assert [(e.destination, e.allowed) for e in events] == [
        (f"127.0.0.1:{allowed.port}", True),
        (f"127.0.0.1:{other.port}", False),
    ]


def test_relay_answers_hostile_requests_and_keeps_serving_issue_13(
    tmp_path: Path, listeners: tuple[Listener, Listener]
) -> None:
    """An oversized header, binary garbage, a client that hangs up mid-request, and more
    tunnels than the cap: each gets a clear refusal (or nothing), and the relay still
    serves the allowed destination afterwards."""
    target, _ = listeners
    events: list[EgressEvent] = []

    async def held() -> tuple[asyncio.Server, int]:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # keeps the tunnel open until the client leaves
            writer.close()

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return server, server.sockets[0].getsockname()[1]

    async def go() -> dict[str, bytes]:
        holder, hold_port = await held()
        allow = [f"127.0.0.1:{target.port}", f"127.0.0.1:{hold_port}"]
        out = {}
        async with EgressRelay(allow, tmp_path / "e.sock", on_connect=events.append) as relay:
            path = str(relay.socket_path)
            out["huge"] = await _through(relay, "", "CONNECT " + "a" * 20_000 + "\r\n\r\n")
            out["garbage"] = await _through(relay, "", "\x00\xff\x16\x03\x01 binary\r\n\r\n")
            _, writer = await asyncio.open_unix_connection(path)
            writer.write(b"CONNECT 127.0.0.1:")  # and hangs up
            writer.close()
            tunnels = []
            for _ in range(MAX_CONNECTIONS):
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(f"CONNECT 127.0.0.1:{hold_port} HTTP/1.1\r\n\r\n".encode())
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
                tunnels.append(writer)
            out["over_cap"] = await _through(relay, f"127.0.0.1:{target.port}")
            for writer in tunnels:
                writer.close()
            await asyncio.sleep(0.2)
            out["after"] = await _through(relay, f"127.0.0.1:{target.port}")
        holder.close()
        return out

    out = asyncio.run(go())
    assert b" 400 " in out["huge"] and b"EGRESS.BAD_REQUEST" in out["huge"]
    assert b" 405 " in out["garbage"]
    assert b"EGRESS.TOO_MANY" in out["over_cap"]
    assert out["after"].endswith(b"\r\n\r\nhi")
    assert all(not e.allowed for e in events if e.code is not None)


HTTPS_PROBE = r"""
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
for url in sys.argv[1], sys.argv[3]:
    try:  # urllib honours https_proxy from the environment: a CONNECT tunnel
        print(urllib.request.urlopen(url, context=ctx, timeout=10).read().decode())
    except OSError as exc:
        print("refused", exc)
"""


def _tls_server(directory: Path) -> tuple[Any, int, Path]:
    """A real HTTPS server on 127.0.0.1 with a fresh self-signed certificate."""
    import datetime
    import http.server
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    loopback = ipaddress.ip_address("127.0.0.1")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(loopback)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o444)
    key_path = directory / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello over tls"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1], cert_path


@pytest.mark.skipif(os.geteuid() != 0, reason="upstream pods run as nobody: needs root")
@pytest.mark.skipif(not detect(2).available, reason=detect(2).reason)
def test_a_stock_https_client_in_a_pod_goes_through_the_relay_issue_13(
    home: PodHome, listeners: tuple[Listener, Listener]
) -> None:
    """urllib, unmodified, reaches an allowed real HTTPS server through HTTPS_PROXY and the
    relay (TLS end to end: the relay sees only the tunnel); a URL off the list fails."""
    _, other = listeners
    directory = home.root / "tls"
    directory.mkdir(mode=0o755)
    server, port, cert = _tls_server(directory)
    probe = directory / "probe.py"
    probe.write_text(HTTPS_PROBE)
    probe.chmod(0o444)
    events: list[EgressEvent] = []

    async def go() -> str:
        async with upstream_pod(
            PYTHON,
            [
                str(probe),
                f"https://127.0.0.1:{port}/",
                str(cert),
                f"https://127.0.0.1:{other.port}/",
            ],
            env={},
            home=home,
            files=[probe, cert],
            egress=[f"127.0.0.1:{port}"],
            on_connect=events.append,
        ) as cmd:
            proc = await asyncio.create_subprocess_exec(
                cmd.command, *cmd.args, env=dict(cmd.env), stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
        return out.decode()

    try:
        out = asyncio.run(go())
    finally:
        server.shutdown()
        server.server_close()
    lines = out.splitlines()
    assert lines[0] == "hello over tls"
    assert lines[1].startswith("refused") and "403" in lines[1]
    assert [(e.destination, e.allowed) for e in events] == [
        (f"127.0.0.1:{port}", True),
        (f"127.0.0.1:{other.port}", False),
    ]


UNIX_PROBE = r"""
import socket, sys
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(b"\0" + name.encode())
        print("connected")
    except OSError as exc:
        print(exc.errno)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="upstream pods run as nobody: needs root")
@pytest.mark.skipif(not detect(2).available, reason=detect(2).reason)
def test_an_upstream_with_egress_cannot_reach_host_abstract_sockets_issue_13(
    home: PodHome, listeners: tuple[Listener, Listener]
) -> None:
    """socket() is open to an upstream with egress; the host's abstract Unix sockets
    (a per-network-namespace name space) still are not."""
    target, _ = listeners
    name = f"maos-egress-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(b"\0" + name.encode())
    server.listen()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.connect(b"\0" + name.encode())  # control: it is there on the host
    directory = home.root / "unix-probe"
    directory.mkdir(mode=0o755)
    probe = directory / "probe.py"
    probe.write_text(UNIX_PROBE)
    probe.chmod(0o444)

    async def go() -> str:
        async with upstream_pod(
            PYTHON,
            [str(probe), name],
            env={},
            home=home,
            files=[probe],
            egress=[f"127.0.0.1:{target.port}"],
            on_connect=lambda event: None,
        ) as cmd:
            proc = await asyncio.create_subprocess_exec(
                cmd.command, *cmd.args, env=dict(cmd.env), stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
        return out.decode().strip()

    try:
        assert asyncio.run(go()) != "connected"
    finally:
        server.close()
