"""A node cut off by its certificate (issue 11 item 4): pins reloaded in place."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client
from typer.testing import CliRunner

from maos.cli import app
from maos.federation.errors import FederationError
from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.node import Node
from maos.federation.pki import NodeSpec, PkiFiles, cert_pin
from maos.federation.roster import pins
from maos.kernel.tokens import Grant
from maos.kernel.types import Allow, Deny

pytestmark = pytest.mark.timeout(60)


async def _client(pki: PkiFiles, name: str, url: str, **kw: object) -> Client:
    return await nats.connect(
        servers=[url],
        tls=pki.tls(name).client_context(),
        tls_hostname=urlsplit(url).hostname,
        connect_timeout=2,
        **kw,  # type: ignore[arg-type]
    )


async def _redial(pki: PkiFiles, name: str, url: str) -> str:
    """ "linked" only if a PING/PONG round trip works: with TLS 1.3 the client may finish
    its side of the handshake before the server refuses the certificate."""
    try:
        nc = await _client(pki, name, url, allow_reconnect=False)
        await nc.flush(timeout=2)
        linked = nc.is_connected
        await nc.close()
    except Exception as exc:
        return type(exc).__name__
    return "linked" if linked else "closed"


def _pins(pki: PkiFiles, *names: str) -> tuple[str, ...]:
    return tuple(cert_pin(pki.cert(n).read_bytes()) for n in names)


def test_unpinned_client_is_cut_off_on_reload_issue_11(
    tmp_path: Path, pki: PkiFiles, wait_for: Callable[[Callable[[], object]], None]
) -> None:
    """Unpinning a connected node's certificate and reloading closes its connection, and
    it cannot connect again; a node still pinned stays linked."""
    cfg = NatsdConfig(
        name="site-a",
        data_dir=tmp_path / "site-a",
        tls=pki.tls("site-a"),
        client_pins=_pins(pki, "site-a", "pawn-1"),
    )

    async def main(server: Natsd) -> None:
        own = await _client(pki, "site-a", server.client_url)
        pawn = await _client(pki, "pawn-1", server.client_url, allow_reconnect=False)
        assert pawn.is_connected
        await asyncio.to_thread(server.reload, replace(cfg, client_pins=_pins(pki, "site-a")))
        for _ in range(100):
            if not pawn.is_connected:
                break
            await asyncio.sleep(0.05)
        assert not pawn.is_connected
        assert await _redial(pki, "pawn-1", server.client_url) != "linked"
        assert own.is_connected
        await own.flush(timeout=2)
        await own.close()

    with Natsd(cfg).start() as server:
        asyncio.run(main(server))


def test_a_revoked_pawn_is_cut_off_and_its_audit_refused_issue_11(
    start_fed: Callable[[], Awaitable[Any]],
) -> None:
    """issue 11 item 4: `revoke_node` at the Sovereign reaches the Sentinels (roster): the
    revoked Pawn is disconnected and refused when it dials again, a Pawn admitted with its
    pin stays linked, the revoked Pawn's token is refused at another node, and audit
    arriving under its name afterwards is refused at the hub, not verified."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            pki = fed_pki_of(fed)
            token = await _agent(fed.pawn_b)
            for pawn in ("pawn-a", "pawn-b"):
                await fed.hq.admit(pawn, role="pawn", pin=_pins(pki, pawn)[0])
            await fed.until(lambda: bool(fed.site_b.natsd.config.client_pins))
            await fed.tick(3)
            linked = fed.pawn_b.nc.is_connected and fed.pawn_b.link.up
            await fed.hq.revoke_node("pawn-b", reason="laptop stolen")
            await fed.until(lambda: not fed.pawn_b.nc.is_connected)
            await fed.tick(3)
            redial = await _redial(pki, "pawn-b", fed.site_b.natsd.client_url)
            elsewhere = _decision(fed.site_b, token)
            js = fed.site_b.nc.jetstream()
            await js.publish("maos.audit.site-b.pawn-b.rec", b'{"seq": 999}')
            await fed.until(lambda: bool(_refused(fed.hq)))
            return {
                "linked": linked, "redial": redial, "elsewhere": elsewhere,
                "pawn_a_up": fed.pawn_a.link.up and fed.pawn_a.nc.is_connected,
                "refused": _refused(fed.hq),
            }  # fmt: skip
        finally:
            await fed.stop()

    out = asyncio.run(scenario())
    assert out["linked"]
    assert out["redial"] != "linked"
    assert out["pawn_a_up"]
    assert isinstance(out["elsewhere"], Deny)
    assert out["refused"][0]["code"] == "FED.NODE_REVOKED"


def _refused(hq: Any) -> list[dict[str, Any]]:
    return [r.body for r in hq.kernel.wal.read(kinds=("federation.refused",))]


def fed_pki_of(fed: Any) -> PkiFiles:
    cert = fed.hq.config.certs.cert
    names = ("hq", "site-a", "site-b", "pawn-a", "pawn-b")
    return PkiFiles.at(cert.parent, [NodeSpec(n, "pawn") for n in names])


async def _agent(node: Any) -> str:
    await node.register_agent("a1", ring=3, budgets={"api_calls": 10})
    await node.kernel.open_task("t1", trusted_targets=["reports/*"])
    return str(node.kernel.mint("a1", "t1", [Grant("fs.write", "reports/*")]))


def _decision(node: Any, token: str) -> Allow | Deny:
    return node.kernel.tokens.authorize(
        token, agent_id="a1", op="fs.write", resource="reports/x", amount_cents=0,
        now=time.time(), task_id="t1",
    )  # fmt: skip


def test_a_pawns_certificate_is_rotated_from_the_command_line_issue_11(
    start_fed: Callable[[], Awaitable[Any]],
    as_yaml: Callable[..., Path],
    tmp_path: Path,
    peer_pins: Callable[..., set[str]],
    certificates: Callable[[Node], list[dict[str, Any]]],
) -> None:
    """issue 11 item 4: `maos node certs --rotate` issues a Pawn a new certificate from the
    same CA; the running Pawn takes the new files up (logged) and stays linked on its old
    one until `maos federation admit --cert` admits the new one: then its Sentinel closes
    its connection, the old certificate is refused, and the Pawn, not restarted, comes
    back on the new one by itself. `maos federation revoke` refuses a blank reason and
    logs a real one."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            pki = fed_pki_of(fed)
            hq_yaml = str(as_yaml(fed.hq.config, tmp_path / "hq.yaml"))
            cli = CliRunner()
            seen: dict[str, Any] = {}
            for pawn in ("pawn-a", "pawn-b"):
                admit = ["federation", "admit", pawn, "--role", "pawn", "-c", hq_yaml]
                assert cli.invoke(app, [*admit, "--cert", str(pki.cert(pawn))]).exit_code == 0
            await fed.until(lambda: bool(fed.site_b.natsd.config.client_pins))
            old = tmp_path / "old"
            old.mkdir()
            for src in (pki.cert("pawn-b"), pki.key("pawn-b"), pki.ca_cert):
                (old / src.name).write_bytes(src.read_bytes())
            out = str(pki.ca_cert.parent)
            seen["rotate"] = cli.invoke(app, ["node", "certs", "--out", out, "--rotate", "pawn-b"])
            new_pin = _pins(pki, "pawn-b")[0]
            await fed.until(lambda: bool(certificates(fed.pawn_b)))
            await fed.tick()
            reconnects = fed.pawn_b.nc.stats["reconnects"]
            seen["old_still_linked"] = fed.pawn_b.nc.is_connected  # not admitted yet
            admit = ["federation", "admit", "pawn-b", "--role", "pawn", "-c", hq_yaml]
            cli.invoke(app, [*admit, "--cert", str(pki.cert("pawn-b"))])
            await fed.until(lambda: new_pin in fed.site_b.natsd.config.client_pins)
            old_tls = PkiFiles.at(old, [NodeSpec("pawn-b", "pawn")])
            seen["old_redial"] = await _redial(old_tls, "pawn-b", fed.site_b.natsd.client_url)
            await fed.until(lambda: fed.pawn_b.nc.stats["reconnects"] > reconnects)
            await fed.until(lambda: fed.pawn_b.link.up and fed.pawn_b.nc.is_connected)
            seen["presented"] = peer_pins(fed.site_b.natsd)
            seen["pins"] = (_pins(old_tls, "pawn-b")[0], new_pin)
            seen["logged"] = certificates(fed.pawn_b)
            seen["blank"] = cli.invoke(
                app, ["federation", "revoke", "pawn-a", "--reason", " ", "-c", hq_yaml]
            )
            seen["revoke"] = cli.invoke(
                app, ["federation", "revoke", "pawn-a", "--reason", "lost", "-c", hq_yaml]
            )
            seen["revoked"] = [
                r.body for r in fed.hq.kernel.wal.read(kinds=("federation.node_revoked",))
            ]
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    old_pin, new_pin = seen["pins"]
    assert seen["rotate"].exit_code == 0, seen["rotate"].output
    assert "maos federation admit pawn-b --role pawn --cert" in seen["rotate"].output
    assert seen["old_still_linked"]
    assert seen["old_redial"] != "linked"
    assert new_pin in seen["presented"] and old_pin not in seen["presented"]
    assert [(b["previous"], b["pin"]) for b in seen["logged"]] == [(old_pin, new_pin)]
    assert seen["blank"].exit_code == 2 and "error FED.NO_REASON" in seen["blank"].output
    assert seen["revoke"].exit_code == 0
    assert [(b["node"], b["reason"]) for b in seen["revoked"]] == [("pawn-a", "lost")]


def test_the_roster_pins_fail_closed_and_only_pins_reload_issue_11(
    tmp_path: Path, pki: PkiFiles
) -> None:
    """A roster that pins or revokes nobody pins nothing; a revocation alone starts
    pinning; one a Sentinel cannot read pins only the Sentinel; anything but the client
    pins is refused by `Natsd.reload` before a signal is sent."""
    assert pins({"pins": {}, "revoked": {}}, "own") == ()
    assert pins({"pins": {}, "revoked": {"pawn-1": "lost"}}, "own") == ("own",)
    doc = {"pins": {"pawn-1": "p1", "pawn-2": "p2"}, "revoked": {"pawn-2": "lost"}}
    assert pins(doc, "own") == ("own", "p1")
    assert pins({"unreadable": True}, "own") == ("own",)
    assert pins({"pins": ["p1"], "revoked": {}}, "own") == ("own",)
    cfg = NatsdConfig(name="site-a", data_dir=tmp_path / "s", tls=pki.tls("site-a"))
    with pytest.raises(FederationError) as err:
        Natsd(cfg).reload(replace(cfg, port=4333, client_pins=("p1",)))
    assert err.value.code == "FED.NO_RELOAD"
