"""``maos tdp``: the Trusted Display Path in a process of its own (`maos.commander.tdp`).

The console has imported the dashboard and the kernel by the time a command runs, so the
command does not show anything itself: it reads the witness from ``config.json`` and
replaces this process with a fresh interpreter running only the TDP.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from maos.cli._common import DEFAULT_DIR, DataDir, app, config_of, fail
from maos.kernel.errors import MaosError

__all__ = ["tdp"]


@app.command()
def tdp(
    data_dir: DataDir = DEFAULT_DIR,
    once: Annotated[bool, typer.Option("--once", help="Print one screen and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks when live.")] = 1.0,
) -> None:
    """Show the log's own truth: chain and anchor verified, agents, waiting decisions, mode.

    The Trusted Display Path runs in a separate process that opens the log read-only and
    imports nothing of the dashboard or the kernel's write path; it is what to believe
    when the dashboard and the log disagree. With --once it prints one screen and exits
    0 when the log verifies and 2 when it does not (the screen names the record).
    """
    try:
        config = config_of(data_dir)
    except MaosError as exc:
        fail(exc)
        return
    argv = [sys.executable, "-m", "maos.commander.tdp", "-d", str(config.data_dir)]
    if config.wal_witness is not None:
        argv += ["--witness", str(config.wal_witness)]
    argv += ["--interval", repr(interval)] + (["--once"] if once else [])
    sys.stdout.flush()
    os.execv(sys.executable, argv)
