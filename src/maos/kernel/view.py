"""The log folded into state, for the kernel and for any other process that reads it.

A running kernel and the CLI see the same agents, tasks, approvals and revocations
because both fold the same records through this one class. The kernel holds an
exclusive lock on the data directory (`KernelLock`); a process that cannot take it
knows a kernel is serving and only appends decisions for that kernel to pick up.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maos.kernel.aggregate import KINDS as AGGREGATE_KINDS
from maos.kernel.aggregate import AggregateLedger
from maos.kernel.approvals import Approval, ApprovalBook
from maos.kernel.errors import StateError
from maos.kernel.grants import apply_grants
from maos.kernel.immune import KINDS as MEMORY_KINDS
from maos.kernel.immune import ThreatMemory
from maos.kernel.provenance import Provenance
from maos.kernel.registry import Registry
from maos.kernel.scope import ScopeFold
from maos.kernel.types import Cost
from maos.kernel.wal import Wal, WalRecord

__all__ = ["Charge", "KernelLock", "LogView"]


@dataclass(frozen=True, slots=True)
class Charge:
    """A committed effect's cost, to be booked against its agent's and task's budgets."""

    agent_id: str
    task_id: str
    cost: Cost


@dataclass
class Folded:
    """What one catch-up changed, for the owner to act on."""

    decided: list[Approval] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    records: list[WalRecord] = field(default_factory=list)


class LogView:
    """Registry + approvals + revocations, advanced with `catch_up` in log order."""

    def __init__(self, wal: Wal) -> None:
        self.wal = wal
        self.registry = Registry()
        self.approvals = ApprovalBook()
        self.provenance = Provenance()
        self.scope = ScopeFold(self.registry)
        self.aggregate = AggregateLedger(self.registry.ops)
        """Each agent's windowed figures (aggregate monitoring), checked before effects."""
        self.memory = ThreatMemory()
        """The threats the immune memory learned (check 7 and the result path read it)."""
        self.revoked: set[str] = set()
        self.seen_seq = 0
        self._prepared: dict[str, Charge] = {}

    def catch_up(self) -> Folded:
        out = Folded()
        for rec in self.wal.read(since_seq=self.seen_seq):
            self.seen_seq = rec.seq
            out.records.append(rec)
            self.registry.apply(rec.kind, rec.body)
            self.provenance.apply(rec.kind, rec.body)
            self.scope.apply(rec.kind, rec.body, rec.idem_key)
            if rec.kind in AGGREGATE_KINDS:
                self.aggregate.fold(rec)
            elif rec.kind in MEMORY_KINDS:
                self.memory.apply(rec.kind, rec.body)
            out.decided.extend(self.approvals.apply(rec.kind, rec.body))
            if rec.kind == "token.revoked":
                ids = [str(i) for i in rec.body["revocation_ids"]]
                self.revoked.update(ids)
                out.revoked.extend(ids)
            elif rec.kind == "task.grants":
                apply_grants(self.registry, rec.body)
            elif rec.kind == "intent.prepared" and rec.idem_key is not None:
                self._prepared[rec.idem_key] = _charge(rec.body)
            elif rec.kind in ("intent.committed", "intent.failed", "intent.in_doubt"):
                charge = self._prepared.pop(rec.idem_key or "", None)
                if charge is not None and rec.kind != "intent.failed":
                    out.charges.append(charge)
        return out


def _charge(body: Mapping[str, Any]) -> Charge:
    raw = body.get("cost") or {}
    return Charge(
        str(body.get("agent_id", "")),
        str(body.get("task_id", "")),
        Cost(
            int(raw.get("tokens", 0)), int(raw.get("api_calls", 0)), int(raw.get("money_cents", 0))
        ),
    )


class KernelLock:
    """At most one kernel serves a data directory; held for the kernel's lifetime."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / "kernel.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        """Whether a kernel holds the lock now; opens the lock file read-only and creates
        nothing, so it answers on a read-only data dir too (no lock file: no kernel)."""
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def acquire(self) -> None:
        if not self.try_acquire():
            raise StateError(
                "STATE.KERNEL_RUNNING",
                f"another kernel is serving {self._path.parent}; stop it or use another --data-dir",
            )

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
