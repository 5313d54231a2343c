"""What every command shares: the apps, the common options, reading the log, booting a
kernel for a decision, failing with a code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from maos.kernel.errors import MaosError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.view import KernelLock, LogView
from maos.kernel.walconfig import anchored_wal

T = TypeVar("T")

app = typer.Typer(
    help="MAOS: run AI agents so that they cannot hurt the people who use them.\n\n"
    "Start with `maos demo`; then `maos status`, `maos approvals list` and "
    "`maos wal verify` against the demo's --data-dir.\n\n"
    "Model providers and the Semantic Security Evaluator come from the 'llm' and 'sse' "
    "sections of <data-dir>/config.json (docs/llm.md, docs/sse.md). To try a server "
    "without editing it: MAOS_LLM_BASE_URL=http://127.0.0.1:11434/v1 MAOS_LLM_MODEL=llama3.1 "
    "(and MAOS_LLM_API_KEY_ENV=<the variable holding its key>) add one OpenAI-compatible "
    "provider. No provider: Rule-Based Mode, agents that need a model pause.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's own formatter: it reflows each paragraph to the terminal and keeps \b
    # blocks (examples) as written; Rich's keeps the docstrings' line breaks mid-sentence.
    rich_markup_mode=None,
)
token_app = typer.Typer(help="Mint, inspect and revoke capability tokens.", no_args_is_help=True)
approvals_app = typer.Typer(
    help="Decide intents that wait for a human (R7, R10).", no_args_is_help=True
)
task_app = typer.Typer(help="What the Commander says about a task.", no_args_is_help=True)
wal_app = typer.Typer(
    help="Inspect and verify the write-ahead log and its anchor; adopt a log written before "
    "anchors existed; accept, on the record, that records were lost. The anchor "
    "(<data-dir>/wal.anchor, and config.json's wal.witness if set) vouches for the log's head: "
    "a boot refuses a log it does not vouch for (docs/wal.md).",
    no_args_is_help=True,
)
agent_app = typer.Typer(
    help="Run agents in pods; list them; pause, isolate, quarantine or kill them (R8).",
    no_args_is_help=True,
)
doubt_app = typer.Typer(
    help="Effects a crash left in doubt (a mail whose server never answered): judge them.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
app.add_typer(doubt_app, name="in-doubt")
app.add_typer(approvals_app, name="approvals")
app.add_typer(wal_app, name="wal")
app.add_typer(task_app, name="task")
app.add_typer(agent_app, name="agent")

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", "-d", envvar="MAOS_DATA_DIR", help="Where the WAL, keys and workspaces live."
    ),
]
AsPrincipal = Annotated[
    str, typer.Option("--as", help="Who decides: 'commander' or 'commander:<name>'.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DEFAULT_DIR = Path(".maos")


def fail(exc: MaosError) -> None:
    typer.secho(f"error {exc.code}: {exc.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def view_of(data_dir: Path) -> LogView:
    wal_path = KernelConfig(data_dir=data_dir).wal_path
    if not wal_path.exists():
        typer.secho(f"error STATE.NO_DATA_DIR: no MAOS log at {wal_path}", err=True, fg="red")
        raise typer.Exit(2)
    try:
        config = KernelConfig.load(data_dir)
    except MaosError as exc:
        fail(exc)
    # Anchored: a deciding command's append advances the anchor like the kernel's do.
    view = LogView(anchored_wal(config))
    view.catch_up()
    return view


def with_kernel(data_dir: Path, act: Callable[[Kernel], Awaitable[T]]) -> T:
    """Run ``act`` on a kernel booted here; callers check the lock first."""

    async def go() -> T:
        from maos.boot import configured_kernel

        async with configured_kernel(data_dir, follow=False) as kernel:
            return await act(kernel)

    return asyncio.run(go())


def kernel_running(data_dir: Path) -> bool:
    if not data_dir.is_dir():
        return False
    lock = KernelLock(data_dir)
    if lock.try_acquire():
        lock.release()
        return False
    return True


def plan_exit_status(status: str, waiting: bool) -> int:
    """`maos run`'s exit code (its --help lists them): a done plan that leaves decisions
    waiting is not the same as one that finished everything."""
    if status != "done":
        return 1
    return 3 if waiting else 0


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


# -- top level ----------------------------------------------------------------------------


def grant_option(text: str) -> Grant:
    """``--grant OP|RESOURCE[|MAX_CENTS]`` as a `Grant` (a bad one is a usage error)."""
    parts = text.split("|")
    if len(parts) not in (2, 3):
        raise typer.BadParameter(f"{text!r}: use OP|RESOURCE or OP|RESOURCE|MAX_CENTS")
    cap = int(parts[2]) if len(parts) == 3 else None
    return Grant(parts[0], parts[1], cap)
