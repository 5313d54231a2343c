"""The Watchdog (Ring 0): who is alive, known from authenticated heartbeats.

Every Ring 1 service process and every running pod is *enrolled* under a member name
(``service:<name>``, ``pod:<agent_id>``; a pod that is no agent's, ``pod:<kind>/<name>``,
which no agent id can be) and given a key the kernel derives for it alone
(HMAC of the kernel's per-boot secret with the name). A beat is ``(counter, mac)`` with
``mac = HMAC(key, "<member>:<counter>")`` and a counter that only grows: a beat cannot
be forged without the key, replayed, or sent for someone else. The nominal period is
``resilience.heartbeat_s`` (100 ms); `sweep`, run by the kernel's follower on the
kernel's injectable clock, records a member silent for ``missed_beats`` periods (a pod:
``pod_missed_beats``) once per silence as ``service.missed`` or ``pod.missed``
{member, last_beat_at, silent_s, at}. Beats themselves are never logged.

A pod whose agent is hard-isolated (quarantined) is *frozen* (the pod layer freezes it):
it beats no more by design, so the Watchdog knows it as frozen, records no miss for it
and nobody restarts it for silence. When it is thawed its silence counts from then.
A member *held* (`holding`: busy with work that something else bounds, such as an MCP
server's call under its own timeout) is treated the same way while the work lasts.

`confirm` is the Watchdog's independent re-check of a fact another part wants to act on
(the TSCA: "service X is down", "agent Y misbehaves"); it answers from its own beats and
the log's fold, never from the asker's word, and the confirmation is logged before the
action runs (``watchdog.confirmed``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from maos.kernel.dsc.base import AgentStatus
from maos.kernel.registry import Registry
from maos.kernel.resilience import ResilienceSettings

__all__ = ["MISSED", "Beat", "Watchdog", "beat_mac"]

MISSED = {"service": "service.missed", "pod": "pod.missed"}
CONFIRMED = "watchdog.confirmed"

Log = Callable[..., Awaitable[int]]


def beat_mac(key: bytes, member: str, counter: int) -> str:
    """What a member sends with beat number ``counter`` (the sender's half)."""
    return hmac.new(key, f"{member}:{counter}".encode(), hashlib.sha256).hexdigest()


@dataclass(slots=True)
class Beat:
    """One member's liveness as the Watchdog sees it."""

    key: bytes
    counter: int = -1
    last_at: float = 0.0
    missed: bool = False
    """A miss was recorded for the current silence (recorded once, cleared by a beat)."""
    bad: int = 0
    held: int = 0
    """Pieces of work in flight that hold the member's silence (`Watchdog.holding`)."""


class Watchdog:
    """Heartbeats in, misses out; one per kernel."""

    def __init__(
        self,
        registry: Registry,
        clock: Callable[[], float],
        log: Log,
        settings: ResilienceSettings,
        *,
        secret: bytes | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._log = log
        self.period_s = settings.heartbeat_s
        self.limit_s = settings.heartbeat_s * settings.missed_beats
        """Silence longer than this is a service's miss."""
        self.pod_limit_s = settings.heartbeat_s * settings.pod_missed_beats
        """Silence longer than this is a pod's miss (generous: a restart repeats effects)."""
        self.grace_s = settings.start_grace_s
        """Before its first beat, a member may be silent this long (it is starting)."""
        self._secret = secret if secret is not None else os.urandom(32)
        self.members: dict[str, Beat] = {}

    def key_for(self, member: str) -> bytes:
        return hmac.new(self._secret, b"maos-beat:" + member.encode(), hashlib.sha256).digest()

    def enrol(self, member: str) -> bytes:
        """Start watching ``member`` (a fresh process: its counter starts again); its key."""
        kind = member.partition(":")[0]
        if kind not in MISSED or not member.partition(":")[2]:
            raise ValueError(f"member must be service:<name> or pod:<agent>, not {member!r}")
        key = self.key_for(member)
        self.members[member] = Beat(key, last_at=self._clock())
        return key

    def leave(self, member: str) -> None:
        """Stop watching (the process ended on purpose, or was restarted under a new beat)."""
        self.members.pop(member, None)

    def beat(self, member: str, counter: int, mac: str) -> bool:
        """Take one beat; False (and counted) when it is not ``member``'s or is a replay."""
        state = self.members.get(member)
        if state is None or not isinstance(counter, int) or not isinstance(mac, str):
            return False
        good = hmac.compare_digest(mac, beat_mac(state.key, member, counter))
        if not good or counter <= state.counter:
            state.bad += 1
            return False
        state.counter = counter
        state.last_at = self._clock()
        state.missed = False
        return True

    def frozen(self, member: str) -> bool:
        """A pod whose agent is hard-isolated: frozen on purpose, silent by design."""
        kind, _, name = member.partition(":")
        if kind != "pod":
            return False
        agent = self._registry.agents.get(name)
        return agent is not None and agent.status is AgentStatus.QUARANTINED

    @contextmanager
    def holding(self, member: str) -> Iterator[None]:
        """While the block runs, ``member``'s silence does not count: it is busy with work
        whose end something else bounds (an MCP server that answers one request at a time
        cannot answer a liveness probe during a call, and the call has its own timeout).
        Its silence counts from the end of the block. Not enrolled: nothing is held."""
        state = self.members.get(member)
        if state is None:
            yield
            return
        state.held += 1
        try:
            yield
        finally:
            state.held -= 1
            state.last_at = max(state.last_at, self._clock())

    def silent_for(self, member: str) -> float | None:
        """Seconds since ``member``'s last good beat (None: not enrolled)."""
        state = self.members.get(member)
        return None if state is None else self._clock() - state.last_at

    def _limit(self, member: str, state: Beat) -> float:
        if state.counter < 0:
            return self.grace_s
        return self.pod_limit_s if member.startswith("pod:") else self.limit_s

    def alive(self, member: str) -> bool:
        state = self.members.get(member)
        return state is not None and self._clock() - state.last_at <= self._limit(member, state)

    def missing(self, member: str) -> bool:
        """A sweep recorded ``member`` missing and it has not beaten since."""
        state = self.members.get(member)
        return state is not None and state.missed

    async def lapsed(self, member: str) -> bool:
        """``member`` is silent past its limit, with its miss on the record: a sweep runs
        now when the follower's has not come round, so whoever acts on the silence (a
        kill, a cancel that ends the member's watch) acts on a recorded fact. A frozen or
        held member never lapses."""
        if self.alive(member):
            return False
        await self.sweep()
        return self.missing(member)

    async def sweep(self) -> list[str]:
        """Record each member newly silent past the limit; the members recorded."""
        now = self._clock()
        out = []
        for member, state in list(self.members.items()):
            if self.frozen(member) or state.held:
                state.last_at = now  # its silence counts from its thaw (its hold's end)
                continue
            silent = now - state.last_at
            if silent > self._limit(member, state) and not state.missed:
                state.missed = True
                out.append(member)
                await self._log(
                    MISSED[member.partition(":")[0]],
                    {
                        "member": member,
                        "last_beat_at": state.last_at,
                        "silent_s": round(silent, 3),
                        "beats": state.counter + 1,
                        "at": now,
                    },
                )
        return out

    async def confirm(self, fact: str, subject: str, *, asked_by: str) -> bool:
        """Re-check ``fact`` about ``subject`` from the Watchdog's own knowledge and log
        the answer before anyone acts on it. Facts: ``service_down`` (the member is not
        beating: silent past the limit, or not enrolled), ``agent_misbehaving`` (the
        log's fold has the agent in soft isolation or beyond, or a danger score > 0)."""
        if fact == "service_down":
            member = subject if subject.startswith("service:") else f"service:{subject}"
            holds = not self.alive(member)
        elif fact == "agent_misbehaving":
            agent = self._registry.agents.get(subject)
            holds = agent is not None and (
                agent.status in (AgentStatus.ISOLATED, AgentStatus.QUARANTINED)
                or agent.danger > 0.0
            )
        else:
            holds = False  # a fact the Watchdog cannot check is not confirmed
        await self._log(
            CONFIRMED,
            {"fact": fact, "subject": subject, "holds": holds, "asked_by": asked_by},
        )
        return holds

    def report(self) -> dict[str, Mapping[str, Any]]:
        now = self._clock()
        return {
            m: {
                "silent_s": round(now - s.last_at, 3),
                "alive": self.frozen(m) or now - s.last_at <= self._limit(m, s),
                "frozen": self.frozen(m),
                "beats": s.counter + 1,
                "bad_beats": s.bad,
            }
            for m, s in sorted(self.members.items())
        }
