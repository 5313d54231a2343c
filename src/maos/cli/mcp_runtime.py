"""``maos mcp-runtime``: the read-only runtime upstream (MCP) servers run from.

The kernel's own environment never enters a pod; an upstream server that needs packages
gets a virtualenv on Debian's python3 built here once (cached by its requirements) and
mounted read-only into its sandbox (docs/sandbox.md, "Upstream servers").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from maos.cli._common import DEFAULT_DIR, DataDir, JsonOut, app, fail
from maos.kernel.errors import MaosError
from maos.pod.upstream_runtime import build_runtime

__all__ = ["mcp_runtime_app"]

mcp_runtime_app = typer.Typer(
    help="Build the read-only runtime (a venv on /usr/bin/python3, node) for upstream MCP "
    "servers' pods.",
    no_args_is_help=True,
)
app.add_typer(mcp_runtime_app, name="mcp-runtime")


@mcp_runtime_app.command("build")
def build(
    python_packages: Annotated[
        list[str] | None,
        typer.Option(
            "--python-packages", "-p", help="A pip requirement, e.g. mcp==2.3.0 (repeatable)."
        ),
    ] = None,
    npm_packages: Annotated[
        list[str] | None,
        typer.Option(
            "--npm-packages",
            "-n",
            help="An npm package, e.g. @modelcontextprotocol/server-filesystem@2026.8.31 "
            "(repeatable; implies --node; install scripts are not run).",
        ),
    ] = None,
    node: Annotated[bool, typer.Option("--node", help="Also give pods Debian's node.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Cache directory; uid nobody must be able to traverse to it "
            "[default: <data-dir>/mcp-runtime].",
        ),
    ] = None,
    constraint: Annotated[
        Path | None, typer.Option("--constraint", help="A pip constraints file.")
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
    as_json: JsonOut = False,
) -> None:
    """Build (or find in the cache) a runtime; prints its directory and interpreter.

    \b
    Example:
      maos mcp-runtime build -p mcp==2.3.0 -p httpx==0.28.1 --node --out /srv/maos-runtime
      maos mcp-runtime build -n @modelcontextprotocol/server-filesystem@2026.8.31 \
          --out /srv/maos-runtime
    """
    cache = out if out is not None else data_dir / "mcp-runtime"
    try:
        runtime = build_runtime(
            python_packages or [],
            cache.resolve(),
            npm_packages=npm_packages or [],
            node=node,
            constraints=constraint,
        )
    except MaosError as exc:
        fail(exc)
        return
    if as_json:
        info = {
            "root": str(runtime.root),
            "python": str(runtime.python),
            "node": runtime.node,
            "node_modules": str(runtime.node_modules),
        }
        typer.echo(json.dumps(info))
    else:
        typer.echo(f"runtime {runtime.root}\npython  {runtime.python}")
