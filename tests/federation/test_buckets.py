"""Policy and revocations: authoritative at the hub, mirrored at the leaf (issue 11)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import pytest

from maos.federation.buckets import Authority, Mirror, Policy, Revocation
from maos.federation.errors import FederationError
from maos.federation.natsd import Natsd
from maos.federation.pki import PkiFiles

T = TypeVar("T")


async def _connect(server: Natsd, ctx: ssl.SSLContext) -> nats.NATS:
    return await nats.connect(
        servers=[server.client_url], tls=ctx, tls_hostname="127.0.0.1", connect_timeout=3,
        allow_reconnect=False, max_reconnect_attempts=0,
    )  # fmt: skip


async def _eventually(read: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Poll ``read`` until it returns something; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := await read()) is None:
        if loop.time() > deadline:
            raise AssertionError(f"nothing arrived in {timeout} s")
        await asyncio.sleep(0.05)
    return found


def test_revocation_and_policy_written_at_hub_reach_the_leaf_and_survive_its_loss(
    hub: Natsd, leaf: Natsd, pki: PkiFiles
) -> None:
    """issue 11: a revocation at the Sovereign is seen at the Sentinel's mirror, and the
    Sentinel keeps serving its mirror with the hub SIGKILLed."""
    ctx = pki.tls("pawn-1").client_context()

    async def scenario() -> tuple[Revocation, Policy, list[Revocation]]:
        hub_nc = await _connect(hub, ctx)
        leaf_nc = await _connect(leaf, ctx)
        try:
            authority = await Authority.create(hub_nc.jetstream())
            mirror = await Mirror.create(leaf_nc.jetstream(), hub_domain="hq")
            p1 = await authority.put_policy(
                Policy("agents", 1, {"ring3": "allowed"}), expected_revision=None
            )
            await authority.put_policy(
                Policy("agents", 2, {"ring3": "paused"}), expected_revision=p1.revision
            )
            await authority.revoke(Revocation("tok-1", epoch=2, by="hq", reason="leaked"))
            seen = await _eventually(lambda: mirror.revocation("tok-1"))
            policy = await _eventually(
                lambda: _at_epoch(mirror, 2),
            )
            hub.kill()
            await hub_nc.close()
            # The hub is gone: the Sentinel answers from its own domain's mirror.
            after = await mirror.revocations()
            assert await mirror.policy("agents") == policy
            return seen, policy, after
        finally:
            await leaf_nc.close()

    seen, policy, after = asyncio.run(scenario())
    assert (seen.token_id, seen.by, seen.reason, seen.epoch) == ("tok-1", "hq", "leaked", 2)
    assert (policy.epoch, dict(policy.document)) == (2, {"ring3": "paused"})
    assert [r.token_id for r in after] == ["tok-1"]


async def _at_epoch(mirror: Mirror, epoch: int) -> Policy | None:
    p = await mirror.policy("agents")
    return p if p is not None and p.epoch == epoch else None


def test_policy_writes_are_compare_and_set_and_raise_the_epoch(hub: Natsd, pki: PkiFiles) -> None:
    """issue 11: the bucket revision is the CAS token; the epoch lives in the value."""

    async def scenario() -> list[str]:
        nc = await _connect(hub, pki.tls("hq").client_context())
        codes: list[str] = []
        try:
            authority = await Authority.create(nc.jetstream())
            p1 = await authority.put_policy(Policy("agents", 1), expected_revision=None)
            # Another bucket write moves the revision on without touching this key.
            await authority.revoke(Revocation("tok-9", epoch=1, by="hq"))
            attempts = [
                (Policy("agents", 2), None),  # it exists already
                (Policy("agents", 2), p1.revision + 5),  # not what is there
                (Policy("agents", 1), p1.revision),  # epoch not raised
            ]
            for policy, expected in attempts:
                with pytest.raises(FederationError) as err:
                    await authority.put_policy(policy, expected_revision=expected)
                codes.append(err.value.code)
            p2 = await authority.put_policy(Policy("agents", 2), expected_revision=p1.revision)
            assert (await authority.policy("agents")) == p2
            again = await authority.revoke(Revocation("tok-9", epoch=2, by="site-a"))
            assert (again.by, again.epoch) == ("hq", 1)
        finally:
            await nc.close()
        return codes

    assert asyncio.run(scenario()) == [
        "FED.STALE_REVISION",
        "FED.STALE_REVISION",
        "FED.STALE_EPOCH",
    ]


def test_an_unreadable_revocation_still_revokes() -> None:
    """Fail closed: a record a check cannot parse revokes the token its key names."""
    for data in (b"not json", b'{"token_id": "tok-2"}', b'{"token_id":"x","epoch":1,"by":"hq"}'):
        rev = Revocation.decode("tok-1", data, 7)
        assert (rev.token_id, rev.readable, rev.revision) == ("tok-1", False, 7)
    assert Revocation.decode("tok-1", Revocation("tok-1", 3, "hq").encode(), 7).readable
