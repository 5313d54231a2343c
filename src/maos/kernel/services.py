"""Ring 1 writes through the kernel: service identities and their capabilities.

Ring 1 reads the kernel's data freely (the log, folded) and writes none of it directly
(seed §1, §7: "read yes, write no"). A service submits each record it wants in the log as
an *order* to `Kernel.service_order` with its Ring 1 capability, and the kernel checks it
and logs it, like any intent:

- the capability is ``svc1.<service>.<mac>``, an HMAC the kernel computes with its
  per-boot secret, handed to the service when the Service Manager starts it (in its
  environment, never in a file) - a service cannot make one for another name;
- the record kind must be one the service's charter (`CHARTERS`) names: the Security
  Agent moves agents through the cascade and logs breaches, it does not touch tokens;
- the record's principal is the service's own, ``service:<name>`` (set by the kernel:
  a service cannot log as the Commander or as another service).

A refusal is logged as ``service.denied`` {service, kind, code, reason} and raised as a
`StateError` with that code (``SERVICE.BAD_CAPABILITY``, ``SERVICE.NOT_CHARTERED``).

An order may carry several records of one service (`ServiceDesk.submit_batch`): the
capability is checked once and every record's kind against the charter before any is
logged, then all are handed to the log at once (its writer commits them together).
`ServiceDesk.batched` gives a service one shared `Batcher`: the records its callers
submit in the same turn of the event loop - every pod's Sentry recording egress at once
- go as one such order, and each caller still returns only once its record is durable.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from maos.kernel.errors import StateError

__all__ = ["CHARTERS", "DENIED", "MAX_BATCH", "Batcher", "ServiceDesk", "service_principal"]

DENIED = "service.denied"
_PREFIX = "svc1"

CHARTERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "security": frozenset(
            {"agent.stage", "approval.pending", "security.breach", "security.notified"}
        ),
        "manager": frozenset(
            {"service.started", "service.exited", "service.restarted", "service.failed"}
        ),
        "tsca": frozenset({"tsca.incident", "tsca.action", "tsca.handover"}),
        "sentry": frozenset({"sentry.egress", "sentry.danger"}),
        "memory": frozenset({"memory.learned"}),
        "cron": frozenset({"cron.scheduled", "cron.fired", "cron.skipped", "cron.failed"}),
        "beacon": frozenset({"beacon.note"}),
    }
)
"""What each Ring 1 service may log (``beacon``: the smallest service, used to test the
supervision itself)."""

Log = Callable[..., Awaitable[int]]
MAX_BATCH = 256
"""Records per order at most: a longer queue goes as several orders."""


def service_principal(service: str) -> str:
    return f"service:{service}"


class ServiceDesk:
    """Mints Ring 1 capabilities and checks the orders that carry them."""

    def __init__(self, log: Log, *, secret: bytes | None = None) -> None:
        self._log = log
        self._secret = secret if secret is not None else os.urandom(32)
        self._batchers: dict[str, Batcher] = {}

    def _mac(self, service: str) -> str:
        msg = f"{_PREFIX}.{service}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:48]

    def capability(self, service: str) -> str:
        """The capability of a chartered service (the Service Manager hands it over)."""
        if service not in CHARTERS:
            raise StateError("SERVICE.UNKNOWN", f"{service!r} is not a Ring 1 service")
        return f"{_PREFIX}.{service}.{self._mac(service)}"

    def holder(self, capability: object) -> str | None:
        """The service a capability names, when it is genuine."""
        if not isinstance(capability, str):
            return None
        prefix, _, rest = capability.partition(".")
        service, _, mac = rest.partition(".")
        if prefix != _PREFIX or service not in CHARTERS:
            return None
        return service if hmac.compare_digest(mac, self._mac(service)) else None

    async def submit(self, capability: object, kind: str, body: Mapping[str, Any]) -> int:
        """Log ``kind``/``body`` for the service holding ``capability``; the record's seq."""
        service = await self._chartered(capability, [kind])
        return await self._log(kind, {**body, "principal": service_principal(service)})

    async def submit_batch(
        self, capability: object, records: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        """One order of several records for the service holding ``capability``: every
        record checked before any is logged (one not chartered refuses the order), then
        all logged at once; their seqs, in order."""
        service = await self._chartered(capability, [kind for kind, _ in records])
        principal = service_principal(service)
        logged = [self._log(kind, {**body, "principal": principal}) for kind, body in records]
        return list(await asyncio.gather(*logged))

    def batched(self, service: str) -> Batcher:
        """``service``'s one `Batcher` on this desk (shared: batches form across callers)."""
        if service not in self._batchers:
            self._batchers[service] = Batcher(self, self.capability(service))
        return self._batchers[service]

    async def _chartered(self, capability: object, kinds: Sequence[str]) -> str:
        """The service holding ``capability``, when its charter has every one of ``kinds``;
        otherwise the refusal, logged (``service.denied``) and raised."""
        service = self.holder(capability)
        if service is None:
            shown = ",".join(sorted({str(kind) for kind in kinds}))
            await self._deny("?", shown, "SERVICE.BAD_CAPABILITY", "no genuine Ring 1 capability")
        assert service is not None
        for kind in kinds:
            if kind not in CHARTERS[service]:
                await self._deny(
                    service, kind, "SERVICE.NOT_CHARTERED", f"{service} may not log {kind} records"
                )
        return service

    async def _deny(self, service: str, kind: str, code: str, reason: str) -> None:
        body = {"service": service, "kind": str(kind)[:80], "code": code, "reason": reason}
        await self._log(DENIED, body)
        raise StateError(code, f"{service}: {reason}", service=service, kind=str(kind)[:80])


class Batcher:
    """A service's records gathered into orders (`ServiceDesk.submit_batch`): calls made in
    the same turn of the event loop share one order. A call returns its record's seq once
    the record is durable, or raises what refused or failed its order."""

    def __init__(self, desk: ServiceDesk, capability: str, *, max_records: int = MAX_BATCH) -> None:
        self._desk = desk
        self._cap = capability
        self._max = max_records
        self._waiting: list[tuple[str, Mapping[str, Any], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.orders = 0
        """Orders submitted so far (records / orders: how well it batches)."""

    async def __call__(self, kind: str, body: Mapping[str, Any]) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._waiting.append((kind, body, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        batch: list[tuple[str, Mapping[str, Any], asyncio.Future[int]]] = []
        try:
            await asyncio.sleep(0)  # the callers of this turn join the order
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
                self.orders += 1
                try:
                    seqs = await self._desk.submit_batch(self._cap, [(k, b) for k, b, _ in batch])
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for seq, (_, _, future) in zip(seqs, batch, strict=True):
                    if not future.done():
                        future.set_result(seq)
        finally:
            self._flusher = None
            for _, _, future in [*batch, *self._waiting]:
                if not future.done():  # cancelled (the loop is closing): nobody waits forever
                    future.cancel()
            self._waiting = []
