"""The contract between the Commit Layer and the adapters that touch the world.

This ring sits below the kernel and imports nothing of MAOS: the kernel translates
`EffectError` into its own errors at the boundary. Only the Commit Layer calls an
adapter, and only after the ``prepared`` record is durable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

__all__ = ["Adapter", "EffectCall", "EffectError", "EffectResult"]


def _frozen(raw: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(raw or {}))


@dataclass(frozen=True, slots=True)
class EffectCall:
    """Everything an adapter needs to perform (or re-perform, or confirm) one effect."""

    op: str
    """``fs.write``, ``http.request``, ``email.send`` ..."""
    target: str
    """Workspace-relative path, absolute URL, or recipient address."""
    idempotency_key: str
    """Stable per logical effect; adapters derive dedup handles (Message-ID, temp names) from it."""
    params: Mapping[str, Any] = field(default_factory=_frozen)
    """Operation arguments, already validated by the kernel."""
    constraints: Mapping[str, Any] = field(default_factory=_frozen)
    """Limits the capability imposes on this call (``allowed_hosts``, ``max_bytes``)."""


@dataclass(frozen=True, slots=True)
class EffectResult:
    """What an adapter reports back; JSON-compatible so it can be logged as is."""

    value: Any = None


class EffectError(Exception):
    """An effect could not be carried out; ``code`` is stable (``EFFECT.FS.ESCAPE`` ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Adapter(Protocol):
    """One family of effects (``fs``, ``http``, ``email``)."""

    ops: frozenset[str]
    """The operations this adapter performs."""

    def idempotent(self, call: EffectCall) -> bool:
        """True when re-running ``call`` with the same key is provably harmless.

        Asked per call, not per op: ``http.request`` is idempotent as a GET, not as a POST.

        Only such effects are confirmed or redone after a crash; the others become
        ``in_doubt`` for the Commander.
        """
        ...

    async def execute(self, call: EffectCall) -> EffectResult:
        """Perform the effect; raise `EffectError` on failure."""
        ...

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        """After a crash: the result if the effect provably happened, else None.

        Called only for idempotent ops; the Commit Layer redoes the effect when this
        returns None.
        """
        ...
