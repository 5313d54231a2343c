"""HTTP effects, limited to the hosts the capability names.

The allowlist is checked before any connection is opened and covers only the URL that
was asked for: redirects are returned, never followed, because following one would let
the server pick a host the capability never named. Each call gets a fresh client, so no
cookie or connection from one agent's request ever rides along with another's.

Not covered: DNS answers. An allowlisted name that resolves to an internal address is
reached; pin such names in the resolver if that matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from maos.effects.base import EffectCall, EffectError, EffectResult

__all__ = ["IDEMPOTENT_METHODS", "HttpAdapter", "allowed", "host_port", "parse_url"]

DEFAULT_MAX_BYTES = 1024 * 1024
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Idempotent by RFC 9110 §9.2.2: repeating the request leaves the server as one did."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers the adapter owns: the caller may not reroute (Host), reframe the body
# (Content-Length, Transfer-Encoding) or forge the dedup handle (Idempotency-Key).
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
# Only what a caller needs to interpret the answer; Set-Cookie and the like stay here.
_RETURNED_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
)


def _fail(code: str, message: str) -> EffectError:
    return EffectError(f"EFFECT.HTTP.{code}", message)


def host_port(url: httpx.URL) -> tuple[str, int]:
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    return host, url.port or _DEFAULT_PORTS[url.scheme]


def parse_url(target: str) -> httpx.URL:
    try:
        url = httpx.URL(target)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise _fail("BAD_URL", f"{target!r} is not a valid URL.") from exc
    if url.scheme not in _DEFAULT_PORTS:
        raise _fail("BAD_URL", f"{target!r}: only http and https URLs are allowed.")
    if not url.raw_host:
        raise _fail("BAD_URL", f"{target!r} names no host.")
    if url.userinfo:
        raise _fail("BAD_URL", f"{target!r} carries credentials; the kernel supplies those.")
    if not 0 < (url.port or 80) < 65536:
        raise _fail("BAD_URL", f"{target!r} has an invalid port.")
    return url


def allowed(url: httpx.URL, allowlist: object) -> bool:
    """``host`` allows the scheme's default port, ``host:port`` that port; no wildcards.

    The same reading as the IFC check and the Sentry, so a host the task names means one
    destination everywhere, not every service on that machine.
    """
    if not isinstance(allowlist, list | tuple | frozenset | set):
        return False  # missing or malformed: fail closed
    host, port = host_port(url)
    for entry in allowlist:
        if not isinstance(entry, str):
            continue
        try:
            allowed = httpx.URL(f"http://{entry}")
        except httpx.InvalidURL:
            continue
        if allowed.userinfo or allowed.raw_path not in (b"", b"/"):
            continue  # "a.com@b.com" or "b.com/x" is not a host entry; never guess
        a_host = allowed.raw_host.decode("ascii").lower().rstrip(".")
        if a_host == host and (allowed.port or _DEFAULT_PORTS[url.scheme]) == port:
            return True
    return False


def _build_request(client: httpx.AsyncClient, url: httpx.URL, call: EffectCall) -> httpx.Request:
    params = call.params
    method = str(params.get("method", "GET")).upper()
    if method not in METHODS:
        raise _fail("BAD_REQUEST", f"method {method!r} is not one of {sorted(METHODS)}.")
    raw_headers = params.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise _fail("BAD_REQUEST", "'headers' must be a mapping of strings.")
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise _fail("BAD_REQUEST", "'headers' must be a mapping of strings.")
        if name.lower() in _RESERVED_HEADERS:
            raise _fail("BAD_REQUEST", f"header {name!r} is set by the kernel, not the caller.")
        if any(c in name + value for c in "\r\n\x00"):
            raise _fail("BAD_REQUEST", f"header {name!r} contains a line break or NUL.")
        headers[name] = value
    headers["Idempotency-Key"] = call.idempotency_key
    body, has_json = params.get("body"), "json" in params and params["json"] is not None
    if body is not None and has_json:
        raise _fail("BAD_REQUEST", "give either 'body' or 'json', not both.")
    if body is not None and not isinstance(body, str):
        raise _fail("BAD_REQUEST", "'body' must be a string.")
    try:
        if has_json:
            return client.build_request(method, url, headers=headers, json=params["json"])
        content = body.encode("utf-8") if body is not None else None
        return client.build_request(method, url, headers=headers, content=content)
    except (TypeError, ValueError, httpx.HTTPError) as exc:
        raise _fail("BAD_REQUEST", f"the request cannot be built: {exc}.") from exc


class HttpAdapter:
    """``http.request``: one request to an allowlisted host, its answer size-capped.

    ``timeout`` bounds each network phase (connect, each read, each write); ``deadline``
    bounds the whole call, so a server dripping one byte at a time cannot hold it open.
    ``client_factory`` replaces the default client (custom CA bundle, transport); the
    adapter still refuses redirects per request, whatever the client's settings.
    """

    ops = frozenset({"http.request"})

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        deadline: float = 60.0,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self._client_factory = client_factory or self._default_client

    def _default_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout), trust_env=False, follow_redirects=False
        )

    def idempotent(self, call: EffectCall) -> bool:
        """True for methods RFC 9110 makes idempotent; redoing those after a crash is safe.

        A POST answers False, so recovery never resends a payment: it becomes in doubt.

        Safe because the server must leave the same state after N such requests as after
        one, and the repeat carries the same ``Idempotency-Key`` for servers that dedup.
        """
        return call.op in self.ops and (
            str(call.params.get("method", "GET")).upper() in IDEMPOTENT_METHODS
        )

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        """HTTP gives no way to ask "did you get my request?": None means redo.

        Only idempotent methods may be redone; for the others the effect is in doubt.
        """
        if call.op not in self.ops:
            raise _fail("UNKNOWN_OP", f"{call.op!r} is not an HTTP operation.")
        if not self.idempotent(call):
            raise _fail("NOT_CONFIRMABLE", "a non-idempotent request cannot be confirmed.")
        return None

    async def execute(self, call: EffectCall) -> EffectResult:
        if call.op not in self.ops:
            raise _fail("UNKNOWN_OP", f"{call.op!r} is not an HTTP operation.")
        url = parse_url(call.target)
        if not allowed(url, call.constraints.get("allowed_hosts")):
            host, port = host_port(url)
            raise _fail("HOST_NOT_ALLOWED", f"{host}:{port} is not on the capability's allowlist.")
        limit = int(call.constraints.get("max_bytes", DEFAULT_MAX_BYTES))
        try:
            async with asyncio.timeout(self.deadline):
                return await self._send(url, call, limit)
        except TimeoutError as exc:
            raise _fail("TIMEOUT", f"{call.target} did not answer within the deadline.") from exc
        except httpx.TimeoutException as exc:
            raise _fail("TIMEOUT", f"{call.target} timed out: {type(exc).__name__}.") from exc
        except httpx.ConnectError as exc:
            raise _fail("CONNECT", f"cannot connect to {call.target}: {exc}.") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise _fail("BAD_URL", f"{call.target!r} cannot be requested: {exc}.") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise _fail("TRANSPORT", f"the exchange with {call.target} failed: {exc}.") from exc

    async def _send(self, url: httpx.URL, call: EffectCall, limit: int) -> EffectResult:
        async with self._client_factory() as client:
            request = _build_request(client, url, call)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _fail("TOO_LARGE", f"the response declares {declared} > {limit} bytes.")
                chunks: list[bytes] = []
                total = 0
                # Counted after decoding, so a compressed bomb is caught as it inflates.
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > limit:
                        raise _fail("TOO_LARGE", f"the response exceeds {limit} bytes.")
                    chunks.append(chunk)
            finally:
                await response.aclose()
        headers = {k: response.headers[k] for k in _RETURNED_HEADERS if k in response.headers}
        value: dict[str, Any] = {
            "status": response.status_code,
            "headers": headers,
            "body": b"".join(chunks).decode("utf-8", errors="replace"),
            "truncated": False,
        }
        return EffectResult(value)
