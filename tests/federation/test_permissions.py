"""Per-node subject permissions at a Sentinel (issue 11 item 4): a Pawn is the NATS user
its certificate names and publishes only under its own subjects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from nats.js.errors import NotFoundError

from maos.federation.pki import NodeSpec, PkiFiles, cert_pin

pytestmark = pytest.mark.timeout(90)


def test_a_pawn_cannot_publish_under_another_nodes_subject_issue_11(
    start_fed: Callable[[], Awaitable[Any]],
) -> None:
    """Once the roster pins the Pawns, site-a maps each certificate to a user: a client
    with pawn-a's certificate publishing audit as site-a or as pawn-b, or subscribing to
    everything, gets a permissions violation from the real server and nothing lands in
    site-a's audit stream; pawn-a's own node still links, ships and is audited."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            names = ("hq", "site-a", "site-b", "pawn-a", "pawn-b")
            pki = PkiFiles.at(fed.hq.config.certs.cert.parent, [NodeSpec(n, "pawn") for n in names])
            for pawn in ("pawn-a", "pawn-b"):
                await fed.hq.admit(pawn, role="pawn", pin=cert_pin(pki.cert(pawn).read_bytes()))
            await fed.until(lambda: len(fed.site_a.natsd.config.users) == 3)
            errors: list[str] = []

            async def note(exc: Exception) -> None:
                errors.append(str(exc))

            url = fed.site_a.natsd.client_url
            nc = await nats.connect(
                servers=[url], tls=pki.tls("pawn-a").client_context(),
                tls_hostname=urlsplit(url).hostname, error_cb=note, allow_reconnect=False,
                inbox_prefix="_INBOX_pawn-a",
            )  # fmt: skip
            forged = ("maos.audit.site-a.site-a.rec", "maos.audit.site-a.pawn-b.rec")
            for subject in forged:
                await nc.publish(subject, b'{"seq": 1}')
            await nc.subscribe(">")
            await nc.flush(timeout=2)
            for _ in range(40):
                if len(errors) >= 3:
                    break
                await asyncio.sleep(0.05)
            await nc.close()
            js = fed.site_a.nc.jetstream()
            landed = []
            for subject in forged[1:]:  # site-a's own subject holds its real records
                with contextlib.suppress(NotFoundError):
                    landed.append((await js.get_last_msg("AUDIT_site-a", subject)).data)
            real = await js.get_last_msg("AUDIT_site-a", "maos.audit.site-a.site-a.rec")
            await fed.pawn_a.kernel.register_agent("ok", ring=3, budgets={"api_calls": 1})
            head = fed.pawn_a.kernel.wal.tail_seq()
            await fed.until(lambda: getattr(fed.hq.witness.chains.get("pawn-a"), "seq", 0) >= head)
            tampered = list(fed.hq.kernel.wal.read(kinds=("federation.tampered",)))
            return {"errors": errors, "landed": landed, "real": real.data,
                    "tampered": tampered, "up": fed.pawn_a.link.up}  # fmt: skip
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    violations = [e for e in seen["errors"] if "permissions violation" in e.lower()]
    assert len(violations) == 3, seen["errors"]
    assert any('publish to "maos.audit.site-a.pawn-b.rec"' in e.lower() for e in violations)
    assert any('subscription to ">"' in e.lower() for e in violations)
    assert seen["landed"] == []
    assert seen["real"] != b'{"seq": 1}'
    assert seen["tampered"] == []
    assert seen["up"]
