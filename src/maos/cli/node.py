"""``maos node``: set up and run federation nodes (docs/federation.md).

``certs`` issues the test PKI every mTLS link needs; ``sovereign``, ``sentinel`` and
``pawn`` run a node from its YAML file until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from maos.cli._common import app, fail
from maos.federation.errors import FederationError
from maos.federation.node import Node
from maos.federation.nodeconfig import load_node_config
from maos.federation.pki import NodeSpec, issue_pki, rotate_cert
from maos.kernel.errors import MaosError

__all__ = ["node_app"]

node_app = typer.Typer(
    help="Federation nodes (Sovereign, Sentinel, Pawn): issue their certificates, run them.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")


@node_app.command("certs")
def certs(
    out: Annotated[Path, typer.Option("--out", help="An empty (or new) directory to write to.")],
    sovereign: Annotated[
        str | None, typer.Option("--sovereign", help="The hub node's name.")
    ] = None,
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
    rotate: Annotated[
        str | None,
        typer.Option("--rotate", help="Issue this node a new certificate and key from --out's CA."),
    ] = None,
) -> None:
    """Issue a test PKI: a CA (ca.crt, ca.key) and, per node, NAME.crt and NAME.key.

    Each node's certificate serves both ends of a link and names the node and its role
    (SAN maos://node/ROLE/NAME, subject OU=ROLE, CN=NAME). Keys are written 0600. For
    production, plug in your own CA instead (docs/federation.md).

    With --rotate NODE, issue that node a new certificate and key from the CA in --out
    instead (same name and role). The running node takes the new files up within a tick,
    no restart; admit a Sentinel's or Pawn's new certificate with `maos federation admit
    --cert` to unpin the old one (the Sovereign's needs no admission).

    \b
    Example:
      maos node certs --out certs/ --sovereign hq --sentinel site-a --pawn laptop-1
      maos node certs --out certs/ --rotate laptop-1
    """
    if rotate is not None:
        try:
            ident, cert, key = rotate_cert(out, rotate)
        except MaosError as exc:
            fail(exc)
        then = (
            "no admission needed"
            if ident.role == "sovereign"
            else f"admit it: maos federation admit {rotate} --role {ident.role} --cert {cert} "
            "--config <the Sovereign's YAML>"
        )
        typer.echo(f"{rotate}: new {cert} {key}; the running node takes them up; {then}")
        return
    if sovereign is None:
        fail(FederationError("FED.NO_SOVEREIGN", "Name the hub with --sovereign NAME."))
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


ConfigFile = Annotated[
    Path, typer.Option("--config", "-c", help="The node's YAML file (examples/federation/).")
]


def _run(role: str, config: Path) -> None:
    try:
        cfg = load_node_config(config, role=role)
    except MaosError as exc:
        fail(exc)

    async def serve() -> None:
        node = await Node(cfg).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            where = node.natsd.client_url if node.natsd is not None else cfg.upstream
            extra = f", leaf {node.natsd.leaf_url}" if role == "sovereign" and node.natsd else ""
            typer.echo(f"{role} {cfg.name} up: nats {where}{extra}; data {cfg.data_dir}")
            await node.run(stop)
        finally:
            await node.stop()
        typer.echo(f"{role} {cfg.name} stopped")

    try:
        asyncio.run(serve())
    except MaosError as exc:
        fail(exc)


@node_app.command("sovereign")
def sovereign_node(config: ConfigFile) -> None:
    """Run the Sovereign: the hub nats-server (JetStream, leaf listener, mTLS), the
    authoritative policy and revocation buckets, the federation's audit stream and its
    witness; writes the status `maos federation status` shows."""
    _run("sovereign", config)


@node_app.command("sentinel")
def sentinel_node(config: ConfigFile) -> None:
    """Run a Sentinel: a leaf nats-server with its own JetStream domain mirroring policy
    and revocations, the site's audit stream the hub sources, and its own kernel. Cut off
    from the Sovereign it runs on cached policy and admits no new agent or promotion."""
    _run("sentinel", config)


@node_app.command("pawn")
def pawn_node(config: ConfigFile) -> None:
    """Run a Pawn: a kernel that is an mTLS client of its Sentinel. Without its Sentinel
    it restricts progressively: 5 min Ring 3 paused, 15 min critical ops only, 60 min
    Minimal Safe State (the degradation modes, source "federation")."""
    _run("pawn", config)
