"""``maos federation``: the Commander's view of the federation and its membership.

``status`` reads what the Sovereign wrote (every node, its epoch, link health, audit lag)
and what its witness logged (tampering, effects decided offline that no longer validate);
``admit``, ``retire`` and ``revoke`` log the Commander's decision in the Sovereign's log, which the
running Sovereign applies on its next tick (docs/federation.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from maos.cli._common import JsonOut, app, fail, log_of
from maos.federation.errors import FederationError
from maos.federation.node import read_status
from maos.federation.nodeconfig import NodeConfig, load_node_config
from maos.federation.pki import ROLES, cert_pin, verify_node_cert
from maos.federation.witness import FINDING_KINDS
from maos.kernel.errors import MaosError

__all__ = ["federation_app"]

federation_app = typer.Typer(
    help="The federation as the Sovereign sees it: status of every node; admit, retire and "
    "revoke nodes (docs/federation.md).",
    no_args_is_help=True,
)
app.add_typer(federation_app, name="federation")

SovereignConfig = Annotated[Path, typer.Option("--config", "-c", help="The Sovereign's YAML file.")]


def _sovereign(config: Path) -> NodeConfig:
    return load_node_config(config, role="sovereign")


def _findings(cfg: NodeConfig) -> dict[str, list[dict[str, Any]]]:
    wal = log_of(cfg.data_dir, write=False)
    try:
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in FINDING_KINDS}
        for rec in wal.read(kinds=FINDING_KINDS):
            out[rec.kind].append({**rec.body, "logged_seq": rec.seq})
        return out
    finally:
        wal.close()


@federation_app.command("status")
def status(config: SovereignConfig, as_json: JsonOut = False) -> None:
    """Every node the Sovereign heard from: role, policy epoch, link, mode, audit lag;
    then what the witness surfaced: tampered audit, and effects decided offline that the
    current policy refuses (never silently accepted)."""
    try:
        cfg = _sovereign(config)
        state = read_status(cfg.data_dir)
        findings = _findings(cfg)
    except MaosError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps({**state, "findings": findings}, indent=2, sort_keys=True))
        return
    typer.echo(f"federation of {state['sovereign']} (status as of its last tick)")
    typer.echo(f"{'node':<12} {'role':<9} {'epoch':>5} {'link':<5} {'mode':<11} "
               f"{'audited':>8} {'lag':>5} {'seen':>8}")  # fmt: skip
    for name, n in sorted(state["nodes"].items()):
        link = "up" if n.get("link_up") and n.get("upstream_up", True) else "CUT"
        typer.echo(
            f"{name:<12} {n.get('role', '?'):<9} {n.get('epoch', 0):>5} {link:<5} "
            f"{n.get('mode', '?'):<11} {n.get('audited', 0):>8} {n.get('lag', 0):>5} "
            f"{n.get('age', 0):>7.1f}s"
        )
    for r in findings["federation.refused"]:
        typer.echo(f"  REVOKED {r['node']}: its audit is refused ({r['code']})")
    tampered, bad = findings["federation.tampered"], findings["federation.unreconciled"]
    typer.echo(f"accepted offline: {len(findings['federation.reconciled'])}; "
               f"tampered audit: {len(tampered)}; unreconciled: {len(bad)}")  # fmt: skip
    for t in tampered:
        typer.echo(f"  TAMPERED {t['node']} record {t['seq']}: {t['code']} {t['reason']}")
    for u in bad:
        typer.echo(
            f"  UNRECONCILED {u['node']} record {u['seq']}: {u['op']} {u['target']} decided "
            f"under epoch {u['epoch_then']}, now {u['epoch_now']}: {u['reason']}"
        )


def _log(cfg: NodeConfig, kind: str, body: dict[str, Any]) -> None:
    wal = log_of(cfg.data_dir, write=True)
    try:
        wal.append_sync(kind, body)
    finally:
        wal.close()


@federation_app.command("admit")
def admit(
    node: Annotated[str, typer.Argument(help="The node's name (its certificate's).")],
    role: Annotated[str, typer.Option("--role", help="sentinel or pawn.")],
    config: SovereignConfig,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="Its certificate: checked against the CA.")
    ] = None,
    principal: Annotated[str, typer.Option("--as", help="Who decides.")] = "commander",
) -> None:
    """Admit a node: the Sovereign sources a Sentinel's audit stream from its next tick.
    With --cert, the certificate must come from the federation's CA and name this node
    and role, and it is pinned: from then on Sentinels accept only pinned certificates
    (and, for a Sentinel's, the hub's leaf listener only pinned Sentinels: the Sovereign
    restarts its server), and admitting a node's new certificate (after `maos node certs
    --rotate`) unpins its old one."""
    try:
        cfg = _sovereign(config)
        if role not in ROLES[1:]:
            raise FederationError("FED.BAD_ROLE", f"--role must be sentinel or pawn, not {role!r}.")
        body: dict[str, Any] = {"node": node, "role": role, "principal": principal}
        if principal != "commander" and not principal.startswith("commander:"):
            raise FederationError("FED.NOT_COMMANDER", "Only the Commander admits a node.")
        if cert is not None:
            try:
                pem = cert.read_bytes()
                ident = verify_node_cert(pem, cfg.certs.ca.read_bytes())
            except OSError as exc:
                raise FederationError("FED.BAD_CERT", f"Cannot read {exc.filename}.") from None
            if (ident.name, ident.role) != (node, role):
                raise FederationError(
                    "FED.BAD_CERT",
                    f"{cert} names {ident.role} {ident.name}, not {role} {node}.",
                )
            body["pin"] = cert_pin(pem)  # the roster pins it; a newer admission rotates it
        _log(cfg, "federation.admitted", body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"admitted {role} {node}: the Sovereign applies it on its next tick")


@federation_app.command("retire")
def retire(
    node: Annotated[str, typer.Argument(help="The node's name.")],
    config: SovereignConfig,
    principal: Annotated[str, typer.Option("--as", help="Who decides.")] = "commander",
) -> None:
    """Retire a node: the Sovereign stops sourcing its audit (what it sent stays)."""
    try:
        cfg = _sovereign(config)
        if principal != "commander" and not principal.startswith("commander:"):
            raise FederationError("FED.NOT_COMMANDER", "Only the Commander retires a node.")
        _log(cfg, "federation.retired", {"node": node, "principal": principal})
    except MaosError as exc:
        fail(exc)
    typer.echo(f"retired {node}: the Sovereign applies it on its next tick")


@federation_app.command("revoke")
def revoke(
    node: Annotated[str, typer.Argument(help="The node's name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the log).")],
    config: SovereignConfig,
    principal: Annotated[str, typer.Option("--as", help="Who decides.")] = "commander",
) -> None:
    """Revoke a node, for good: from the Sovereign's next tick its certificate is unpinned
    at every Sentinel (a Pawn is disconnected and refused), its audit is refused at the
    hub, and a revoked Sentinel's audit is no longer sourced. Its tokens were never valid
    at another node (they name it as audience). A revoked Sentinel is cut off by the
    Sovereign restarting its server without the Sentinel's pin (docs/federation.md)."""
    try:
        cfg = _sovereign(config)
        if principal != "commander" and not principal.startswith("commander:"):
            raise FederationError("FED.NOT_COMMANDER", "Only the Commander revokes a node.")
        if not reason.strip():
            raise FederationError("FED.NO_REASON", "Say why with --reason; it is logged.")
        if node == cfg.name:
            raise FederationError("FED.BAD_NODE", "The Sovereign cannot revoke itself.")
        body = {"node": node, "reason": reason, "principal": principal}
        _log(cfg, "federation.node_revoked", body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"revoked {node}: the Sovereign applies it on its next tick")
