"""The `maos` command line: the Commander's console.

Every command takes ``--data-dir`` (default ``./.maos`` or ``$MAOS_DATA_DIR``). Reading
commands fold the log without starting a kernel. Deciding commands (approve, deny,
revoke, kill) start a kernel in this process when none is serving the data directory,
so the decision is carried out now; when a kernel is serving, they log the decision
and that kernel carries it out.

One module per group of commands; importing them registers their commands on `app`.
"""

from __future__ import annotations

from maos.cli import (
    agent_runtime,
    agents,
    commander,
    console,
    cron,
    decisions,
    federation,
    grants,
    log,
    mcp,
    mcp_runtime,
    memory,
    node,
    resilience,
    security,
    tdp,
    tokens,
    up,
)
from maos.cli._common import app

__all__ = ["app", "main"]

_COMMANDS = (
    console,
    up,
    agents,
    decisions,
    grants,
    tokens,
    log,
    tdp,
    mcp,
    mcp_runtime,
    agent_runtime,
    node,
    federation,
    security,
    commander,
    memory,
    resilience,
    cron,
)
"""Imported for their commands (typer registers them on import)."""


def main() -> None:
    app()
