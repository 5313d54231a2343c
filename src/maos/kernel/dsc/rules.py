"""Check 5: the Constitutional Mandatory Rules that are decided per intent.

Each rule is one small method returning a decision or ``None`` (no objection), run in
an order chosen so the most specific reason wins: R8 (agent stopped) first, then R5 and
R4 (which name ops that R1 would only call unknown), R1, and last R7, the only one that
asks rather than refuses. The rules that read only the op name are decided once per
catalogued op at construction, which keeps this check cheap on the hot path.

The rest live where their evidence is: R2 in the capability check and the pipeline's
construction, R3 in the Commit Layer, R6 and R10 in `ifc`, R9 in the pipeline (apoptosis
passes before any check), R11 in checks 2 and 3 and in the pipeline's exception-to-deny
rule.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from maos.kernel.dsc.base import AgentStatus, CheckInput
from maos.kernel.dsc.ifc import is_trusted_target, target_kinds
from maos.kernel.manifest import ManifestError
from maos.kernel.ops import HIGH_IMPACT, OPS, OpSpec, effect_classes_of
from maos.kernel.types import Allow, Decision, Deny, EffectClass, Pending, frozen_mapping

__all__ = ["AGENT_ADMIN_OPS", "DEFAULT_PROTECTED_NAMES", "KERNEL_NAMESPACES", "RULES", "RulesCheck"]

RULES: Mapping[str, str] = MappingProxyType(
    {
        "R1": "Every external effect passes through the Commit Layer; agents have no direct I/O.",
        "R2": "Default deny: no action without a valid, unexpired, unrevoked capability "
        "that covers it.",
        "R3": "Write-ahead: an effect is durably logged before it runs; "
        "the log is append-only and tamper-evident.",
        "R4": "No agent may modify, configure or stop its Sentry, the DSC, the kernel, "
        "the log, or its own capabilities or ring.",
        "R5": "Inward promotion only through full onboarding; outward demotion is always instant.",
        "R6": "No flow of labelled data to a sink below its label without a logged "
        "declassification by an authorised principal.",
        "R7": "Irreversible or high-impact effects (money, deletion, new external recipients, "
        "code execution) need the approval level their policy names.",
        "R8": "The Commander can always pause, quarantine or kill any agent, or put the "
        "system in Minimal Safe State; nothing may prevent it.",
        "R9": "An agent may always terminate itself (apoptosis).",
        "R10": "Content from untrusted sources is data, never authority: it cannot widen "
        "capabilities, change the task plan, or choose an effect's target on its own.",
        "R11": "Every agent runs under rate limits and budgets; when a check cannot be "
        "evaluated, the answer is deny (fail-closed).",
    }
)
"""Rule id to its one-line statement, for the CLI and the README."""

KERNEL_NAMESPACES = frozenset(
    {"admin", "kernel", "dsc", "sentry", "wal", "token", "capability", "config", "ring"}
)
"""Op namespaces that configure or control the kernel itself (R4)."""
AGENT_ADMIN_OPS = frozenset(
    {"admin.apoptosis", "admin.heartbeat", "admin.questions", "admin.answer"}
)
"""The only kernel-namespace ops an agent may send (``lock.*`` is not a kernel namespace):
ending itself, its liveness, and reading and answering the Commander's questions about
its own parked intents - answering decides nothing (kernel/deliberation.py)."""
DEFAULT_PROTECTED_NAMES = (".maos",)
"""Path components no agent target may contain, whatever else is configured."""
_PROMOTION_NAMESPACES = frozenset({"ring", "onboarding"})
_PROMOTION_VERBS = frozenset({"set_ring", "change_ring", "elevate", "escalate"})
_ACTIVE = AgentStatus.ACTIVE
_ISOLATED = AgentStatus.ISOLATED
"""Bound once: reading an enum member off its class costs ~0.2 µs in CPython 3.11."""
_UNGRANTED = frozenset({EffectClass.READ, EffectClass.KERNEL})
"""Classes a task never has to ask for: reading (the token still scopes it) and the
kernel's own ops. Sends that stay inside MAOS (messages, the LLM gateway) are exempt too."""

_Facts = tuple[OpSpec | None, Deny | None, bool, bool, bool]
"""Per op, decided once: (the spec they were derived from, the op-name rules' verdict,
path target, high impact, external). Enum hashing is a Python call, so ``effect_class in
HIGH_IMPACT`` is not something to repeat per intent."""


class RulesCheck:
    """Check 5. ``protected`` names what R4 keeps agents out of: entries with a ``/`` are
    directories (the data dir), the others file or directory names matched anywhere in a
    path (``wal.sqlite3``); `DEFAULT_PROTECTED_NAMES` are always included."""

    __slots__ = ("_allow", "_by_op", "_names", "_ops", "_roots", "name")

    def __init__(self, *, protected: Iterable[str] = (), ops: Mapping[str, OpSpec] = OPS) -> None:
        self.name = "rules"
        entries = (*DEFAULT_PROTECTED_NAMES, *protected)
        self._roots = tuple(os.path.abspath(p).lower() for p in entries if "/" in p)
        self._names = frozenset(p.lower() for p in entries if "/" not in p)
        self._ops = ops
        self._allow = Allow(check=self.name)
        # The rules that read only the op name, and the facts R4 and R7 read from the op's
        # spec, decided once per catalogued op.
        self._by_op = {op: self._facts(op, spec) for op, spec in ops.items()}

    def __call__(self, inp: CheckInput) -> Decision:
        status = inp.agent.status
        if status is not _ACTIVE and (status is not _ISOLATED or self._outbound(inp.intent.op)):
            return self._r8_agent_stopped(inp)
        if inp.safe_state:
            return self._deny(
                "R8",
                "MINIMAL_SAFE_STATE",
                "the Commander put the system in Minimal Safe State: only apoptosis runs",
            )
        op = inp.intent.op
        spec = self._ops.get(op)
        facts = self._by_op.get(op)
        if facts is None or facts[0] is not spec:
            # Not catalogued at construction, or the catalogue changed since: decide live.
            facts = self._facts(op, spec)
        derived_from, verdict, path, high_impact, external = facts
        if verdict is not None:
            return verdict
        if derived_from is None:
            # Unreachable (R1 refuses ops outside the catalogue); refuse rather than assume.
            return self._deny("R1", "UNKNOWN_OP", f"{op} is not an op the Commit Layer mediates")
        if path:
            verdict = self._r4_protected_path(inp)
            if verdict is not None:
                return verdict
        if derived_from.manifest is not None:
            verdict = self._r11_tool_call(inp, derived_from)
            if verdict is not None:
                return verdict
        elif op == "email.send" and inp.intent.params.get("cc", ()) != inp.intent.extra_targets:
            # The mail adapter sends to ``params.cc``; the checks read the extra targets.
            return Deny(
                "RULE.R11.TARGET_MISMATCH",
                "email.send: the carbon copies in params.cc must be exactly the intent's "
                "extra targets, so that every recipient is checked",
                check=self.name,
            )
        granted = inp.task.effect_classes
        if granted is not None:
            for cls in effect_classes_of(derived_from, inp.intent.params):
                internal_send = cls is EffectClass.SEND and not external
                if cls not in granted and cls not in _UNGRANTED and not internal_send:
                    return self._r2_effect_class(inp, derived_from, cls)
        if inp.approved or not (high_impact or external):
            return self._allow
        pending = self._r7_approval(inp, derived_from, high_impact)
        return self._allow if pending is None else pending

    def _facts(self, op: str, spec: OpSpec | None) -> _Facts:
        if spec is None:
            return (None, self._op_rules(op), False, False, False)
        return (
            spec,
            self._op_rules(op),
            spec.target_kind == "path",
            any(c in HIGH_IMPACT for c in spec.classes),
            spec.external,
        )

    def _op_rules(self, op: str) -> Deny | None:
        return self._r5_no_self_promotion(op) or self._r4_kernel_op(op) or self._r1_known_op(op)

    def _deny(self, rule: str, what: str, reason: str) -> Deny:
        return Deny(f"RULE.{rule}.{what}", reason, check=self.name)

    def _r8_agent_stopped(self, inp: CheckInput) -> Deny:
        status = inp.agent.status
        allowed = (
            "nothing outbound (mail, HTTP, external tools, messages to agents) is accepted"
            if status is _ISOLATED
            else "only apoptosis is accepted"
        )
        return self._deny(
            "R8", f"AGENT_{status.name}", f"agent {inp.agent.agent_id} is {status.value}; {allowed}"
        )

    def _outbound(self, op: str) -> bool:
        """What soft isolation blocks; an op outside the catalogue counts (fail closed)."""
        spec = self._ops.get(op)
        return spec is None or spec.external or op == "msg.send"

    def _r5_no_self_promotion(self, op: str) -> Deny | None:
        namespace, _, verb = op.partition(".")
        if namespace in _PROMOTION_NAMESPACES or "promot" in verb or verb in _PROMOTION_VERBS:
            return self._deny(
                "R5",
                "NO_SELF_PROMOTION",
                f"{op}: rings change only through onboarding by the kernel, never on an "
                "agent's request",
            )
        return None

    def _r4_kernel_op(self, op: str) -> Deny | None:
        if op.partition(".")[0] in KERNEL_NAMESPACES and op not in AGENT_ADMIN_OPS:
            return self._deny("R4", "PROTECTED", f"{op} would control the kernel itself")
        return None

    def _r4_protected_path(self, inp: CheckInput) -> Deny | None:
        for target in inp.intent.targets:
            if self._touches_kernel(target, inp.task.workspace):
                return self._deny(
                    "R4", "PROTECTED", f"{inp.intent.op} on {target!r} touches the kernel's data"
                )
        return None

    def _touches_kernel(self, target: str, workspace: str) -> bool:
        """True for protected names, and for protected directories outside the workspace.

        Workspaces live inside the data dir, so the task's workspace is carved out of a
        protected directory when it lies strictly inside it (a workspace that *contains*
        the data dir carves out nothing); inside the workspace only the protected names
        count. Case-insensitive on purpose: the data dir may sit on a case-insensitive disk.
        """
        path = target.lower().replace("\\", "/")
        home = posixpath.normpath(workspace.lower()) if workspace.startswith("/") else ""
        if not path.startswith("/") and home:
            path = posixpath.join(home, path)
        path = posixpath.normpath(path)
        in_home = bool(home) and (path == home or path.startswith(home + "/"))
        if not self._names.isdisjoint((path[len(home) :] if in_home else path).split("/")):
            return True
        return any(
            (path == root or path.startswith(root + "/"))
            and not (in_home and home.startswith(root + "/"))
            for root in self._roots
        )

    def _r2_effect_class(self, inp: CheckInput, spec: OpSpec, missing: EffectClass) -> Deny:
        granted = sorted(c.value for c in inp.task.effect_classes or ())
        classes = "+".join(c.value for c in spec.classes)
        return self._deny(
            "R2",
            "EFFECT_CLASS_NOT_GRANTED",
            f"{spec.name} is a {classes} effect and needs {missing.value}; task "
            f"{inp.task.task_id} asked only for {', '.join(granted) or 'nothing'}",
        )

    def _r11_tool_call(self, inp: CheckInput, spec: OpSpec) -> Deny | None:
        """A tool call's targets and amount are what its manifest finds in its arguments,
        recomputed here whoever built the intent: a call that left a target out, or
        whose targets cannot be read, is refused, never checked as if it had none (R11).
        The manifest it was built against must still be the registered one, so a call
        parked for approval does not run under a manifest changed since."""
        manifest = spec.manifest
        assert manifest is not None
        intent = inp.intent
        if intent.params.get("manifest_sha256") != manifest.manifest_sha256:
            return Deny(
                "TOOL.MANIFEST_CHANGED",
                f"{spec.name}: the call was made against another manifest than the one "
                "registered now; make it again",
                check=self.name,
            )
        args = intent.params.get("args")
        try:
            if not isinstance(args, Mapping):
                raise ManifestError("TOOL.BAD_ARGS", f"{spec.name}: args must be an object")
            found = manifest.targets_of(args)
            cents = manifest.amount_cents(args)
        except ManifestError as exc:
            return Deny(exc.code, exc.message, check=self.name)
        targets = tuple(t.value for t in found) or ("",)
        kinds = tuple(t.kind for t in found) or ("none",)
        if intent.targets != targets or intent.target_kinds != kinds:
            return Deny(
                "TOOL.TARGET_MISMATCH",
                f"{spec.name}: the intent names other targets than its arguments hold "
                f"({len(targets)} by the manifest); every target must be checked",
                check=self.name,
            )
        if intent.cost.money_cents != cents:
            return Deny(
                "TOOL.BAD_AMOUNT",
                f"{spec.name}: the intent moves {intent.cost.money_cents} cents, its "
                f"arguments {cents}",
                check=self.name,
            )
        return None

    def _r1_known_op(self, op: str) -> Deny | None:
        if op not in self._ops:
            return self._deny("R1", "UNKNOWN_OP", f"{op} is not an op the Commit Layer mediates")
        return None

    def _r7_approval(self, inp: CheckInput, spec: OpSpec, high_impact: bool) -> Pending | None:
        """R7 for an unapproved intent whose op is high impact or external.

        A high-impact class the task's plan asked for by name is the Commander's policy
        for it: like an external op, it then asks only for targets nobody named."""
        intent = inp.intent
        granted = inp.task.effect_classes
        if high_impact and granted is not None and granted.issuperset(spec.classes):
            high_impact = False
        if not high_impact and spec.target_kind == "mixed":
            task = inp.task
            kinds = target_kinds(intent, spec)
            pairs = zip(intent.targets, kinds, strict=True)
            targets = tuple(t for t, k in pairs if not is_trusted_target(k, t, task))
            if not targets:
                return None
            reason = (
                f"{spec.name} targets {', '.join(repr(t) for t in targets)}, which the task "
                "never named: a new target needs the Commander"
            )
        elif not high_impact:
            kind, task = spec.target_kind, inp.task
            if not intent.extra_targets:  # the common case: no tuple to build
                if is_trusted_target(kind, intent.target, task):
                    return None
            else:
                for target in intent.targets:  # no allocation when every target is known
                    if not is_trusted_target(kind, target, task):
                        break
                else:
                    return None
            targets = tuple(t for t in intent.targets if not is_trusted_target(kind, t, task))
            reason = (
                f"{spec.name} to {', '.join(repr(t) for t in targets)}, which the task never "
                "named: a new external recipient needs the Commander"
            )
        else:
            targets = intent.targets
            heavy = "+".join(c.value for c in spec.classes if c in HIGH_IMPACT)
            reason = f"{spec.name} is a {heavy} effect and needs the Commander"
        return Pending(
            "RULE.R7.APPROVAL_REQUIRED",
            reason,
            rule="R7",
            check=self.name,
            details=frozen_mapping(
                {
                    "effect_class": "+".join(c.value for c in spec.classes),
                    "targets": list(targets),
                }
            ),
        )
