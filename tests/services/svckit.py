"""What the Ring 1 supervision tests share: reading what was logged."""

from __future__ import annotations

from maos.kernel.kernel import Kernel

__all__ = ["logged"]


def logged(k: Kernel, kind: str) -> list[dict[str, object]]:
    """The bodies of ``kind`` records in ``k``'s log, oldest first."""
    return [dict(r.body) for r in k.wal.read(kinds=[kind])]
