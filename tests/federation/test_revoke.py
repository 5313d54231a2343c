"""A node cut off by its certificate (issue 11 item 4): pins reloaded in place."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client

from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.pki import PkiFiles, cert_pin

pytestmark = pytest.mark.timeout(60)


async def _client(pki: PkiFiles, name: str, url: str, **kw: object) -> Client:
    return await nats.connect(
        servers=[url],
        tls=pki.tls(name).client_context(),
        tls_hostname=urlsplit(url).hostname,
        connect_timeout=2,
        **kw,  # type: ignore[arg-type]
    )


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
        with pytest.raises(Exception):  # noqa: B017 - refused in the handshake
            await _client(pki, "pawn-1", server.client_url, allow_reconnect=False)
        assert own.is_connected
        await own.flush(timeout=2)
        await own.close()

    with Natsd(cfg).start() as server:
        asyncio.run(main(server))
