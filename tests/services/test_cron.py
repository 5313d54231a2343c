"""The Cron Scheduler (issue 12 item 9) on a stepped kernel clock: real kernels on one data
directory (restarted), real pods, the Orchestrator, and a real SMTP server on loopback
that receives what each scheduled run mails. Nothing sleeps: the test sets the clock and
ticks."""

from __future__ import annotations

import asyncio
import calendar
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.cronspec import CronSection
from maos.kernel.kernel import Kernel, KernelConfig, SmtpConfig
from maos.kernel.wal import Wal
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodRuntime
from maos.services.cron import CronScheduler
from maos.services.orchestrator import Orchestrator
from maos.services.plan import Plan
from maos.testing import Mailbox
from maos.testing import StepClock as Clock

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")
T0 = float(calendar.timegm((2026, 1, 5, 9, 59, 30)))
"""Monday 09:59:30 UTC: the hourly job's first time is 30 s away."""
HOUR = 3600.0

PLAN = """\
task: report
prompt: Mail the hourly report to boss@example.com.
effects: [send]
agents: {{mailer: {{script: {script}, ring: 3}}}}
steps:
  mail: {{agent: mailer, grants: ["email.send|boss@example.com"], timeout_s: 60}}
"""
MAILER = """\
import os
from maos import sdk
sdk.email.send("boss@example.com", "hourly", os.environ["MAOS_TASK_ID"])
"""


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    (tmp_path / "mailer.py").write_text(MAILER)
    (tmp_path / "report.yaml").write_text(PLAN.format(script=tmp_path / "mailer.py"))
    return tmp_path


def _section(missed: str = "skip") -> CronSection:
    job = {"name": "report", "schedule": "0 * * * *", "plan": "report.yaml", "missed": missed}
    return CronSection.model_validate_json(json.dumps({"jobs": [job]}))


Body = Callable[[CronScheduler, Clock], Awaitable[Any]]


def _boot(
    tmp_path: Path,
    mailbox: Mailbox,
    home: PodHome,
    clock: Clock,
    section: CronSection,
    body: Body,
    held: dict[str, asyncio.Event] | None = None,
) -> Any:
    """One kernel life on the shared data dir, with a scheduler whose runner is the
    Orchestrator over real pods; a run whose task is in ``held`` starts once its event is
    set (a long plan, still going when the next time falls due)."""

    async def go() -> Any:
        config = KernelConfig(
            data_dir=tmp_path / "data",
            smtp=SmtpConfig("127.0.0.1", mailbox.port, "maos@test.local"),
            clock=clock,
        )
        kernel = await Kernel.boot(config)
        runtime = PodRuntime(kernel, home=home)
        orchestrator = Orchestrator(kernel, lambda level: runtime)

        async def runner(plan: Plan, resume: bool) -> Any:
            if held is not None and plan.task in held:
                await held[plan.task].wait()
            return await (orchestrator.resume(plan.task) if resume else orchestrator.run(plan))

        scheduler = CronScheduler(kernel, section, runner, base_dir=tmp_path)
        try:
            return await body(scheduler, clock)
        finally:
            await scheduler.stop()
            await runtime.close()
            await kernel.close()

    return asyncio.run(go())


async def _tick_and_wait(scheduler: CronScheduler) -> int:
    runs = await scheduler.tick()
    await asyncio.gather(*runs)
    return len(runs)


def _mailed(mailbox: Mailbox) -> list[str]:
    return [m.message.get_content().strip() for m in mailbox.messages]


def _records(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    wal = Wal(KernelConfig(data_dir=tmp_path / "data").wal_path)
    try:
        return [dict(r.body) for r in wal.read(kinds=[kind])]
    finally:
        wal.close()


def test_an_hourly_job_fires_at_its_times_and_its_plan_mails_through_the_pipeline(
    tmp_path: Path, plan_dir: Path, mailbox: Mailbox, home: PodHome
) -> None:
    async def body(scheduler: CronScheduler, clock: Clock) -> list[int]:
        await scheduler.recover()
        fired = []
        for at in (T0 + 29, T0 + 30, T0 + 60, T0 + 30 + HOUR - 1, T0 + 30 + HOUR + 5):
            clock.now = at
            fired.append(await _tick_and_wait(scheduler))
        return fired

    fired = _boot(tmp_path, mailbox, home, Clock(T0), _section(), body)
    assert fired == [0, 1, 0, 0, 1]
    assert _mailed(mailbox) == ["cron-report-20260105T100000Z", "cron-report-20260105T110000Z"]
    assert [r["late"] for r in _records(tmp_path, "cron.fired")] == [False, False]
    # Ring 1 writes through the kernel's service desk, never to the log itself (issue 12 item 5)
    assert {r["principal"] for r in _records(tmp_path, "cron.fired")} == {"service:cron"}
    assert [r["status"] for r in _records(tmp_path, "plan.done")] == ["done", "done"]


@pytest.mark.parametrize("missed", ["run_once", "skip"])
def test_a_restart_after_missed_runs_follows_the_policy_exactly(
    tmp_path: Path, plan_dir: Path, mailbox: Mailbox, home: PodHome, missed: str
) -> None:
    """Down from 10:30 to 13:30: three runs missed. run_once runs one (not three, not
    zero) at the restart and nothing on a second restart; skip runs none and logs it.
    Both are back on time at 14:00."""
    section = _section(missed)
    clock = Clock(T0)

    async def first(scheduler: CronScheduler, clock: Clock) -> int:
        await scheduler.recover()
        clock.now = T0 + 30
        return await _tick_and_wait(scheduler)

    async def again(scheduler: CronScheduler, clock: Clock) -> int:
        resumed = await scheduler.recover()
        return len(resumed) + await _tick_and_wait(scheduler) + await _tick_and_wait(scheduler)

    assert _boot(tmp_path, mailbox, home, clock, section, first) == 1
    clock.now = T0 + 30 + 3.5 * HOUR
    at_restart = _boot(tmp_path, mailbox, home, clock, section, again)
    clock.now += 60
    at_second_restart = _boot(tmp_path, mailbox, home, clock, section, again)
    clock.now = T0 + 30 + 4 * HOUR
    on_time = _boot(tmp_path, mailbox, home, clock, section, again)

    if missed == "run_once":
        assert (at_restart, at_second_restart, on_time) == (1, 0, 1)
        assert _mailed(mailbox) == [
            "cron-report-20260105T100000Z",
            "cron-report-20260105T130000Z",
            "cron-report-20260105T140000Z",
        ]
        late = [(r["late"], r["missed"]) for r in _records(tmp_path, "cron.fired")]
        assert late == [(False, 0), (True, 3), (False, 0)]
    else:
        assert (at_restart, at_second_restart, on_time) == (0, 0, 1)
        assert _mailed(mailbox) == [
            "cron-report-20260105T100000Z",
            "cron-report-20260105T140000Z",
        ]
        [skipped] = _records(tmp_path, "cron.skipped")
        assert skipped["count"] == 3


def test_a_run_interrupted_before_its_plan_ran_is_run_once_after_the_restart(
    tmp_path: Path, plan_dir: Path, mailbox: Mailbox, home: PodHome
) -> None:
    """The stop lands after cron.fired was logged and before the plan began: the restart
    runs it (not zero), and a further restart does not run it again (not twice)."""
    section = _section()
    clock = Clock(T0)

    async def fire_then_stop(scheduler: CronScheduler, clock: Clock) -> int:
        await scheduler.recover()
        clock.now = T0 + 30
        runs = await scheduler.tick()  # started, not yet scheduled on the loop
        return len(runs)  # _boot stops the scheduler: the run is cancelled unstarted

    async def restart(scheduler: CronScheduler, clock: Clock) -> int:
        resumed = await scheduler.recover()
        await asyncio.gather(*resumed)
        return len(resumed) + await _tick_and_wait(scheduler)

    assert _boot(tmp_path, mailbox, home, clock, section, fire_then_stop) == 1
    assert _mailed(mailbox) == []
    clock.now += 60
    assert _boot(tmp_path, mailbox, home, clock, section, restart) == 1
    assert _boot(tmp_path, mailbox, home, clock, section, restart) == 0
    assert _mailed(mailbox) == ["cron-report-20260105T100000Z"]


@pytest.mark.parametrize("overlap", ["skip", "allow"])
def test_a_time_that_falls_due_while_the_previous_run_is_going_follows_the_overlap_policy(
    tmp_path: Path, plan_dir: Path, mailbox: Mailbox, home: PodHome, overlap: str
) -> None:
    """The 10:00 run is still going at 11:00: skip logs 11:00 as skipped, naming the run
    in the way, and runs again at 12:00 once it ended; allow starts 11:00 beside it."""
    job = {"name": "report", "schedule": "0 * * * *", "plan": "report.yaml"}
    section = CronSection.model_validate_json(json.dumps({"jobs": [{**job, "overlap": overlap}]}))
    first = "cron-report-20260105T100000Z"

    async def body(scheduler: CronScheduler, clock: Clock) -> list[int]:
        held[first] = asyncio.Event()
        await scheduler.recover()
        clock.now = T0 + 30
        [going] = await scheduler.tick()
        clock.now = T0 + 30 + HOUR
        beside = await scheduler.tick()
        held[first].set()
        await asyncio.gather(going, *beside)
        clock.now = T0 + 30 + 2 * HOUR
        return [len(beside), await _tick_and_wait(scheduler)]

    held: dict[str, asyncio.Event] = {}
    counts = _boot(tmp_path, mailbox, home, Clock(T0), section, body, held)
    hours = ["10", "12"] if overlap == "skip" else ["10", "11", "12"]
    assert sorted(_mailed(mailbox)) == [f"cron-report-20260105T{h}0000Z" for h in hours]
    skipped = _records(tmp_path, "cron.skipped")
    if overlap == "skip":
        assert counts == [0, 1]
        assert [(r["running"], r["count"]) for r in skipped] == [(first, 1)]
    else:
        assert counts == [1, 1] and skipped == []


def test_a_malformed_cron_expression_is_a_config_error_before_anything_runs(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    job = {"name": "report", "schedule": "61 * * * *", "plan": "report.yaml"}
    (data / "config.json").write_text(json.dumps({"cron": {"jobs": [job]}}))
    result = CliRunner().invoke(app, ["status", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert result.output.startswith(
        "error BAD_INPUT.CONFIG: cron.jobs[0].schedule: '61 * * * *' is not a cron expression"
    ), result.output
    assert sorted(p.name for p in data.iterdir()) == ["config.json"]
