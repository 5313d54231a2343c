"""The ``a2a`` section of ``config.json``: the A2A endpoints `maos up` serves for agents.

Each endpoint receives A2A messages from other systems' agents for one MAOS agent and
delivers them to its InMsg inbox, labelled untrusted (`pod/a2a_inbound.py`). Validated
with the rest of the file by every command; the model lives down here because the
kernel's config reader is the one place every command validates.

    "a2a": {"inbound": [{"agent": "orders", "host": "127.0.0.1", "port": 8472}]}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["A2aEndpoint", "A2aSection"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class A2aEndpoint(BaseModel):
    """One inbound endpoint: its card at ``http://host:port/.well-known/agent-card.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    agent: str = Field(pattern=_ID)
    """The MAOS agent whose inbox receives the messages."""
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    """Loopback by default: put a TLS-terminating proxy in front to reach it from outside."""
    port: int = Field(ge=1, le=65535)


class A2aSection(BaseModel):
    """The ``a2a`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    inbound: tuple[A2aEndpoint, ...] = Field(default=(), max_length=16)

    @model_validator(mode="after")
    def _distinct(self) -> A2aSection:
        places = [(e.host, e.port) for e in self.inbound]
        if len(set(places)) != len(places):
            raise ValueError("two inbound endpoints listen on the same host and port")
        return self
