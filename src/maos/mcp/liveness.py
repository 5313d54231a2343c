"""Upstream MCP servers' heartbeats: the protocol's own liveness request, answered.

A stdio upstream (a level-2 pod, `maos.pod.upstream`, or a plain child) has no kernel
channel to beat on: the SDK's client holds its stdin and stdout as the MCP channel. So
the gateway asks the server itself, with the request the protocol has for it - ``ping``
on the handshake protocol; ``server/discover`` on 2026-07-28, which has no ping (a
server answers it "method not found") and whose discover is side-effect free - and
each answer is one beat of the member ``pod:mcp/<upstream>`` to the Watchdog (a ``/``:
no agent's ``pod:<agent>`` can be it, `maos.pod.beats`). A JSON-RPC error answer is a
beat too: the server read the request and wrote back; what the client makes up itself
(connection closed, its own timeout) is not.

The beat's MAC is computed here, on the kernel's side, with the member's key: what
makes it the server's is the channel - only that process holds the other end of the
pipe, and only an answer read from it makes a beat.

One probe is outstanding at a time, sent every `PROBE_PERIODS` heartbeat periods: a
probe costs each side a JSON-RPC round trip through the SDK (about 0.3 ms of the
gateway's CPU, measured, where a pod's beat costs the kernel some 10 µs: a parse and
two HMACs), and the pod miss limit (``pod_missed_beats``, 100 periods) still spans
twenty of them. The SDK's dispatcher (client and server) runs
each request in a task of its own and matches answers by id, so a probe never waits
behind a call and never takes its answer; a server on the Python SDK runs synchronous
tools in a worker thread, so a slow call does not silence it. A server that handles one
request at a time could not answer during a call, so a call in flight *holds* the member
(`Watchdog.holding`): the call's own timeout bounds it, as it did before.
"""

from __future__ import annotations

import asyncio

import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from maos.kernel.watchdog import Watchdog, beat_mac
from maos.pod.beats import member

__all__ = ["PROBE_PERIODS", "Pulse", "upstream_member"]

PROBE_PERIODS = 5
"""Heartbeat periods between two probes of one server (see the module doc)."""
_MADE_UP = frozenset((types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT))
"""Errors the client synthesizes itself: no answer was read from the server."""


def upstream_member(name: str) -> str:
    return member("mcp", name)


class Pulse:
    """One server process's beats: enrolled for its life, probed until it is missed."""

    def __init__(self, watchdog: Watchdog, name: str) -> None:
        self.watchdog = watchdog
        self.member = upstream_member(name)
        self._key = watchdog.enrol(self.member)
        self._count = 0

    async def run(self, client: Client) -> bool:
        """Probe ``client``'s server until the Watchdog has recorded it missing (True: the
        caller drops the connection) or stops watching it (False); cancel it when the
        connection ends otherwise. It leaves the Watchdog when it ends, either way."""
        probe: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(self.watchdog.period_s * PROBE_PERIODS)
                if self.member not in self.watchdog.members:
                    return False
                if self.watchdog.missing(self.member):
                    return True
                if probe is None or probe.done():
                    probe = asyncio.create_task(self._probe(client))
        finally:
            if probe is not None:
                probe.cancel()
            self.watchdog.leave(self.member)

    async def _probe(self, client: Client) -> None:
        version = client.protocol_version
        try:
            if version in MODERN_PROTOCOL_VERSIONS:
                await client.session.send_discover(version)
            else:
                await client.session.send_ping()
        except MCPError as exc:
            if exc.code in _MADE_UP:
                return
        except Exception:  # a broken stream: the connection's own task sees it end
            return
        self._count += 1
        self.watchdog.beat(self.member, self._count, beat_mac(self._key, self.member, self._count))
