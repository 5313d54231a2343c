"""What every command shares: the apps, the common options, reading the log, booting a
kernel for a decision, failing with a code.

Failing is in one place: the root group (`_Commands`) turns a `MaosError` - and the OS,
SQLite and range errors a user can cause from outside - into ``error CODE: sentence``
plus what to do, exit status 2; a command never prints a traceback for bad input."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from maos.kernel.config import KernelConfig, read_config
from maos.kernel.errors import InputError, MaosError, StateError
from maos.kernel.kernel import Kernel
from maos.kernel.tokens import Grant
from maos.kernel.view import KernelLock, LogView
from maos.kernel.wal import Wal
from maos.kernel.walconfig import anchored_wal

T = TypeVar("T")

READ_ONLY_HINT = (
    "the data dir is read-only: status, wal show, wal verify, approvals list and token "
    "inspect work on it; commands that decide or run need a writable one"
)
_PERMISSION = "run as the data dir's owner, or use a copy you may write"
_OS_CODES = {
    errno.ENOTDIR: ("STATE.NOT_A_DIRECTORY", "a path in it is a file: give a directory"),
    errno.EISDIR: ("BAD_INPUT.IS_A_DIRECTORY", "name a file, not a directory"),
    errno.EACCES: ("STATE.PERMISSION", _PERMISSION),
    errno.EPERM: ("STATE.PERMISSION", _PERMISSION),
    errno.EROFS: ("STATE.READ_ONLY", READ_ONLY_HINT),
    errno.ENOSPC: ("STATE.DISK_FULL", "free some space and run the command again"),
}
"""The OS errors a user causes from outside, with their code and what to do."""


class _Commands(TyperGroup):
    """The one place a command's failure becomes ``error CODE: sentence`` and a hint (see
    the module docstring). Anything not listed here is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context is private
        try:
            return super().invoke(ctx)
        except MaosError as exc:
            fail(exc)
        except OSError as exc:
            if exc.errno not in _OS_CODES:
                raise
            fail(os_error(exc))
        except sqlite3.DatabaseError as exc:
            fail(
                StateError(
                    "WAL.UNREADABLE",
                    f"SQLite cannot read the log: {exc}",
                    hint="`maos wal verify` says what is wrong with it",
                )
            )
        except OverflowError as exc:
            fail(InputError("BAD_INPUT.RANGE", f"a number is out of range ({exc})"))


app = typer.Typer(
    cls=_Commands,
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


def directory_option(data_dir: Path | None) -> Path | None:
    """``--data-dir``'s check, before the command runs: a directory or a new path."""
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise StateError(
            "STATE.NOT_A_DIRECTORY",
            f"{data_dir} is a file, not a data directory",
            hint="give --data-dir a directory, or a path that does not exist yet",
        )
    return data_dir


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="MAOS_DATA_DIR",
        help="Where the WAL, keys and workspaces live.",
        callback=directory_option,
    ),
]
AsPrincipal = Annotated[
    str, typer.Option("--as", help="Who decides: 'commander' or 'commander:<name>'.")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DEFAULT_DIR = Path(".maos")


_HINTS = (
    ("PLAN.", "fix the plan file: docs/orchestrator.md describes its fields"),
    ("BAD_INPUT.YAML_ALIASES", "fix the plan file: docs/orchestrator.md describes its fields"),
    ("WAL.", "`maos wal verify -d DIR` checks the log and names what is wrong"),
    ("TOKEN.", "`maos token --help` shows how tokens are minted and inspected"),
)
"""What to do, by code prefix, for errors raised without a ``hint`` of their own."""


def fail(exc: MaosError) -> NoReturn:
    """Print ``error CODE: sentence`` and what to do on stderr; exit 2."""
    typer.secho(f"error {exc.code}: {exc.message}", err=True, fg=typer.colors.RED)
    hint = exc.fields.get("hint") or next(
        (h for prefix, h in _HINTS if exc.code.startswith(prefix)),
        "`maos COMMAND --help` shows what a command takes",
    )
    typer.secho(f"  {hint}", err=True)
    raise typer.Exit(2)


def os_error(exc: OSError) -> StateError:
    """An OS error a user caused (one of `_OS_CODES`), naming the path and what to do."""
    code, hint = _OS_CODES[exc.errno or 0]
    where = f"{exc.filename}: " if exc.filename else ""
    return StateError(code, f"{where}{exc.strerror or exc}", hint=hint)


def config_of(data_dir: Path) -> KernelConfig:
    """``config.json`` validated whole, the same way for every command: the kernel's keys
    (`read_config`) and, on the same reading, the services' sections (`load_settings`)."""
    from maos.llm.config import load_settings

    config = read_config(data_dir)
    load_settings(data_dir, config=config)
    return KernelConfig.of(config, data_dir)


def log_of(data_dir: Path, *, write: bool) -> Wal:
    """The data dir's log, its config.json validated first: for a command that appends a
    decision to it, or (``write=False``) only reads it - opened read-only then, so it
    works on a read-only copy and changes nothing."""
    config = config_of(data_dir)
    wal_path = config.wal_path
    if not wal_path.exists():
        raise StateError(
            "STATE.NO_DATA_DIR",
            f"no MAOS log at {wal_path}",
            hint="start one with `maos demo -d DIR`, `maos run PLAN -d DIR` or `maos up -d DIR`",
        )
    if not write:
        return Wal(wal_path, readonly=True)
    if not (os.access(data_dir, os.W_OK) and os.access(wal_path, os.W_OK)):
        raise StateError(
            "STATE.READ_ONLY",
            f"{data_dir} is read-only and this command logs a decision",
            hint=READ_ONLY_HINT,
        )
    # Anchored: a deciding command's append advances the anchor like the kernel's do.
    return anchored_wal(config)


def view_of(data_dir: Path, *, write: bool = True) -> LogView:
    """The log folded (see `log_of`)."""
    view = LogView(log_of(data_dir, write=write))
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
    return data_dir.is_dir() and KernelLock(data_dir).held()


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
