"""Check 6: advisory locks with leases, and per-resource versions for optimistic writes.

The kernel executes ``lock.acquire`` / ``lock.release`` intents against the `LockTable`
and calls `LockTable.bump` after every committed write; the check only refuses effects
that would trample another agent's lease or a version the agent did not read. Leases
expire by ``now`` (the kernel's clock), so a crashed holder cannot block forever.

Resources are named by targets; names are path-normalized (``./a//b`` is ``a/b``) so a
spelling variant cannot slip past a lock. Over-merging (``x/../y`` is ``y``) only ever
makes the check stricter.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping
from functools import lru_cache

from maos.kernel.dsc.base import CheckInput
from maos.kernel.ops import OPS, OpSpec
from maos.kernel.types import Allow, Decision, Deny, EffectClass

__all__ = ["MAX_LEASE_S", "LockCheck", "LockTable", "resource_key"]

MAX_LEASE_S = 3600.0
"""Longest lease an agent may hold; it renews by acquiring again."""
_GUARDED = frozenset(
    {
        EffectClass.WRITE,
        EffectClass.DELETE,
        EffectClass.SEND,
        EffectClass.PAY,
        EffectClass.CREDENTIALS,
        EffectClass.EXECUTE,
    }
)
_KERNEL = EffectClass.KERNEL
"""Bound once: reading an enum member off its class costs ~0.2 µs in CPython 3.11."""


@lru_cache(maxsize=4096)
def resource_key(target: str) -> str:
    """The name a lock or version is filed under for ``target``."""
    stripped = target.strip()
    return posixpath.normpath(stripped) if stripped else ""


class LockTable:
    """Who holds which resource until when, and each resource's write version.

    Not thread-safe: the kernel uses it from its event loop.
    """

    __slots__ = ("_leases", "_versions")

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, float]] = {}
        self._versions: dict[str, int] = {}

    def acquire(self, resource: str, owner: str, lease_s: float, now: float) -> bool:
        """Take or renew a lease; ``False`` while another owner's lease runs."""
        if not (math.isfinite(lease_s) and 0 < lease_s <= MAX_LEASE_S):
            raise ValueError(f"lease_s must be in (0, {MAX_LEASE_S:g}], not {lease_s!r}")
        key = resource_key(resource)
        holder = self.holder(key, now)
        if holder is not None and holder != owner:
            return False
        self._leases[key] = (owner, now + lease_s)
        return True

    def release(self, resource: str, owner: str) -> bool:
        """Drop ``owner``'s lease; ``False`` if it did not hold one (nothing changes)."""
        key = resource_key(resource)
        lease = self._leases.get(key)
        if lease is None or lease[0] != owner:
            return False
        del self._leases[key]
        return True

    def holder(self, resource: str, now: float) -> str | None:
        """The owner of an unexpired lease on ``resource``, if any."""
        key = resource_key(resource)
        lease = self._leases.get(key)
        if lease is None:
            return None
        if lease[1] <= now:
            del self._leases[key]
            return None
        return lease[0]

    def version(self, resource: str) -> int:
        """Committed writes so far; 0 for a resource never written through the kernel."""
        return self._versions.get(resource_key(resource), 0)

    def bump(self, resource: str) -> int:
        """Count one committed write; returns the new version."""
        key = resource_key(resource)
        version = self._versions.get(key, 0) + 1
        self._versions[key] = version
        return version

    @property
    def any_leases(self) -> bool:
        return bool(self._leases)


class LockCheck:
    """Check 6 over a `LockTable` shared with the kernel."""

    __slots__ = ("_allow", "_ops", "name", "table")

    def __init__(self, table: LockTable, ops: Mapping[str, OpSpec] = OPS) -> None:
        self.name = "locks"
        self.table = table
        self._ops = ops
        self._allow = Allow(check=self.name)

    def __call__(self, inp: CheckInput) -> Decision:
        intent = inp.intent
        table = self.table
        spec = self._ops.get(intent.op)
        if spec is not None and spec.effect_class is _KERNEL:
            return self._allow  # lock.*, heartbeat: the kernel carries them out itself
        # Leases first: hashing an enum member for ``in _GUARDED`` is a Python call, and
        # with no lease held anywhere there is nothing to collide with.
        if table._leases and spec is not None and spec.effect_class in _GUARDED:
            for target in intent.targets:
                holder = table.holder(target, inp.now)
                if holder is not None and holder != intent.agent_id:
                    return Deny(
                        "DSC.LOCK.HELD",
                        f"{target!r} is locked by {holder}; {intent.op} must wait for release",
                        check=self.name,
                    )
        expected = intent.expected_version
        if expected is not None:
            current = table.version(intent.target)
            if expected != current:
                return Deny(
                    "DSC.LOCK.VERSION_CONFLICT",
                    f"{intent.target!r} is at version {current}, the agent read {expected}",
                    check=self.name,
                )
        return self._allow
