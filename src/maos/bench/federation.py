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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StorageType

from maos.federation.buckets import Authority, Mirror, Revocation
from maos.federation.feed import apply_revocations
from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.node import Node
from maos.federation.nodeconfig import NodeConfig
from maos.federation.pki import NodeSpec, PkiFiles, issue_pki
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.kernel.types import Deny

__all__ = ["measure"]


def measure(*, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maos-bench-fed-") as tmp:
        root = Path(tmp)
        figures = _measure_in(root, 10 if quick else 200)
        five = [NodeSpec("hq", "sovereign"), NodeSpec("site-a", "sentinel"),
                NodeSpec("site-b", "sentinel"), NodeSpec("pawn-a", "pawn"),
                NodeSpec("pawn-b", "pawn")]  # fmt: skip
        pki = issue_pki(root / "pki5", five)
        figures["federation_nodes"] = asyncio.run(
            _node_rounds(pki, root / "nodes", 3 if quick else 20)
        )
        figures["audit_durability"] = asyncio.run(
            _durability(pki, root / "durability", 100 if quick else 500)
        )
        if not quick:  # three `maos node` processes: ~20 s on the shared machine
            three = [NodeSpec("fp-hq", "sovereign"), NodeSpec("fp-site", "sentinel"),
                     NodeSpec("fp-pawn", "pawn")]  # fmt: skip
            figures["footprint"] = _footprint(issue_pki(root / "pki-fp", three), root)
        return figures


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


# -- the node runtimes: five nodes, policy and revocation to every one, audit up ---------


def _node_config(pki: PkiFiles, root: Path, role: str, name: str, **link: str) -> NodeConfig:
    tls = pki.tls(name)
    return NodeConfig.model_validate(
        {"role": role, "name": name, "data_dir": root / name, "heartbeat_timeout": 0.5,
         "certs": {"ca": tls.ca, "cert": tls.cert, "key": tls.key}, **link}
    )  # fmt: skip


async def _federation(pki: PkiFiles, root: Path) -> list[Node]:
    hq = await Node(_node_config(pki, root, "sovereign", "hq")).start()
    nodes = [hq]
    assert hq.natsd is not None
    try:
        for site, pawn in (("site-a", "pawn-a"), ("site-b", "pawn-b")):
            await hq.admit(site, role="sentinel")
            s = await Node(_node_config(pki, root, "sentinel", site, upstream=hq.natsd.leaf_url,
                                        upstream_name="hq")).start()  # fmt: skip
            nodes.append(s)
            assert s.natsd is not None
            nodes.append(await Node(_node_config(pki, root, "pawn", pawn,
                                                 upstream=s.natsd.client_url,
                                                 upstream_name=site)).start())  # fmt: skip
    except BaseException:
        for n in reversed(nodes):
            await n.stop()
        raise
    return nodes


async def _until(nodes: list[Node], cond: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("the federation did not converge")
        for n in nodes:
            await n.tick()


async def _node_rounds(pki: PkiFiles, root: Path, rounds: int) -> dict[str, Any]:
    nodes = await _federation(pki, root)
    hq, pawn_a, pawn_b = nodes[0], nodes[2], nodes[4]
    try:
        await _until(nodes, lambda: all(c.seq > 0 for c in hq.witness.chains.values())  # type: ignore[union-attr]
                     and len(hq.witness.chains) == 5)  # type: ignore[union-attr]  # fmt: skip
        policy, revocation = [], []
        await pawn_a.kernel.register_agent("a1", ring=3, budgets={"api_calls": 10})  # type: ignore[union-attr]
        await pawn_a.kernel.open_task("t1")  # type: ignore[union-attr]
        for i in range(rounds):
            t = time.perf_counter()
            p = await hq.set_policy({"denied_ops": [f"tool.bench_{i}"]})
            await _until(nodes, lambda p=p: all(n._epoch() == p.epoch for n in nodes))
            policy.append(time.perf_counter() - t)
            token = pawn_a.kernel.mint("a1", "t1", [Grant("fs.write", "reports/*")])  # type: ignore[union-attr]
            t = time.perf_counter()
            ids = await pawn_a.revoke(token)
            await _until(nodes, lambda ids=ids: all(ids[0] in n.kernel.tokens.revocations  # type: ignore[union-attr]
                                                    for n in nodes))  # fmt: skip
            revocation.append(time.perf_counter() - t)
        audit = await _audit_rate(nodes, pawn_b, hq, 200 if rounds < 20 else 1000)
        bare = await _bare_rate(pawn_b, hq, 200 if rounds < 20 else 1000)
        fanout = await _bare_fanout(hq, nodes[1:], rounds)
    finally:
        for n in reversed(nodes):
            await n.stop()
    return {
        "nodes": len(nodes),
        "policy_to_every_node_ms_p50": _ms(statistics.median(policy)),
        "policy_to_every_node_ms_p99": _ms(_p99(policy)),
        "bare_publish_hub_to_every_node_ms_p50": _ms(statistics.median(fanout)),
        "ratio_policy_vs_bare_fanout_p50": round(
            statistics.median(policy) / max(statistics.median(fanout), 1e-9), 1
        ),
        "revocation_pawn_to_every_node_ms_p50": _ms(statistics.median(revocation)),
        "revocation_pawn_to_every_node_ms_p99": _ms(_p99(revocation)),
        "audit_pawn_to_hub_verified_per_s": round(audit),
        "bare_publish_pawn_to_hub_per_s": round(bare),
        "ratio_audit_vs_bare_throughput": round(audit / max(bare, 1e-9), 3),
    }


async def _audit_rate(nodes: list[Node], pawn: Node, hq: Node, n: int) -> float:
    """Records durable in a Pawn's log until the hub's witness verified them all: shipped
    to the site's stream, sourced by the hub, re-hashed and chained there."""
    kernel = pawn.kernel
    assert kernel is not None and hq.witness is not None
    await asyncio.gather(*(kernel.wal.append("bench.audit", {"i": i}) for i in range(n)))
    head = kernel.wal.tail_seq()
    t = time.perf_counter()
    witness = hq.witness
    await _until(nodes, lambda: witness.chains[pawn.name].seq >= head, timeout=120)
    return n / (time.perf_counter() - t)


async def _bare_fanout(hq: Node, others: list[Node], rounds: int) -> list[float]:
    """A core NATS message the hub publishes until every other node's link had it: what
    the policy's trip to every node costs before any node checks, stores or applies it."""
    assert hq.nc is not None
    got: dict[int, int] = {}
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        i = int(msg.data)
        got[i] = got.get(i, 0) + 1
        if got[i] == len(others):
            done.set()

    for node in others:
        assert node.nc is not None
        await node.nc.subscribe("bench.bare.policy", cb=on_msg)
        await node.nc.flush()
    await asyncio.sleep(0.5)  # interest reaches the hub through the leaves
    out = []
    for i in range(rounds):
        done.clear()
        t = time.perf_counter()
        await hq.nc.publish("bench.bare.policy", str(i).encode())
        await asyncio.wait_for(done.wait(), 30)
        out.append(time.perf_counter() - t)
    return out


async def _bare_rate(pawn: Node, hq: Node, n: int) -> float:
    """Core NATS messages from a Pawn's link until a subscriber at the hub had them all."""
    assert pawn.nc is not None and hq.nc is not None
    done = asyncio.Event()
    got = 0

    async def on_msg(msg: Any) -> None:
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    await hq.nc.subscribe("bench.bare.audit", cb=on_msg)
    await hq.nc.flush()
    await asyncio.sleep(0.5)  # interest reaches the leaf
    t = time.perf_counter()
    for i in range(n):
        await pawn.nc.publish("bench.bare.audit", str(i).encode() * 20)
    await pawn.nc.flush()
    await asyncio.wait_for(done.wait(), 30)
    return n / (time.perf_counter() - t)


# -- what the audit path's durability costs -------------------------------------------------


async def _durability(pki: PkiFiles, root: Path, n: int) -> dict[str, Any]:
    """Acknowledged JetStream publishes of audit-sized records, ``sync_interval: always``
    against the default (flush every two minutes): two servers, passes alternated and the
    best of two kept, so a neighbour's burst on the shared machine hits both alike."""
    rates: dict[bool, float] = {True: 0.0, False: 0.0}
    servers = {
        sync: Natsd(NatsdConfig(f"d{int(sync)}", root / f"sync-{sync}", pki.tls("hq"),
                                sync_always=sync)).start()
        for sync in (False, True)
    }  # fmt: skip
    try:
        conns = {}
        for sync, srv in servers.items():
            conns[sync] = await nats.connect(servers=[srv.client_url], tls_hostname="127.0.0.1",
                                             tls=pki.tls("hq").client_context())  # fmt: skip
            await (
                conns[sync]
                .jetstream()
                .add_stream(name="B", subjects=["b.>"], storage=StorageType.FILE)
            )
        for _ in range(2):
            for sync in (False, True):
                js = conns[sync].jetstream()
                t = time.perf_counter()
                for _ in range(n):
                    await js.publish("b.x", b"r" * 200)
                rates[sync] = max(rates[sync], n / (time.perf_counter() - t))
        for nc in conns.values():
            await nc.close()
    finally:
        for srv in servers.values():
            srv.stop()
    return {
        "audit_publish_sync_always_per_s": round(rates[True]),
        "audit_publish_default_sync_per_s": round(rates[False]),
        "ratio_sync_always_vs_default": round(rates[True] / rates[False], 3),
    }


# -- footprint: each node as its own process, as `maos node` runs it ------------------------


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them (a node starts its
    nats-server from a worker thread)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def _footprint(pki: PkiFiles, root: Path) -> dict[str, Any]:
    """RSS of a Sovereign, a Sentinel and a Pawn, each started by ``maos node``."""
    import yaml

    cmd = [sys.executable, "-c", "from maos.cli import main; main()", "node"]
    procs: list[subprocess.Popen[str]] = []
    out: dict[str, Any] = {}
    try:
        specs = [("sovereign", "fp-hq"), ("sentinel", "fp-site"), ("pawn", "fp-pawn")]
        urls: dict[str, str] = {}
        for role, name in specs:
            link: dict[str, str] = {}
            if role == "sentinel":
                link = {"upstream": urls["leaf"], "upstream_name": "fp-hq"}
            elif role == "pawn":
                link = {"upstream": urls["site"], "upstream_name": "fp-site"}
            cfg = _node_config(pki, root / "fp", role, name, **link)
            path = root / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
            p = subprocess.Popen([*cmd, role, "--config", str(path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)  # fmt: skip
            procs.append(p)
            assert p.stdout is not None
            line = p.stdout.readline()
            if " up: " not in line:
                raise RuntimeError(f"{name} did not start: {line!r}")
            nats_url = line.split("nats ", 1)[1].split(",")[0].split(";")[0]
            if role == "sovereign":
                urls["leaf"] = line.split("leaf ", 1)[1].split(";")[0]
            elif role == "sentinel":
                urls["site"] = nats_url
        time.sleep(2)  # a few ticks: links up, first audit shipped
        for (role, _), p in zip(specs, procs, strict=True):
            own = _rss_kb(p.pid)
            server = sum(_rss_kb(c) for c in _children(p.pid))
            out[f"{role}_rss_mb"] = round((own + server) / 1024, 1)
            out[f"{role}_kernel_process_rss_mb"] = round(own / 1024, 1)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    out["seed_figures_mb"] = {"sovereign": "500+", "sentinel": "200-400", "pawn": "50-100"}
    return out
