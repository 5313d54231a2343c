"""`maos mcp-gateway`: put MAOS between an MCP client and its MCP servers (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from maos.cli._common import DEFAULT_DIR, DataDir, app, fail
from maos.kernel.errors import MaosError

if TYPE_CHECKING:
    from maos.mcp.policy import Upstream

mcp_app = typer.Typer(
    help="Serve MCP to a client (Claude Desktop, Claude Code, any MCP client) with every"
    " tool call of its upstream MCP servers checked, logged and carried out by MAOS.\n\n"
    "\b\n"
    "  maos mcp-gateway --policy gateway.yaml --data-dir D             # stdio\n"
    "  maos mcp-gateway --policy gateway.yaml --http 127.0.0.1:8471    # streamable HTTP\n"
    "  maos mcp-gateway check gateway.yaml                             # validate, explain\n\n"
    "Over HTTP the client sends `Authorization: Bearer <token>`, the token in"
    " <data-dir>/mcp-gateway.token (0600). Stdio upstreams run as level-2 pods with only the"
    " egress and secrets their policy names. The policy's schema:"
    " src/maos/mcp/gateway.schema.json.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(mcp_app, name="mcp-gateway")


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "::1", "[::1]", "localhost") or not port.isdigit():
        raise typer.BadParameter(f"{text!r}: give a loopback HOST:PORT, e.g. 127.0.0.1:8471")
    return host.strip("[]"), int(port)


@mcp_app.callback()
def gateway(
    ctx: typer.Context,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="The gateway.yaml to enforce.")
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
    http: Annotated[
        str | None,
        typer.Option("--http", metavar="HOST:PORT", help="Serve streamable HTTP, not stdio."),
    ] = None,
) -> None:
    """Run the gateway (stdio unless --http); Ctrl-C or the client's exit stops it."""
    if ctx.invoked_subcommand is not None:
        return
    if policy is None:
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(2)
    address = _host_port(http) if http else None
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    from maos.mcp import load_policy, running_gateway, serve_http, serve_stdio

    async def go() -> None:
        spec = load_policy(policy)
        async with running_gateway(spec, data_dir) as gw:
            if address is None:
                await serve_stdio(gw)
                return

            def ready(host: str, port: int) -> None:
                typer.echo(f"MAOS MCP gateway on http://{host}:{port}/mcp", err=True)
                typer.echo(f"  bearer token in {data_dir / 'mcp-gateway.token'}", err=True)

            await serve_http(gw, address[0], address[1], ready=ready)

    try:
        asyncio.run(go())
    except MaosError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


@mcp_app.command("check")
def check(
    policy: Annotated[Path, typer.Argument(help="The gateway.yaml to check.")],
) -> None:
    """Validate a policy, start its upstreams, and print what each tool is treated as."""
    from maos.mcp.catalogue import Catalogue
    from maos.mcp.policy import load_policy
    from maos.mcp.serve import connect

    async def go() -> Catalogue:
        connected = await connect(load_policy(policy))
        try:
            for entry in connected.catalogue.entries:
                if entry.treatment in ("declared", "parked"):  # refuses a bad manifest
                    entry.registration(spec.upstreams[entry.upstream].resources).manifest(
                        entry.kernel
                    )
            return connected.catalogue
        finally:
            await connected.aclose()

    try:
        spec = load_policy(policy)
        catalogue = asyncio.run(go())
    except MaosError as exc:
        fail(exc)
    for entry in catalogue.entries:
        if entry.treatment in ("resource", "prompt"):
            label = getattr(spec.upstreams[entry.upstream], f"{entry.treatment}s")
            typer.echo(
                f"{entry.upstream}: {entry.treatment}s -> tool.{entry.kernel} (read,"
                f" result {label.conf}/{label.integrity})"
            )
            continue
        line = f"{entry.visible}  ({entry.upstream}/{entry.remote}) -> "
        if entry.treatment == "refused":
            typer.echo(line + "REFUSED: not declared, default: refuse (not offered)")
            continue
        reg = entry.registration(spec.upstreams[entry.upstream].resources)
        how = "PARKED: not declared, default: park (every call asks the Commander)"
        if entry.treatment == "declared":
            manifest_of = reg.manifest(entry.kernel)
            targets = (
                ", ".join(
                    f"{t.path}={t.kind}{'?' if t.optional else ''}" for t in manifest_of.targets
                )
                or "none"
            )
            how = (
                f"tool.{entry.kernel} effect {'+'.join(reg.effect_classes)}, targets {targets},"
                f" result {reg.result_label.conf}/{reg.result_label.integrity}"
            )
            manifest = entry.policy
            assert manifest is not None
            rules = [f"{a} {r.model_dump(exclude_none=True)}" for a, r in manifest.args.items()]
            if manifest.rate is not None:
                rules.append(f"rate {manifest.rate.per_s:g}/s burst {manifest.rate.burst}")
            if manifest.max_calls is not None:
                rules.append(f"max {manifest.max_calls} calls")
            if rules:
                how += "; rules: " + "; ".join(rules)
        typer.echo(line + how)
    for name, server in spec.upstreams.items():
        typer.echo(f"upstream {name}: {_isolation(server)}")
    declared = {(u, t) for u, tools in spec.tools.items() for t in tools}
    offered = {(e.upstream, e.remote) for e in catalogue.entries}
    for upstream, tool in sorted(declared - offered):
        typer.echo(f"warning: {upstream}/{tool} is declared but the upstream does not offer it")


def _isolation(upstream: Upstream) -> str:
    """How an upstream runs and what it may reach, in one line."""
    if upstream.url is not None:
        return f"remote {upstream.url} (requests only to its host and port)"
    box = upstream.sandbox
    if box.level == "none":
        return "NOT SANDBOXED (sandbox level none): a plain child with the policy's env only"
    runtime = "Debian's python3 only"
    if box.runtime is not None:
        parts = [*box.runtime.python, *(f"npm:{p}" for p in box.runtime.npm)]
        runtime = (
            "runtime " + (" ".join(parts) or "(empty)") + (" + node" if box.runtime.node else "")
        )
    egress = ", ".join(box.egress) or "no network"
    secrets = f", secrets {' '.join(sorted(upstream.secrets))}" if upstream.secrets else ""
    return (
        f"level-2 pod, {runtime}, {len(box.files)} file(s), {len(box.writable)} writable dir(s),"
        f" egress {egress}{secrets}"
    )
