"""Ring 1 services that must run inside the kernel's process, supervised as asyncio tasks.

Some services cannot leave the kernel's process: the Orchestrator's plan queue drives the
kernel's pods and tool adapter, the Cron Scheduler's tick loop starts plans on it, the
probes of the SSE, the Message Router, Observability and the dashboard look at objects
the kernel calls or serves (`probe_task`: a local look every few seconds, blocking ones
in a thread of their own, `in_thread`, each bounded by a timeout). The Service Manager
(`maos.services.manager`) supervises each as a task (`ServiceManager.start_task`) with
the same restart policy, records and health as a service process:

- the task is enrolled with the Watchdog as ``service:<name>``, and the manager beats for
  it every ``resilience.heartbeat_s`` while the task lives and, for a task that declares
  a period (``every_s``), while it has pulsed within ``missed_beats`` of its own periods;
- a task that ends - returns or raises - is recorded (``service.exited``, the error and
  its traceback's tail in ``stderr``) and restarted after the policy's backoff;
- a task that goes silent (stops pulsing: a wedged loop) stops being beaten for, the
  Watchdog finds it silent, and the manager cancels and restarts it.

Nothing is written while a task is healthy, nor when it starts (a serving kernel writes
nothing by itself when idle): the log learns of a task only when it fails.

The task's coroutine gets a `Pulse` to call once per unit of progress (one tick). A task
without a period (a queue worker waiting for work) only needs to stay alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from maos.kernel.errors import StateError
from maos.kernel.watchdog import Watchdog, beat_mac

__all__ = ["Check", "Pulse", "Repair", "TaskFactory", "in_thread", "probe_task", "task_life"]

T = TypeVar("T")


class Pulse:
    """Called by a supervised task once per unit of progress; read by its supervisor."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.last = clock()

    def __call__(self) -> None:
        self.last = self._clock()


TaskFactory = Callable[[Pulse], Coroutine[Any, Any, None]]
"""Makes one life of a supervised task's coroutine (called again on each restart)."""


Check = Callable[[], str | Awaitable[str | None] | None]
"""Why a service is down now, or None; a coroutine when the look must wait (a thread)."""
Repair = Callable[[], Awaitable[None] | None]
"""What a restart means for a probed service: rebuild, re-create or rebind what it uses."""


def probe_task(
    check: Check,
    period_s: float,
    code: str,
    *,
    timeout_s: float | None = None,
    repair: Repair | None = None,
) -> TaskFactory:
    """A health probe as a supervised task: every ``period_s`` (the first after one
    period, not at once) ``check`` says why the service is down, or None. Down raises
    ``code`` (the task ends: recorded, restarted by policy, failed past it); up pulses.
    A check that is a coroutine gets ``timeout_s`` (default: one period): no answer in
    time is down, so a wedged resource cannot hang the probe. ``repair`` runs at the
    start of every life but the first: the restart that follows a failure. It writes
    nothing itself, so a healthy probe leaves the log alone."""
    lives = 0
    wait = period_s if timeout_s is None else timeout_s

    async def probe(pulse: Pulse) -> None:
        nonlocal lives
        lives += 1
        if repair is not None and lives > 1:
            repaired = repair()
            if inspect.isawaitable(repaired):
                await repaired
        while True:
            await asyncio.sleep(period_s)
            why = check()
            if inspect.isawaitable(why):
                try:
                    why = await asyncio.wait_for(why, wait)
                except TimeoutError:
                    why = f"no answer within {wait:g} s"
            if why is not None:
                raise StateError(code, why)
            pulse()

    return probe


async def in_thread(work: Callable[[], T]) -> T:
    """``work`` in a thread of its own: a blocking look (a socket, a file) never runs on
    the kernel's loop, nor waits for a shared pool a busy adapter may have filled. The
    caller bounds the wait; a thread still stuck past it ends on its own (daemon)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value, error = work(), None
        except Exception as exc:  # handed to the awaiting coroutine
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name="maos-probe", daemon=True).start()
    return await done


WEDGED = "missed heartbeats: cancelled"
KICKED = "restart asked for: cancelled"


async def task_life(
    name: str,
    factory: TaskFactory,
    watchdog: Watchdog,
    clock: Callable[[], float],
    every_s: float | None,
    *,
    kick: asyncio.Event | None = None,
) -> tuple[int | None, str, str]:
    """One life of a supervised task, until it ends or goes silent: (code, reason,
    error text), the shape of a service process's exit (code 0 returned, 1 raised,
    None cancelled for silence). ``kick`` set: the life is ended now (a restart asked for)."""
    member = f"service:{name}"
    key = watchdog.enrol(member)
    pulse = Pulse(clock)
    missed = max(1.0, watchdog.limit_s / watchdog.period_s)
    limit = None if every_s is None else every_s * missed
    task = asyncio.get_running_loop().create_task(factory(pulse), name=f"service:{name}")
    counter = 0
    reason = ""
    try:
        while not task.done():
            if limit is None or clock() - pulse.last <= limit:
                counter += 1
                watchdog.beat(member, counter, beat_mac(key, member, counter))
            await asyncio.wait({task}, timeout=watchdog.period_s)
            if task.done():
                break
            if kick is not None and kick.is_set():
                reason = KICKED
                break
            if await watchdog.lapsed(member):
                reason = WEDGED
                break
    finally:
        watchdog.leave(member)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if reason:
        return None, reason, ""
    if task.cancelled():
        return None, "cancelled", ""
    error = task.exception()
    if error is None:
        return 0, "returned", ""
    text = "".join(traceback.format_exception(error))[-2000:]
    return 1, f"raised {type(error).__name__}: {error}"[:300], text
