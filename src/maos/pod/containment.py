"""What the pod runtime does for the cascade's later stages (`maos.kernel.cascade`).

- **Hard isolation**: the agent's pod is frozen, not killed (`maos.pod.isolation.freeze`),
  and what it holds is copied for root-cause analysis at that moment - its scratch
  workspace and its stdout/stderr - into ``<data-dir>/rca/<agent>/`` beside the log
  excerpt the Security Agent writes there. Released (its status runs again), it is
  thawed and resumes exactly where it stopped. ``pod.frozen`` / ``pod.thawed`` records
  say when, how, and how long it took.
- **Elimination** (the Commander approved): the frozen pod is killed; its state was kept.
- **Healing**: a clean replacement from the agent's image - the same script in a fresh
  pod - under a new identity (``<agent>-h<N>``) with a new token carrying the same
  grants (the old one is revoked), on the same task; the eliminated agent's record says
  ``healing`` and names its replacement. Whatever the task's workspace holds stays, and
  the replacement's effects carry its own idempotency keys, so the plan decides how far
  a restart from the beginning repeats work.

The runtime acts as ``commander:kernel`` (a fixed rule of the kernel's own process).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path

from maos.kernel import cascade
from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.stages import Stage
from maos.pod.isolation import PodSpec
from maos.pod.isolation.freeze import Freezer
from maos.pod.lifecycle import AgentRun
from maos.pod.sentry import Sentry, sentry_log

__all__ = ["freeze", "heal", "thaw"]


async def freeze(kernel: Kernel, run: AgentRun, principal: str) -> None:
    """Freeze the run's pod and keep its state; logged as ``pod.frozen``."""
    pod = run.pod
    if pod is None or pod.returncode is not None:
        return
    if run.freezer is None:
        run.freezer = Freezer(f"{run.agent_id}-{pod.pid}", pod.pid)
    freezer = run.freezer
    start = time.perf_counter()
    await asyncio.to_thread(freezer.freeze)
    took = time.perf_counter() - start
    where = cascade.rca_dir(kernel.config.data_dir, run.agent_id)
    await asyncio.to_thread(_keep, pod.workspace, pod.log(), where)
    await kernel.wal.append(
        "pod.frozen",
        {
            "agent_id": run.agent_id,
            "pid": pod.pid,
            "mechanism": freezer.mechanism,
            "freeze_ms": round(took * 1000, 3),
            "rca": str(where),
            "principal": principal,
        },
    )


async def thaw(kernel: Kernel, run: AgentRun, principal: str) -> None:
    """Let a released pod run on from where it stopped; logged as ``pod.thawed``."""
    freezer = run.freezer
    if freezer is None or not freezer.frozen:
        return
    start = time.perf_counter()
    await asyncio.to_thread(freezer.thaw)
    took = time.perf_counter() - start
    await kernel.wal.append(
        "pod.thawed",
        {"agent_id": run.agent_id, "thaw_ms": round(took * 1000, 3), "principal": principal},
    )


def _keep(workspace: Path, log: str, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = where / "workspace"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(workspace, target, symlinks=True)
    (where / "pod.log").write_text(log)


async def heal(kernel: Kernel, run: AgentRun, principal: str) -> None:
    """Give the run a clean replacement for its eliminated agent (see the module doc)."""
    registry = kernel.registry
    old = registry.agent(run.agent_id)
    env = dict(run.spec.env)
    token = env.get("MAOS_TOKEN", "")
    grants = kernel.tokens.inspect(token).grants
    budgets = kernel.ledger.limits_of(old.agent_id)
    new_id = _next_id(old.agent_id, registry.agents)
    await kernel.register_agent(
        new_id,
        ring=old.ring,
        rate_per_s=old.rate_per_s,
        burst=old.burst,
        budgets=budgets,
        principal=principal,
    )
    fresh = kernel.mint(new_id, run.task_id, grants)
    with contextlib.suppress(MaosError):  # already unusable: nothing to revoke
        await kernel.revoke(token, principal=principal)
    order = cascade.stage_order(
        registry,
        old.agent_id,
        Stage.HEALING,
        cause=f"replaced by {new_id}, a clean copy with a new identity and token",
        principal=principal,
        at=kernel.clock(),
        replaced_by=new_id,
    )
    await kernel.cascade(order)
    env.update(MAOS_TOKEN=fresh, MAOS_AGENT_ID=new_id)
    spec = run.spec
    run.healed_from.append(old.agent_id)
    run.agent_id = new_id
    run.spec = PodSpec(new_id, spec.script, spec.workspace, spec.limits, env)
    run.sentry = Sentry(
        new_id, run.sentry.profile, log=sentry_log(kernel), clock=kernel.clock, trace=kernel.trace
    )
    run.freezer = None
    run.heal = False
    run.stop_reason = None


def _next_id(agent_id: str, known: object) -> str:
    """``<base>-h<N>``: the first N not registered yet (ids stay within 64 chars)."""
    base, _, tail = agent_id.rpartition("-h")
    if not (base and tail.isdigit()):
        base = agent_id
    n = 1
    while f"{base[:58]}-h{n}" in known:  # type: ignore[operator]
        n += 1
    return f"{base[:58]}-h{n}"
