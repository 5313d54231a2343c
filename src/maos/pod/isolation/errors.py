"""Errors of pod isolation.

MaosError
├── IsolationUnavailable   POD.ISOLATION.UNAVAILABLE   the host cannot give this level
└── SandboxError           POD.SPAWN.*, POD.POOL.*     a pod could not be started
"""

from __future__ import annotations

from maos.kernel.errors import MaosError

__all__ = ["IsolationUnavailable", "SandboxError"]


class IsolationUnavailable(MaosError):
    """A profile asked for an isolation level this host cannot provide; never a fallback."""


class SandboxError(MaosError):
    """A pod could not be started, launched or handed out."""
