"""The catalogue of operations the kernel knows, and what each one does to the world.

Rules are written against these facts, never against op names scattered in checks:
R1 refuses ops missing here, R7 asks a human for the high-impact classes, and the IFC
check compares a context's confidentiality with the op's sink clearance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maos.kernel.labels import Conf
from maos.kernel.manifest import TARGET_KINDS, ToolManifest
from maos.kernel.types import EffectClass

__all__ = [
    "HIGH_IMPACT",
    "KERNEL_OPS",
    "OPS",
    "TARGET_KINDS",
    "TOOL_PREFIX",
    "OpSpec",
    "effect_classes_of",
    "spec_for",
    "tool_spec",
]


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    effect_class: EffectClass
    sink: Conf | None
    """Highest confidentiality that may flow to this op's target; None: the op emits no data."""
    external: bool
    """The target lies outside this machine (a recipient, a URL)."""
    target_kind: str
    """``path``, ``url``, ``recipient``, ``agent``, ``none``, or ``mixed`` (a tool: each
    target's kind travels with the intent, from the tool's manifest)."""
    effect_classes: tuple[EffectClass, ...] = ()
    """Every class of a tool of several (most severe first, that one is ``effect_class``);
    empty for built-in ops, which have one."""
    manifest: ToolManifest | None = None
    """A tool's manifest: the checks recompute a call's targets and amount from it."""

    @property
    def classes(self) -> tuple[EffectClass, ...]:
        return self.effect_classes or (self.effect_class,)


OPS: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec("fs.read", EffectClass.READ, None, False, "path"),
        OpSpec("fs.list", EffectClass.READ, None, False, "path"),
        OpSpec("fs.write", EffectClass.WRITE, Conf.CONFIDENTIAL, False, "path"),
        OpSpec("fs.delete", EffectClass.DELETE, None, False, "path"),
        OpSpec("http.request", EffectClass.SEND, Conf.PUBLIC, True, "url"),
        OpSpec("email.send", EffectClass.SEND, Conf.PUBLIC, True, "recipient"),
        # A message to an A2A agent (its URL or card): an outbound flow like a request.
        OpSpec("a2a.send", EffectClass.SEND, Conf.PUBLIC, True, "url"),
        # Between agents the sender's context label travels with the message and raises
        # the receiver's context, so any level may flow: IFC holds without a sink limit.
        OpSpec("msg.send", EffectClass.SEND, Conf.SECRET, False, "agent"),
        OpSpec("msg.receive", EffectClass.READ, None, False, "agent"),
        # The provider is the kernel's configuration, never the agent's choice, so there
        # is no target to check; what a provider may see is capped at confidential.
        OpSpec("llm.complete", EffectClass.SEND, Conf.CONFIDENTIAL, False, "none"),
        OpSpec("lock.acquire", EffectClass.KERNEL, None, False, "none"),
        OpSpec("lock.release", EffectClass.KERNEL, None, False, "none"),
        OpSpec("admin.apoptosis", EffectClass.KERNEL, None, False, "none"),
        OpSpec("admin.heartbeat", EffectClass.KERNEL, None, False, "none"),
        # The agent's side of Deliberate (kernel/deliberation.py): the target of an
        # answer is the approval it answers about.
        OpSpec("admin.questions", EffectClass.KERNEL, None, False, "none"),
        OpSpec("admin.answer", EffectClass.KERNEL, None, False, "none"),
    )
}

KERNEL_OPS = frozenset(name for name, s in OPS.items() if s.effect_class is EffectClass.KERNEL)
"""Ops the kernel answers itself, with no adapter and no external effect."""

HIGH_IMPACT = frozenset(
    {EffectClass.DELETE, EffectClass.PAY, EffectClass.CREDENTIALS, EffectClass.EXECUTE}
)
"""Effect classes that always need the Commander's approval (R7)."""


TOOL_PREFIX = "tool."
"""User-declared tools are ops ``tool.<name>``, catalogued when they are registered."""


def spec_for(op: str) -> OpSpec | None:
    return OPS.get(op)


_READ_METHODS = frozenset({"GET", "HEAD"})


_READ = (EffectClass.READ,)


def effect_classes_of(spec: OpSpec, params: Mapping[str, Any]) -> tuple[EffectClass, ...]:
    """The classes of one intent: an HTTP GET or HEAD reads (what it may leak through its
    URL is the target checks' business), every other request sends; a tool has what its
    manifest declares, all of them."""
    if spec.name == "http.request" and params.get("method") in _READ_METHODS:
        return _READ
    return spec.classes


def tool_spec(manifest: ToolManifest) -> OpSpec:
    """The catalogue entry of a registered tool: its manifest decides, not its caller."""
    return OpSpec(
        f"{TOOL_PREFIX}{manifest.name}",
        manifest.effect_class,
        manifest.accepts,
        manifest.external,
        "mixed",
        manifest.effect_classes,
        manifest,
    )
