"""The six gateways: what each sanitized frame of a pod asks of the kernel.

    fs.read|list|write|delete {path}      -> fs.* intent, target = the workspace path
    api.request {method, url, ...}        -> http.request, target = the URL
    api.tool {name, args}                 -> tool.<name> (a registered tool), targets = every
                                             value at the manifest's target paths, with its
                                             kind; a value it cannot read is a refusal
    outmsg.email {to, subject, body, cc}  -> email.send, target = to, extra targets = cc
    outmsg.send {to, body}                -> msg.send to another agent (`maos.pod.router`)
    outmsg.a2a {to, body}                 -> a2a.send to an A2A agent, target = its URL
    inmsg.recv {max_items, timeout_ms}    -> msg.receive; raises the reader's context label
    llm.complete {messages, max_tokens}   -> llm.complete; the adapter's outcome (LLM.* codes),
                                             LLM.UNAVAILABLE when no adapter is configured
    admin.heartbeat | apoptosis           -> the kernel's own ops (R9 needs no capability)
    admin.wait {approval_id}              -> kernel.wait: the outcome of a parked intent
    admin.status                          -> the agent's own record: status, ring, context
    admin.tools                           -> the registered tools its token grants, as the
                                             model-facing list (name, description, schema)
    admin.questions                       -> admin.questions: the Commander's questions and
                                             edits on this agent's own parked intents
    admin.answer {approval_id, text,      -> admin.answer, target = the approval: logged as
                  proposal}                  the agent's (untrusted) answer, decides nothing

Mail goes out through OutMsg rather than API: it is an outgoing message, so the Sentry
inspects its text and logs its egress like any other message, and the API gateway's
network whitelist (hosts) stays about HTTP.

Nothing the kernel needs is taken from the pod on trust: the agent id is the channel's,
the task is the one the runtime started the pod for, costs are derived here (an agent
cannot declare its mail free), and the capability token is the frame's ``cap`` byte for
byte - DSC check 1 decides on it. Idempotency keys come from the SDK (``key``), or are
derived from the pod's random epoch and the frame id, so a restarted pod, whose frame
ids start again at 1, never collides with its predecessor's effects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import Field, JsonValue

from maos.kernel.dsc.budget import reserve_tokens
from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.labels import BOTTOM, Label
from maos.kernel.manifest import ManifestError
from maos.kernel.types import Outcome, OutcomeStatus
from maos.pod.frames import (
    BASE_OPS,
    ApiRequestArgs,
    ApiToolArgs,
    Frame,
    FsPathArgs,
    FsWriteArgs,
    InMsgRecvArgs,
    LlmCompleteArgs,
    NoArgs,
    OutMsgSendArgs,
    Reply,
    ReplyError,
    StrictModel,
)
from maos.pod.router import MessageRouter
from maos.tool import ToolError, check_args

__all__ = ["GATEWAY_OPS", "Answer", "Gateways", "describe", "reply_for"]

T = TypeVar("T")

_KEY = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,96}$")
"""An SDK idempotency key; the kernel prefixes it with the agent id (no cross-agent replay)."""


class FsPath(FsPathArgs):
    key: str | None = _KEY


class FsWrite(FsWriteArgs):
    key: str | None = _KEY


class ApiRequest(ApiRequestArgs):
    key: str | None = _KEY


class ApiTool(ApiToolArgs):
    key: str | None = _KEY


class EmailSend(OutMsgSendArgs):
    subject: str = Field(default="", max_length=998)
    cc: list[str] = Field(default_factory=list, max_length=32)
    key: str | None = _KEY


class MsgSend(OutMsgSendArgs):
    key: str | None = _KEY


class A2aSend(OutMsgSendArgs):
    key: str | None = _KEY


class MsgRecv(InMsgRecvArgs):
    timeout_ms: int = Field(default=0, ge=0, le=60_000)
    """How long to wait for a first message; the pod's request blocks meanwhile."""
    key: str | None = _KEY


class LlmComplete(LlmCompleteArgs):
    key: str | None = _KEY


class AdminAnswer(StrictModel):
    """The shape only; what an answer may say is the kernel's to check (``HACF.BAD_ANSWER``,
    kernel/deliberation.py), so an agent's malformed proposal gets a code, not a kill."""

    approval_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    text: str = Field(max_length=4000)
    proposal: dict[str, JsonValue] | None = None
    key: str | None = _KEY


class AdminWait(StrictModel):
    approval_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    timeout_ms: int | None = Field(default=None, ge=0, le=7 * 24 * 3600 * 1000)


GATEWAY_OPS = (
    BASE_OPS.with_op("fs", "read", FsPath)
    .with_op("fs", "list", FsPath)
    .with_op("fs", "delete", FsPath)
    .with_op("fs", "write", FsWrite)
    .with_op("api", "request", ApiRequest)
    .with_op("api", "tool", ApiTool)
    .with_op("outmsg", "email", EmailSend)
    .with_op("outmsg", "send", MsgSend)
    .with_op("outmsg", "a2a", A2aSend)
    .with_op("inmsg", "recv", MsgRecv)
    .with_op("llm", "complete", LlmComplete)
    .with_op("admin", "wait", AdminWait)
    .with_op("admin", "status", NoArgs)
    .with_op("admin", "tools", NoArgs)
    .with_op("admin", "questions", NoArgs)
    .with_op("admin", "answer", AdminAnswer)
)
"""Every operation a pod may send; the models subclass the channel's base ones, so the
Sentry's whitelists (which match on those) apply unchanged."""

LLM_UNAVAILABLE = "LLM.UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Answer:
    """The kernel's outcome for one frame, with what the frame became (for logs and CLIs)."""

    outcome: Outcome
    op: str
    """The kernel-side operation (``fs.write``, ``email.send``, ``admin.wait`` ...)."""
    target: str


def reply_for(frame_id: int, outcome: Outcome) -> Reply:
    """The pod's reply: the whole outcome as ``result``, and ``error`` unless committed."""
    result = {
        "status": outcome.status.value,
        "value": outcome.value,
        "label": outcome.label.to_dict(),
        "code": outcome.code,
        "reason": outcome.reason,
        "approval_id": outcome.approval_id,
    }
    # Built by the kernel from its own Outcome, so construction skips re-validation (it is
    # on every frame's path); the channel's JSON encoder still rejects a non-JSON value.
    if outcome.status is OutcomeStatus.COMMITTED:
        return Reply.model_construct(id=frame_id, ok=True, result=result, error=None)
    code = outcome.code or outcome.status.value
    error = ReplyError.model_construct(code=code, message=outcome.reason)
    return Reply.model_construct(id=frame_id, ok=False, result=result, error=error)


_KERNEL_OPS = {
    ("api", "request"): "http.request",
    ("outmsg", "email"): "email.send",
    ("outmsg", "send"): "msg.send",
    ("outmsg", "a2a"): "a2a.send",
    ("inmsg", "recv"): "msg.receive",
    ("llm", "complete"): "llm.complete",
}


_TARGET_FIELDS = {"fs": "path", "api": "url", "outmsg": "to"}


def describe(frame: Frame) -> tuple[str, str]:
    """The kernel operation and target a frame stands for, also when the Sentry refused it."""
    op = _KERNEL_OPS.get((frame.gw, frame.op), f"{frame.gw}.{frame.op}")
    if isinstance(frame.args, AdminWait | AdminAnswer):
        return op, frame.args.approval_id
    if isinstance(frame.args, ApiToolArgs):
        return f"tool.{frame.args.name}", frame.args.name
    name = _TARGET_FIELDS.get(frame.gw)
    if name is not None:
        return op, str(getattr(frame.args, name))
    return op, "default" if frame.gw == "llm" else frame.agent_id


def _refused(code: str, reason: str, status: OutcomeStatus = OutcomeStatus.DENIED) -> Outcome:
    return Outcome("", status, code=code, reason=reason)


class Gateways:
    """The kernel side of one pod's gateways. ``abort()`` ends any wait when the pod dies."""

    def __init__(
        self,
        kernel: Kernel,
        router: MessageRouter,
        *,
        agent_id: str,
        task_id: str,
        epoch: str,
    ) -> None:
        self.kernel = kernel
        self.router = router
        self.agent_id = agent_id
        self.task_id = task_id
        self._epoch = epoch
        self._gone = asyncio.Event()

    def abort(self) -> None:
        self._gone.set()

    async def handle(self, frame: Frame) -> Answer:
        op, target = describe(frame)
        args = frame.args
        if isinstance(args, FsWrite):
            return await self._submit(frame, op, target, {"content": args.content})
        if isinstance(args, FsPath):
            return await self._submit(frame, op, target)
        if isinstance(args, ApiTool):
            return await self._tool(frame, args)
        if isinstance(args, ApiRequest):
            params: dict[str, Any] = {"method": args.method, "headers": args.headers}
            if args.body is not None:
                params["body"] = args.body
            return await self._submit(frame, op, target, params, api_calls=1)
        if isinstance(args, EmailSend):
            mail = {"subject": args.subject, "body": args.body, "cc": list(args.cc)}
            return await self._submit(frame, op, target, mail, api_calls=1, extra_targets=args.cc)
        if isinstance(args, A2aSend):
            return await self._submit(frame, op, target, {"text": args.body}, api_calls=1)
        if isinstance(args, MsgSend):
            return await self._send_message(frame, args)
        if isinstance(args, MsgRecv):
            return await self._receive(frame, args)
        if isinstance(args, LlmComplete):
            return await self._complete(frame, args)
        if isinstance(args, AdminWait):
            return await self._wait(args)
        if isinstance(args, AdminAnswer):
            said = {"text": args.text, "proposal": args.proposal}
            return await self._submit(frame, op, target, said)
        if op in ("admin.heartbeat", "admin.apoptosis", "admin.questions"):
            reason = {"reason": vars(args).get("reason", "")} if op == "admin.apoptosis" else {}
            return await self._submit(frame, op, target, reason)
        if op == "admin.status":
            return self._status()
        if op == "admin.tools":
            return self._tools(frame)
        # The channel only passes ops of GATEWAY_OPS; reaching here is a table/code mismatch.
        return Answer(_refused("GATEWAY.UNROUTED", f"{op} has no route"), op, target)

    async def _submit(
        self,
        frame: Frame,
        op: str,
        target: str,
        params: dict[str, Any] | None = None,
        *,
        api_calls: int = 0,
        tokens: int = 0,
        money_cents: int = 0,
        extra_targets: list[str] | None = None,
        target_kinds: list[str] | None = None,
    ) -> Answer:
        # vars(): a missing attribute on a pydantic model costs an exception per frame.
        key = vars(frame.args).get("key") or f"{self._epoch}-{frame.id}"
        raw = {
            "task_id": self.task_id,
            "op": op,
            "target": target,
            "idempotency_key": key,
            "token": frame.cap or "",
            "params": params or {},
            "cost": {"api_calls": api_calls, "tokens": tokens, "money_cents": money_cents},
            "extra_targets": list(extra_targets or ()),
            "target_kinds": list(target_kinds or ()),
        }
        return Answer(await self.kernel.submit(raw, agent_id=self.agent_id), op, target)

    async def _tool(self, frame: Frame, args: ApiTool) -> Answer:
        """A tool call becomes ``tool.<name>`` with the targets and cost its manifest says
        the arguments hold: the agent names a tool and arguments, never their meaning."""
        op = f"tool.{args.name}"
        tool = self.kernel.registry.tools.get(args.name)
        if tool is None:
            why = f"no tool named {args.name!r} is registered"
            return Answer(_refused("GATEWAY.TOOL.UNKNOWN", why), op, args.name)
        try:
            check_args(tool.parameters, args.args)
        except ToolError as exc:
            return Answer(_refused(exc.code, exc.message), op, args.name)
        manifest = tool.manifest
        try:  # every value at a declared path is a target; one it cannot read, a refusal
            found = manifest.targets_of(args.args)
            cents = manifest.amount_cents(args.args)
        except ManifestError as exc:
            return Answer(_refused(exc.code, exc.message), op, args.name)
        # A call with no target (a targetless tool, optional targets left out) is "" of
        # kind "none"; the kernel recomputes the targets and refuses any other claim.
        targets = [t.value for t in found] or [""]
        kinds = [t.kind for t in found] or ["none"]
        return await self._submit(
            frame,
            op,
            targets[0],
            {"args": args.args, "manifest_sha256": manifest.manifest_sha256},
            api_calls=1,
            money_cents=cents,
            extra_targets=targets[1:],
            target_kinds=kinds,
        )

    def _tools(self, frame: Frame) -> Answer:
        """The tools this agent's token grants, for its model's tool list; asking costs
        nothing and reveals no tool the token does not name."""
        try:
            grants = self.kernel.tokens.inspect(frame.cap or "").grants
        except MaosError as exc:
            return Answer(_refused(exc.code, exc.message), "admin.tools", self.agent_id)
        ops = {g.op for g in grants}
        listed = [
            {
                "name": name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
                "effect_class": tool.effect_class.value,
                "effect_classes": [c.value for c in tool.manifest.effect_classes],
            }
            for name, tool in sorted(self.kernel.registry.tools.items())
            if f"tool.{name}" in ops or "tool.*" in ops or "*" in ops
        ]
        outcome = Outcome("", OutcomeStatus.COMMITTED, value={"tools": listed})
        return Answer(outcome, "admin.tools", self.agent_id)

    async def _send_message(self, frame: Frame, args: MsgSend) -> Answer:
        # The sender's context label rides in the params the kernel logs and checks; the
        # agent cannot set it, since MsgSend has no such field.
        context = self.kernel.registry.agent(self.agent_id).context
        params = {"body": args.body, "sender": self.agent_id, "label": context.to_dict()}
        return await self._submit(frame, "msg.send", args.to, params)

    async def _receive(self, frame: Frame, args: MsgRecv) -> Answer:
        if args.timeout_ms:
            await self._until_gone(self.router.wait_for_mail(self.agent_id), args.timeout_ms)
        answer = await self._submit(
            frame, "msg.receive", self.agent_id, {"max_items": args.max_items}
        )
        outcome = answer.outcome
        if outcome.status is not OutcomeStatus.COMMITTED:
            return answer
        label = BOTTOM
        for item in (outcome.value or {}).get("messages", ()):
            label = label.join(Label.from_dict(dict(item["label"])))
        await self.kernel.raise_context(self.agent_id, label)
        return replace(answer, outcome=replace(outcome, label=label))

    async def _complete(self, frame: Frame, args: LlmComplete) -> Answer:
        messages = [m.model_dump(exclude_defaults=True) for m in args.messages]
        for m in messages:
            m.setdefault("content", None)
        params: dict[str, Any] = {"messages": messages, "max_tokens": args.max_tokens}
        if args.tools:
            params["tools"] = [t.model_dump() for t in args.tools]
        # The budget reserves the cap plus an estimate of the prompt before anything is spent.
        tokens = reserve_tokens(params)
        answer = await self._submit(
            frame, "llm.complete", "default", params, api_calls=1, tokens=tokens
        )
        if answer.outcome.code == "EFFECT.NO_ADAPTER":  # allowed by the DSC; nobody to ask
            why = "no LLM provider configured; the system runs in Rule-Based Mode"
            unavailable = _refused(LLM_UNAVAILABLE, why, OutcomeStatus.FAILED)
            return replace(answer, outcome=replace(unavailable, intent_id=answer.outcome.intent_id))
        return answer

    async def _wait(self, args: AdminWait) -> Answer:
        op, approval_id = "admin.wait", args.approval_id
        try:
            approval = self.kernel.approvals.get(approval_id)
        except MaosError as exc:
            return Answer(_refused(exc.code, exc.message), op, approval_id)
        if approval.agent_id != self.agent_id:  # another agent's outcome is not ours to see
            why = f"approval {approval_id} belongs to another agent"
            return Answer(_refused("GATEWAY.APPROVAL.NOT_YOURS", why), op, approval_id)
        outcome = await self._until_gone(self.kernel.wait(approval_id), args.timeout_ms)
        if outcome is None:
            outcome = Outcome(
                "",
                OutcomeStatus.PENDING,
                code="APPROVAL.STILL_PENDING",
                reason="the Commander has not decided yet",
                approval_id=approval_id,
            )
        return Answer(outcome, op, approval_id)

    def _status(self) -> Answer:
        agent = self.kernel.registry.agent(self.agent_id)
        value = {
            "agent_id": agent.agent_id,
            "task_id": self.task_id,
            "ring": agent.ring,
            "status": agent.status.value,
            "context": agent.context.to_dict(),
        }
        return Answer(
            Outcome("", OutcomeStatus.COMMITTED, value=value), "admin.status", agent.agent_id
        )

    async def _until_gone(self, work: Awaitable[T], timeout_ms: int | None) -> T | None:
        """``work``'s result, or None once ``timeout_ms`` passed or the pod is gone."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(self._gone.wait())
        timeout = None if timeout_ms is None else timeout_ms / 1000
        try:
            await asyncio.wait({task, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task.done():
            return task.result()
        task.cancel()
        return None
