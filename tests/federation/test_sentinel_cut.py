"""A Sentinel cut off by its certificate (issue 11 item 4): the hub's server restarted with
new leaf pins, its audit sources and the other Sentinels' mirrors back at once."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from nats.errors import Error as NatsError
from typer.testing import CliRunner

from maos.cli import app
from maos.federation.errors import FederationError
from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.node import Node
from maos.federation.pki import NodeSpec, NodeTls, PkiFiles, cert_pin, issue_pki
from maos.federation.roster import NO_CERT, leaf_pins
from maos.kernel.tokens import Grant
from maos.kernel.types import Deny
from maos.kernel.wal import WalRecord

pytestmark = pytest.mark.timeout(120)

_MIRROR_BOUND = 8.0
"""Seconds a Sentinel's mirror may take to carry a policy after the hub's server
restarted: nats-server's own retry back-off takes 14-18 s (measured), a recreated mirror
well under one."""


def _pki(fed: Any) -> PkiFiles:
    names = ("hq", "site-a", "site-b", "pawn-a", "pawn-b")
    return PkiFiles.at(fed.hq.config.certs.cert.parent, [NodeSpec(n, "pawn") for n in names])


def _pin(pki: PkiFiles, name: str) -> str:
    return cert_pin(pki.cert(name).read_bytes())


def _leafs(hub: Natsd) -> set[str]:
    return {str(leaf["name"]) for leaf in hub.get("/leafz").get("leafs") or ()}


async def _sources(node: Node) -> list[str]:
    assert node.nc is not None
    info = await node.nc.jetstream().stream_info("AUDIT")
    return sorted(s.name for s in info.config.sources or ())


async def _epoch_everywhere(fed: Any, nodes: tuple[Node, ...], epoch: int) -> None:
    await fed.until(lambda: all(n._epoch() == epoch for n in nodes), timeout=_MIRROR_BOUND)


def test_a_revoked_sentinel_is_cut_off_and_the_rest_resume_at_once_issue_11(
    start_fed: Callable[[], Awaitable[Any]],
) -> None:
    """`revoke_node` of a Sentinel restarts the hub's server with the other Sentinels'
    pins: before it returns the revoked one is gone from the hub and the other one linked
    and sourced again (read back from the stream); the revoked one stays refused on its
    redials and is cut off (no new agents), its token is refused at another node; a
    policy written afterwards reaches the other Sentinel and its Pawn through their
    mirrors within `_MIRROR_BOUND`, far under nats-server's own back-off."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            pki = _pki(fed)
            hub = fed.hq.natsd
            port, leaf_port = hub.client_url, hub.leaf_url
            for name in ("site-a", "site-b"):
                await fed.hq.admit(name, role="sentinel", pin=_pin(pki, name))
            seen: dict[str, Any] = {"pinned": _leafs(hub), "sources": await _sources(fed.hq)}
            for name in ("pawn-a", "pawn-b"):
                await fed.hq.admit(name, role="pawn", pin=_pin(pki, name))
            await fed.until(lambda: bool(fed.site_b.natsd.config.client_pins))
            await fed.until(lambda: all(n.link.up for n in fed.nodes))
            await fed.hq.set_policy({"denied_ops": []})
            await _epoch_everywhere(fed, fed.nodes, 1)
            token = await _agent(fed.site_b)
            await fed.hq.revoke_node("site-b", reason="site overrun")
            seen |= {"after": _leafs(hub), "sources_after": await _sources(fed.hq)}
            seen["ports"] = (hub.client_url, hub.leaf_url) == (port, leaf_port)
            await fed.until(lambda: not fed.site_b.link.up)
            deadline = time.monotonic() + 3  # its leaf remote redials every second
            while time.monotonic() < deadline:
                await fed.tick()
                seen.setdefault("redialled", set()).update(_leafs(hub))
            await fed.hq.set_policy({"denied_ops": ["fs.delete"]})
            await _epoch_everywhere(fed, (fed.hq, fed.site_a, fed.pawn_a), 2)
            seen["b_epoch"] = fed.site_b._epoch()
            await fed.site_a.kernel.register_agent("late", ring=3, budgets={"api_calls": 1})
            head = fed.site_a.kernel.wal.tail_seq()
            await fed.until(lambda: getattr(fed.hq.witness.chains.get("site-a"), "seq", 0) >= head)
            try:
                await fed.site_b.register_agent("new", ring=3, budgets={"api_calls": 1})
            except FederationError as exc:
                seen["b_admits"] = exc.code
            seen["elsewhere"] = _decision(fed.site_a, token)
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    assert seen["pinned"] == {"site-a", "site-b"}
    assert seen["sources"] == ["AUDIT_site-a", "AUDIT_site-b"]
    assert seen["after"] == {"site-a"}
    assert seen["sources_after"] == ["AUDIT_site-a"]
    assert seen["ports"]
    assert seen["redialled"] == {"site-a"}
    assert seen["b_epoch"] == 1
    assert seen["b_admits"] == "FED.CUT_OFF"
    assert isinstance(seen["elsewhere"], Deny)


def test_a_sentinels_certificate_is_rotated_from_the_command_line_issue_11(
    start_fed: Callable[[], Awaitable[Any]],
    as_yaml: Callable[..., Path],
    tmp_path: Path,
    certificates: Callable[[Node], list[dict[str, Any]]],
) -> None:
    """`maos node certs --rotate site-a`, then `maos federation admit --cert`: the hub's
    server restarts with the new pin, a leaf presenting site-a's old certificate is refused,
    site-a (which reloads its server when its files change) links with the new one, is
    sourced again, and its own connection comes back on the new one, so its own listener
    refuses the old one too; site-b relinked and its mirror carries a new policy within
    `_MIRROR_BOUND`."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            pki = _pki(fed)
            hub = fed.hq.natsd
            hq_yaml = str(as_yaml(fed.hq.config, tmp_path / "hq.yaml"))
            cli = CliRunner()
            for name in ("site-a", "site-b"):
                admit = ["federation", "admit", name, "--role", "sentinel", "-c", hq_yaml]
                assert cli.invoke(app, [*admit, "--cert", str(pki.cert(name))]).exit_code == 0
            await fed.until(lambda: len(hub.config.leaf_pins) == 3 and len(_leafs(hub)) == 2)
            # site-a's server last reloaded (for this roster) before its files are rotated
            await fed.until(lambda: _same_roster(fed.site_a, fed.hq))
            old = tmp_path / "old"
            old.mkdir()
            for src in (pki.cert("site-a"), pki.key("site-a"), pki.ca_cert):
                (old / src.name).write_bytes(src.read_bytes())
            foreign = issue_pki(tmp_path / "foreign", [NodeSpec("x", "sovereign"), _A])
            for src in (pki.cert("site-a"), pki.key("site-a")):  # another CA's, not taken up
                src.write_bytes((foreign.ca_cert.parent / src.name).read_bytes())
            await fed.tick(2)
            seen: dict[str, Any] = {"foreign": certificates(fed.site_a)}
            for src in (pki.cert("site-a"), pki.key("site-a")):
                src.write_bytes((old / src.name).read_bytes())
            out = str(pki.ca_cert.parent)
            rotate = cli.invoke(app, ["node", "certs", "--out", out, "--rotate", "site-a"])
            assert rotate.exit_code == 0, rotate.output
            new_pin = _pin(pki, "site-a")
            seen |= {"old_still_linked": "site-a" in _leafs(hub), "new_pin": new_pin}
            admit = ["federation", "admit", "site-a", "--role", "sentinel", "-c", hq_yaml]
            assert cli.invoke(app, [*admit, "--cert", str(pki.cert("site-a"))]).exit_code == 0
            await fed.until(lambda: new_pin in hub.config.leaf_pins)
            old_tls = PkiFiles.at(old, [_A]).tls("site-a")
            cfg = NatsdConfig(name="old-a", data_dir=tmp_path / "o", tls=old_tls,
                              hub_urls=(hub.leaf_url,))  # fmt: skip
            with Natsd(cfg).start():
                deadline = time.monotonic() + 3  # its leaf remote redials every second
                while time.monotonic() < deadline:
                    await fed.tick()
                    seen.setdefault("linked", set()).update(_leafs(hub))
            await fed.hq.set_policy({"denied_ops": ["fs.delete"]})
            await _epoch_everywhere(fed, (fed.hq, fed.site_b), 1)
            # site-a's redials before its next tick may still present the old certificate
            await fed.until(lambda: fed.site_a.link.up and fed.hq._sites == ["site-a", "site-b"])
            seen["sources"] = await _sources(fed.hq)
            await fed.until(lambda: _same_roster(fed.site_a, fed.hq))
            await fed.tick(3)  # its own connection redialled with the new certificate
            seen["own_linked"] = fed.site_a.nc.is_connected and fed.site_a.link.up
            seen["own_pins"] = fed.site_a.natsd.config.client_pins
            seen["old_own"] = await _refused(fed.site_a.natsd.client_url, old_tls)
            seen["logged"] = certificates(fed.site_a)
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    assert seen["foreign"] == []
    assert seen["old_still_linked"]
    assert seen["own_linked"]
    assert "old-a" not in seen["linked"]
    assert seen["sources"] == ["AUDIT_site-a", "AUDIT_site-b"]
    old_pin = cert_pin((tmp_path / "old" / "site-a.crt").read_bytes())
    assert old_pin not in seen["own_pins"]
    assert seen["old_own"]
    assert [(b["previous"], b["pin"]) for b in seen["logged"]] == [(old_pin, seen["new_pin"])]


def test_the_sovereigns_certificate_is_rotated_in_place_issue_11(
    start_fed: Callable[[], Awaitable[Any]],
    as_yaml: Callable[..., Path],
    tmp_path: Path,
    peer_pins: Callable[..., set[str]],
    certificates: Callable[[Node], list[dict[str, Any]]],
) -> None:
    """`maos node certs --rotate hq` (no admission): another CA's files are not taken up;
    the rotated ones are, within a tick and without a restart (the hub's server reloads:
    same pid, both Sentinels still linked): both its listeners present the new certificate
    to a new peer. When the hub's server next restarts (site-b revoked), site-a relinks on
    the new certificate, site-b is refused, the Sovereign's own connection is on its new
    certificate, and a policy and a Pawn's revocation still go through site-a."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            pki = _pki(fed)
            hub = fed.hq.natsd
            hq_yaml = str(as_yaml(fed.hq.config, tmp_path / "hq.yaml"))
            cli = CliRunner()
            for name, role in (("site-a", "sentinel"), ("site-b", "sentinel"),
                               ("pawn-a", "pawn"), ("pawn-b", "pawn")):  # fmt: skip
                admit = ["federation", "admit", name, "--role", role, "-c", hq_yaml]
                assert cli.invoke(app, [*admit, "--cert", str(pki.cert(name))]).exit_code == 0
            await fed.until(lambda: len(hub.config.leaf_pins) == 3 and len(_leafs(hub)) == 2)
            await fed.until(lambda: all(_same_roster(s, fed.hq) for s in (fed.site_a, fed.site_b)))
            await fed.until(lambda: all(n.link.up for n in fed.nodes))
            token = await _agent(fed.pawn_a)
            old_pin, pid = _pin(pki, "hq"), hub.pid
            seen: dict[str, Any] = {"before": _presented(hub, pki)}
            saved = {f: f.read_bytes() for f in (pki.cert("hq"), pki.key("hq"))}
            foreign = issue_pki(tmp_path / "foreign", [NodeSpec("hq", "sovereign")])
            for f in saved:  # another CA's hq, not taken up
                f.write_bytes((foreign.ca_cert.parent / f.name).read_bytes())
            await fed.tick(2)
            seen |= {"foreign": certificates(fed.hq), "foreign_shown": _presented(hub, pki)}
            for f, data in saved.items():
                f.write_bytes(data)
            out = str(pki.ca_cert.parent)
            seen["rotate"] = cli.invoke(app, ["node", "certs", "--out", out, "--rotate", "hq"])
            new_pin = _pin(pki, "hq")
            await fed.until(lambda: bool(certificates(fed.hq)))
            await fed.until(lambda: _presented(hub, pki) == {new_pin})
            seen["in_place"] = (hub.pid == pid, _leafs(hub))
            await fed.hq.revoke_node("site-b", reason="site overrun")
            seen |= {"restarted": hub.pid != pid, "after": _leafs(hub)}
            seen["a_sees"] = peer_pins(fed.site_a.natsd, "Leafnode")
            await fed.until(lambda: fed.hq.nc.is_connected and bool(peer_pins(hub)))
            seen["own"] = peer_pins(hub)
            await fed.hq.set_policy({"denied_ops": ["fs.delete"]})
            await _epoch_everywhere(fed, (fed.hq, fed.site_a, fed.pawn_a), 1)
            ids = await fed.pawn_a.revoke(token)
            revoked = (fed.hq, fed.site_a)
            await fed.until(lambda: all(ids[0] in n.kernel.tokens.revocations for n in revoked))
            await fed.until(lambda: not fed.site_b.link.up)
            seen["b_epoch"] = fed.site_b._epoch()
            seen["logged"] = certificates(fed.hq)
            seen["pins"] = (old_pin, new_pin)
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    old_pin, new_pin = seen["pins"]
    assert seen["before"] == seen["foreign_shown"] == {old_pin}
    assert seen["foreign"] == []
    assert seen["rotate"].exit_code == 0, seen["rotate"].output
    assert "no admission needed" in seen["rotate"].output
    assert seen["in_place"] == (True, {"site-a", "site-b"})
    assert seen["restarted"]
    assert seen["after"] == {"site-a"}
    assert seen["a_sees"] == {new_pin}
    assert seen["own"] == {new_pin}
    assert seen["b_epoch"] == 0
    assert [(b["previous"], b["pin"]) for b in seen["logged"]] == [(old_pin, new_pin)]


def _presented(hub: Natsd, pki: PkiFiles) -> set[str]:
    """The pins of the certificates ``hub`` presents to a new peer on its client and its
    leaf-node listener (a TLS handshake after the server's INFO line, as NATS does)."""
    ctx = pki.tls("site-a").client_context()
    out = set()
    for url in (hub.client_url, hub.leaf_url):
        with socket.create_connection(("127.0.0.1", urlsplit(url).port or 0), timeout=3) as s:
            while not s.recv(4096).endswith(b"\r\n"):  # its INFO line, in clear
                pass
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                der = t.getpeercert(binary_form=True)
        assert der is not None
        out.add(cert_pin(ssl.DER_cert_to_PEM_cert(der).encode()))
    return out


def test_a_restart_keeps_ports_and_store_and_only_pins_may_change_issue_11(
    tmp_path: Path, pki: PkiFiles, wait_for: Callable[[Callable[[], object]], None]
) -> None:
    """`Natsd.restart` with leaf pins: the same ports and JetStream store, a leaf whose
    certificate is not pinned is refused, one pinned links; a restart that would change
    anything but the pins is refused before the server is stopped."""
    hub_cfg = NatsdConfig(name="hq", data_dir=tmp_path / "hq", tls=pki.tls("hq"), leaf_listen=True)
    with Natsd(hub_cfg).start() as hub:
        leaf_cfg = NatsdConfig(
            name="site-a", data_dir=tmp_path / "a", tls=pki.tls("site-a"), hub_urls=(hub.leaf_url,)
        )
        with Natsd(leaf_cfg).start():
            wait_for(lambda: _leafs(hub) == {"site-a"})
            asyncio.run(_stream(hub, create=True))
            urls, pid = (hub.client_url, hub.leaf_url), hub.pid
            hub.restart(replace(hub.config, leaf_pins=(_pin(pki, "hq"),)))
            assert (hub.client_url, hub.leaf_url) == urls and hub.pid != pid
            time.sleep(2.5)  # two redials of the leaf remote
            assert _leafs(hub) == set()
            hub.restart(replace(hub.config, leaf_pins=(_pin(pki, "hq"), _pin(pki, "site-a"))))
            wait_for(lambda: _leafs(hub) == {"site-a"})
            assert asyncio.run(_stream(hub, create=False)) == 1
            with pytest.raises(FederationError) as err:
                hub.restart(replace(hub.config, domain="other"))
            assert err.value.code == "FED.NO_RELOAD"
            assert hub.get("/healthz")["status"] == "ok"


_A = NodeSpec("site-a", "sentinel")


def _same_roster(site: Node, hq: Node) -> bool:
    return hq.roster is not None and getattr(site.roster, "epoch", 0) == hq.roster.epoch


async def _refused(url: str, tls: NodeTls) -> bool:
    """Whether a client presenting ``tls`` is refused at ``url`` (pinned out): linked only
    if a PING/PONG round trip works, since with TLS 1.3 the client may finish its side of
    the handshake before the server refuses the certificate."""
    try:
        nc = await nats.connect(
            servers=[url], tls=tls.client_context(), tls_hostname="127.0.0.1",
            allow_reconnect=False, connect_timeout=2,
        )  # fmt: skip
        await nc.flush(timeout=2)
        linked = nc.is_connected
        await nc.close()
    except (OSError, NatsError, TimeoutError):
        return True
    return not linked


async def _stream(hub: Natsd, *, create: bool) -> int:
    nc = await nats.connect(
        servers=[hub.client_url], tls=hub.config.tls.client_context(), tls_hostname="127.0.0.1"
    )
    try:
        js = nc.jetstream()
        if create:
            await js.add_stream(name="KEPT", subjects=["kept"])
            await js.publish("kept", b"x")
        return int((await js.stream_info("KEPT")).state.messages)
    finally:
        await nc.close()


def _rec(seq: int, kind: str, body: dict[str, Any]) -> WalRecord:
    return WalRecord(seq, 0.0, kind, None, None, body, b"", b"")


def test_the_leaf_pins_start_with_a_sentinel_and_fail_closed_issue_11() -> None:
    """No Sentinel pinned and only Pawns revoked: no leaf pins; a Sentinel's pin starts
    them (with `NO_CERT`, so the set is never empty, and not the hub's own pin, so a
    rotated hub keeps them), a rotation replaces it, a revocation removes it, and revoking
    a node not admitted as a Pawn starts them too."""
    pawn = _rec(1, "federation.admitted", {"node": "p", "role": "pawn", "pin": "pp"})
    gone_pawn = _rec(2, "federation.node_revoked", {"node": "p"})
    assert leaf_pins([pawn, gone_pawn]) == ()
    a1 = _rec(3, "federation.admitted", {"node": "a", "role": "sentinel", "pin": "a1"})
    b = _rec(4, "federation.admitted", {"node": "b", "role": "sentinel"})
    assert leaf_pins([pawn, a1, b]) == (NO_CERT, "a1")
    a2 = _rec(5, "federation.admitted", {"node": "a", "role": "sentinel", "pin": "a2"})
    assert leaf_pins([a1, a2]) == (NO_CERT, "a2")
    assert leaf_pins([a1, _rec(6, "federation.node_revoked", {"node": "a"})]) == (NO_CERT,)
    assert leaf_pins([_rec(7, "federation.node_revoked", {"node": "x"})]) == (NO_CERT,)


async def _agent(node: Any) -> str:
    await node.register_agent("a1", ring=3, budgets={"api_calls": 10})
    await node.kernel.open_task("t1", trusted_targets=["reports/*"])
    return str(node.kernel.mint("a1", "t1", [Grant("fs.write", "reports/*")]))


def _decision(node: Any, token: str) -> Any:
    return node.kernel.tokens.authorize(
        token, agent_id="a1", op="fs.write", resource="reports/x", amount_cents=0,
        now=time.time(), task_id="t1",
    )  # fmt: skip
