"""A Ring 1 service that follows the kernel's log: it polls what was appended since its
last look, acts on it, and sleeps.

The Security Agent and the Memory Manager are both this shape. What they share is the
lifecycle, kept here once: `start` folds the history at the first poll and then follows;
`stop` polls one last time, so nothing logged before the stop is missed. A poll that
fails for any reason but the log closing is logged with its traceback and ends the loop
with the exception kept on the task: under `maos up` such a service runs as its own
process under the Service Manager, which sees it exit and restarts it
(`maos.services.manager`); it never stops silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from maos.kernel.errors import MaosError

__all__ = ["LogFollower"]

_log = logging.getLogger(__name__)


class LogFollower:
    """Subclasses set ``_interval`` and implement ``poll``."""

    _interval: float
    _task: asyncio.Task[None] | None = None

    async def poll(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        """Fold the history at the first poll, then follow."""
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        """Stop following after one last poll, so nothing logged before the stop is missed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(MaosError):
            await self.poll()

    async def _follow(self) -> None:
        while True:
            try:
                await self.poll()
            except MaosError:  # the log is closing or failing: the kernel reports that
                return
            except Exception:
                _log.exception("%s stopped following the log", type(self).__name__)
                raise
            await asyncio.sleep(self._interval)
