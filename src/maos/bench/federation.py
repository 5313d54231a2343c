"""Revocation time across a federation, against a bare NATS publish in the same run.

A hub and a leaf `nats-server` (mTLS, JetStream domains, `sync_interval: always`) on
loopback, real processes. Per round:

* **bare publish** (the baseline): a core NATS message published at the hub until a
  subscriber connected to the leaf has it;
* **to the mirror**: `Authority.revoke` at the hub (a JetStream KV write, fsynced) until the
  leaf's mirror answers it;
* **to the kernel**: the same, then `apply_revocations` into a kernel at the leaf until the
  token is refused (a WAL append included).

The leaf side polls as fast as it can (no sleep), so the figures include polling; a node
runtime would watch instead. Reported, not a gate (issue 11 item 3).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from maos.federation.buckets import Authority, Mirror, Revocation
from maos.federation.feed import apply_revocations
from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.pki import NodeSpec, PkiFiles, issue_pki
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import Deny

__all__ = ["measure"]


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-fed-") as tmp:
        return _measure_in(Path(tmp), 10 if quick else 200)


def _measure_in(root: Path, rounds: int) -> dict[str, Any]:
    pki = issue_pki(root / "pki", [NodeSpec("hq", "sovereign"), NodeSpec("site-a", "sentinel")])
    hub_cfg = NatsdConfig("hq", root / "hq", pki.tls("hq"), leaf_listen=True)
    with Natsd(hub_cfg).start() as hub:
        leaf_cfg = NatsdConfig(
            "site-a", root / "site-a", pki.tls("site-a"), hub_urls=(hub.leaf_url,)
        )
        with Natsd(leaf_cfg).start() as leaf:
            deadline = time.monotonic() + 15
            while hub.get("/leafz").get("leafnodes", 0) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the leaf never linked to the hub")
                time.sleep(0.05)
            return asyncio.run(_rounds(root, pki, hub, leaf, rounds))


async def _rounds(
    root: Path, pki: PkiFiles, hub: Natsd, leaf: Natsd, rounds: int
) -> dict[str, Any]:
    ctx = pki.tls("site-a").client_context()
    hub_nc = await nats.connect(servers=[hub.client_url], tls=ctx, tls_hostname="127.0.0.1")
    leaf_nc = await nats.connect(servers=[leaf.client_url], tls=ctx, tls_hostname="127.0.0.1")
    kernel = await Kernel.boot(KernelConfig(data_dir=root / "kernel"), follow=False)
    try:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_msg(msg: Any) -> None:
            got.put_nowait(msg.data)

        await leaf_nc.subscribe("bench.bare", cb=on_msg)
        await leaf_nc.flush()
        await asyncio.sleep(0.5)  # the subscription's interest reaches the hub over the leaf
        authority = await Authority.create(hub_nc.jetstream())
        mirror = await Mirror.create(leaf_nc.jetstream(), hub_domain="hq")
        await kernel.register_agent("a1", ring=3, budgets={"api_calls": 10})
        await kernel.open_task("t1")
        bare, to_mirror, to_kernel = [], [], []
        applied = 0
        for i in range(rounds):
            t = time.perf_counter()
            await hub_nc.publish("bench.bare", str(i).encode())
            await asyncio.wait_for(got.get(), 10)
            bare.append(time.perf_counter() - t)

            token = kernel.mint("a1", "t1", [Grant("fs.write", "reports/*")])
            ids = kernel.tokens.inspect(token).revocation_ids
            t = time.perf_counter()
            await authority.revoke(Revocation(ids[0], epoch=1, by="hq", revocation_ids=ids))
            while await mirror.revocation(ids[0]) is None:
                pass
            to_mirror.append(time.perf_counter() - t)
            while not _refused(kernel, token):
                applied = await apply_revocations(kernel, mirror, after=applied)
            to_kernel.append(time.perf_counter() - t)
    finally:
        await kernel.close()
        await leaf_nc.close()
        await hub_nc.close()
    b50 = _ms(statistics.median(bare))
    return {
        "rounds": rounds,
        "bare_publish_hub_to_leaf_ms_p50": b50,
        "bare_publish_hub_to_leaf_ms_p99": _ms(_p99(bare)),
        "revocation_to_leaf_mirror_ms_p50": _ms(statistics.median(to_mirror)),
        "revocation_to_leaf_mirror_ms_p99": _ms(_p99(to_mirror)),
        "revocation_to_leaf_kernel_ms_p50": _ms(statistics.median(to_kernel)),
        "revocation_to_leaf_kernel_ms_p99": _ms(_p99(to_kernel)),
        "ratio_revocation_to_kernel_vs_bare_p50": round(
            statistics.median(to_kernel) / max(statistics.median(bare), 1e-9), 1
        ),
    }


def _refused(kernel: Kernel, token: str) -> bool:
    decision = kernel.tokens.authorize(
        token, agent_id="a1", op="fs.write", resource="reports/x", amount_cents=0,
        now=time.time(), task_id="t1",
    )  # fmt: skip
    return isinstance(decision, Deny) and decision.code == "DSC.CAPABILITY.REVOKED"


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
