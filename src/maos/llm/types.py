"""Chat values: what goes to a provider and what comes back, frozen and SDK-free.

Messages follow the OpenAI chat shape (``system``/``user``/``assistant``/``tool``), the
lingua franca of local servers; the Anthropic provider translates at its boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

__all__ = [
    "ChatRequest",
    "Completion",
    "Message",
    "Provider",
    "Role",
    "Tool",
    "ToolCall",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model asks for; MAOS never runs it on the model's say-so."""

    id: str
    """The provider's id for this call; a ``tool`` message answers it by this id."""
    name: str
    """The tool's name as declared in the request."""
    arguments: str
    """The arguments as JSON text, exactly as the model wrote them (it may not parse)."""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: str | None = None
    """Text; None for an assistant turn that only calls tools."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Calls an assistant turn made."""
    tool_call_id: str | None = None
    """For a ``tool`` turn: the call it answers."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


def _frozen_json(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    # A deep copy through JSON: the caller's nested dicts cannot change what was sent.
    copied: dict[str, Any] = json.loads(json.dumps(dict(raw)))
    return MappingProxyType(copied)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call, described by a JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({"type": "object", "properties": {}})
    )
    """JSON schema of the arguments object."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen_json(self.parameters))


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    max_tokens: int = 1024
    """Hard cap on completion tokens; the budget reserved it before the call."""
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class Completion:
    """One provider's answer."""

    message: Message
    """The assistant turn (text and/or tool calls)."""
    usage: Usage
    provider: str
    """The provider's configured name (``openai``, ``ollama`` ...), not the model's."""
    model: str
    finish_reason: str = ""


class Provider(Protocol):
    """One way to reach a model. Implementations raise only `ProviderFailed`/`LlmError`."""

    name: str
    model: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...
