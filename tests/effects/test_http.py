"""HttpAdapter against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from maos.effects.base import EffectCall, EffectError
from maos.effects.http import HttpAdapter

if TYPE_CHECKING:
    from conftest import HttpServer

SAME_HOST = object()
"""Allowlist exactly the host:port the URL names."""


def _call(url: str, allowed: Any = SAME_HOST, key: str = "idem-1", **params: Any) -> EffectCall:
    if allowed is SAME_HOST:
        allowed = [urlsplit(url).netloc]
    constraints = {} if allowed is None else {"allowed_hosts": allowed}
    return EffectCall("http.request", url, key, params, constraints)


def request(url: str, adapter: HttpAdapter | None = None, **kw: Any) -> Any:
    return asyncio.run((adapter or HttpAdapter()).execute(_call(url, **kw))).value


def code(url: str, adapter: HttpAdapter | None = None, **kw: Any) -> str:
    with pytest.raises(EffectError) as info:
        request(url, adapter, **kw)
    return info.value.code


def test_allowlisted_get_returns_status_selected_headers_and_body(http_server: HttpServer) -> None:
    got = request(http_server.url("/ok"))
    assert got["status"] == 200
    assert got["body"] == "hello"
    assert got["truncated"] is False
    assert got["headers"]["content-type"] == "text/plain"
    assert "set-cookie" not in got["headers"]


def test_idempotency_key_and_caller_headers_are_sent(http_server: HttpServer) -> None:
    got = request(http_server.url("/echo"), key="effect-42", headers={"X-Trace": "t1"})
    echo = json.loads(got["body"])
    assert echo["headers"]["idempotency-key"] == "effect-42"
    assert echo["headers"]["x-trace"] == "t1"


def test_post_sends_a_json_or_text_body(http_server: HttpServer) -> None:
    sent = json.loads(request(http_server.url("/echo"), method="post", json={"a": 1})["body"])
    assert (sent["method"], json.loads(sent["body"])) == ("POST", {"a": 1})
    sent = json.loads(request(http_server.url("/echo"), method="PUT", body="plain")["body"])
    assert (sent["method"], sent["body"]) == ("PUT", "plain")


def test_allowlist_entry_with_port_matches_only_that_port(http_server: HttpServer) -> None:
    assert request(http_server.url("/ok"), allowed=[f"127.0.0.1:{http_server.port}"])["body"]
    wrong = f"127.0.0.1:{http_server.port + 1 if http_server.port < 65535 else 1}"
    assert code(http_server.url("/ok"), allowed=[wrong]) == "EFFECT.HTTP.HOST_NOT_ALLOWED"
    # A bare host names the default port (80 here), not the test server's port.
    assert code(http_server.url("/ok"), allowed=["127.0.0.1"]) == "EFFECT.HTTP.HOST_NOT_ALLOWED"
    assert http_server.requests and len(http_server.requests) == 1


@pytest.mark.parametrize(
    "allowed",
    [["example.com"], [], None, "127.0.0.1", [None, 7], ["x@127.0.0.1"], ["127.0.0.1/ok"]],
)
def test_host_off_the_allowlist_is_refused_before_connecting(
    http_server: HttpServer, allowed: Any
) -> None:
    assert code(http_server.url("/ok"), allowed=allowed) == "EFFECT.HTTP.HOST_NOT_ALLOWED"
    assert http_server.requests == []


def test_another_name_for_the_same_server_is_not_allowed(http_server: HttpServer) -> None:
    url = http_server.url("/ok", host="localhost")
    assert code(url, allowed=[f"127.0.0.1:{http_server.port}"]) == "EFFECT.HTTP.HOST_NOT_ALLOWED"
    assert http_server.requests == []


def test_redirect_to_another_host_is_returned_not_followed(http_server: HttpServer) -> None:
    got = request(http_server.url("/redirect"))
    assert got["status"] == 302
    assert got["headers"]["location"] == http_server.url("/ok", host="localhost")
    assert [r.path for r in http_server.requests] == ["/redirect"]


def test_custom_client_cannot_switch_redirects_back_on(http_server: HttpServer) -> None:
    adapter = HttpAdapter(client_factory=lambda: httpx.AsyncClient(follow_redirects=True))
    assert request(http_server.url("/redirect"), adapter)["status"] == 302
    assert len(http_server.requests) == 1


@pytest.mark.parametrize("path", ["/huge", "/huge-undeclared", "/gzip-bomb"])
def test_oversize_bodies_are_refused(http_server: HttpServer, path: str) -> None:
    assert code(http_server.url(path)) == "EFFECT.HTTP.TOO_LARGE"


def test_size_cap_comes_from_the_capability(http_server: HttpServer) -> None:
    adapter = HttpAdapter()
    call = EffectCall(
        "http.request",
        http_server.url("/ok"),
        "k",
        {},
        {"allowed_hosts": [f"127.0.0.1:{http_server.port}"], "max_bytes": 4},
    )
    with pytest.raises(EffectError) as info:
        asyncio.run(adapter.execute(call))
    assert info.value.code == "EFFECT.HTTP.TOO_LARGE"


def test_non_utf8_body_is_decoded_with_replacement(http_server: HttpServer) -> None:
    assert request(http_server.url("/binary"))["body"] == "ok \ufffd\ufffd end"


def test_slow_server_times_out(http_server: HttpServer) -> None:
    assert code(http_server.url("/slow"), HttpAdapter(timeout=0.2)) == "EFFECT.HTTP.TIMEOUT"


def test_overall_deadline_bounds_the_call(http_server: HttpServer) -> None:
    adapter = HttpAdapter(timeout=30, deadline=0.2)
    assert code(http_server.url("/slow"), adapter) == "EFFECT.HTTP.TIMEOUT"


def test_refused_connection_is_a_connect_error(closed_port: int) -> None:
    assert code(f"http://127.0.0.1:{closed_port}/") == "EFFECT.HTTP.CONNECT"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1/",
        "http:///nohost",
        "http://user:pw@127.0.0.1/",
        "127.0.0.1/ok",
        "http://127.0.0.1:99999/",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    assert code(url) == "EFFECT.HTTP.BAD_URL"


@pytest.mark.parametrize(
    "params",
    [
        {"method": "TRACE"},
        {"method": "GET\r\nX: y"},
        {"headers": {"Host": "evil"}},
        {"headers": {"Idempotency-Key": "forged"}},
        {"headers": {"X": "a\r\nB: c"}},
        {"headers": ["X"]},
        {"body": "a", "json": {}},
        {"body": b"bytes"},
    ],
)
def test_malformed_requests_are_refused_before_sending(
    http_server: HttpServer, params: dict[str, Any]
) -> None:
    assert code(http_server.url("/echo"), **params) == "EFFECT.HTTP.BAD_REQUEST"
    assert http_server.requests == []


def test_idempotent_per_call_by_method_not_per_op() -> None:
    adapter = HttpAdapter()
    get, post = _call("http://x/", method="GET"), _call("http://x/", method="POST")
    assert adapter.idempotent(get) and not adapter.idempotent(post)
    assert asyncio.run(adapter.confirm(get)) is None
    with pytest.raises(EffectError) as info:
        asyncio.run(adapter.confirm(post))
    assert info.value.code == "EFFECT.HTTP.NOT_CONFIRMABLE"


def test_unknown_op_is_refused() -> None:
    with pytest.raises(EffectError) as info:
        asyncio.run(HttpAdapter().execute(EffectCall("http.connect", "http://x/", "k")))
    assert info.value.code == "EFFECT.HTTP.UNKNOWN_OP"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://LOCALHOST.:{port}/", ["localhost:{port}"]),
        ("http://localhost:{port}/", ["LocalHost.:{port}"]),
        ("http://[::1]:{port}/", ["[::1]:{port}"]),
    ],
)
def test_allowlist_matches_hosts_case_and_trailing_dot_insensitively(
    closed_port: int, url: str, allowed: list[str]
) -> None:
    """Passing the allowlist shows as a connection attempt to the port nobody listens on."""
    allowed = [a.format(port=closed_port) for a in allowed]
    assert code(url.format(port=closed_port), allowed=allowed) == "EFFECT.HTTP.CONNECT"
