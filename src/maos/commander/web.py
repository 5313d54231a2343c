"""The Commander's dashboard and HTTP API, served on loopback by the process whose kernel
they act on (`maos up`).

Who may use it: whoever holds the bearer token `maos up` prints (also kept, mode 0600,
in ``<data-dir>/commander.token``). A header rather than a cookie, because a browser never
adds a header on its own: another site open in the Commander's browser cannot make it
approve anything (no CSRF). The page itself holds no data; it takes the token from the
URL's fragment, which browsers never send to a server, and keeps it for the tab only.

A request whose ``Host`` is not the address and port served here is refused before
anything else: a hostile page that rebinds its own name to 127.0.0.1 cannot reach the API
under that name (DNS rebinding).

The trusted display path: every string on the page that an agent could have influenced
(targets, parameters, reasons, notes) is put there as text, never as markup, and the
Content-Security-Policy allows no inline script, so markup an injection smuggles into an
intent is shown, not run.

Live updates come over one EventSource stream (`maos.commander.stream`), opened with a
single-use ticket the page fetches with the header: the token itself never goes in a URL.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn import Config, Server

from maos.commander import hacf_api
from maos.commander.grants import grant_lines
from maos.commander.metrics import metrics_route
from maos.commander.packets import packet_lines
from maos.commander.reports import PlanStatus, agent_page, decided, tasks
from maos.commander.search import ChartRange, LogFilter, LogSearch, hide_token
from maos.commander.stream import TICKET_TTL, Broadcaster, StreamTickets
from maos.kernel import strictjson
from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import ApprovalError, InputError, MaosError, StateError
from maos.kernel.kernel import Kernel
from maos.kernel.labels import Conf
from maos.kernel.registry import COMMANDER
from maos.kernel.strictjson import TOO_LARGE, check_size

__all__ = [
    "HEALTH_PATH",
    "MAX_BODY",
    "TOKEN_FILE",
    "URL_FILE",
    "Dashboard",
    "bind_loopback",
    "dashboard_app",
    "load_or_create_token",
    "snapshot",
]

TOKEN_FILE = "commander.token"
URL_FILE = "commander.url"
"""Where `maos up` says it serves, while it does: how `maos run` finds it."""
RECENT = 60
"""Log records the dashboard shows, newest first (bookkeeping left out: the search and
`maos wal show` have every record)."""
STREAM_PATH = "/api/stream"
HEALTH_PATH = "/health"
"""Answers ``ok`` without the token and says nothing else: what the dashboard's liveness
probe GETs (the Host check still applies)."""
HEALTH_TIMEOUT_S = 1.0
_JS = "text/javascript; charset=utf-8"
_STATIC = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", _JS),
    "/static/agent.js": ("agent.js", _JS),
    "/static/log.js": ("log.js", _JS),
    "/static/hacf.js": ("hacf.js", _JS),  # overrides and deliberation (docs/hacf.md)
}
"""The page and its files; another module's script is one more line here and one
``<script>`` line in dashboard.html."""
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def load_or_create_token(data_dir: Path, name: str = TOKEN_FILE) -> str:
    """The dashboard's bearer token (or another server's, by file ``name``): one per data
    dir, readable by its owner only."""
    path = data_dir / name
    try:
        token = path.read_text().strip()
        if len(token) >= 32:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(token + "\n")
    tmp.replace(path)
    return token


def snapshot(
    kernel: Kernel,
    extra: Mapping[str, Any] | None = None,
    *,
    search: LogSearch | None = None,
    plans: PlanStatus | None = None,
) -> dict[str, Any]:
    """What the dashboard draws: the kernel's status, each pending approval with its
    decision packet, the decided ones, each task's status and spend, and the latest
    records worth a look."""
    search = search or LogSearch(kernel.config.wal_path)
    state = kernel.status()
    state["pending_approvals"] = [
        {
            **hide_token(a.to_dict()),
            "packet_digest": kernel.packet(a.approval_id).digest,
            "packet": [
                *packet_lines(a.details, a.intent),
                *grant_lines(kernel.view.scope.grants.get(a.task_id)),
            ],
        }
        for a in kernel.approvals.pending()
    ]
    state["decided_approvals"] = decided(kernel)
    state["task_status"] = tasks(kernel, plans or PlanStatus(kernel))
    state["tools"] = {
        t.name: {"effect_class": t.effect_class.value, "targets": dict(t.targets)}
        for t in kernel.registry.tools.values()
    }
    state["recent"] = search.records(LogFilter(limit=RECENT))
    state.update(extra or {})
    return state


_BODY = ConfigDict(extra="forbid", frozen=True, strict=True)
"""Request bodies: no unknown fields, and no coercion ("yes" is not a boolean)."""


class _Decision(BaseModel):
    model_config = _BODY
    note: str = Field(default="", max_length=2000)
    packet_digest: str = Field(default="", max_length=64)
    """The decision packet shown (`maos.kernel.packets`); an approval without it is refused."""


class _AgentStatusChange(BaseModel):
    model_config = _BODY
    status: AgentStatus


class _PlanSubmission(BaseModel):
    model_config = _BODY
    path: str = Field(min_length=1, max_length=4096)


class _Verdict(BaseModel):
    model_config = _BODY
    happened: bool


class _SafeState(BaseModel):
    model_config = _BODY
    on: bool
    reason: str = Field(default="", max_length=2000)


class _Declassification(BaseModel):
    model_config = _BODY
    to: str = Field(pattern="^(public|internal|confidential)$")
    reason: str = Field(min_length=1, max_length=2000)


class _Revocation(BaseModel):
    model_config = _BODY
    revocation_ids: list[str] = Field(min_length=1, max_length=64)

    @field_validator("revocation_ids")
    @classmethod
    def _hex(cls, ids: list[str]) -> list[str]:
        for rid in ids:
            if not 16 <= len(rid) <= 256 or not all(c in "0123456789abcdef" for c in rid):
                raise ValueError("a revocation id is lower-case hex")
        return ids


def _json(obj: Any, status: int = 200) -> Response:
    """Log bodies hold read-only mappings; they go out as plain JSON objects."""
    return Response(orjson.dumps(obj, default=_plain), status, media_type="application/json")


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": code, "message": message}, status)


def _status_of(exc: MaosError) -> int:
    if exc.code == TOO_LARGE:
        return 413
    if exc.code.endswith(("NOT_FOUND", "UNKNOWN_AGENT", "UNKNOWN_TASK")):
        return 404
    if isinstance(exc, InputError) or exc.code.startswith(("PLAN.", "BAD_INPUT.")):
        return 400
    if isinstance(exc, (ApprovalError, StateError)):
        return 409
    return 403 if exc.code.startswith(("AUTH.", "PRINCIPAL.")) else 500


Handler = Callable[[Request], Awaitable[Any]]


def _api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint: its result as JSON, a MaosError as its code, bad bodies as 400."""

    async def endpoint(request: Request) -> Response:
        try:
            return _json(await handler(request))
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return _error(400, "BAD_INPUT.BODY", detail or "invalid body")
        except MaosError as exc:
            return _error(_status_of(exc), exc.code, exc.message)

    return endpoint


MAX_BODY = 64 * 1024
"""The largest request body: the API's bodies are a note, a status, a path. Checked
against Content-Length before anything is read, and counted while a chunked body
streams in, so an oversized body is refused without being held whole."""


async def _body(request: Request) -> bytes:
    """The request's JSON body, at most `MAX_BODY` bytes, no key given twice (checked
    here; each endpoint's model checks the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError("BAD_INPUT.BODY", "Content-Length is not a number")
        check_size(int(declared), MAX_BODY, "the request body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        check_size(size, MAX_BODY, "the request body")
        chunks.append(chunk)
    raw = b"".join(chunks) or b"{}"
    try:
        strictjson.loads(raw, limit=MAX_BODY, what="the request body")
    except InputError as exc:
        if exc.code != strictjson.NOT_JSON:
            raise
        raise InputError("BAD_INPUT.BODY", exc.message) from None
    return raw


def _query(request: Request) -> dict[str, str]:
    """Query parameters, each at most once (as a body's keys: a second value would say
    two things)."""
    items = request.query_params.multi_items()
    names = [k for k, _ in items]
    if len(set(names)) != len(names):
        raise InputError("BAD_INPUT.DUPLICATE_KEY", "a query parameter is given twice")
    return dict(items)


SubmitPlan = Callable[[Path], Mapping[str, Any]]


def dashboard_app(
    kernel: Kernel,
    token: str,
    *,
    host: str,
    port: int,
    extra: Callable[[], Mapping[str, Any]],
    submit_plan: SubmitPlan | None = None,
    closing: Callable[[], bool] = lambda: False,
    search: LogSearch | None = None,
) -> ASGIApp:
    """The ASGI app: the page, its script and style, and the API under ``/api``.

    ``extra`` adds to each snapshot what the serving process knows beyond the kernel (the
    plans it runs); ``submit_plan`` queues a plan file there; ``closing`` says the server
    is stopping (live streams end then); ``search`` reads the log (one of its own when
    not given)."""
    search = search or LogSearch(kernel.config.wal_path)
    plans = PlanStatus(kernel)
    tickets = StreamTickets()

    def current() -> dict[str, Any]:
        return snapshot(kernel, extra(), search=search, plans=plans)

    def render() -> tuple[int, bytes]:
        state = current()
        return int(state["wal_records"]), orjson.dumps(state, default=_plain)

    live = Broadcaster(
        lambda: (kernel.wal.tail_seq(), orjson.dumps(extra(), default=_plain)), render, closing
    )

    async def state(request: Request) -> Any:
        return current()

    async def ticket(request: Request) -> Any:
        _Decision.model_validate_json(await _body(request))
        return {"ticket": tickets.issue(), "expires_in": TICKET_TTL}

    async def stream(request: Request) -> Response:
        if live.full:
            return _error(429, "STATE.TOO_MANY_STREAMS", "close another dashboard tab first")
        return StreamingResponse(live.frames(), media_type="text/event-stream")

    async def log(request: Request) -> Any:
        records = search.records(LogFilter.model_validate(_query(request)))
        return {"records": records, "next_before": records[-1]["seq"] if records else None}

    async def chart(request: Request) -> Any:
        return search.decisions(ChartRange.model_validate(_query(request)))

    async def agent(request: Request) -> Any:
        return agent_page(kernel, search, request.path_params["agent_id"])

    async def approve(request: Request) -> Any:
        body = _Decision.model_validate_json(await _body(request))
        aid = request.path_params["approval_id"]
        outcome = await kernel.approve(aid, body.packet_digest or None, principal=COMMANDER)
        return outcome.to_dict()

    async def deny(request: Request) -> Any:
        body = _Decision.model_validate_json(await _body(request))
        outcome = await kernel.deny(
            request.path_params["approval_id"], principal=COMMANDER, note=body.note
        )
        return outcome.to_dict()

    async def agent_status(request: Request) -> Any:
        body = _AgentStatusChange.model_validate_json(await _body(request))
        agent_id = request.path_params["agent_id"]
        await kernel.set_agent_status(agent_id, body.status, principal=COMMANDER)
        return {"agent_id": agent_id, "status": body.status.value}

    async def safe_state(request: Request) -> Any:
        body = _SafeState.model_validate_json(await _body(request))
        await kernel.set_safe_state(body.on, reason=body.reason, principal=COMMANDER)
        return {"safe_state": kernel.registry.safe_state}

    async def declassify(request: Request) -> Any:
        body = _Declassification.model_validate_json(await _body(request))
        task_id = request.path_params["task_id"]
        await kernel.declassify(task_id, Conf[body.to.upper()], reason=body.reason)
        return {"task_id": task_id, "declassified_to": body.to}

    async def revoke(request: Request) -> Any:
        body = _Revocation.model_validate_json(await _body(request))
        epoch = await kernel.revoke_ids(body.revocation_ids, principal=COMMANDER)
        return {"revoked": body.revocation_ids, "revocation_epoch": epoch}

    async def resolve(request: Request) -> Any:
        body = _Verdict.model_validate_json(await _body(request))
        key = request.path_params["idem_key"]
        await kernel.resolve_in_doubt(key, happened=body.happened, principal=COMMANDER)
        return {"idem_key": key, "happened": body.happened}

    async def plan(request: Request) -> Any:
        body = _PlanSubmission.model_validate_json(await _body(request))
        if submit_plan is None:
            raise StateError("STATE.NO_PLAN_QUEUE", "this server runs no plans")
        return submit_plan(Path(body.path))

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def page(request: Request) -> Response:
        name, media = _STATIC[request.url.path]
        content = resources.files("maos.commander").joinpath("static", name).read_bytes()
        return Response(content, media_type=media)

    post = ["POST"]
    routes = [Route(path, page) for path in _STATIC]
    routes.append(Route(HEALTH_PATH, health))  # the Service Manager's probe: no token, no data
    routes += [
        Route("/api/state", _api(state)),
        Route("/api/stream/ticket", _api(ticket), methods=post),
        Route(STREAM_PATH, stream),
        Route("/api/log", _api(log)),
        Route("/api/chart", _api(chart)),
        Route("/api/agents/{agent_id}", _api(agent)),
        Route("/api/approvals/{approval_id}/approve", _api(approve), methods=post),
        Route("/api/approvals/{approval_id}/deny", _api(deny), methods=post),
        Route("/api/agents/{agent_id}/status", _api(agent_status), methods=post),
        Route("/api/safe-state", _api(safe_state), methods=post),
        Route("/api/tasks/{task_id}/declassify", _api(declassify), methods=post),
        Route("/api/tokens/revoke", _api(revoke), methods=post),
        Route("/api/plans", _api(plan), methods=post),
        Route("/api/in-doubt/{idem_key:path}/resolve", _api(resolve), methods=post),
    ]
    # Routes of other modules: one line each, ``routes += <module>.routes(kernel, ...)``.
    routes.append(metrics_route(kernel, token))  # Prometheus (commander/metrics.py)
    routes += hacf_api.routes(kernel, _api, _body)  # packets, overrides, deliberation
    return _Guard(Starlette(routes=routes), token, tickets, host=host, port=port)


class _Guard:
    """Refuses a foreign Host and an API call without the token (the event stream: without
    the token or a stream ticket); adds the security headers to every response."""

    def __init__(
        self, app: ASGIApp, token: str, tickets: StreamTickets, *, host: str, port: int
    ) -> None:
        self._app = app
        self._token = token.encode()
        self._tickets = tickets
        names = {host, "localhost"} if host in ("127.0.0.1", "::1") else {host}
        self._hosts = {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self._app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: Mapping[str, bytes]) -> Response | None:
        if headers.get("host", b"").decode("latin-1").lower() not in self._hosts:
            return _error(421, "AUTH.BAD_HOST", "this server answers only to its loopback address")
        path = str(scope["path"])
        if not path.startswith("/api/"):
            return None
        given = headers.get("authorization", b"")
        scheme, _, value = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token):
            return None
        if path == STREAM_PATH:
            query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
            if [self._tickets.redeem(t) for t in query.get("ticket", [])] == [True]:
                return None
            return _error(
                401, "AUTH.TICKET_REQUIRED", "open the stream with a ticket from /api/stream/ticket"
            )
        return _error(401, "AUTH.TOKEN_REQUIRED", "send the token `maos up` printed")


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 picks a free port); `StateError`
    ``STATE.PORT_UNAVAILABLE`` when it cannot be had. `maos up` binds before the kernel
    boots, so a refusal has written nothing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: a response's head and body go out at once
        # instead of the body waiting on the client's delayed ACK (~40 ms per request
        # measured here, docs/dashboard.md).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog until `serve` accepts
    except OSError as exc:
        sock.close()
        raise StateError(
            "STATE.PORT_UNAVAILABLE",
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 picks a free one) or stop what listens there",
        ) from None
    return sock


class Dashboard:
    """The dashboard served from a socket bound now (or given as ``listening``), so the
    caller knows its port (0 picks a free one) before serving starts. Serve with `serve`;
    `stop` ends it; `rebind` serves again on a fresh socket at the same address (the
    Service Manager's restart of a dashboard that stopped answering)."""

    def __init__(
        self,
        kernel: Kernel,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        extra: Callable[[], Mapping[str, Any]] = dict,
        submit_plan: SubmitPlan | None = None,
        listening: socket.socket | None = None,
    ) -> None:
        self._sock = listening or bind_loopback(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._search = LogSearch(kernel.config.wal_path)
        app = dashboard_app(
            kernel,
            token,
            host=host,
            port=self.port,
            extra=extra,
            submit_plan=submit_plan,
            closing=lambda: self._server.should_exit,
            search=self._search,
        )
        self._config = Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = Server(self._config)
        self._rebinding = False
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"
        self.login_url = f"{self.url}#token={token}"
        """The page with the token in its fragment: what a person opens."""

    async def serve(self) -> None:
        """Until `stop` (or a signal uvicorn catches); a `rebind` meanwhile ends the
        server and serves again from a fresh socket bound to the same address."""
        try:
            while True:
                await self._server.serve(sockets=[self._sock])
                self._sock.close()
                if not self._rebinding:
                    return
                self._rebinding = False
                self._sock = bind_loopback(self.host, self.port)
                self._server = Server(self._config)
        finally:
            self._sock.close()
            self._search.close()

    @property
    def stopping(self) -> bool:
        """Asked to stop (not to rebind): its silence now is its shutdown, not a failure."""
        return self._server.should_exit and not self._rebinding

    async def rebind(self, timeout: float = 5.0) -> None:
        """End the server and serve again on a fresh socket at the same address (a
        listening socket lost or broken under a running server); until it accepts.
        Nothing is done while the dashboard is stopping."""
        if self.stopping:
            return
        old = self._server
        self._rebinding = True
        for listener in old.servers:  # stop accepting now: a broken listening socket
            listener.close()  # keeps the loop busy failing to accept until it is closed
        old.should_exit = True
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (self._server is old or not self._server.started) and loop.time() < end:
            await asyncio.sleep(0.02)

    def answers(self) -> str | None:
        """Why the dashboard does not answer a GET of its health route now, or None. It
        blocks (at most `HEALTH_TIMEOUT_S`): call it from a thread."""
        if self.stopping:
            return None
        try:
            url = self.url.rstrip("/") + HEALTH_PATH
            answer = httpx.get(url, timeout=HEALTH_TIMEOUT_S, trust_env=False)
        except httpx.HTTPError as exc:
            return f"{HEALTH_PATH} does not answer: {type(exc).__name__}: {exc}"[:300]
        if answer.status_code != 200 or answer.text != "ok\n":
            return f"{HEALTH_PATH} answered {answer.status_code}"
        return None

    async def started(self) -> None:
        """Until the server accepts connections (for callers that serve in a task)."""
        while not self._server.started:
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
