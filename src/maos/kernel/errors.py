"""The one error tree of MAOS.

Denials are *values* (`maos.kernel.types.Deny`), not exceptions: an exception means the
caller cannot go on. Every error carries a stable machine ``code`` (dotted, upper case,
never reused for a different meaning) and a human sentence.

    MaosError                      root; code + message + fields
    ├── InputError                 BAD_INPUT.*   the caller sent something malformed
    ├── TokenError                 TOKEN.*       minting/attenuating asked for too much
    ├── WalError                   WAL.*         the log cannot be read, written or trusted
    ├── ApprovalError              APPROVAL.*    no such approval, already decided, not allowed
    ├── EffectFailed               EFFECT.*      an adapter reported failure (translated here)
    └── StateError                 STATE.*       an operation does not fit the kernel's state
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "ApprovalError",
    "EffectFailed",
    "InputError",
    "MaosError",
    "StateError",
    "TokenError",
    "WalError",
]


class MaosError(Exception):
    """Root of every MAOS error; ``code`` is stable and machine-readable."""

    default_code = "MAOS.ERROR"

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields: Mapping[str, Any] = MappingProxyType(dict(fields))

    def to_dict(self) -> dict[str, Any]:
        """The shape errors take on the wire and in the CLI's JSON output."""
        return {"code": self.code, "message": self.message, **self.fields}


class InputError(MaosError):
    """Input from outside the kernel failed validation (codes ``BAD_INPUT.*``)."""


class TokenError(MaosError):
    """A token operation was refused at the API (codes ``TOKEN.*``)."""


class WalError(MaosError):
    """The write-ahead log cannot be written, read or trusted (codes ``WAL.*``)."""


class ApprovalError(MaosError):
    """An approval request cannot be decided as asked (codes ``APPROVAL.*``)."""


class EffectFailed(MaosError):
    """An effect adapter failed; raised at the Commit Layer boundary (codes ``EFFECT.*``)."""


class StateError(MaosError):
    """The request does not fit the kernel's current state (codes ``STATE.*``)."""
