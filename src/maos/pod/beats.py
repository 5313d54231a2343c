"""A pod's heartbeats wired to the Watchdog: the one copy every kind of beating pod uses.

Agent pods (`maos.pod.runtime`), tool hosts (`maos.pod.toolhost`) and the resilience
benchmark's pods enrol the same way - a fresh enrolment per process, its key in the
launch frame only, its beats from the channel's reader straight to `Watchdog.beat` -
and a pod the Watchdog has recorded missing is noticed the same way. Who kills it and
what happens next (a restart of the agent, a fresh host at the next call) is the
caller's.

Members of pods that are not an agent's are named ``pod:<kind>/<name>`` (`member`):
an agent id never holds a ``/`` (`maos.kernel.registry.check_id`), so no agent's
``pod:<agent>`` can be one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from maos.kernel.watchdog import Watchdog
from maos.pod.isolation import Heartbeat

__all__ = ["enrol", "member", "until_missed"]


def member(kind: str, name: str) -> str:
    """The Watchdog member of a pod that is not an agent's (a tool host, an upstream)."""
    return f"pod:{kind}/{name}"


def enrol(watchdog: Watchdog, name: str) -> Heartbeat:
    """Enrol ``name`` with ``watchdog`` (a fresh process: its count starts again) and
    return the `Heartbeat` its pod is launched with."""
    return Heartbeat(name, watchdog.enrol(name), watchdog.period_s, partial(watchdog.beat, name))


def _never() -> bool:
    return False


async def until_missed(
    watchdog: Watchdog, name: str, *, spare: Callable[[], bool] = _never
) -> None:
    """Return once the Watchdog has recorded ``name`` missing (its sweep, on the kernel's
    clock) while ``spare()`` is false: a pod silent on purpose (frozen, being stopped)
    is spared. Looks once per period; cancel it when the pod ends otherwise."""
    while True:
        await asyncio.sleep(watchdog.period_s)
        if watchdog.missing(name) and not spare():
            return
