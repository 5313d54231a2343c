"""The Deterministic Security Core: seven checks in a fixed order, decisions as values.

Semantics: the first `Deny` wins and stops the run; a `Pending` (a rule asking the
Commander) is remembered while later checks still run, because a later deny must win
over a question a human would otherwise be asked in vain. Any exception in a check, or
a check answering something that is not a decision, is a deny with code
``DSC.INTERNAL`` (R11: what cannot be evaluated is refused).

R9 comes before everything: ``admin.apoptosis`` is allowed without running a single
check. An agent may always terminate itself, so neither rate limits, budgets, a pause, a
quarantine nor a missing or revoked token may stand in the way; the kernel knows who
asks from the authenticated channel and terminates exactly that agent, so the request
needs no capability. Its target must be empty or the agent's own id: terminating
*another* agent is the Commander's power (R8), never an agent's.

R2 is structural: `standard_pipeline` refuses to build a DSC whose first check is not
the capability check. `decide` is the hot path: nothing is allocated on the allow path
beyond what the checks do, and an untraced run costs one context-variable read and one
test per check (`maos bench`'s ``telemetry`` section measures it). Decisions name the
check that made them; the pipeline fills the name in when a check left it empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from maos.kernel import trace
from maos.kernel.aggregate import AggregateLedger
from maos.kernel.dsc.base import Check, CheckInput
from maos.kernel.dsc.budget import BudgetCheck, BudgetLedger
from maos.kernel.dsc.ifc import IfcCheck
from maos.kernel.dsc.locks import LockCheck, LockTable
from maos.kernel.dsc.prefilter import PrefilterCheck
from maos.kernel.dsc.ratelimit import RateLimitCheck
from maos.kernel.dsc.rules import RulesCheck
from maos.kernel.errors import StateError
from maos.kernel.modes import ModeCheck
from maos.kernel.ops import OPS, OpSpec
from maos.kernel.types import Allow, Decision, Deny, Pending

if TYPE_CHECKING:
    from maos.kernel.immune import ThreatMemory

__all__ = ["APOPTOSIS_OP", "CHECK_ORDER", "Pipeline", "standard_pipeline"]

APOPTOSIS_OP = "admin.apoptosis"
CHECK_ORDER = ("capability", "ratelimit", "budget", "ifc", "rules", "locks", "prefilter")
"""The seed's order (§15.3): cheap identity and quota checks first, content scans last."""

_ALLOW = Allow(check="pipeline")
_APOPTOSIS = Allow(check="R9")


class Pipeline:
    """Runs checks in order; holds no decision state of its own between calls."""

    __slots__ = ("_checks", "_waivers")

    def __init__(self, checks: Sequence[Check]) -> None:
        names = [getattr(check, "name", None) for check in checks]
        for check, name in zip(checks, names, strict=True):
            if not isinstance(name, str) or not name or not callable(check):
                raise TypeError(f"{check!r} is not a check: it needs a name and __call__")
        if len(set(names)) != len(names):
            raise ValueError(f"check names must be unique, got {names}")
        self._checks = tuple((check, check.name) for check in checks)
        self._waivers: dict[str, str] = {}
        """Intent id -> the one deny code a confirmed override waives (`waiving`)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self._checks)

    def decide(self, inp: CheckInput) -> Decision:
        if self._waivers:  # empty but while an override's intent runs: one test per intent
            inp = replace(inp, waived=self._waivers.get(inp.intent.intent_id, ""))
        return trace.dsc(self._decide, inp)  # in a span when the intent is traced

    @contextlib.contextmanager
    def waiving(self, intent_id: str, code: str) -> Iterator[None]:
        """While in it, a deny of ``code`` for intent ``intent_id`` lets the later checks
        decide instead (a confirmed override, kernel/refusals.py); nothing else moves."""
        self._waivers[intent_id] = code
        try:
            yield
        finally:
            self._waivers.pop(intent_id, None)

    def _decide(self, inp: CheckInput, seen: list[str] | None) -> Decision:
        intent = inp.intent
        if intent.op == APOPTOSIS_OP:
            if intent.target in ("", intent.agent_id) and not intent.extra_targets:
                return _APOPTOSIS
            return Deny(
                "RULE.R9.NOT_SELF",
                "admin.apoptosis terminates the asking agent only; its target must be "
                "empty or the agent's own id, with no extra targets",
                check="pipeline",
            )
        pending: Pending | None = None
        for check, name in self._checks:
            try:
                decision = check(inp)
            except Exception as exc:  # R11: a check that cannot decide denies
                return Deny("DSC.INTERNAL", f"{name} failed: {type(exc).__name__}", check=name)
            if seen is not None:
                trace.checked(seen, name, decision)
            kind = type(decision)
            if kind is Allow:
                continue
            if kind is Deny:
                if inp.waived and cast(Deny, decision).code == inp.waived:
                    continue
                return decision if decision.check else replace(decision, check=name)
            if kind is Pending:
                if pending is None:
                    pending = cast(Pending, decision)
                    pending = pending if pending.check else replace(pending, check=name)
                continue
            return Deny("DSC.INTERNAL", f"{name} failed: answered {kind.__name__}", check=name)
        return _ALLOW if pending is None else pending

    def add_check(self, check: Check) -> None:
        """Append a check after the seven (a federation node's policy, docs/federation.md):
        last, so it can only refuse more; R9 and the first-deny-wins rule hold for it too."""
        name = getattr(check, "name", None)
        if not isinstance(name, str) or not name or name in self.names or not callable(check):
            raise TypeError(f"{check!r} is not a new check: it needs a unique name and __call__")
        self._checks = (*self._checks, (check, name))


class _BudgetStage:
    """Check 3 and its sub-check 3b: the budgets, then the agent's aggregate figures
    (`maos.kernel.aggregate`: would this effect carry a windowed sum past its limit?).

    Both are quotas; 3b runs only when the budgets allowed, so a deny names the first
    quota the intent would break. A budget reservation made before a 3b deny is released
    by the kernel's settle, as for any deny."""

    __slots__ = ("_aggregate", "_budget", "name")

    def __init__(self, budget: BudgetCheck, aggregate: AggregateLedger) -> None:
        self.name = budget.name
        self._budget = budget
        self._aggregate = aggregate

    def __call__(self, inp: CheckInput) -> Decision:
        decision = self._budget(inp)
        if type(decision) is Allow:
            deny = self._aggregate.check(inp)
            if deny is not None:
                return deny
        return decision


class _RulesStage:
    """Check 5 and its sub-check 5b: the rules, then the degradation mode
    (`maos.kernel.modes`). A rules deny comes first, so an R8 refusal (a paused agent,
    the Commander's Minimal Safe State) keeps its own code; a mode deny wins over a
    rule's question to the Commander, who should not be asked about what cannot run."""

    __slots__ = ("_modes", "_rules", "name")

    def __init__(self, rules: RulesCheck, modes: ModeCheck) -> None:
        self.name = rules.name
        self._rules = rules
        self._modes = modes

    def __call__(self, inp: CheckInput) -> Decision:
        decision = self._rules(inp)
        if type(decision) is not Deny or decision.code == inp.waived:
            deny = self._modes(inp)
            if deny is not None:
                return deny
        return decision


def standard_pipeline(
    capability: Check,
    *,
    ratelimit: RateLimitCheck,
    ledger: BudgetLedger,
    locks: LockTable,
    protected: Iterable[str],
    ops: Mapping[str, OpSpec] = OPS,
    aggregate: AggregateLedger | None = None,
    memory: ThreatMemory | None = None,
    modes: ModeCheck | None = None,
) -> Pipeline:
    """The seven checks in `CHECK_ORDER` over the kernel's own state objects.

    The kernel keeps ``ratelimit`` (to configure agents), ``ledger`` and ``locks``; the
    stateless checks are built here. ``protected`` is what R4 keeps agents out of: at
    least the data dir (see `RulesCheck`). ``ops`` is the catalogue the checks read; the
    kernel passes its registry's, which grows as tools are registered. ``aggregate``
    adds sub-check 3b (the kernel always passes its ledger; without one, check 3 is the
    budgets alone, which is what the bench compares against). ``modes`` adds sub-check
    5b, the degradation mode (the kernel always passes one). ``memory`` is the immune
    memory check 7 consults besides its fixed patterns.
    """
    if getattr(capability, "name", None) != "capability":
        raise StateError(
            "STATE.DSC.NO_CAPABILITY_CHECK",
            "R2: the DSC must start with the capability check",
            got=repr(getattr(capability, "name", capability)),
        )
    rules = RulesCheck(protected=protected, ops=ops)
    return Pipeline(
        (
            capability,
            ratelimit,
            BudgetCheck(ledger)
            if aggregate is None
            else _BudgetStage(BudgetCheck(ledger), aggregate),
            IfcCheck(ops),
            rules if modes is None else _RulesStage(rules, modes),
            LockCheck(locks, ops),
            PrefilterCheck(memory),
        )
    )
