"""A federation node at run time: a MAOS kernel, its NATS link, and one round per tick.

`maos node sovereign|sentinel|pawn --config X.yaml` runs one `Node`. Every node is a kernel
with its own DSC and WAL (decisions never wait on the federation); what the federation
adds is done in `tick`, one round every ``tick`` seconds:

1. **heartbeat** to the upstream node (a Sentinel asks the Sovereign, a Pawn its
   Sentinel, a request through the mTLS link): the link's health, on the node's clock;
2. **partition**: a Pawn without its Sentinel restricts progressively through the
   kernel's degradation modes (source ``federation``: DEGRADED_1, DEGRADED_2, then MSS);
   a node cut off from the Sovereign admits no new agents and no promotions;
3. **policy** down: the node adopts a newer epoch of its policy (logged as
   ``federation.policy``, so a reboot enforces it with the federation gone);
4. **revocations** down, into the kernel (`maos.federation.feed`);
5. **audit** up: its WAL records and anchor into its site's audit stream;
6. the Sovereign also runs the **witness** (`maos.federation.witness`) and writes the
   federation's status (``<data_dir>/federation-status.json``).

The clock is injectable (tests step it through 5, 15 and 60 minutes); `tick` is public so
a test drives the rounds itself and `run` loops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from maos.federation.audit import (
    HUB_STREAM,
    AuditShipper,
    create_hub_stream,
    create_site_stream,
    site_stream,
)
from maos.federation.buckets import Authority, BucketReader, Mirror, Policy, Revocation
from maos.federation.errors import FederationError
from maos.federation.feed import apply_revocations
from maos.federation.natsd import Natsd, NatsdConfig, NatsUser
from maos.federation.nodeconfig import NodeConfig
from maos.federation.pki import NodeIdentity, cert_pin, verify_node_cert
from maos.federation.policy import PolicyCheck, PolicyState
from maos.federation.roster import ROSTER_KEY, leaf_pins, pins, revoked, roster_of
from maos.federation.witness import FEDERATION_PRINCIPAL, Witness
from maos.kernel import promotion
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.modes import Mode

__all__ = ["STATUS_FILE", "Link", "Node", "partition_mode", "read_status"]

STATUS_FILE = "federation-status.json"
_OP_TIMEOUT = 2.0
_RELINK_WAIT = 5.0
"""Seconds a Sovereign whose server restarted waits for the Sentinels it pins to link
again (within about a second, measured) before it sources their audit anew; one that
does not (down, or still on a rotated-out certificate) is sourced when it links."""
_MEMBERSHIP = ("federation.admitted", "federation.node_revoked")
_INBOX = "_INBOX_"
"""A node's replies arrive under ``_INBOX_<name>.``: its own, so a Sentinel's users may
subscribe to their replies only (`Node._users`)."""


def partition_mode(cut_for: float, config: NodeConfig) -> Mode:
    """The restriction a Pawn cut off for ``cut_for`` seconds demands (the seed's table)."""
    p = config.partition
    if cut_for >= p.mss_after:
        return Mode.MSS
    if cut_for >= p.degraded_2_after:
        return Mode.DEGRADED_2
    if cut_for >= p.degraded_1_after:
        return Mode.DEGRADED_1
    return Mode.NORMAL


@dataclass(frozen=True)
class Link:
    """The health of a node's link upstream, as of its last heartbeat."""

    up: bool
    """The last heartbeat was answered."""
    last_contact: float
    """When the upstream last answered (the node's clock)."""
    upstream_up: bool
    """The upstream's own link to the Sovereign (a Sentinel's, as a Pawn hears it)."""


class Node:
    """One running node; `start`, then `tick` (or `run`), then `stop`."""

    def __init__(self, config: NodeConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.kernel: Kernel | None = None
        self.natsd: Natsd | None = None
        self.nc: Client | None = None
        self.reader: BucketReader | None = None
        self.authority: Authority | None = None
        self.witness: Witness | None = None
        self.shipper: AuditShipper | None = None
        self.policy = PolicyState()
        self.revision = 0
        """The last revocations bucket revision applied to the kernel."""
        self.link = Link(up=True, last_contact=clock(), upstream_up=True)
        self.mode = Mode.NORMAL
        """What this node demanded of its kernel for source ``federation``."""
        self._sites: list[str] | None = None
        self.statuses: dict[str, dict[str, Any]] = {}
        """The Sovereign: the last status each node published, with when it arrived."""
        self.roster: Policy | None = None
        """The roster this node published (Sovereign) or adopted (Sentinel): `roster`."""
        self._hub_server: str | None = None
        """A Sentinel: the id of the Sovereign's server as its last heartbeat said (None
        before the first: the hub may have restarted since the mirrors were created)."""
        self._own_pin = ""
        """The pin of the certificate this node's own client links with: the one its files
        held at start, then the one `_sync_certificate` last loaded."""
        self._fresh_sources = False
        """The Sovereign: its server restarted, so the audit sources are removed and added
        again until that succeeds (`create_hub_stream`)."""
        self._stale_mirrors = False
        """A Sentinel: its link to the hub came back (or the hub's server restarted), so its
        mirrors are recreated before it reads them (`_refresh_mirrors`)."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def role(self) -> str:
        return self.config.role

    def _kernel(self) -> Kernel:
        if self.kernel is None:
            raise FederationError("FED.NOT_RUNNING", f"{self.name} is not started.")
        return self.kernel

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Node:
        cfg = self.config
        kcfg = KernelConfig.load(
            cfg.data_dir, node_id=cfg.name, node_type=cfg.role, clock=self.clock
        )
        self.kernel = await Kernel.boot(kcfg)
        try:
            # The certificate this run links with: its files may be rotated under it
            # (`maos node certs --rotate`); the node takes the new ones up in a tick.
            self._own_pin = cert_pin(cfg.certs.cert.read_bytes())
            self.kernel.pipeline.add_check(PolicyCheck(self.policy))
            self._restore_policy()
            self.roster = self._restore_roster()
            if cfg.role != "pawn":
                self.natsd = Natsd(self._natsd_config())
                await asyncio.to_thread(self.natsd.start)
            url = self.natsd.client_url if self.natsd is not None else str(cfg.upstream)
            self.nc = await self._connect(url)
            js = self.nc.jetstream()
            site = cfg.name if cfg.role != "pawn" else str(cfg.upstream_name)
            stream = HUB_STREAM if cfg.role == "sovereign" else site_stream(site)
            if cfg.role == "sovereign":
                self.authority = await Authority.create(js)
                self.reader = self.authority
                await self._source_sites()
                self.witness = Witness(self.kernel, js, self.authority, policy=cfg.policy)
                await self.nc.subscribe("maos.status.>", cb=self._on_status)
            elif cfg.role == "sentinel":
                self.reader = await Mirror.create(js, hub_domain=str(cfg.upstream_name))
                await create_site_stream(js, cfg.name)
            else:
                self.reader = BucketReader(js)
            self.shipper = AuditShipper(self.kernel.wal, js, site, cfg.name, stream=stream)
            if cfg.role != "pawn":
                await self.nc.subscribe(f"maos.hb.{cfg.name}", cb=self._on_heartbeat)
        except BaseException:
            await self.stop()
            raise
        return self

    def _natsd_config(self) -> NatsdConfig:
        cfg = self.config
        return NatsdConfig(
            name=cfg.name,
            data_dir=cfg.data_dir / "nats",
            tls=cfg.tls,
            host=cfg.nats.host,
            port=cfg.nats.port,
            leaf_listen=cfg.role == "sovereign",
            leaf_port=cfg.nats.leaf_port,
            hub_urls=(str(cfg.upstream),) if cfg.role == "sentinel" else (),
            client_pins=self._pins(),
            map_users=cfg.role == "sentinel",
            users=self._users(),
            leaf_pins=self._leaf_pins(),
        )

    def _pins(self) -> tuple[str, ...]:
        """A Sentinel's client pins under the roster it adopted (none for the others)."""
        if self.role != "sentinel" or self.roster is None:
            return ()
        return pins(self.roster.document, self._own_pin)

    def _users(self) -> tuple[NatsUser, ...]:
        """A Sentinel's client users once its roster pins: itself with every right, each
        other pinned node with its own subjects only (audit and status under its name,
        heartbeats to this Sentinel, reads of the buckets' mirrors and of this site's
        audit stream, replies to its own inbox), so a Pawn cannot publish as a sibling.
        None before pinning starts, like the pins (`roster.pins`)."""
        if not self._pins() or self.roster is None:
            return ()
        named = self.roster.document.get("pins")
        gone = revoked(self.roster.document)
        others = sorted(n for n in named if n not in gone) if isinstance(named, dict) else []
        site, get = self.name, "$JS.API.STREAM.MSG.GET."
        reads = (f"{get}KV_maos-policy", f"{get}KV_maos-revocations", f"{get}AUDIT_{site}")
        return (
            NatsUser(site),
            *(
                NatsUser(
                    node,
                    publish=(f"maos.audit.{site}.{node}.>", f"maos.status.{node}",
                             f"maos.hb.{site}", *reads),
                    subscribe=(f"{_INBOX}{node}.>",),
                )
                for node in others
                if node != site
            ),
        )  # fmt: skip

    def _leaf_pins(self) -> tuple[str, ...]:
        """The Sovereign's leaf pins under its log (`roster.leaf_pins`; none for the others)."""
        if self.role != "sovereign":
            return ()
        return leaf_pins(self._kernel().wal.read(kinds=_MEMBERSHIP))

    async def _connect(self, url: str) -> Client:
        seen: list[Exception] = []

        async def note(exc: Exception) -> None:  # link trouble shows in the heartbeat
            seen.append(exc)
            del seen[:-1]

        try:
            nc = await nats.connect(
                servers=[url],
                tls=self.config.tls.client_context(),
                tls_hostname=urlsplit(url).hostname,
                connect_timeout=_OP_TIMEOUT,
                allow_reconnect=False,  # a first link that fails is an error, not a wait
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                error_cb=note,
                inbox_prefix=f"{_INBOX}{self.name}",
            )
        except (OSError, NatsError, TimeoutError) as exc:
            why = seen[-1] if seen else exc
            raise FederationError(
                "FED.UNREACHABLE",
                f"{self.name} cannot reach {url} over mTLS ({type(why).__name__}: {why}): "
                "check the URL, that the peer runs, and that both certificates come from "
                "the federation's CA.",
                url=url,
            ) from None
        # Once linked, a node never gives up on its link: a partition heals by itself. The
        # client reads this option on every disconnect (nats-py keeps its options in a dict).
        nc.options["allow_reconnect"] = True
        return nc

    async def stop(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None
        if self.natsd is not None:
            await asyncio.to_thread(self.natsd.stop)
            self.natsd = None
        if self.kernel is not None:
            await self.kernel.close()
            self.kernel = None

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set."""
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.tick)

    # -- one round -------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round of heartbeat, partition, policy, revocations, audit (and witness)."""
        await self._sync_certificate()  # even cut off: its old one may be why
        await self._heartbeat()
        await self._partition()
        reachable = self.role != "pawn" or self.link.up
        if self._stale_mirrors and self.link.up:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._refresh_mirrors()
        if reachable:
            for step in (self._sync_policy, self._sync_revocations, self._ship):
                with contextlib.suppress(NatsError, TimeoutError):
                    await step()
        if reachable and self.role == "sentinel":
            with contextlib.suppress(NatsError, TimeoutError):
                await self._sync_roster()
        if self.witness is not None:
            await self._sync_leaf_pins()  # a server that fails to restart stops the node
            with contextlib.suppress(NatsError, TimeoutError, FederationError):
                await self._source_sites()
                await self._publish_roster()
                await self.witness.poll()
            self._write_status()
        with contextlib.suppress(NatsError, TimeoutError):
            assert self.nc is not None
            await self.nc.publish(f"maos.status.{self.name}", json.dumps(self.status()).encode())

    async def _heartbeat(self) -> None:
        was = self.cut_off()
        await self._beat()
        if self.cut_off() != was:
            # The witness re-validates what a node decided while cut off (`witness`).
            await self._kernel().wal.append(
                "federation.link", {"cut_off": not was, "upstream": self.config.upstream_name}
            )

    async def _beat(self) -> None:
        if self.role == "sovereign":
            self.link = Link(True, self.clock(), True)
            return
        assert self.nc is not None
        try:
            reply = await self.nc.request(
                f"maos.hb.{self.config.upstream_name}",
                json.dumps({"node": self.name}).encode(),
                timeout=self.config.heartbeat_timeout,
            )
            body = json.loads(reply.data)
            upstream_up = bool(body.get("upstream_up", False))
        except (NatsError, TimeoutError, ValueError):
            self.link = Link(False, self.link.last_contact, False)
            return
        server = body.get("server")
        if self.role == "sentinel" and (server != self._hub_server or not self.link.up):
            self._stale_mirrors = True  # a server it has not mirrored from yet
        self._hub_server = server if isinstance(server, str) else None
        self.link = Link(True, self.clock(), upstream_up)

    async def _on_heartbeat(self, msg: Msg) -> None:
        up = self.role == "sovereign" or self.link.up
        server = None if self.natsd is None else self.natsd.server_id
        body = {"node": self.name, "upstream_up": up, "server": server}
        with contextlib.suppress(NatsError):
            await msg.respond(json.dumps(body).encode())

    async def _partition(self) -> None:
        """A Pawn without its Sentinel restricts progressively; the link back lifts it.

        The demand is the kernel's own degradation mode (source ``federation``), so the DSC
        enforces it and a reboot while still cut off keeps it (it is a log record)."""
        if self.role != "pawn":
            return
        cut_for = 0.0 if self.link.up else self.clock() - self.link.last_contact
        mode = partition_mode(cut_for, self.config)
        kernel = self._kernel()
        logged = kernel.registry.modes.demands.get("federation", Mode.NORMAL)
        if mode == self.mode == logged:
            return
        upstream = self.config.upstream_name
        cause = (
            f"{upstream} unreachable for {cut_for:.0f} s"
            if mode != Mode.NORMAL
            else f"{upstream} reachable again"
        )
        await kernel.demand_mode("federation", mode, cause=cause, principal=FEDERATION_PRINCIPAL)
        self.mode = mode

    def cut_off(self) -> bool:
        """Whether this node has lost the Sovereign (directly, or through its Sentinel)."""
        return self.role != "sovereign" and not (self.link.up and self.link.upstream_up)

    # -- policy and revocations --------------------------------------------------------------

    def _restore_policy(self) -> None:
        """The last policy this node adopted, from its own log (a reboot while cut off)."""
        for rec in self._kernel().wal.read(kinds=("federation.policy",)):
            body = rec.body
            if body.get("name") == self.config.policy:
                doc = body.get("document")
                self.policy.policy = Policy(
                    self.config.policy, int(body["epoch"]), doc if isinstance(doc, dict) else {}
                )

    async def _sync_policy(self) -> None:
        assert self.reader is not None
        try:
            found = await self.reader.policy(self.config.policy)
        except FederationError:  # a value that does not parse: deny everything
            found = Policy(self.config.policy, 1 << 62, {"unreadable": True})
        held = self.policy.policy
        if found is None or (held is not None and found.epoch <= held.epoch):
            return
        await self._kernel().wal.append(
            "federation.policy",
            {"name": found.name, "epoch": found.epoch, "document": dict(found.document),
             "revision": found.revision},
        )  # fmt: skip
        self.policy.policy = found

    def _restore_roster(self) -> Policy | None:
        """The Sentinel: the last roster it adopted, from its own log (a reboot cut off)."""
        last = None
        for rec in self._kernel().wal.read(kinds=("federation.roster",)):
            doc = rec.body.get("document")
            last = Policy(ROSTER_KEY, int(rec.body["epoch"]), doc if isinstance(doc, dict) else {})
        return last

    async def _publish_roster(self) -> None:
        """The Sovereign: publish the roster its log says, when it changed (a new epoch)."""
        assert self.authority is not None and self.witness is not None
        kinds = ("federation.admitted", "federation.node_revoked")
        doc = roster_of(self._kernel().wal.read(kinds=kinds))
        for node in revoked(doc):
            self.witness.revoked.setdefault(node, self.witness.next_seq)
        current = await self.authority.policy(ROSTER_KEY)
        if current is not None and dict(current.document) == doc:
            self.roster = current
            return
        if current is None and not doc["pins"] and not doc["revoked"]:
            return
        nxt = Policy(ROSTER_KEY, 1 if current is None else current.epoch + 1, doc)
        self.roster = await self.authority.put_policy(
            nxt, expected_revision=None if current is None else current.revision
        )

    async def _sync_roster(self) -> None:
        """The Sentinel: adopt a newer roster and reload its client pins (cutting off a
        revoked or rotated-out node at once; nats-server closes its connection)."""
        assert self.reader is not None and self.natsd is not None
        try:
            found = await self.reader.policy(ROSTER_KEY)
        except FederationError:  # unreadable: pin only this Sentinel (`roster.pins`)
            found = Policy(ROSTER_KEY, 1 << 62, {"unreadable": True})
        held = self.roster
        if found is None or (held is not None and found.epoch <= held.epoch):
            return
        await self._kernel().wal.append(
            "federation.roster", {"epoch": found.epoch, "document": dict(found.document)}
        )
        self.roster = found
        new, users = self._pins(), self._users()
        if (new, users) != (self.natsd.config.client_pins, self.natsd.config.users):
            conf = replace(self.natsd.config, client_pins=new, users=users)
            await asyncio.to_thread(self.natsd.reload, conf)

    async def _sync_certificate(self) -> None:
        """Once this node's certificate files were rotated (`maos node certs --rotate`),
        present the new certificate on every link it makes from then on, without a restart.

        nats-server reads its certificates when it starts or reloads, never when a leaf
        remote redials (measured, 2.15.1): a Sentinel rotated and then admitted with the
        new certificate, so that the hub's server restarted pinning only that one,
        redialled with the old one forever ("certificate not pinned"), and being cut off
        it could not learn of the admission through its mirrors either. So a node with a
        server (a Sentinel's leaf remote; the Sovereign's client and leaf listeners, which
        Sentinels verify against the CA) reloads it (`Natsd.reload`: the files are read
        again and the live connections stay, measured), and every node gives its own
        client the new files for its next dial. A Pawn's Sentinel closes its connection
        once the roster no longer pins the old certificate (a Sentinel's own connection
        likewise), and it comes back with the new one: a rotated-out key is then
        accepted nowhere. Files that do not verify against the CA as this node, or whose
        key does not match (another CA's, a rotation half written), are not taken up:
        retried next tick. Logged as ``federation.certificate``."""
        assert self.nc is not None
        tls = self.config.tls
        try:
            pem = tls.cert.read_bytes()
            pin = cert_pin(pem)
            if pin == self._own_pin:
                return
            named = verify_node_cert(pem, tls.ca.read_bytes())
            context = tls.client_context()  # refuses a key that is not the certificate's
        except (OSError, ssl.SSLError, FederationError):
            return
        if named != NodeIdentity(self.name, self.role):
            return
        previous, self._own_pin = self._own_pin, pin
        self.nc.options["tls"] = context  # nats-py reads it on every (re)connect
        if self.natsd is not None:
            conf = replace(self.natsd.config, client_pins=self._pins(), users=self._users())
            await asyncio.to_thread(self.natsd.reload, conf)
        await self._kernel().wal.append(
            "federation.certificate", {"pin": pin, "previous": previous}
        )

    async def _refresh_mirrors(self) -> None:
        """The Sentinel: recreate its mirrors once the hub answers again.

        After the hub's server restarted (or the leaf link healed), nats-server resumes a
        mirror only after its retry back-off (14-18 s measured), while a recreated mirror
        has caught up within a fraction of a second. Nothing is lost meanwhile: the node's
        policy, roster and revocations are in its log, and a reader of the empty mirror
        keeps what it holds (`_sync_policy`, `apply_revocations`)."""
        self.reader = await Mirror.create(
            self._nc().jetstream(), hub_domain=str(self.config.upstream_name), fresh=True
        )
        self._stale_mirrors = False

    async def _sync_leaf_pins(self) -> None:
        """The Sovereign: restart its server when the Sentinels it accepts changed.

        nats-server does not reload a leaf listener's pins, so a revoked or rotated-out
        Sentinel is cut off by a restart on the same ports (`Natsd.restart`; JetStream's
        store stays on disk): the other Sentinels redial within about a second, the cut
        one is refused in the handshake. The audit sources are then added anew once the
        remaining Sentinels are linked, and checked (`_source_sites`, next in the tick or
        in `_membership`): nats-server would resume them only after its back-off, if at
        all."""
        assert self.natsd is not None
        old, new = self.natsd.config.leaf_pins, self._leaf_pins()
        if new == old:
            return
        latest = roster_of(self._kernel().wal.read(kinds=_MEMBERSHIP))["pins"]
        sites = {s for s in self.admitted_sites() if not new or latest.get(s) in new}
        await asyncio.to_thread(self.natsd.restart, replace(self.natsd.config, leaf_pins=new))
        nc = self._nc()
        deadline = time.monotonic() + _RELINK_WAIT
        while time.monotonic() < deadline:
            if nc.is_connected and sites <= await asyncio.to_thread(self._linked):
                break
            await asyncio.sleep(0.05)
        self._sites, self._fresh_sources = None, True

    def _linked(self) -> set[str]:
        """The Sentinels whose leaf link the Sovereign's server shows now."""
        assert self.natsd is not None
        return {str(leaf.get("name")) for leaf in self.natsd.get("/leafz").get("leafs") or ()}

    def _nc(self) -> Client:
        if self.nc is None:
            raise FederationError("FED.NOT_RUNNING", f"{self.name} is not started.")
        return self.nc

    async def _sync_revocations(self) -> None:
        assert self.reader is not None
        self.revision = await apply_revocations(
            self._kernel(), self.reader, after=self.revision, principal=FEDERATION_PRINCIPAL
        )

    async def _ship(self) -> None:
        assert self.shipper is not None
        await self.shipper.ship()

    # -- what the Commander (or a test) does at a node ----------------------------------------

    async def register_agent(self, agent_id: str, *, ring: int, **limits: Any) -> None:
        """Admit an agent here, unless this node is cut off from the Sovereign: then it
        runs on cached policy and admits no new agent and no promotion (issue 11)."""
        kernel = self._kernel()
        known = kernel.registry.agents.get(agent_id)
        if self.cut_off() and (known is None or ring < known.ring):
            raise FederationError(
                "FED.CUT_OFF",
                f"{self.name} has lost the Sovereign: it runs on cached policy and admits no "
                "new agent and no promotion until the link heals (`maos federation status`).",
                agent_id=agent_id,
            )
        await kernel.register_agent(agent_id, ring=ring, **limits)

    async def promote(self, override_id: str, *, principal: str = "commander") -> str:
        """Onboard a confirmed promotion here (`maos.kernel.promotion`), unless this node is
        cut off from the Sovereign: on cached policy it promotes no agent (issue 11)."""
        kernel = self._kernel()
        return await promotion.onboard(
            kernel, override_id, principal=principal, cut_off=self.cut_off()
        )

    async def revoke(self, token: str) -> tuple[str, ...]:
        """Revoke one of this node's tokens here; the audit carries it up to the Sovereign,
        which revokes it everywhere (at the Sovereign: written to the bucket at once)."""
        ids = await self._kernel().revoke(token)
        if self.authority is not None:
            await self.authority.revoke(
                Revocation(ids[0], epoch=self._epoch(), by=self.name, revocation_ids=ids)
            )
        else:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._ship()
        return ids

    async def set_policy(self, document: dict[str, Any]) -> Policy:
        """The Sovereign: write the next epoch of the policy (compare-and-set)."""
        if self.authority is None:
            raise FederationError(
                "FED.NOT_SOVEREIGN", "Only the Sovereign writes the federation's policy."
            )
        current = await self.authority.policy(self.config.policy)
        nxt = Policy(self.config.policy, 1 if current is None else current.epoch + 1, document)
        return await self.authority.put_policy(
            nxt, expected_revision=None if current is None else current.revision
        )

    async def admit(self, node: str, *, role: str, pin: str | None = None) -> None:
        """The Sovereign: admit a node (a Sentinel's audit stream is sourced from then on);
        with ``pin`` (`cert_pin` of its certificate) Sentinels accept only that one."""
        body = {"node": node, "role": role} | ({} if pin is None else {"pin": pin})
        await self._membership("federation.admitted", body)

    async def retire(self, node: str) -> None:
        """The Sovereign: retire a node (its audit is no longer sourced)."""
        await self._membership("federation.retired", {"node": node})

    async def revoke_node(self, node: str, *, reason: str) -> None:
        """The Sovereign: revoke a node for good (`maos federation revoke`): its pin leaves
        the roster, its audit is refused, a revoked Sentinel's is no longer sourced."""
        await self._membership("federation.node_revoked", {"node": node, "reason": reason})

    async def _membership(self, kind: str, body: dict[str, Any]) -> None:
        if self.authority is None:
            raise FederationError("FED.NOT_SOVEREIGN", "Only the Sovereign admits and retires.")
        await self._kernel().wal.append(kind, {**body, "principal": "commander"})
        await self._sync_leaf_pins()
        await self._source_sites()

    async def _source_sites(self) -> None:
        """Source the audit streams of the admitted Sentinels that are linked now.

        The Commander may admit from another process (`maos federation admit` logs, this
        applies). A source is (re)added when its site's leaf link (re)appears: nats-server
        retries a source whose site was unreachable only after a long back-off, while a
        re-added source resumes at once where it stopped (measured; docs/federation.md).
        """
        linked = await asyncio.to_thread(self._linked)
        sites = [s for s in self.admitted_sites() if s in linked]
        if sites != self._sites:
            js = self._nc().jetstream()
            await create_hub_stream(js, self.name, sites, fresh=self._fresh_sources)
            self._sites, self._fresh_sources = sites, False

    def _epoch(self) -> int:
        return 0 if self.policy.policy is None else self.policy.policy.epoch

    # -- status ----------------------------------------------------------------------------

    def admitted_sites(self) -> list[str]:
        """Sentinels the Commander admitted (``federation.admitted`` minus retired and
        revoked)."""
        sites: dict[str, bool] = {}
        kinds = ("federation.admitted", "federation.retired", "federation.node_revoked")
        gone: set[str] = set()
        for rec in self._kernel().wal.read(kinds=kinds):
            if rec.kind == "federation.node_revoked":
                gone.add(str(rec.body["node"]))  # final: its audit is never sourced again
            elif rec.body.get("role") == "sentinel" or rec.kind == "federation.retired":
                sites[str(rec.body["node"])] = rec.kind == "federation.admitted"
        return sorted(n for n, on in sites.items() if on and n not in gone)

    def status(self) -> dict[str, Any]:
        kernel = self._kernel()
        return {
            "node": self.name,
            "role": self.role,
            "epoch": self._epoch(),
            "wal_head": kernel.wal.tail_seq(),
            "shipped": None if self.shipper is None else self.shipper.shipped,
            "mode": str(self.mode),
            "link_up": self.link.up,
            "upstream_up": self.link.upstream_up,
            "last_contact": self.link.last_contact,
            "upstream": self.config.upstream_name,
        }

    async def _on_status(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            self.statuses[str(body["node"])] = {**body, "seen_at": self.clock()}
        except (ValueError, KeyError, TypeError):
            return

    def _write_status(self) -> None:
        assert self.witness is not None
        nodes = {}
        own = {**self.status(), "seen_at": self.clock()}
        for name, st in {**self.statuses, self.name: own}.items():
            chain = self.witness.chains.get(name)
            audited = 0 if chain is None else chain.seq
            nodes[name] = {
                **st,
                "audited": audited,
                "lag": max(0, int(st.get("wal_head") or 0) - audited),
                "anchored": 0 if chain is None else chain.anchored,
                "age": round(self.clock() - float(st["seen_at"]), 3),
            }
        out = {"sovereign": self.name, "at": self.clock(), "nodes": nodes,
               "epochs_adopted": dict(self.witness.epochs)}  # fmt: skip
        path = self.config.data_dir / STATUS_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(out, indent=2, sort_keys=True))
        os.replace(tmp, path)


def read_status(data_dir: Path) -> dict[str, Any]:
    """The Sovereign's last written status (`maos federation status`)."""
    try:
        return dict(json.loads((data_dir / STATUS_FILE).read_text()))
    except (OSError, ValueError) as exc:
        raise FederationError(
            "FED.NO_STATUS",
            f"No federation status under {data_dir} ({exc}): is this the Sovereign's "
            "data_dir, and has `maos node sovereign` run there?",
        ) from None
