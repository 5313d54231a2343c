"""`maos agent run`: one agent script, in a pod, on a kernel booted for it.

The console path a developer takes first: boot the kernel on the data directory (refused
when another kernel serves it), admit the agent at its ring, open its task, mint a token
from the grants asked for, start the script in a pod and print one line per request the
kernel answered. The exit status is the agent's.

Admission never undoes a Commander's decision: an agent already registered keeps its
ring (asking for another would be promotion without onboarding, R5) and must be active
(a quarantined agent stays quarantined until `maos agent resume`).

A task is opened once, with the targets its principal names. Running into a task that
is already open is never silent (issue 9): ``resume`` says "again, in that task" (same
workspace, same trusted targets; naming new ones is refused), ``new_task`` opens a
fresh one (``<task>-2``, ``-3``, ...); neither refuses with `STATE.TASK_OPEN`, naming both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.errors import StateError
from maos.kernel.kernel import Kernel
from maos.kernel.registry import check_id
from maos.kernel.tokens import Grant
from maos.pod.agent_runtime import FRAMEWORK_LIMITS, framework_runtime
from maos.pod.runtime import AgentExit, PodEvent, PodRuntime

__all__ = ["DEFAULT_GRANTS", "AgentLaunch", "format_event", "launch"]

DEFAULT_GRANTS = (Grant("fs.read", "*"), Grant("fs.write", "*"), Grant("fs.list", "*"))
"""Read and write the task's own workspace, nothing else."""


@dataclass(frozen=True, slots=True)
class AgentLaunch:
    script: Path
    agent_id: str
    task_id: str
    ring: int = 3
    level: int | None = None
    grants: Sequence[Grant] = DEFAULT_GRANTS
    trusted: Sequence[str] = ()
    resume: bool = False
    """Run in the task though it is already open (an earlier run's)."""
    new_task: bool = False
    """Open a fresh task whose id is ``task_id`` with the first free ``-<n>`` suffix."""
    frameworks: bool = False
    """Mount the agent frameworks' read-only runtime (`maos.pod.agent_runtime`)."""


def format_event(event: PodEvent) -> str | None:
    """One console line per answered request or lifecycle step; None for nothing to say."""
    if event.kind == "intent":
        line = f"{event.status:<9}  {event.op:<13} {event.target}"
        return f"{line}  {event.code}" if event.code else line
    if event.kind == "violation":
        return f"VIOLATION  {event.code}: {event.detail} (pod killed)"
    if event.kind == "restart":
        return f"restart    from the clean image, {event.detail}"
    if event.kind == "stopped":
        return f"stopped    the agent was set {event.status} (R8); pod killed"
    if event.kind == "exit":
        return f"exit       {event.detail}, status {event.code}"
    return None


async def launch(
    kernel: Kernel, plan: AgentLaunch, echo: Callable[[str], None]
) -> tuple[AgentExit, str]:
    """Run ``plan`` to its end on ``kernel`` (booted by the caller with whatever adapters
    its configuration names: the LLM gateway); returns how the agent ended and its
    output (pod log)."""
    check_id("agent", plan.agent_id)
    if plan.new_task:
        plan = replace(plan, task_id=_fresh_task(kernel, plan.task_id))
        echo(f"task       {plan.task_id} (new)")
    await _admit(kernel, plan)

    def show(event: PodEvent) -> None:
        line = format_event(event)
        if line is not None:
            echo(line)

    token = kernel.mint(plan.agent_id, plan.task_id, list(plan.grants))
    extra: dict[str, Any] = {}
    if plan.frameworks:
        built = await asyncio.to_thread(framework_runtime)  # pip, on the first run only
        extra = {"runtime": built.root, "limits": FRAMEWORK_LIMITS}
    async with PodRuntime(kernel, level=plan.level, on_event=show, **extra) as runtime:
        run = await runtime.start(plan.agent_id, plan.script, task_id=plan.task_id, token=token)
        echo(f"started    {plan.agent_id} (ring {plan.ring}) at level {run.level}")
        ended = await run.wait()
        return ended, run.log()


async def _admit(kernel: Kernel, plan: AgentLaunch) -> None:
    known = kernel.registry.agents.get(plan.agent_id)
    if known is None:
        await kernel.register_agent(plan.agent_id, ring=plan.ring)
    elif known.ring != plan.ring:
        raise StateError(
            "STATE.RING_MISMATCH",
            f"{plan.agent_id} is registered at ring {known.ring}; rings change only "
            "through onboarding (R5)",
        )
    elif known.status is not AgentStatus.ACTIVE:
        raise StateError(
            "STATE.AGENT_NOT_ACTIVE",
            f"{plan.agent_id} is {known.status.value}; `maos agent resume` it first",
        )
    task = kernel.registry.tasks.get(plan.task_id)
    if task is None:
        await kernel.open_task(plan.task_id, trusted_targets=plan.trusted)
    elif not plan.resume:
        raise StateError(
            "STATE.TASK_OPEN",
            f"task {plan.task_id} is already open (an earlier run): add --resume to run in it"
            " again (same workspace and trusted targets), or --new-task to start a fresh task",
        )
    elif not set(plan.trusted) <= task.trusted_targets:
        raise StateError(
            "STATE.TASK_OPEN",
            f"task {plan.task_id} named its trusted targets when it opened; --resume cannot"
            " add more: use --new-task",
        )


def _fresh_task(kernel: Kernel, base: str) -> str:
    """``base`` if no task has it yet, else ``base-2``, ``base-3``, ..., the first free."""
    taken = kernel.registry.tasks
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return check_id("task", f"{base}-{n}")
