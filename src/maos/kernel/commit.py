"""The Commit Layer: the only path from a decided intent to an effect in the world (R1).

Invariants:

- **Write-ahead (R3).** An adapter runs only after the intent's ``intent.prepared``
  record is durable, and it runs the call as logged there; its result is then logged as
  ``intent.committed`` or ``intent.failed`` before the caller hears of it.
- **Once per key.** A key whose outcome is in the log is answered from the log and never
  run again; runs of one key in this process are serialised, so the second one finds the
  first one's outcome. A key reused for a different effect is refused, not answered. A
  key prepared without an outcome (another process is running it, or a run died with the
  log) answers in_doubt and is not run again until recovery settles it.
- **Prepared means finished.** Once the prepared record is durable the effect runs to a
  logged outcome even if the asker is cancelled; only a crash interrupts it.
- **Recovery never guesses.** After a crash, a prepared intent without an outcome is
  confirmed or redone only if its adapter declares the op idempotent; any other effect
  (mail) is logged ``intent.in_doubt`` and waits for the Commander's verdict.

Records (every one carries the intent id and the idempotency key in its columns):

    intent.prepared   {op, target, params, constraints, agent_id, task_id, intent_id,
                       cost: {tokens, api_calls, money_cents}, idempotent}
    intent.committed  {value, op, agent_id, task_id, cost[, recovered: confirmed|redone]}
    intent.failed     {code, message, op, agent_id, task_id[, recovered: redone]}
    intent.in_doubt   {op, target, agent_id, task_id, reason}
    intent.resolved   {happened, principal, op, agent_id, task_id}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from maos.effects.base import Adapter, EffectCall, EffectError, EffectResult
from maos.kernel import trace
from maos.kernel.errors import InputError, StateError, WalError
from maos.kernel.types import Intent, Outcome, OutcomeStatus
from maos.kernel.wal import Wal, WalRecord

__all__ = ["CommitLayer", "InDoubt", "RecoveryReport"]

PREPARED = "intent.prepared"
COMMITTED = "intent.committed"
FAILED = "intent.failed"
IN_DOUBT = "intent.in_doubt"
RESOLVED = "intent.resolved"
_TERMINAL = frozenset({COMMITTED, FAILED, RESOLVED})

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What `CommitLayer.recover` did with each interrupted intent, by idempotency key."""

    confirmed: tuple[str, ...] = ()
    """The adapter proved the effect had happened; logged committed without redoing it."""
    redone: tuple[str, ...] = ()
    """Not provably done, idempotent, so run again and committed."""
    failed: tuple[str, ...] = ()
    """Run again and the adapter reported failure."""
    in_doubt: tuple[str, ...] = ()
    """Not idempotent (or no adapter to ask): handed to the Commander, never redone."""

    @property
    def counts(self) -> dict[str, int]:
        return {
            "confirmed": len(self.confirmed),
            "redone": len(self.redone),
            "failed": len(self.failed),
            "in_doubt": len(self.in_doubt),
        }


@dataclass(frozen=True, slots=True)
class InDoubt:
    """An effect that may or may not have happened, awaiting the Commander's verdict."""

    idem_key: str
    intent_id: str | None
    op: str
    target: str
    agent_id: str
    task_id: str
    reason: str
    """Why recovery could not decide on its own."""
    seq: int
    """Seq of the ``intent.in_doubt`` record."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _KeyState:
    """What the log says about one key; the first outcome wins if writers ever raced."""

    prepared: WalRecord | None
    in_doubt: WalRecord | None
    outcome: WalRecord | None

    @classmethod
    def of(cls, records: Iterable[WalRecord]) -> _KeyState:
        first: dict[str, WalRecord] = {}
        for rec in records:
            first.setdefault("outcome" if rec.kind in _TERMINAL else rec.kind, rec)
        return cls(first.get(PREPARED), first.get(IN_DOUBT), first.get("outcome"))


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON")


def _fingerprint(op: Any, target: Any, params: Any, agent_id: Any) -> bytes | None:
    """Canonical bytes of what makes two intents the same effect; None if not JSON."""
    try:
        return orjson.dumps(
            [op, target, params, agent_id], option=orjson.OPT_SORT_KEYS, default=_as_dict
        )
    except TypeError:
        return None


def _call(prepared: WalRecord) -> EffectCall:
    """The call exactly as logged: what runs now is what recovery would redo."""
    body = prepared.body
    return EffectCall(
        op=body["op"],
        target=body["target"],
        idempotency_key=prepared.idem_key or "",
        params=MappingProxyType(dict(body["params"])),
        constraints=MappingProxyType(dict(body["constraints"])),
    )


def _who(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"op": body["op"], "agent_id": body["agent_id"], "task_id": body["task_id"]}


def _outcome(intent_id: str, rec: WalRecord) -> Outcome:
    """The Outcome a recorded result stands for, whichever intent asks."""
    body, seq = rec.body, rec.seq
    if rec.kind == COMMITTED:
        return Outcome(intent_id, OutcomeStatus.COMMITTED, value=body["value"], wal_seq=seq)
    if rec.kind == FAILED:
        code, message = body["code"], body["message"]
        return Outcome(intent_id, OutcomeStatus.FAILED, code=code, reason=message, wal_seq=seq)
    if rec.kind == RESOLVED and body["happened"]:
        why = f"the Commander ({body['principal']}) confirmed the effect happened"
        return Outcome(intent_id, OutcomeStatus.COMMITTED, reason=why, wal_seq=seq)
    if rec.kind == RESOLVED:
        why = f"the Commander ({body['principal']}) found the effect did not happen"
        code = "EFFECT.NOT_HAPPENED"
        return Outcome(intent_id, OutcomeStatus.FAILED, code=code, reason=why, wal_seq=seq)
    why = "an earlier attempt may or may not have taken effect; the Commander decides"
    code = "EFFECT.IN_DOUBT"
    return Outcome(intent_id, OutcomeStatus.IN_DOUBT, code=code, reason=why, wal_seq=seq)


class CommitLayer:
    """Runs intents through their adapters with the log written ahead; see the module doc."""

    def __init__(self, wal: Wal, adapters: Mapping[str, Adapter]) -> None:
        self._wal = wal
        self._adapters: dict[str, Adapter] = dict(adapters)
        self._locks: dict[str, _KeyLock] = {}

    def add_adapter(self, family: str, adapter: Adapter) -> None:
        """Register a family served outside the kernel's built-ins (the message router).

        Never replaces one: an adapter swapped under a logged intent would redo or confirm
        effects it did not perform.
        """
        if family in self._adapters:
            raise StateError("STATE.ADAPTER_EXISTS", f"an adapter already serves {family!r}")
        self._adapters[family] = adapter

    def adapter(self, family: str) -> Adapter | None:
        return self._adapters.get(family)

    async def run(self, intent: Intent, *, constraints: Mapping[str, Any] | None = None) -> Outcome:
        """Performs the intent at most once per idempotency key and answers from the log.

        Raises `WalError` only when the log itself cannot be written: then no caller can
        be told the truth, and the kernel must stop rather than act unlogged.
        """
        return await asyncio.shield(trace.commit(self._run(intent, constraints), intent))

    async def _run(self, intent: Intent, constraints: Mapping[str, Any] | None) -> Outcome:
        key = intent.idempotency_key
        async with self._exclusive(key):
            state = _KeyState.of(self._wal.by_idem_key(key))
            if state.prepared is not None:
                return self._answer(intent, state)
            family = intent.op.split(".")[0]
            adapter = self._adapters.get(family)
            if adapter is None or intent.op not in adapter.ops:
                why = f"no adapter performs {intent.op!r}"
                return Outcome(
                    intent.intent_id, OutcomeStatus.FAILED, code="EFFECT.NO_ADAPTER", reason=why
                )
            body = {
                "op": intent.op,
                "target": intent.target,
                "params": intent.params,
                "constraints": constraints or {},
                "agent_id": intent.agent_id,
                "task_id": intent.task_id,
                "intent_id": intent.intent_id,
                "cost": {
                    "tokens": intent.cost.tokens,
                    "api_calls": intent.cost.api_calls,
                    "money_cents": intent.cost.money_cents,
                },
                "idempotent": adapter.idempotent(
                    EffectCall(intent.op, intent.target, key, intent.params, constraints or {})
                ),
            }
            try:
                prepared = await self._wal.append(
                    PREPARED, body, intent_id=intent.intent_id, idem_key=key
                )
            except WalError as exc:
                if exc.code != "WAL.BAD_RECORD":
                    raise
                why = f"the intent cannot be logged: {exc.message}"
                return Outcome(
                    intent.intent_id, OutcomeStatus.FAILED, code="EFFECT.BAD_PARAMS", reason=why
                )
            return _outcome(intent.intent_id, await self._perform(adapter, prepared))

    def _answer(self, intent: Intent, state: _KeyState) -> Outcome:
        """A key seen before: its recorded outcome, unless it named a different effect."""
        assert state.prepared is not None
        b = state.prepared.body
        was = _fingerprint(b["op"], b["target"], b["params"], b["agent_id"])
        now = _fingerprint(intent.op, intent.target, intent.params, intent.agent_id)
        if now is None or was != now:
            why = "this idempotency key was already used for a different effect"
            return Outcome(
                intent.intent_id, OutcomeStatus.FAILED, code="EFFECT.KEY_REUSED", reason=why
            )
        return _outcome(intent.intent_id, state.outcome or state.in_doubt or state.prepared)

    async def _perform(
        self, adapter: Adapter, prepared: WalRecord, recovered: str | None = None
    ) -> WalRecord:
        call = _call(prepared)
        try:
            result = await trace.adapter(adapter.execute(call), call)
            if not isinstance(result, EffectResult):
                raise TypeError(f"execute returned {type(result).__name__}, not EffectResult")
        except EffectError as exc:
            return await self._failed(prepared, exc.code, exc.message, recovered)
        except Exception as exc:
            _log.exception("adapter failed on %s (key %s)", call.op, call.idempotency_key)
            why = f"the adapter failed unexpectedly ({type(exc).__name__})"
            return await self._failed(prepared, "EFFECT.INTERNAL", why, recovered)
        return await self._committed(prepared, result.value, recovered)

    async def _committed(self, prepared: WalRecord, value: Any, recovered: str | None) -> WalRecord:
        body = {**_who(prepared.body), "cost": prepared.body["cost"], "value": value}
        if recovered is not None:
            body["recovered"] = recovered
        try:
            return await self._append_outcome(prepared, COMMITTED, body)
        except WalError as exc:
            if exc.code != "WAL.BAD_RECORD":
                raise
            # The effect happened; a value the log cannot hold must not leave it unlogged.
            body.update(value=None, value_error="the adapter returned a value that is not JSON")
            return await self._append_outcome(prepared, COMMITTED, body)

    async def _failed(
        self, prepared: WalRecord, code: str, message: str, recovered: str | None
    ) -> WalRecord:
        body = {**_who(prepared.body), "code": code, "message": message}
        if recovered is not None:
            body["recovered"] = recovered
        return await self._append_outcome(prepared, FAILED, body)

    async def _append_outcome(
        self, prepared: WalRecord, kind: str, body: Mapping[str, Any]
    ) -> WalRecord:
        return await self._wal.append(
            kind, body, intent_id=prepared.intent_id, idem_key=prepared.idem_key
        )

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[key]

    # -- after a crash ---------------------------------------------------------------------

    async def recover(self) -> RecoveryReport:
        """Settles every prepared intent without an outcome; a second call finds none."""
        open_: dict[str, WalRecord] = {}
        for rec in self._wal.read(kinds=(PREPARED, COMMITTED, FAILED, IN_DOUBT, RESOLVED)):
            if rec.idem_key is None:
                continue
            if rec.kind == PREPARED:
                open_.setdefault(rec.idem_key, rec)
            else:
                open_.pop(rec.idem_key, None)
        done: dict[str, list[str]] = {"confirmed": [], "redone": [], "failed": [], "in_doubt": []}
        for key, prepared in open_.items():
            async with self._exclusive(key):
                state = _KeyState.of(self._wal.by_idem_key(key))
                if state.outcome is None and state.in_doubt is None:  # no run settled it since
                    done[await self._recover_one(prepared)].append(key)
        return RecoveryReport(**{name: tuple(keys) for name, keys in done.items()})

    async def _recover_one(self, prepared: WalRecord) -> str:
        body = prepared.body
        op = body["op"]
        adapter = self._adapters.get(op.split(".")[0])
        if adapter is None or not body["idempotent"] or not adapter.idempotent(_call(prepared)):
            why = (
                f"no adapter for {op!r} to ask"
                if adapter is None
                else f"{op} is not idempotent: it may have happened and must not be redone"
            )
            await self._wal.append(
                IN_DOUBT,
                {**_who(body), "target": body["target"], "reason": why},
                intent_id=prepared.intent_id,
                idem_key=prepared.idem_key,
            )
            return "in_doubt"
        try:
            proof = await adapter.confirm(_call(prepared))
        except Exception:
            # Cannot tell: redoing an idempotent effect is the safe way to find out.
            _log.warning("confirm failed for key %s; redoing", prepared.idem_key, exc_info=True)
            proof = None
        if proof is not None:
            await self._committed(prepared, proof.value, "confirmed")
            return "confirmed"
        rec = await self._perform(adapter, prepared, "redone")
        return "redone" if rec.kind == COMMITTED else "failed"

    # -- the Commander's view --------------------------------------------------------------

    def in_doubt(self) -> list[InDoubt]:
        """Effects recovery could not settle and the Commander has not yet judged."""
        waiting: dict[str, WalRecord] = {}
        for rec in self._wal.read(kinds=(IN_DOUBT, RESOLVED)):
            if rec.idem_key is None:
                continue
            if rec.kind == IN_DOUBT:
                waiting.setdefault(rec.idem_key, rec)
            else:
                waiting.pop(rec.idem_key, None)
        return [
            InDoubt(
                idem_key=key,
                intent_id=rec.intent_id,
                op=rec.body["op"],
                target=rec.body["target"],
                agent_id=rec.body["agent_id"],
                task_id=rec.body["task_id"],
                reason=rec.body["reason"],
                seq=rec.seq,
            )
            for key, rec in waiting.items()
        ]

    def resolve_in_doubt(self, idem_key: str, *, happened: bool, principal: str) -> WalRecord:
        """Logs the Commander's verdict; from then on the key answers with it.

        Blocks for one durable commit (it serves the console, not agents; a running
        kernel appends `verdict` through its own writer instead).
        """
        body, intent_id = self.verdict(idem_key, happened=happened, principal=principal)
        return self._wal.append_sync(RESOLVED, body, intent_id=intent_id, idem_key=idem_key)

    def verdict(
        self, idem_key: str, *, happened: bool, principal: str
    ) -> tuple[dict[str, Any], str | None]:
        """The ``intent.resolved`` body for ``idem_key`` and its intent id; `StateError`
        unless the key is in doubt and not yet judged."""
        if not isinstance(principal, str) or not principal:
            raise InputError("BAD_INPUT.PRINCIPAL", "a verdict needs the principal who gave it")
        state = _KeyState.of(self._wal.by_idem_key(idem_key))
        if state.in_doubt is None or state.outcome is not None:
            raise StateError("STATE.NOT_IN_DOUBT", "no unresolved in-doubt effect", key=idem_key)
        body = {**_who(state.in_doubt.body), "happened": bool(happened), "principal": principal}
        return body, state.in_doubt.intent_id
