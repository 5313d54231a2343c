"""A revocation written at the Sovereign refuses the token in a Sentinel's kernel (issue 11)."""

from __future__ import annotations

import asyncio
import ssl
import time

import nats

from maos.federation.buckets import Authority, Mirror, Revocation
from maos.federation.feed import apply_revocations
from maos.federation.natsd import Natsd
from maos.federation.pki import PkiFiles
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import Allow, Deny


async def _connect(server: Natsd, ctx: ssl.SSLContext) -> nats.NATS:
    return await nats.connect(
        servers=[server.client_url], tls=ctx, tls_hostname="127.0.0.1", connect_timeout=3,
        allow_reconnect=False, max_reconnect_attempts=0,
    )  # fmt: skip


def _decision(kernel: Kernel, token: str) -> Allow | Deny:
    return kernel.tokens.authorize(
        token, agent_id="a1", op="fs.write", resource="reports/x", amount_cents=0,
        now=time.time(), task_id="t1",
    )  # fmt: skip


def test_a_revocation_at_the_hub_is_refused_by_a_leaf_kernel_and_kept_across_reboot(
    hub: Natsd, leaf: Natsd, pki: PkiFiles, config: KernelConfig
) -> None:
    """issue 11 item 3: revoked at the Sovereign, refused at the Sentinel's kernel, which
    logged it: a reboot with the hub gone still refuses the token."""
    ctx = pki.tls("site-a").client_context()

    async def scenario() -> tuple[Allow | Deny, Allow | Deny, Allow | Deny, int]:
        kernel = await Kernel.boot(config, follow=False)
        hub_nc = await _connect(hub, ctx)
        leaf_nc = await _connect(leaf, ctx)
        try:
            await kernel.register_agent("a1", ring=3, budgets={"api_calls": 10})
            await kernel.open_task("t1")
            token = kernel.mint("a1", "t1", [Grant("fs.write", "reports/*")])
            before = _decision(kernel, token)
            ids = kernel.tokens.inspect(token).revocation_ids
            authority = await Authority.create(hub_nc.jetstream())
            mirror = await Mirror.create(leaf_nc.jetstream(), hub_domain="hq")
            await authority.revoke(
                Revocation(ids[0], epoch=1, by="hq", reason="leaked", revocation_ids=ids)
            )
            applied = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while applied == 0 and loop.time() < deadline:
                applied = await apply_revocations(kernel, mirror, after=applied)
                await asyncio.sleep(0.05)
            after = _decision(kernel, token)
            again = await apply_revocations(kernel, mirror, after=applied)
        finally:
            await leaf_nc.close()
            await hub_nc.close()
            await kernel.close()
        hub.kill()
        rebooted = await Kernel.boot(config, follow=False)
        try:
            return before, after, _decision(rebooted, token), again - applied
        finally:
            await rebooted.close()

    before, after, rebooted, moved = asyncio.run(scenario())
    assert isinstance(before, Allow)
    assert isinstance(after, Deny) and after.code == "DSC.CAPABILITY.REVOKED"
    assert isinstance(rebooted, Deny) and rebooted.code == "DSC.CAPABILITY.REVOKED"
    assert moved == 0


def test_an_unreadable_record_keyed_by_a_revocation_id_still_revokes_it() -> None:
    """Fail closed (issue 11): garbage under a hex key revokes that id; ids are checked."""
    assert Revocation.decode("ab12", b"garbage", 3).ids() == ("ab12",)
    bad_ids = b'{"token_id":"ab12","epoch":1,"by":"hq","revocation_ids":["NOT HEX"]}'
    assert Revocation.decode("ab12", bad_ids, 3).ids() == ("ab12",)
    good = Revocation("ab12", 1, "hq", revocation_ids=("ab12", "cd34"))
    assert Revocation.decode("ab12", good.encode(), 3).ids() == ("ab12", "cd34")
