"""The MCP gateway: an MCP server whose every tool call is an ordinary kernel intent.

    MCP client --tools/call NAME--> Gateway (one agent + token per session)
      -> operator rules (maos.mcp.rules)     refused: an MCP tool error, ``mcp.refused`` logged
      -> pod gateway ``api.tool`` (Gateways)  targets and amount from the manifest
      -> kernel.submit: DSC, R6/R10, approvals, WAL, Commit Layer -> McpAdapter -> upstream
      -> the result, labelled, back as ``content`` + ``structuredContent``

A refusal is a result with ``isError: true`` whose text is ``refused CODE: sentence``; a
call parked for the Commander waits for the decision up to ``on_pending.timeout_s`` or
answers ``pending approval ID`` at once, per policy, and ``maos_outcome`` fetches the
outcome by ID later - from any session of this gateway, also after a restart, since the
approval lives in the log and the kernel runs an approved call exactly once.

Sessions: an MCP session (stdio: the connection; streamable HTTP with the handshake:
its ``Mcp-Session-Id``) is one agent of ring 3 with its own context label; the
2026-07-28 protocol has no sessions, so its requests share one agent per gateway run
(the conservative choice: a context tainted by one request taints the next).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter, ValidationError

from maos.kernel.approvals import ApprovalStatus
from maos.kernel.errors import MaosError
from maos.kernel.identifiers import extract_amounts, target_values
from maos.kernel.kernel import Kernel
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass, Outcome, OutcomeStatus
from maos.mcp.adapter import McpAdapter
from maos.mcp.catalogue import Catalogue, Entry, kernel_label, same_definition
from maos.mcp.policy import Policy
from maos.mcp.rules import Refusal, ToolRules, compile_rules
from maos.mcp.upstream import UpstreamError, digest
from maos.pod.frames import Frame
from maos.pod.gateways import ApiTool, Gateways
from maos.pod.router import attach

__all__ = ["OUTCOME_TOOL", "Gateway"]

_log = logging.getLogger(__name__)

OUTCOME_TOOL = "maos_outcome"
_OUTCOME = types.Tool(
    name=OUTCOME_TOOL,
    description="The outcome of a call that MAOS parked for approval, by its approval id"
    " (ap-...). Waits up to timeout_s for the Commander's decision.",
    input_schema={
        "type": "object",
        "properties": {
            "approval_id": {"type": "string"},
            "timeout_s": {"type": "number", "minimum": 0, "maximum": 3600},
        },
        "required": ["approval_id"],
    },
)
_BLOCKS: TypeAdapter[list[types.ContentBlock]] = TypeAdapter(list[types.ContentBlock])
_PROMPT_MESSAGES: TypeAdapter[list[types.PromptMessage]] = TypeAdapter(list[types.PromptMessage])
_CONTENTS: TypeAdapter[list[types.TextResourceContents | types.BlobResourceContents]] = TypeAdapter(
    list[types.TextResourceContents | types.BlobResourceContents]
)
_STATELESS = "stateless"
_TOKEN_MARGIN = 60.0


@dataclass(slots=True)
class _Session:
    agent_id: str
    gates: Gateways
    token: str
    expires: float
    frames: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _text_result(text: str, *, error: bool, meta: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content=None,
        is_error=error,
        _meta={"maos": meta},
    )


class Gateway:
    """One policy's gateway on one kernel; `server()` is the MCP server to run."""

    def __init__(self, kernel: Kernel, policy: Policy, adapter: McpAdapter) -> None:
        self.kernel = kernel
        self.policy = policy
        self.adapter = adapter
        self.task_id = policy.name
        self.prefix = f"mcp-{policy.name}"[:40]
        self.rules: dict[str, ToolRules] = {}
        self._sessions: dict[str, _Session] = {}
        self._session_lock = asyncio.Lock()
        self._epoch = os.urandom(4).hex()

    # -- start -----------------------------------------------------------------------

    async def start(self, catalogue: Catalogue) -> None:
        """Open the task and register ``catalogue``'s tools (`maos.mcp.serve.connect`).

        A tool whose description or schema differs from its earlier registration is not
        registered again: it is refused until the operator accepts it (a rug-pull)."""
        await self._open_task()
        counts = self._committed_counts()
        for entry in catalogue.entries:
            if entry.treatment == "refused":
                continue
            await self._register(entry)
            self.rules[entry.kernel] = compile_rules(
                entry.policy, calls=counts.get(f"tool.{entry.kernel}", 0)
            )
        self.adapter.use(catalogue)

    async def _open_task(self) -> None:
        """The task of every session: its grant is what the operator's words ask for
        (`maos.kernel.grants`), within the policy's ceiling; what they name is trusted."""
        ceiling = {EffectClass(e) for e in self.policy.effects}
        if self.policy.default == "park":
            ceiling.add(EffectClass.EXECUTE)  # granted only if the words ask; R7 always parks
        known = self.kernel.registry.tasks.get(self.task_id)
        if known is not None and self._opened_with() == (self.policy.task, sorted(ceiling)):
            return
        await self.kernel.open_task(
            self.task_id,
            trusted_targets=target_values(self.policy.task),
            trusted_amounts=extract_amounts(self.policy.task),
            effect_classes=sorted(ceiling),
            request=self.policy.task,
        )
        await self.kernel.wal.append(
            "mcp.task",
            {
                "task_id": self.task_id,
                "request": self.policy.task,
                "ceiling": sorted(c.value for c in ceiling),
            },
        )

    def _opened_with(self) -> tuple[str, list[EffectClass]] | None:
        """The request and ceiling this gateway last opened its task with, from the log."""
        last = None
        for rec in self.kernel.wal.read(kinds=("mcp.task",)):
            if rec.body.get("task_id") == self.task_id:
                last = (str(rec.body["request"]), [EffectClass(c) for c in rec.body["ceiling"]])
        return last

    def _committed_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self.kernel.wal.read(kinds=("intent.committed",)):
            if rec.body.get("task_id") == self.task_id:
                op = str(rec.body.get("op", ""))
                counts[op] = counts.get(op, 0) + 1
        return counts

    async def _register(self, entry: Entry) -> None:
        labels = self.policy.upstreams[entry.upstream]
        reg = entry.registration(
            labels.prompts if entry.treatment == "prompt" else labels.resources
        )
        known = self.kernel.registry.tools.get(entry.kernel)
        if known is not None and not same_definition(known.manifest, reg):
            self.adapter.changed.add(entry.kernel)
            await self.kernel.wal.append(
                "mcp.manifest_changed",
                {
                    "tool": entry.kernel,
                    "upstream": entry.upstream,
                    "remote": entry.remote,
                    "registered_sha256": known.module_sha256,
                    "offered_sha256": entry.digest,
                    "code": "TOOL.MANIFEST_CHANGED",
                },
            )
            _log.warning("%s/%s changed since registration: refused", entry.upstream, entry.remote)
            return
        await self.kernel.register_tool(
            entry.kernel,
            effect_classes=reg.effect_classes,
            targets=reg.targets,
            result_label=kernel_label(reg.result_label),
            accepts=reg.accepts,
            external=reg.external,
            amount=reg.amount,
            parameters=reg.parameters,
            description=reg.description,
            timeout_s=reg.timeout_s,
            module=None,
            module_sha256=entry.digest or None,
        )

    async def upstream_changed(self, upstream: str) -> None:
        """``notifications/*/list_changed`` from ``upstream``: re-list, refuse what changed."""
        conn = self.adapter.connections[upstream]
        try:
            offer = await conn.relist()
        except (UpstreamError, TimeoutError) as exc:
            _log.warning("cannot re-list %s: %s", upstream, exc)
            return
        offered = {t.name: t for t in offer.tools}
        for entry in self.adapter.catalogue.entries:
            if (
                entry.upstream != upstream
                or entry.tool is None
                or entry.kernel in self.adapter.changed
            ):
                continue
            now = offered.get(entry.remote)
            if now is None or digest(now) != entry.digest:
                self.adapter.changed.add(entry.kernel)
                await self.kernel.wal.append(
                    "mcp.manifest_changed",
                    {
                        "tool": entry.kernel,
                        "upstream": upstream,
                        "remote": entry.remote,
                        "registered_sha256": entry.digest,
                        "offered_sha256": None if now is None else digest(now),
                        "code": "TOOL.MANIFEST_CHANGED",
                    },
                )

    # -- sessions --------------------------------------------------------------------

    async def _session(self, key: str) -> _Session:
        async with self._session_lock:
            session = self._sessions.get(key)
            now = self.kernel.clock()
            if session is None:
                agent_id = f"{self.prefix}-{os.urandom(6).hex()}"
                await self.kernel.register_agent(agent_id, ring=3)
                gates = Gateways(
                    self.kernel,
                    attach(self.kernel),
                    agent_id=agent_id,
                    task_id=self.task_id,
                    epoch=f"{self._epoch}{os.urandom(4).hex()}",
                )
                session = _Session(agent_id, gates, "", 0.0)
                self._sessions[key] = session
            if session.expires - now < _TOKEN_MARGIN:
                grants = [Grant(f"tool.{k}", "*") for k in self.adapter.catalogue.by_kernel]
                session.token = self.kernel.mint(session.agent_id, self.task_id, grants)
                session.expires = now + 3600.0
            return session

    # -- calls -----------------------------------------------------------------------

    async def _refused(
        self, session: _Session, entry: str, refusal: Refusal
    ) -> types.CallToolResult:
        await self.kernel.wal.append(
            "mcp.refused",
            {
                "agent_id": session.agent_id,
                "task_id": self.task_id,
                "tool": entry,
                "code": refusal.code,
                "reason": refusal.reason,
            },
        )
        return _text_result(
            f"refused {refusal.code}: {refusal.reason}",
            error=True,
            meta={"status": "denied", "code": refusal.code},
        )

    async def submit(self, key: str, entry: Entry, args: Mapping[str, Any]) -> Outcome | Refusal:
        """``entry`` called with ``args`` by session ``key``, as the kernel decides it."""
        session = await self._session(key)
        if entry.kernel in self.adapter.changed:
            why = f"{entry.upstream} changed {entry.remote or entry.kernel!r} after registration"
            return Refusal("TOOL.MANIFEST_CHANGED", why)
        rules = self.rules.get(entry.kernel)
        refusal = rules.check(args) if rules is not None else None
        if refusal is not None:
            return refusal
        try:
            call = ApiTool(name=entry.kernel, args=dict(args))
        except ValidationError as exc:
            return Refusal("TOOL.BAD_ARGS", exc.errors()[0]["msg"])
        frame = Frame(session.agent_id, next(session.frames), "api", "tool", call, session.token)
        answer = await session.gates.handle(frame)
        if answer.outcome.status is OutcomeStatus.COMMITTED and rules is not None:
            rules.committed()
        return answer.outcome

    async def call_tool(self, key: str, name: str, args: Mapping[str, Any]) -> types.CallToolResult:
        if name == OUTCOME_TOOL:
            return await self.outcome(key, args)
        session = await self._session(key)
        entry = self.adapter.catalogue.by_visible.get(name)
        if entry is None:
            why = f"{name!r} is not a tool this gateway's policy offers"
            return await self._refused(session, name, Refusal("MCP.TOOL.UNDECLARED", why))
        result = await self.submit(key, entry, args)
        if isinstance(result, Refusal):
            return await self._refused(session, entry.kernel, result)
        if result.status is OutcomeStatus.PENDING and self.policy.on_pending.mode == "wait":
            assert result.approval_id is not None
            result = await self._wait(result, self.policy.on_pending.timeout_s)
        return self.render(result)

    async def _wait(self, pending: Outcome, timeout: float) -> Outcome:
        assert pending.approval_id is not None
        if timeout <= 0:
            return pending
        try:
            return await asyncio.wait_for(self.kernel.wait(pending.approval_id), timeout)
        except TimeoutError:
            return pending

    async def outcome(self, key: str, args: Mapping[str, Any]) -> types.CallToolResult:
        session = await self._session(key)
        approval_id, timeout = args.get("approval_id"), args.get("timeout_s", 0)
        if not isinstance(approval_id, str) or isinstance(timeout, bool):
            return await self._refused(
                session, OUTCOME_TOOL, Refusal("TOOL.BAD_ARGS", "approval_id must be a string")
            )
        if not isinstance(timeout, (int, float)) or not 0 <= timeout <= 3600:
            return await self._refused(
                session, OUTCOME_TOOL, Refusal("TOOL.BAD_ARGS", "timeout_s must be 0-3600")
            )
        try:
            item = self.kernel.approvals.get(approval_id)
        except MaosError as exc:
            return await self._refused(session, OUTCOME_TOOL, Refusal(exc.code, exc.message))
        if item.task_id != self.task_id or not item.agent_id.startswith(self.prefix + "-"):
            why = f"approval {approval_id} was not asked through this gateway"
            return await self._refused(session, OUTCOME_TOOL, Refusal("MCP.APPROVAL.NOT_OURS", why))
        pending = Outcome(
            str(item.intent.get("intent_id", "")),
            OutcomeStatus.PENDING,
            code=item.code,
            reason=item.reason,
            approval_id=approval_id,
        )
        if item.status is ApprovalStatus.PENDING:
            return self.render(await self._wait(pending, float(timeout)) if timeout else pending)
        return self.render(await self.kernel.wait(approval_id))  # decided: it runs or ran

    def render(self, outcome: Outcome) -> types.CallToolResult:
        """An outcome as the client sees it; the MAOS facts ride in ``_meta.maos``."""
        meta: dict[str, Any] = {
            "status": outcome.status.value,
            "intent_id": outcome.intent_id,
            "label": outcome.label.to_dict(),
        }
        if outcome.code:
            meta["code"] = outcome.code
        if outcome.approval_id:
            meta["approval_id"] = outcome.approval_id
        if outcome.status is OutcomeStatus.PENDING:
            text = (
                f"pending approval {outcome.approval_id}: not done yet; the Commander decides"
                f" ({outcome.code}: {outcome.reason}). Ask {OUTCOME_TOOL} with this id later."
            )
            return _text_result(text, error=True, meta=meta)
        if outcome.status is not OutcomeStatus.COMMITTED:
            verb = "refused" if outcome.status is OutcomeStatus.DENIED else outcome.status.value
            return _text_result(f"{verb} {outcome.code}: {outcome.reason}", error=True, meta=meta)
        value = outcome.value if isinstance(outcome.value, dict) else {}
        try:
            blocks = _BLOCKS.validate_python(value.get("content", []))
        except ValidationError:
            blocks = [types.TextContent(text=str(value.get("content")))]
        return types.CallToolResult(
            content=blocks,
            structured_content=value.get("structuredContent"),
            is_error=bool(value.get("isError", False)),
            _meta={"maos": meta},
        )

    # -- resources and prompts -------------------------------------------------------

    def _reader(self, upstream: str, treatment: str) -> Entry | None:
        for entry in self.adapter.catalogue.entries:
            if entry.upstream == upstream and entry.treatment == treatment:
                return entry
        return None

    async def read_resource(self, key: str, uri: str) -> types.ReadResourceResult:
        for name, conn in self.adapter.connections.items():
            offered = conn.announced.resources if conn.announced else ()
            if any(str(r.uri) == uri for r in offered):
                entry = self._reader(name, "resource")
                if entry is not None:
                    out = await self.submit(key, entry, {"uri": uri})
                    value = _committed(out)
                    return types.ReadResourceResult(
                        contents=_CONTENTS.validate_python(value.get("contents", []))
                    )
        raise _mcp_error("MCP.RESOURCE.UNKNOWN", f"no upstream offers {uri!r}")

    async def get_prompt(
        self, key: str, name: str, arguments: Mapping[str, str]
    ) -> types.GetPromptResult:
        for upstream, conn in self.adapter.connections.items():
            offered = conn.announced.prompts if conn.announced else ()
            if any(p.name == name for p in offered):
                entry = self._reader(upstream, "prompt")
                if entry is not None:
                    out = await self.submit(
                        key, entry, {"name": name, "arguments": dict(arguments)}
                    )
                    value = _committed(out)
                    return types.GetPromptResult(
                        description=value.get("description"),
                        messages=_PROMPT_MESSAGES.validate_python(value.get("messages", [])),
                    )
        raise _mcp_error("MCP.PROMPT.UNKNOWN", f"no upstream offers a prompt {name!r}")

    # -- the MCP server --------------------------------------------------------------

    def tools(self) -> list[types.Tool]:
        offered = [
            e.tool.model_copy(update={"name": e.visible})
            for e in self.adapter.catalogue.by_visible.values()
            if e.tool is not None and e.kernel not in self.adapter.changed
        ]
        return [*offered, _OUTCOME]

    def server(self, *, session_key: Any = None) -> Server[Any]:
        """The MCP server; ``session_key(ctx)`` names the session a request belongs to."""
        key_of = session_key or _session_key

        async def list_tools(
            ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return types.ListToolsResult(tools=self.tools())

        async def call_tool(
            ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            return await self.call_tool(key_of(ctx), params.name, params.arguments or {})

        async def list_resources(
            ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
        ) -> types.ListResourcesResult:
            found = [r for c in self.adapter.connections.values() for r in _offer(c, "resources")]
            return types.ListResourcesResult(resources=found)

        async def read_resource(
            ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
        ) -> types.ReadResourceResult:
            return await self.read_resource(key_of(ctx), str(params.uri))

        async def list_prompts(
            ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
        ) -> types.ListPromptsResult:
            found = [p for c in self.adapter.connections.values() for p in _offer(c, "prompts")]
            return types.ListPromptsResult(prompts=found)

        async def get_prompt(
            ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
        ) -> types.GetPromptResult:
            return await self.get_prompt(key_of(ctx), params.name, params.arguments or {})

        return Server(
            "maos-mcp-gateway",
            version="1",
            instructions="Every call is checked, logged and carried out by MAOS; a refusal"
            " names its code, a parked call its approval id (ask maos_outcome).",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_read_resource=read_resource,
            on_list_prompts=list_prompts,
            on_get_prompt=get_prompt,
        )


def _offer(conn: Any, kind: str) -> tuple[Any, ...]:
    return getattr(conn.announced, kind) if conn.announced is not None else ()


def _session_key(ctx: ServerRequestContext[Any]) -> str:
    """HTTP: the ``Mcp-Session-Id`` (none on 2026-07-28: one shared agent). Anything else
    is the stdio connection, which a gateway process serves exactly one of."""
    headers = getattr(ctx.request, "headers", None)
    if headers is not None:
        sid = headers.get("mcp-session-id")
        return f"http:{sid}" if sid else _STATELESS
    return "stdio"


def _mcp_error(code: str, message: str) -> Exception:
    return MCPError(code=types.INVALID_PARAMS, message=f"{code}: {message}")


def _committed(out: Outcome | Refusal) -> dict[str, Any]:
    """A resource or prompt read's value; anything else is an MCP error naming its code."""
    if isinstance(out, Refusal):
        raise _mcp_error(out.code, out.reason)
    if out.status is not OutcomeStatus.COMMITTED:
        raise _mcp_error(out.code or out.status.value, out.reason or "not read")
    return out.value if isinstance(out.value, dict) else {}
