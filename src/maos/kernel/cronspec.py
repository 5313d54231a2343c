"""The ``cron`` section of ``config.json``: which plans run when, and what a missed run does.

Validated with the rest of the file by every command (`maos.kernel.config.read_config`),
so a malformed expression is ``error BAD_INPUT.CONFIG: cron.jobs.0.schedule: ...`` when
the configuration is read, never a scheduler that dies at its first tick. The scheduler
itself is a Ring 1 service (`services/cron.py`); the section lives down here because
the kernel's config reader is the one place every command validates, and it may import
nothing above the kernel. Expressions are croniter's syntax (5 fields, or 6 with
seconds), evaluated in UTC.

    "cron": {"grace_s": 60, "jobs": [
        {"name": "daily-report", "schedule": "0 6 * * *", "plan": "plans/report.yaml",
         "missed": "run_once"}]}
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CronJob", "CronSection", "last_due", "next_due"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"


def _croniter(expression: str, start: float) -> object:
    # croniter costs ~0.1 s to import; only a configuration that has a cron section pays.
    from croniter import croniter  # type: ignore[import-untyped]

    return croniter(expression, start)


def next_due(expression: str, after: float) -> float:
    """The first time strictly after ``after`` (epoch seconds, UTC) the expression names."""
    it = _croniter(expression, after)
    return float(it.get_next(float))  # type: ignore[attr-defined]


def last_due(expression: str, now: float) -> float:
    """The last time at or before ``now`` the expression names (times are whole seconds)."""
    it = _croniter(expression, math.floor(now) + 1)
    return float(it.get_prev(float))  # type: ignore[attr-defined]


class CronJob(BaseModel):
    """One scheduled plan."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=_ID)
    """Names the job's runs: task ``cron-<name>-<UTC time it was due>``."""
    schedule: str = Field(min_length=1, max_length=256)
    """A croniter expression (``*/15 * * * *``, ``0 6 * * mon-fri``)."""
    plan: str = Field(min_length=1, max_length=4096)
    """The plan file (YAML, `maos run`'s format); relative to the data directory."""
    missed: Literal["skip", "run_once"] = "skip"
    """Runs that fell due while MAOS was down (or late past ``grace_s``): ``skip`` them
    (logged), or ``run_once`` - one run for all of them, never one per missed time."""
    overlap: Literal["skip", "allow"] = "skip"
    """A time that falls due while the job's previous run is still going: ``skip`` it
    (logged, naming the run in the way), or ``allow`` a second run beside it."""

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from croniter import CroniterError

        try:
            next_due(value, 0.0)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ValueError(f"{value!r} is not a cron expression ({exc})") from None
        return value


class CronSection(BaseModel):
    """The ``cron`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    jobs: tuple[CronJob, ...] = Field(default=(), max_length=100)
    grace_s: int = Field(default=60, ge=1, le=86_400)
    """How late after its time a run may still start as on time; later, it is missed."""

    @model_validator(mode="after")
    def _unique(self) -> CronSection:
        names = [j.name for j in self.jobs]
        if len(set(names)) != len(names):
            raise ValueError("job names must be unique")
        return self
