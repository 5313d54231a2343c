"""A node's supervised nats-server: hub and leaf, JetStream domains, mTLS (issue 11)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError

from maos.federation.errors import FederationError
from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.pki import NodeSpec, NodeTls, PkiFiles, issue_pki


async def _connect(url: str, ctx: ssl.SSLContext | None) -> nats.NATS:
    return await nats.connect(
        servers=[url],
        tls=ctx,
        tls_hostname="127.0.0.1",
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=0,
    )


def test_hub_and_leaf_come_up_with_jetstream_domains_and_durable_sync(
    hub: Natsd, leaf: Natsd, pki: PkiFiles
) -> None:
    """issue 11: the leaf's JetStream domain answers through the hub; sync is always."""
    for server, domain in ((hub, "hq"), (leaf, "site-a")):
        js = server.get("/varz")["jetstream"]["config"]
        assert (js["domain"], js["sync_always"]) == (domain, True)
        assert Path(js["store_dir"]).is_relative_to(server.config.data_dir)

    async def through_hub() -> tuple[str, str]:
        nc = await _connect(hub.client_url, pki.tls("pawn-1").client_context())
        try:
            here = await nc.jetstream().account_info()
            there = await nc.jetstream(domain="site-a").account_info()
            return here.domain or "", there.domain or ""
        finally:
            await nc.close()

    assert asyncio.run(through_hub()) == ("hq", "site-a")


def test_a_client_with_another_federations_cert_is_refused(
    hub: Natsd, pki: PkiFiles, tmp_path: Path
) -> None:
    """issue 11 item 4: mTLS with verify: a cert from another CA, or none, is refused."""
    other = issue_pki(tmp_path / "other", [NodeSpec("hq", "sovereign")])
    stranger = NodeTls(cert=other.cert("hq"), key=other.key("hq"), ca=pki.ca_cert)
    no_cert = ssl.create_default_context(cafile=str(pki.ca_cert))
    for ctx in (stranger.client_context(), no_cert):
        with pytest.raises((NoServersError, ssl.SSLError, OSError)):
            asyncio.run(_connect(hub.client_url, ctx))


def test_a_server_that_cannot_start_is_an_error_code(tmp_path: Path, pki: PkiFiles) -> None:
    """A bad certificate path is FED.SERVER_FAILED with the server's own words, not a hang."""
    bad = NodeTls(cert=tmp_path / "missing.crt", key=pki.key("hq"), ca=pki.ca_cert)
    with pytest.raises(FederationError) as err:
        Natsd(NatsdConfig(name="hq", data_dir=tmp_path / "hq", tls=bad)).start()
    assert err.value.code == "FED.SERVER_FAILED"


def test_a_leaf_with_another_federations_cert_is_refused_by_the_hub(
    hub: Natsd, tmp_path: Path, pki: PkiFiles, wait_for: Callable[[Callable[[], object]], None]
) -> None:
    """issue 11 item 4: a Sentinel whose certificate another CA signed never links up."""
    other = issue_pki(tmp_path / "other", [NodeSpec("site-a", "sovereign")])
    stranger = NodeTls(cert=other.cert("site-a"), key=other.key("site-a"), ca=pki.ca_cert)
    cfg = NatsdConfig(
        name="site-x", data_dir=tmp_path / "site-x", tls=stranger, hub_urls=(hub.leaf_url,)
    )
    with Natsd(cfg).start():
        wait_for(lambda: "leafnode" in _refusals(hub).lower())
        assert hub.get("/leafz").get("leafnodes", 0) == 0


def _refusals(server: Natsd) -> str:
    """The hub's log lines about TLS handshakes it refused."""
    lines = server.log_path.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if "TLS" in line and "error" in line.lower())
