"""The federation's policy as a node enforces it: a document, and a check after the DSC's seven.

The Sovereign writes a policy (`maos.federation.buckets.Authority.put_policy`); every node
reads its copy (a Sentinel from its mirror, a Pawn from its Sentinel's) and enforces it
locally, so a cut link never stops a decision and never loosens one: a node keeps the last
policy it read. The check runs after the kernel's own, so a federation policy can only
refuse more than the kernel does (`Pipeline.add_check`).

A document is ``{"denied_ops": ["email.send", ...]}``. A document the check cannot read is
a deny for everything (``FED.POLICY_UNREADABLE``): fail closed. A node that never read a
policy enforces none beyond its kernel's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from maos.federation.buckets import Policy
from maos.kernel.dsc.base import CheckInput
from maos.kernel.types import Allow, Decision, Deny

__all__ = ["PolicyCheck", "PolicyDocument", "PolicyState", "refusal"]


class PolicyDocument(BaseModel):
    """What a federation policy says (strict: an unknown key makes it unreadable)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    denied_ops: tuple[str, ...] = ()
    """Ops no node of the federation may carry out."""


def _parse(document: Mapping[str, Any]) -> PolicyDocument | None:
    try:
        raw = dict(document)
        if isinstance(raw.get("denied_ops"), list):
            raw["denied_ops"] = tuple(raw["denied_ops"])
        return PolicyDocument.model_validate(raw)
    except (ValidationError, TypeError):
        return None


def refusal(document: Mapping[str, Any], op: str) -> str:
    """Why ``document`` refuses ``op`` ("" if it does not): the check's rule and the
    Sovereign's re-validation of what a site decided offline share it."""
    parsed = _parse(document)
    if parsed is None:
        return "the policy document is unreadable"
    if op in parsed.denied_ops:
        return f"the federation's policy denies {op}"
    return ""


@dataclass
class PolicyState:
    """The policy a node holds now (None: it never read one); the node replaces it."""

    policy: Policy | None = None


_ALLOW = Allow(check="federation")


class PolicyCheck:
    """The node's federation policy as a DSC check (named ``federation``)."""

    name = "federation"

    def __init__(self, state: PolicyState) -> None:
        self.state = state

    def __call__(self, inp: CheckInput) -> Decision:
        policy = self.state.policy
        if policy is None:
            return _ALLOW
        why = refusal(policy.document, inp.intent.op)
        if not why:
            return _ALLOW
        code = "FED.POLICY_UNREADABLE" if "unreadable" in why else "FED.POLICY_DENIED"
        return Deny(code, f"{why} (policy {policy.name!r}, epoch {policy.epoch})")
