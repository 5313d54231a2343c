"""``python -m maos.service_main NAME --data-dir DIR``: one Ring 1 service as its own
process, started and supervised by the Service Manager (`maos.services.manager`).

Its own process keeps the service out of the kernel's memory: it reads the log through a
read-only fold (`maos.services.host.LogCopy`) and writes nothing itself; every record
goes to the kernel as an order over its link, checked against its charter. It sits
above `maos.boot` because it reads ``config.json`` the way the kernel's boot does.

Services: ``security`` (the Security Agent), ``memory`` (the Memory Manager: it orders
``memory.learned`` through the service desk) and ``beacon`` (does nothing but beat: the
smallest supervised service, for checking the supervision itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from maos.services.host import LogCopy, Main, ServiceLink, run_service

__all__ = ["main"]

POLL_S = 0.2


async def _poll_until(poll: Callable[[], Awaitable[object]], stopping: asyncio.Event) -> None:
    """A log follower's life in its process: poll, wait, until SIGTERM; then a last look,
    so nothing logged before the stop is missed."""
    while not stopping.is_set():
        await poll()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), POLL_S)
    await poll()


def _security(data_dir: Path) -> Main:
    # Imported here, not at the top: a restarted service beats sooner the less it
    # imports, and the beacon needs none of the configuration's layers.
    from maos.boot import aggregate_limits, cascade_policy
    from maos.kernel.config import read_config
    from maos.llm.config import load_settings
    from maos.services.security import SecurityAgent

    async def run(link: ServiceLink, stopping: asyncio.Event) -> None:
        settings = load_settings(data_dir, config=read_config(data_dir)).security
        source = LogCopy(data_dir)
        agent = SecurityAgent(
            source,
            aggregate_limits(settings),
            policy=cascade_policy(settings),
            order=link.order,
            refresh=source.refresh,
        )
        try:
            await _poll_until(agent.poll, stopping)
        finally:
            source.close()

    return run


def _memory(data_dir: Path) -> Main:
    from maos.services.memory import MemoryManager

    async def run(link: ServiceLink, stopping: asyncio.Event) -> None:
        source = LogCopy(data_dir)
        memory = MemoryManager(source, order=link.order, refresh=source.refresh)
        try:
            await _poll_until(memory.poll, stopping)
        finally:
            source.close()

    return run


def _beacon(data_dir: Path) -> Main:
    async def run(link: ServiceLink, stopping: asyncio.Event) -> None:
        await stopping.wait()

    return run


SERVICES = {"security": _security, "memory": _memory, "beacon": _beacon}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maos.service_main", description=__doc__)
    parser.add_argument("name", choices=sorted(SERVICES))
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    return run_service(SERVICES[args.name](args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
