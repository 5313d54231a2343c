"""How a data directory's log is configured and opened: ``config.json``'s ``wal`` section,
and the anchored `Wal` every writer holding the root key uses (docs/wal.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from maos.kernel.anchor import HeadAnchor
from maos.kernel.errors import InputError
from maos.kernel.wal import CHECKPOINT_EVERY, Wal

__all__ = ["LogConfig", "anchored_wal", "log_section", "log_settings"]


class LogConfig(Protocol):
    """What `anchored_wal` needs of a kernel's configuration."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def wal_path(self) -> Path: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def wal_witness(self) -> Path | None: ...
    @property
    def wal_checkpoint_every(self) -> int: ...


def anchored_wal(config: LogConfig) -> Wal:
    """A data directory's log as every writer holding its root key opens it: anchored,
    witnessed if configured, checkpointed."""
    return Wal(
        config.wal_path,
        clock=config.clock,
        anchor=HeadAnchor(config.data_dir, witness=config.wal_witness),
        checkpoint_every=config.wal_checkpoint_every,
    )


def log_settings(section: object, data_dir: Path, where: Path) -> tuple[Path | None, int]:
    """``config.json``'s ``wal`` section: the witness (a relative path is taken from the
    data dir) and the checkpoint interval; ``BAD_INPUT.CONFIG`` for anything else."""
    if not isinstance(section, dict) or set(section) - {"witness", "checkpoint_every"}:
        raise InputError(
            "BAD_INPUT.CONFIG", f"{where}: wal takes only witness (a path) and checkpoint_every"
        )
    witness = section.get("witness")
    every = section.get("checkpoint_every", CHECKPOINT_EVERY)
    if witness is not None and (not isinstance(witness, str) or not witness):
        raise InputError("BAD_INPUT.CONFIG", f"{where}: wal.witness must be a path")
    if type(every) is not int or every < 1:
        raise InputError("BAD_INPUT.CONFIG", f"{where}: wal.checkpoint_every must be >= 1")
    return (None if witness is None else data_dir / witness), every


def log_section(witness: Path | None, every: int) -> dict[str, Any]:
    """The ``wal`` section `log_settings` reads back; empty when both are the defaults."""
    if witness is None and every == CHECKPOINT_EVERY:
        return {}
    section: dict[str, Any] = {"checkpoint_every": every}
    if witness is not None:
        section["witness"] = str(witness)
    return {"wal": section}
