"""The HTTP API of HACF on `maos up`: signed decision packets, overrides, deliberations.

Registered by one line in `maos.commander.web` (which owns the page, the guard and the
bearer token): every route here sits behind the same Host check and token, takes strict
bodies, and acts as the Commander. The token alone cannot override: a confirmation needs
a TOTP code from the enrolled second factor (`maos.services.hacf.SecondFactor`).

    GET  /api/approvals/{id}/packet              the signed decision packet
    POST /api/approvals/{id}/deliberate/ask      {"question": "..."}
    POST /api/approvals/{id}/deliberate/edit     {"params": {...}}
    POST /api/approvals/{id}/deliberate/decide   {"decision": "approve"|"deny",
                                                  "packet_digest": "...", "note": "..."}
    GET  /api/commander/deliberations            deliberate-level approvals waiting, each
                                                 with its thread and packet digest
    GET  /api/commander/overrides                every override, with its diff and the
                                                 cooling-off left (the kernel's clock)
    POST /api/commander/overrides                {"action", "subject", "to", "reason"}
    POST /api/commander/overrides/{id}/confirm   {"code": "123456"}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maos.kernel.config import read_config
from maos.kernel.kernel import Kernel
from maos.kernel.registry import COMMANDER
from maos.services import hacf

__all__ = ["routes"]

_BODY = ConfigDict(extra="forbid", frozen=True, strict=True)
Handler = Callable[[Request], Awaitable[Any]]
Wrap = Callable[[Handler], Callable[[Request], Awaitable[Response]]]
ReadBody = Callable[[Request], Awaitable[bytes]]


class _Ask(BaseModel):
    model_config = _BODY
    question: str = Field(min_length=1, max_length=2000)


class _Edit(BaseModel):
    model_config = _BODY
    params: dict[str, Any]


class _Decide(BaseModel):
    model_config = _BODY
    decision: Literal["approve", "deny"]
    packet_digest: str = Field(default="", max_length=64)
    note: str = Field(default="", max_length=2000)


class _Request(BaseModel):
    model_config = _BODY
    action: Literal[
        "release", "resume", "declassify", "grants", "mode", "threshold", "execute", "promote"
    ]
    subject: str = Field(min_length=1, max_length=200)
    to: str = Field(default="", max_length=64)
    """For ``execute``: the intent's SHA-256, or empty for the recorded one."""
    reason: str = Field(default="", max_length=2000)


class _Confirm(BaseModel):
    model_config = _BODY
    code: str = Field(pattern=r"^[0-9]{6}$")


def routes(kernel: Kernel, api: Wrap, body: ReadBody) -> list[Route]:
    """The routes, wrapped by the dashboard's ``api`` (errors as codes) and read with its
    ``body`` (size-limited, no duplicate keys)."""
    data_dir = kernel.config.data_dir
    log = hacf.kernel_log(kernel)

    def overrides() -> hacf.Overrides:
        section = read_config(data_dir).commander
        factor = hacf.SecondFactor(data_dir, kernel.clock)
        return hacf.Overrides(kernel.registry, log, kernel.clock, section, factor, kernel.view)

    def talk() -> hacf.Deliberation:
        return hacf.Deliberation(kernel.registry, kernel.approvals, log)

    async def packet(request: Request) -> Any:
        return kernel.packet(request.path_params["approval_id"]).to_dict()

    async def ask(request: Request) -> Any:
        b = _Ask.model_validate_json(await body(request))
        aid = request.path_params["approval_id"]
        await talk().ask(aid, b.question, principal=COMMANDER)
        return {"approval_id": aid, "asked": b.question}

    async def edit(request: Request) -> Any:
        b = _Edit.model_validate_json(await body(request))
        aid = request.path_params["approval_id"]
        await talk().edit(aid, b.params, principal=COMMANDER)
        return {"approval_id": aid, "edited": b.params}

    async def decide(request: Request) -> Any:
        b = _Decide.model_validate_json(await body(request))
        outcome = await hacf.conclude(
            kernel,
            request.path_params["approval_id"],
            b.decision == "approve",
            packet=b.packet_digest or None,
            principal=COMMANDER,
            note=b.note,
        )
        return outcome.to_dict()

    async def deliberations(request: Request) -> Any:
        section = read_config(data_dir).commander
        return [
            {
                "approval_id": a.approval_id,
                "agent_id": a.agent_id,
                "op": a.intent.get("op", ""),
                "target": a.intent.get("target", ""),
                "params": a.intent.get("params", {}),
                "packet_digest": kernel.packet(a.approval_id).digest,
                "thread": [
                    {"kind": r.kind, **r.body} for r in hacf.thread(kernel.wal, a.approval_id)
                ],
            }
            for a in kernel.approvals.pending()
            if hacf.is_deliberate(section, a, kernel.registry, kernel.wal)
        ]

    async def listing(request: Request) -> Any:
        now = kernel.clock()
        return [
            {**o.to_dict(), "cooling_off_left_s": max(0.0, o.not_before - now)}
            for o in kernel.registry.overrides.items.values()
        ]

    async def request_override(request: Request) -> Any:
        b = _Request.model_validate_json(await body(request))
        made = await overrides().request(
            b.action, b.subject, b.to, reason=b.reason, principal=COMMANDER
        )
        return made.to_dict()

    async def confirm(request: Request) -> Any:
        b = _Confirm.model_validate_json(await body(request))
        oid = request.path_params["override_id"]
        done = (await overrides().confirm(oid, b.code, principal=COMMANDER)).to_dict()
        return {**done, **await hacf.carry_out(kernel, oid, COMMANDER)}

    base = "/api/approvals/{approval_id}"
    return [
        Route(f"{base}/packet", api(packet)),
        Route(f"{base}/deliberate/ask", api(ask), methods=["POST"]),
        Route(f"{base}/deliberate/edit", api(edit), methods=["POST"]),
        Route(f"{base}/deliberate/decide", api(decide), methods=["POST"]),
        Route("/api/commander/deliberations", api(deliberations)),
        Route("/api/commander/overrides", api(listing)),
        Route("/api/commander/overrides", api(request_override), methods=["POST"]),
        Route("/api/commander/overrides/{override_id}/confirm", api(confirm), methods=["POST"]),
    ]
