"""The federation's errors: one subclass of the MAOS root, codes ``FED.*``."""

from __future__ import annotations

from maos.kernel.errors import MaosError

__all__ = ["FederationError"]


class FederationError(MaosError):
    """A federation operation cannot go on (codes ``FED.*``): bad certificates, a server
    that will not start, a bucket that refuses a write."""
