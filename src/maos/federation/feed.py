"""Revocations from the federation's buckets into a node's kernel.

A revocation anywhere is a revocation everywhere (issue 11 item 3): a node reads the
revocations its Sentinel mirrors (or the Sovereign holds) and adds their revocation ids to
its kernel's revocation list through the log (`Kernel.revoke_ids`), so a reboot keeps them
even without the federation. The revision is the resume point: a mirror keeps the origin's
sequence numbers, so a node that switches from the mirror to the hub resumes correctly.
"""

from __future__ import annotations

from maos.federation.buckets import BucketReader
from maos.kernel.kernel import Kernel
from maos.kernel.registry import COMMANDER

__all__ = ["apply_revocations"]


async def apply_revocations(
    kernel: Kernel, reader: BucketReader, *, after: int = 0, principal: str = COMMANDER
) -> int:
    """Revoke in ``kernel`` every revocation past bucket revision ``after``.

    Returns the last revision applied (``after`` when there was nothing new), for the next
    call. ``principal``: who the kernel logs as revoking (a node says the federation, so
    the revocation is not sent upstream again). A record that names no revocation id
    revokes nothing here and is skipped; a record that could not be parsed still revokes
    its key's id (`Revocation.ids`).
    """
    last = after
    for revocation in await reader.revocations(after=after):
        ids = revocation.ids()
        if ids:
            await kernel.revoke_ids(ids, principal=principal)
        last = max(last, revocation.revision)
    return last
