"""``maos node``: set up and run federation nodes (docs/federation.md).

Only ``certs`` exists so far: the test PKI every mTLS link of a federation needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maos.cli._common import app, fail
from maos.federation.pki import NodeSpec, issue_pki
from maos.kernel.errors import MaosError

__all__ = ["node_app"]

node_app = typer.Typer(
    help="Federation nodes (Sovereign, Sentinel, Pawn): issue their certificates.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")


@node_app.command("certs")
def certs(
    out: Annotated[Path, typer.Option("--out", help="An empty (or new) directory to write to.")],
    sovereign: Annotated[str, typer.Option("--sovereign", help="The hub node's name.")],
    sentinel: Annotated[
        list[str] | None, typer.Option("--sentinel", help="A site's node name (repeatable).")
    ] = None,
    pawn: Annotated[
        list[str] | None, typer.Option("--pawn", help="A client node's name (repeatable).")
    ] = None,
    federation: Annotated[
        str, typer.Option("--federation", help="The federation's name (the subject's O).")
    ] = "maos",
    force: Annotated[
        bool, typer.Option("--force", help="Replace the CA and certificates already in --out.")
    ] = False,
) -> None:
    """Issue a test PKI: a CA (ca.crt, ca.key) and, per node, NAME.crt and NAME.key.

    Each node's certificate serves both ends of a link and names the node and its role
    (SAN maos://node/ROLE/NAME, subject OU=ROLE, CN=NAME). Keys are written 0600. For
    production, plug in your own CA instead (docs/federation.md).

    \b
    Example:
      maos node certs --out certs/ --sovereign hq --sentinel site-a --pawn laptop-1
    """
    nodes = [NodeSpec(sovereign, "sovereign")]
    nodes += [NodeSpec(n, "sentinel") for n in sentinel or ()]
    nodes += [NodeSpec(n, "pawn") for n in pawn or ()]
    try:
        files = issue_pki(out, nodes, federation=federation, force=force)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"CA: {files.ca_cert} (key {files.ca_key}: keep it off the nodes)")
    for node, cert, key in files.nodes:
        typer.echo(f"{node.role:<9} {node.name}: {cert} {key}")
