"""Executing what a rule refused: one recorded intent, once, under a confirmed override.

A denial of an overridable code records the intent in full (``intent`` in the
``intent.denied`` body, `recorded`), so the Commander can later have exactly that
intent run: ``maos commander override request execute INTENT_ID`` shows the diff (the
code it was refused with, the op, target and a digest of the whole intent), waits the
cooling-off and takes a TOTP code like every override. The order logged under it
(``hacf.override.execute``) names the intent's SHA-256; the kernel then runs that very
intent (`execute`): every check again, the Commander's confirmation counting as an
approval (R7, R10), with exactly the refused code waived for that intent id
(`maos.kernel.dsc.pipeline.Pipeline.waiving`) - any other deny still stands. The
Commit Layer keys it by the agent's idempotency key, so it happens at most once, and
``hacf.override.executed`` logs what came of it.

Only the codes in `OVERRIDABLE` can be waived; `NEVER` says why the others cannot
(docs/hacf.md has the table), and a code in neither list is refused too (fail closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from maos.kernel.errors import StateError
from maos.kernel.intents import intent_to_wire, parse_intent
from maos.kernel.types import Intent, Outcome
from maos.kernel.wal import Wal

if TYPE_CHECKING:
    from maos.kernel.kernel import Kernel

__all__ = [
    "EXECUTE",
    "EXECUTED",
    "NEVER",
    "OVERRIDABLE",
    "digest",
    "execute",
    "not_overridable",
    "recorded",
    "refusal",
]

EXECUTE = "hacf.override.execute"
"""The order under a confirmed override: run this refused intent (its SHA-256) once."""
EXECUTED = "hacf.override.executed"
"""What came of it: the outcome of the one run."""

OVERRIDABLE: Mapping[str, str] = {
    "RULE.R2.EFFECT_CLASS_NOT_GRANTED": "a one-off grant of the effect class for this intent",
    "RULE.R6.IFC_DOWNFLOW": "a one-off declassification of what this intent carries",
    "SECURITY.AGGREGATE.": "one effect past an aggregate threshold (loosening it is `threshold`)",
    "DSC.PREFILTER.": "a pattern match the Commander judged a false positive, content shown",
}
"""Code (or prefix ending in ``.``) -> what waiving it amounts to. Each is decided by a
check whose remaining sub-checks are either before it (they passed) or satisfied by an
approval, so waiving it skips nothing else."""

NEVER: Mapping[str, str] = {
    "DSC.CAPABILITY.": "the token is the authority (signature, expiry, revocation, audience,"
    " holder, task, coverage): mint one instead",
    "RULE.R8.": "the Commander's own stop (paused, quarantined, killed, safe state): lift it"
    " with `resume`, never around it",
    "MODE.": "the degradation mode: lower it (`mode` override) instead",
    "RULE.R1.": "an op nothing mediates has nothing to run it",
    "RULE.R4.": "the kernel, its log and its data are out of every agent's reach",
    "RULE.R5.": "promotion is onboarding (`maos agent promote`), never an intent",
    "RULE.R9.": "ending another agent is the Commander's R8 power, used directly",
    "RULE.R11.": "fail-closed: a check that could not evaluate decided nothing to waive",
    "DSC.BUDGET.": "budgets are R11: raise the budget, do not step over it",
    "DSC.RATE.": "rate limits are R11",
    "DSC.INTERNAL": "a check failed: nothing was decided",
    "DSC.LOCK.": "another agent holds the lock: waiving it breaks mutual exclusion",
    "TOOL.": "the call does not match its manifest: its targets were never checked",
    "BAD_INPUT.": "the sanitizer refused it: there is no well-formed intent",
    "SENTRY.": "sandbox integrity: the pod's guard, not a rule of the kernel",
    "POD.": "sandbox integrity",
    "WAL.": "the log's integrity",
    "APPROVAL.": "the Commander decided already (or it expired): ask again in a new task",
}
"""Code prefix -> why no override can waive it (docs/hacf.md)."""


def _listed(code: str, table: Mapping[str, str]) -> str | None:
    for prefix, why in table.items():
        if code == prefix or (prefix.endswith(".") and code.startswith(prefix)):
            return why
    return None


def not_overridable(code: str) -> str | None:
    """Why ``code`` cannot be waived, or None when it can."""
    if _listed(code, OVERRIDABLE) is not None:
        return None
    return _listed(code, NEVER) or "not a rule an override waives (fail closed)"


def recorded(intent: Intent, code: str) -> dict[str, Any]:
    """What an ``intent.denied`` body adds: the whole intent, when its code is one an
    override could waive (nothing otherwise: denial records stay small)."""
    if not_overridable(code) is not None:
        return {}
    return {"intent": intent_to_wire(intent)}


def digest(wire: Mapping[str, Any]) -> str:
    """SHA-256 of the intent's canonical JSON: the override is bound to exactly it."""
    return hashlib.sha256(orjson.dumps(dict(wire), option=orjson.OPT_SORT_KEYS)).hexdigest()


def refusal(wal: Wal, intent_id: str) -> tuple[str, Mapping[str, Any]]:
    """The code an intent was refused with and the intent as recorded, or a refusal."""
    for rec in wal.read(kinds=["intent.denied"]):
        if rec.body.get("intent_id") == intent_id:
            code = str(rec.body["code"])
            why = not_overridable(code)
            if why is not None:
                raise StateError(
                    "HACF.NOT_OVERRIDABLE",
                    f"{intent_id} was refused {code}: never overridden: {why}",
                )
            wire = rec.body.get("intent")
            if not isinstance(wire, Mapping):
                raise StateError("HACF.NOT_OVERRIDABLE", f"{intent_id}: its refusal kept no intent")
            return code, wire
    raise StateError("HACF.NO_REFUSAL", f"no refused intent {intent_id!r} in the log")


Run = Callable[..., Awaitable[Outcome]]


async def execute(kernel: Kernel, wire: Mapping[str, Any], code: str, run: Run) -> Outcome:
    """Decide and run the recorded intent again, approved, with ``code`` waived for it."""
    intent = parse_intent(
        dict(wire), agent_id=str(wire["agent_id"]), intent_id=str(wire["intent_id"])
    )
    with kernel.pipeline.waiving(intent.intent_id, code):
        return await run(intent, approved=True)
