"""``maos agent-runtime``: the read-only runtime framework agents run from.

An agent built with the OpenAI Agents SDK, LangGraph or pydantic-ai needs its framework
inside its pod; the pod gets this runtime (pinned, built on Debian's python3 by the same
builder as upstream servers' runtimes, mounted read-only), never the kernel's own
environment (docs/frameworks.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from maos.cli._common import JsonOut, app, fail
from maos.kernel.errors import MaosError
from maos.pod.agent_runtime import DEFAULT_CACHE, framework_runtime, requirements

__all__ = ["agent_runtime_app"]

agent_runtime_app = typer.Typer(
    help="Build the read-only runtime agent frameworks run from in pods.",
    no_args_is_help=True,
)
app.add_typer(agent_runtime_app, name="agent-runtime")


@agent_runtime_app.command("build")
def build(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Cache directory, yours and writable by you only; uid nobody must be able "
            f"to traverse to it [default: $MAOS_RUNTIME_CACHE or {DEFAULT_CACHE}].",
        ),
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Build (or find in the cache) the frameworks' runtime; prints its directory.

    `maos agent run --frameworks` builds it on first use too; building it ahead (about
    40 s from PyPI) keeps the first run fast. The pins are maos/pod/frameworks.txt.

    \b
    Example:
      maos agent-runtime build
      maos agent run my_agent.py --frameworks --grant 'llm.complete|*' --grant 'fs.read|*'
    """
    try:
        runtime = framework_runtime(out)
    except MaosError as exc:
        fail(exc)
        return
    if as_json:
        info = {"root": str(runtime.root), "python": str(runtime.python)}
        typer.echo(json.dumps({**info, "packages": len(requirements())}))
    else:
        typer.echo(f"runtime {runtime.root}\npackages {len(requirements())} pinned")
