"""Capability tokens: mint, inspect, revoke."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from maos.cli._common import (
    DEFAULT_DIR,
    AsPrincipal,
    DataDir,
    config_of,
    echo_json,
    fail,
    grant_option,
    token_app,
    view_of,
)
from maos.kernel import orders
from maos.kernel.errors import MaosError
from maos.kernel.registry import COMMANDER, check_principal
from maos.kernel.tokens import Grant, TokenAuthority, check_grant_ops
from maos.kernel.types import iso_time


def _grant_dict(g: Grant) -> dict[str, Any]:
    return {"op": g.op, "resource": g.resource, "max_amount_cents": g.max_amount_cents}


@token_app.command("mint")
def token_mint(
    agent: Annotated[str, typer.Option(help="Agent the token is bound to.")],
    task: Annotated[str, typer.Option(help="Task the token is scoped to.")],
    grant: Annotated[
        list[str],
        typer.Option(
            help="OP|RESOURCE[|MAX_CENTS], repeatable; RESOURCE may end in '*'. "
            "Example: --grant 'fs.write|reports/*' --grant 'email.send|alice@example.com'"
        ),
    ],
    ttl: Annotated[
        float | None, typer.Option(help="Seconds; default depends on the node type.")
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Mint a token for a registered agent on an open task (prints it on stdout).

    Each grant's OP is a known op (fs.read, email.send, ...), a registered tool
    (tool.<name>), or a family ending in '*' (fs.*, tool.*); anything else is refused
    with TOKEN.UNKNOWN_OP and nothing is minted or logged."""
    view = view_of(data_dir)
    try:
        grants = [grant_option(g) for g in grant]
        view.registry.agent(agent)
        view.registry.task(task)
        check_grant_ops(grants, view.registry.ops)
        cfg = config_of(data_dir)
        authority = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type)
        tok = authority.mint(
            agent_id=agent,
            task_id=task,
            grants=grants,
            now=time.time(),
            ttl=ttl,
        )
        info = authority.inspect(tok)
        view.wal.append_sync(
            "token.minted",
            {
                "agent_id": agent,
                "task_id": task,
                "grants": [_grant_dict(g) for g in info.grants],
                "revocation_ids": list(info.revocation_ids),
                "expires_at": info.expires_at,
                "principal": COMMANDER,
            },
        )
    except MaosError as exc:
        fail(exc)
    typer.echo(tok)


@token_app.command("inspect")
def token_inspect(token: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Verify a token's signatures and show what it allows, and whether this node would
    accept it now: "status" is valid, expired, revoked or wrong_audience (every reason
    that applies is in "refused_because"); times are ISO 8601, UTC.

    \b
    Exit codes:
        0  the token would be accepted now (for the ops its grants cover)
        1  it would be refused: expired, revoked, or for another node
        2  not a token of this node's root key (error CODE: ...)
    """
    cfg = config_of(data_dir)
    now = time.time()
    try:
        authority = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type)
        info = authority.inspect(token)
    except MaosError as exc:
        fail(exc)
    revoked = view_of(data_dir, write=False).revoked if cfg.wal_path.exists() else set()
    refused = []
    if not revoked.isdisjoint(info.revocation_ids):
        refused.append("revoked")
    if not now < info.expires_at:
        refused.append("expired")
    if info.audience != cfg.node_id:
        refused.append("wrong_audience")
    echo_json(
        {
            "status": refused[0] if refused else "valid",
            "accepted_now": not refused,
            "refused_because": refused,
            "agent_id": info.agent_id,
            "task_id": info.task_id,
            "audience": info.audience,
            "expires_at": iso_time(info.expires_at),
            "expires_in_s": round(info.expires_at - now),
            "blocks": info.blocks,
            "grants": [_grant_dict(g) for g in info.grants],
            "revocation_ids": list(info.revocation_ids),
        }
    )
    if refused:
        raise typer.Exit(1)


@token_app.command("revoke")
def token_revoke(
    token: str, data_dir: DataDir = DEFAULT_DIR, principal: AsPrincipal = COMMANDER
) -> None:
    """Revoke a token (and every token attenuated from it) for good."""
    cfg = config_of(data_dir)
    view = view_of(data_dir)
    try:
        check_principal(principal, view.registry)
        ids = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type).revoke(token)
        order = orders.revocation(view.registry, ids, principal)
        view.wal.append_sync(order.kind, order.body)
    except MaosError as exc:
        fail(exc)
    typer.echo(f"revoked {len(ids)} block id(s); running kernels pick it up within a second")


# -- approvals ----------------------------------------------------------------------------
