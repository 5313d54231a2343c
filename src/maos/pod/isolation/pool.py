"""Warm pool: pods whose sandbox and interpreter are already up, waiting for an agent.

A cold level-2 start costs tens of milliseconds (bwrap's namespaces, then Python's own
start-up); a pooled pod has paid both and sits in the bootstrap's first ``recv``, so
handing it to an agent is one launch frame. The pod learns nothing about the agent until
then, and the agent id is bound to the channel only at `acquire`, exactly as on the cold
path - the launch code is shared, so the two paths cannot drift apart.

The pool never blocks a caller on a refill: when it is empty, or the spec names its own
workspace (bound when the sandbox starts, so a pooled pod cannot have it), `acquire`
starts a pod cold. Refills run in one background task, one pod at a time, so a burst of
acquisitions does not turn into a burst of sandbox starts competing with the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from maos.pod.isolation.base import PodProcess, PodSpec, ProcessSandbox
from maos.pod.isolation.errors import SandboxError

__all__ = ["PoolStats", "WarmPool"]


@dataclass
class PoolStats:
    warm: int = 0
    """Acquisitions served from the pool."""
    cold: int = 0
    """Acquisitions that had to start a pod."""
    failed_starts: int = 0
    """Background starts that did not reach READY (the last error is kept on the pool)."""


class WarmPool:
    """Keeps ``size`` ready pods of one sandbox. Use inside a running event loop."""

    def __init__(self, sandbox: ProcessSandbox, size: int = 4) -> None:
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.sandbox = sandbox
        self.size = size
        self.stats = PoolStats()
        self.last_error: SandboxError | None = None
        self._idle: deque[PodProcess] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._refill: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> WarmPool:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._refill is None:
            self._refill = asyncio.get_running_loop().create_task(self._refill_loop())
            self._wake.set()

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def wait_full(self) -> None:
        """Until ``size`` pods are ready or a start failed; for start-up and benchmarks."""
        while len(self._idle) < self.size and self.last_error is None:
            self._progress.clear()
            await self._progress.wait()

    async def acquire(self, spec: PodSpec) -> PodProcess:
        """A pod running ``spec``: a pooled one when possible, a cold one otherwise."""
        if self._closed:
            raise SandboxError("POD.POOL.CLOSED", "the pool is closed")
        pod = self._take() if spec.workspace is None else None
        self._wake.set()
        if pod is None:
            self.stats.cold += 1
            return await self.sandbox.spawn(spec)
        self.stats.warm += 1
        try:
            await pod.launch(spec)
        except BaseException:
            pod.kill()
            raise
        return pod

    def _take(self) -> PodProcess | None:
        while self._idle:
            pod = self._idle.popleft()
            if pod.returncode is None:
                return pod
        return None

    async def _refill_loop(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while not self._closed and len(self._idle) < self.size:
                try:
                    pod = await self.sandbox.start()
                except Exception as exc:
                    self._failed(exc)
                    break
                try:
                    await pod.ready()
                except Exception as exc:
                    pod.kill()
                    self._failed(exc)
                    break
                except asyncio.CancelledError:
                    pod.kill()
                    await pod.wait()
                    raise
                self.last_error = None
                self._idle.append(pod)
                self._progress.set()

    def _failed(self, exc: Exception) -> None:
        # Stop until the next acquisition: a host that cannot start pods must not turn
        # this task into a busy loop. Callers fall back to cold starts meanwhile. An error
        # that is not a SandboxError is a bug, but it must not end this task silently and
        # leave `wait_full` waiting forever.
        self.stats.failed_starts += 1
        if not isinstance(exc, SandboxError):
            exc = SandboxError("POD.SPAWN.FAILED", f"starting a pooled pod failed: {exc!r}")
        self.last_error = exc
        self._progress.set()

    async def close(self) -> None:
        """Stop refilling and reap every idle pod."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        while self._idle:
            pod = self._idle.popleft()
            pod.kill()
            await pod.wait()
