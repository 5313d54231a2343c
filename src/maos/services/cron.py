"""The Cron Scheduler (Ring 1, a Bone cell: no LLM): plans that run by the clock.

Each job of ``config.json``'s ``cron`` section (`maos.kernel.cronspec`) names a plan file
and a croniter expression. When a job falls due the scheduler starts its plan as a new
task, ``cron-<job>-<UTC due time>``, through the runner it is given - the Orchestrator,
so every step is an agent in a pod whose every effect is an intent the kernel checks,
logs and carries out. The scheduler holds no capability and performs no effect itself.

Time is the kernel's injectable clock (`Kernel.clock`), so a test steps through a
schedule by setting the clock and calling `CronScheduler.tick`, never by sleeping.

What ran is in the log, and nowhere else:

    cron.scheduled {job, schedule, plan, missed, since}   a job first seen: its anchor
    cron.fired     {job, due, task_id, late, missed}      written before the plan starts
    cron.skipped   {job, due, count[, running]}           missed runs the policy skipped,
                                                          or a time the run in flight overlapped
    cron.failed    {job, task_id, code, reason}           the plan could not run

A restart folds these records: each job continues from the last time it fired or
skipped (or from when it was first scheduled), so a run that fell due while MAOS was
down is seen as missed. The job's ``missed`` policy decides: ``skip`` logs it and waits
for the next time; ``run_once`` starts one run for all the missed times - once, however
many there were. A run that is due now but starts more than ``grace_s`` late counts as
missed too. A run that fired but whose plan had not ended when MAOS stopped is resumed
(the Orchestrator's `resume`: only the steps not done), or started if its plan never
began - so a fired run ends exactly once across restarts, and never fires again.

`start` recovers and launches the loop; `run` is the loop (it raises, never ends quietly,
when a tick or a plan's runner fails unexpectedly); `stop` ends it and the runs in flight
(which a restart resumes). A serving kernel runs `recover`, then `run` as a task the
Service Manager supervises (`maos.services.supervised`): it pulses once per tick, and a
loop that raised or wedged is restarted by its policy. Codes: ``CRON.PLAN`` (the plan
file cannot be loaded) as the code of a ``cron.failed`` record, beside the ``PLAN.*``
codes the runner raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maos.kernel.cronspec import CronJob, CronSection, last_due, next_due
from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.wal import Wal
from maos.services.orchestrator import PlanResult
from maos.services.plan import Plan, load_plan
from maos.services.security import kernel_order

__all__ = ["KINDS", "CronScheduler", "PlanRunner", "cron_report"]

PlanRunner = Callable[[Plan, bool], Awaitable[PlanResult]]
"""Runs a plan (``resume`` False) or the rest of its task's plan (``resume`` True)."""
KINDS = ("cron.scheduled", "cron.fired", "cron.skipped", "cron.failed", "plan.started", "plan.done")
MAX_COUNT = 1000
"""Missed times counted one by one; past this the count says "at least"."""


def task_id(job: str, due: float) -> str:
    return f"cron-{job}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(due))}"


@dataclass
class _Log:
    """What the log says the jobs did."""

    anchors: dict[str, float] = field(default_factory=dict)
    fired: dict[str, str] = field(default_factory=dict)
    """task id -> job, for every fired run."""
    started: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    """Plans done, and runs that failed to start."""
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    """job -> its last cron.fired record body."""

    @classmethod
    def of(cls, wal: Wal) -> _Log:
        log = cls()
        for rec in wal.read(kinds=KINDS):
            body = rec.body
            if rec.kind == "cron.scheduled":
                log.anchors.setdefault(str(body["job"]), float(body["since"]))
            elif rec.kind in ("cron.fired", "cron.skipped"):
                log.anchors[str(body["job"])] = float(body["due"])
                if rec.kind == "cron.fired":
                    log.fired[str(body["task_id"])] = str(body["job"])
                    log.last[str(body["job"])] = dict(body)
            elif rec.kind == "cron.failed":
                log.ended.add(str(body["task_id"]))
            elif rec.kind == "plan.started":
                log.started.add(str(body["task_id"]))
            else:
                log.ended.add(str(body["task_id"]))
        return log


class CronScheduler:
    """Fires the section's jobs on the kernel's clock; see the module docstring.

    ``base_dir`` resolves relative plan paths (the data directory); ``interval_s`` is how
    often `run` ticks (a job's time is honoured within it, and within ``grace_s``)."""

    def __init__(
        self,
        kernel: Kernel,
        section: CronSection,
        runner: PlanRunner,
        *,
        base_dir: Path,
        interval_s: float = 1.0,
    ) -> None:
        self._kernel = kernel
        self._section = section
        self._runner = runner
        self._base_dir = base_dir
        self.interval_s = interval_s
        self._jobs: Mapping[str, CronJob] = {j.name: j for j in section.jobs}
        self._anchors: dict[str, float] = {}
        self._runs: dict[asyncio.Task[None], tuple[str, str]] = {}
        """Each run in flight: its job and task id (what ``overlap: skip`` waits for)."""
        self._loop: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._order = kernel_order(kernel, "cron")
        """Ring 1 writes no log record itself: each goes to the kernel's service desk
        with the scheduler's capability (charter: the four ``cron.*`` kinds)."""
        self._ticking = asyncio.Lock()
        """One tick at a time: two at once would both see a job due and fire it twice."""

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> list[asyncio.Task[None]]:
        """Anchor new jobs, resume runs a stop interrupted, and launch the loop. Returns
        the resumed runs (a test awaits them)."""
        resumed = await self.recover()
        self._loop = asyncio.create_task(self.run())
        return resumed

    async def recover(self) -> list[asyncio.Task[None]]:
        log = _Log.of(self._kernel.wal)
        now = self._kernel.clock()
        for job in self._section.jobs:
            if job.name not in log.anchors:
                body = {"job": job.name, "schedule": job.schedule, "plan": job.plan}
                await self._log("cron.scheduled", {**body, "missed": job.missed, "since": now})
                log.anchors[job.name] = now
        self._anchors = dict(log.anchors)
        resumed = []
        for tid, name in log.fired.items():
            fired = self._jobs.get(name)
            if tid in log.ended or fired is None:
                continue
            resumed.append(self._launch(fired, tid, resume=tid in log.started))
        return resumed

    async def run(self, pulse: Callable[[], None] | None = None) -> None:
        """Tick until `stop`, calling ``pulse`` after each tick (its supervisor's sign of
        progress); raises what made a tick or a run fail unexpectedly (once: a restarted
        loop ticks on)."""
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise RuntimeError("the Cron Scheduler stopped on an error") from error
            await self.tick()
            if pulse is not None:
                pulse()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._runs) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None

    # -- the schedule ----------------------------------------------------------------------

    async def tick(self) -> list[asyncio.Task[None]]:
        """Fire every job due by the kernel's clock now; returns the runs it started."""
        async with self._ticking:
            return await self._tick()

    async def _tick(self) -> list[asyncio.Task[None]]:
        now = self._kernel.clock()
        started = []
        for job in self._section.jobs:
            anchor = self._anchors[job.name]
            latest = next_due(job.schedule, anchor)
            if latest > now:
                continue
            count, following = 1, next_due(job.schedule, latest)
            while count < MAX_COUNT and following <= now:  # for the record: how many
                count, following = count + 1, next_due(job.schedule, following)
            latest = last_due(job.schedule, now)
            late = now - latest > self._section.grace_s
            self._anchors[job.name] = latest
            if late and job.missed == "skip":
                await self._log("cron.skipped", {"job": job.name, "due": latest, "count": count})
                continue
            going = next((tid for name, tid in self._runs.values() if name == job.name), None)
            if going is not None and job.overlap == "skip":
                body = {"job": job.name, "due": latest, "count": count, "running": going}
                await self._log("cron.skipped", body)
                continue
            missed = count if late else count - 1
            tid = task_id(job.name, latest)
            body = {"job": job.name, "due": latest, "task_id": tid, "late": late}
            await self._log("cron.fired", {**body, "missed": missed})
            started.append(self._launch(job, tid, resume=False))
        return started

    def _launch(self, job: CronJob, tid: str, *, resume: bool) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run_plan(job, tid, resume))
        self._runs[task] = (job.name, tid)
        task.add_done_callback(lambda done: self._runs.pop(done, None))
        return task

    async def _run_plan(self, job: CronJob, tid: str, resume: bool) -> None:
        path = Path(job.plan)
        path = path if path.is_absolute() else self._base_dir / path
        try:
            plan = load_plan(path)
        except MaosError as exc:
            await self._failed(job, tid, "CRON.PLAN", f"{path}: {exc.code}: {exc.message}")
            return
        try:
            await self._runner(plan.model_copy(update={"task": tid}), resume)
        except MaosError as exc:
            await self._failed(job, tid, exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runner broke: record it, and make `run` raise
            await self._failed(job, tid, "CRON.RUNNER", f"{type(exc).__name__}: {exc}")
            self._error = exc

    async def _failed(self, job: CronJob, tid: str, code: str, reason: str) -> None:
        await self._log(
            "cron.failed", {"job": job.name, "task_id": tid, "code": code, "reason": reason}
        )

    async def _log(self, kind: str, body: dict[str, Any]) -> None:
        await self._order(kind, body)

    def next_runs(self) -> dict[str, float]:
        """Each job's next time after its anchor (what `maos status` shows)."""
        return {
            j.name: next_due(j.schedule, self._anchors.get(j.name, 0.0)) for j in self._section.jobs
        }


def cron_report(wal: Wal, section: CronSection | None) -> dict[str, Any]:
    """The ``cron`` entry of ``maos status``: each job, its policy, its last run and the
    next time it falls due, from the log alone (no scheduler needs to be running)."""
    if section is None or not section.jobs:
        return {"jobs": []}
    log = _Log.of(wal)
    jobs = []
    for job in section.jobs:
        anchor = log.anchors.get(job.name)
        last = log.last.get(job.name)
        jobs.append(
            {
                "name": job.name,
                "schedule": job.schedule,
                "plan": job.plan,
                "missed": job.missed,
                "last_task": None if last is None else last["task_id"],
                "next_due": None if anchor is None else next_due(job.schedule, anchor),
            }
        )
    return {"jobs": jobs}
