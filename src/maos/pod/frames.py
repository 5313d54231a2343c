"""Frame schemas: the Input Sanitizer's whole vocabulary, small and strict.

Every frame a pod sends is untrusted bytes until it has passed `RequestFrame` (the
envelope) and the args model that `OpTable` names for its gateway and operation. All
models are strict (no coercion: ``"1"`` is not ``1``, ``true`` is not ``1``) and forbid
extra keys, so a field the kernel does not know - an ``agent_id`` claiming another
identity, say - makes the frame malformed instead of being silently ignored.

The identity of the sender is never part of a frame: it is bound to the channel when the
pod is spawned (`maos.pod.channel.PodChannel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "BASE_OPS",
    "GATEWAYS",
    "MAX_ID",
    "PROTOCOL_VERSION",
    "BeatFrame",
    "Frame",
    "Gateway",
    "OpTable",
    "Reply",
    "ReplyError",
    "RequestFrame",
    "StrictModel",
]

PROTOCOL_VERSION = 1
MAX_ID = 2**53 - 1
"""Largest frame id: beyond it a JSON number stops being an exact integer elsewhere."""

Gateway = Literal["inmsg", "outmsg", "llm", "api", "fs", "admin"]
GATEWAYS: frozenset[str] = frozenset({"inmsg", "outmsg", "llm", "api", "fs", "admin"})


class StrictModel(BaseModel):
    """Base of every schema a pod's bytes are checked against."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class RequestFrame(StrictModel):
    """The envelope of every pod-to-kernel frame."""

    v: Literal[1]
    """Protocol version; a frame from a different protocol is malformed."""
    id: int = Field(ge=1, le=MAX_ID)
    """Exactly one more than the previous frame's id on this channel (replay defence)."""
    gw: Gateway
    """Which of the six gateways the request is for."""
    op: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
    """Operation within the gateway."""
    args: dict[str, JsonValue]
    """Checked again, strictly, against the op's own model."""
    cap: str | None = Field(default=None, max_length=16384)
    """A capability token the agent presents; passed through untouched to DSC check 1."""


class BeatFrame(StrictModel):
    """A pod's heartbeat (`maos.kernel.watchdog`), sent by the bootstrap's beat thread.

    Not a request: it has no id (its own counter is the Watchdog's replay defence), it
    is answered by nothing and it never reaches the Sentry or the gateways. Only a
    channel that expects beats reads it as one; anywhere else it is malformed."""

    v: Literal[1]
    beat: int = Field(ge=1, le=MAX_ID)
    """The beat's number: one more than the last, so a replayed beat is refused."""
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")
    """``HMAC-SHA256(key, "<member>:<beat>")`` in hex (`maos.kernel.watchdog.beat_mac`)."""


# --- args of the base operations -------------------------------------------------------

_Path = Field(min_length=1, max_length=4096)
_Text = Field(max_length=200_000)


class FsPathArgs(StrictModel):
    path: str = _Path
    """Relative to the task's workspace; the FS gateway resolves and checks it."""


class FsWriteArgs(StrictModel):
    path: str = _Path
    content: str = _Text


class ApiRequestArgs(StrictModel):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    url: str = Field(min_length=1, max_length=8192)
    headers: dict[str, str] = Field(default_factory=dict, max_length=64)
    body: str | None = Field(default=None, max_length=200_000)


class OutMsgSendArgs(StrictModel):
    to: str = Field(min_length=1, max_length=256)
    """Recipient: an agent id or an address; the kernel checks it, the channel does not."""
    body: str = _Text


class InMsgRecvArgs(StrictModel):
    max_items: int = Field(default=1, ge=1, le=100)


class ApiToolArgs(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z_]{0,47}$")
    """A tool the kernel has registered; the kernel checks its grant (``tool.<name>``)."""
    args: dict[str, JsonValue] = Field(default_factory=dict, max_length=64)


class LlmToolCall(StrictModel):
    id: str = Field(max_length=128)
    name: str = Field(max_length=64)
    arguments: str = Field(max_length=64_000)
    """JSON text, as the model wrote it."""


class LlmMessage(StrictModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = Field(default=None, max_length=200_000)
    tool_calls: list[LlmToolCall] = Field(default_factory=list, max_length=32)
    """An assistant turn's calls, sent back so the model sees what it asked."""
    tool_call_id: str | None = Field(default=None, max_length=128)
    """A ``tool`` turn: the call it answers."""


class LlmTool(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=4000)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)


class LlmCompleteArgs(StrictModel):
    messages: list[LlmMessage] = Field(min_length=1, max_length=256)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    tools: list[LlmTool] = Field(default_factory=list, max_length=64)
    """Functions the model may ask for; the agent decides what to do with a request."""


class NoArgs(StrictModel):
    pass


class ApoptosisArgs(StrictModel):
    reason: str = Field(max_length=1024)


class OpTable:
    """Which args model each (gateway, op) pair must satisfy; unknown pairs are refused.

    Immutable: the gateways layer builds its own table with `with_op` and hands it to the
    channel, so there is no registry filled at import time.
    """

    __slots__ = ("_ops",)

    def __init__(self, ops: Mapping[tuple[str, str], type[StrictModel]]) -> None:
        for gw, _ in ops:
            if gw not in GATEWAYS:
                raise ValueError(f"unknown gateway {gw!r}")
        self._ops: Mapping[tuple[str, str], type[StrictModel]] = MappingProxyType(dict(ops))

    def with_op(self, gw: Gateway, op: str, model: type[StrictModel]) -> OpTable:
        return OpTable({**self._ops, (gw, op): model})

    def model_for(self, gw: str, op: str) -> type[StrictModel] | None:
        return self._ops.get((gw, op))


BASE_OPS = OpTable(
    {
        ("fs", "read"): FsPathArgs,
        ("fs", "list"): FsPathArgs,
        ("fs", "delete"): FsPathArgs,
        ("fs", "write"): FsWriteArgs,
        ("api", "request"): ApiRequestArgs,
        ("api", "tool"): ApiToolArgs,
        ("outmsg", "send"): OutMsgSendArgs,
        ("inmsg", "recv"): InMsgRecvArgs,
        ("llm", "complete"): LlmCompleteArgs,
        ("admin", "heartbeat"): NoArgs,
        ("admin", "apoptosis"): ApoptosisArgs,
    }
)
"""The operations every pod may ask for; the kernel's checks decide whether it may have them."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A request that passed the sanitizer, with the identity the channel was bound to."""

    agent_id: str
    """Bound at spawn; never read from the pod's bytes."""
    id: int
    gw: Gateway
    op: str
    args: StrictModel
    """Validated against the op's own model."""
    cap: str | None
    """The presented capability token, byte for byte as sent; unverified here."""


class ReplyError(StrictModel):
    code: str
    message: str


class Reply(StrictModel):
    """Kernel-to-pod answer to the request with the same ``id``."""

    v: Literal[1] = 1
    id: int = Field(ge=1, le=MAX_ID)
    ok: bool
    result: JsonValue = None
    error: ReplyError | None = None
