"""The `maos` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="MAOS: run AI agents so that they cannot hurt the people who use them.")


@app.command()
def version() -> None:
    """Print the MAOS version."""
    from maos import __version__

    typer.echo(__version__)


def main() -> None:
    app()
