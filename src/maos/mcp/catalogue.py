"""What the gateway offers its client, built from what the upstreams announced and the policy.

Every upstream tool becomes one `Entry`: the name the client sees (the upstream's own,
or ``<upstream>_<tool>`` when two upstreams offer the same name), the kernel tool it is
registered as (op ``tool.<kernel>``: ``[a-z_]`` only, so other characters fold to
``_``), and how it is treated - declared (the policy's manifest), parked (undeclared,
``default: park``: registered as ``execute``, which always asks the Commander, R7) or
refused (undeclared, ``default: refuse``: not offered, never registered). Each upstream
with resources or prompts adds one read-class kernel tool for each (``<up>__read_resource``,
``<up>__get_prompt``): reading them is an intent like any other, labelled per policy.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import mcp_types as types

from maos.kernel.errors import InputError
from maos.kernel.labels import Conf, Integrity
from maos.kernel.labels import Label as KernelLabel
from maos.kernel.ops import TARGET_KINDS
from maos.mcp.policy import Label, Policy, TargetSpec, ToolPolicy
from maos.mcp.upstream import Announced, digest

__all__ = ["Catalogue", "Entry", "Registration", "kernel_label"]

Treatment = Literal["declared", "parked", "refused", "resource", "prompt"]

_RESOURCE_SCHEMA = {
    "type": "object",
    "properties": {"uri": {"type": "string"}},
    "required": ["uri"],
}
_PROMPT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
    "required": ["name"],
}
_PARKED = ToolPolicy(effect="execute", external=True)
"""The manifest an undeclared tool gets under ``default: park``: every call asks a human."""


def kernel_label(label: Label) -> KernelLabel:
    return KernelLabel(Conf[label.conf.upper()], Integrity[label.integrity.upper()])


def _fold(text: str) -> str:
    return re.sub(r"[^a-z]+", "_", text.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class Registration:
    """The kernel's view of one entry: what `Kernel.register_tool` is given."""

    effect_classes: tuple[str, ...]
    targets: dict[str, str]
    amount_param: str | None
    result_label: KernelLabel
    accepts: Conf
    external: bool
    parameters: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class Entry:
    visible: str
    """The name the MCP client calls."""
    kernel: str
    """The registered kernel tool: the op is ``tool.<kernel>``."""
    upstream: str
    remote: str
    """The upstream's own name for it ("" for the resource and prompt readers)."""
    treatment: Treatment
    policy: ToolPolicy | None
    tool: types.Tool | None
    digest: str
    """SHA-256 of its description and schema when it was announced (`upstream.digest`)."""

    def registration(self, labels: Label) -> Registration:
        if self.treatment == "resource" or self.treatment == "prompt":
            schema = _RESOURCE_SCHEMA if self.treatment == "resource" else _PROMPT_SCHEMA
            return Registration(
                ("read",), {}, None, kernel_label(labels), Conf.SECRET, False, schema, ""
            )
        assert self.tool is not None
        manifest = self.policy or _PARKED
        effects = (manifest.effect,) if isinstance(manifest.effect, str) else manifest.effect
        return Registration(
            effect_classes=tuple(effects),
            targets=_targets(self.visible, manifest, self.tool.input_schema),
            amount_param=_amount(self.visible, manifest),
            result_label=kernel_label(manifest.result_label),
            accepts=Conf[manifest.accepts.upper()],
            external=manifest.external,
            parameters=dict(self.tool.input_schema),
            description=self.tool.description or "",
        )


def _targets(tool: str, manifest: ToolPolicy, schema: dict[str, Any]) -> dict[str, str]:
    """The manifest's targets as the kernel takes them today: one string parameter each.

    Until the target shapes of issue 8 are in the kernel, a path into a list or an
    object, a kind it does not know, or a parameter that may be left out would be sent
    untargeted - so the policy is refused instead (fail closed)."""
    props = schema.get("properties", {})
    required = set(schema.get("required", ()))
    out: dict[str, str] = {}
    for path, spec in manifest.targets.items():
        kind, optional = (
            (spec.kind, spec.optional) if isinstance(spec, TargetSpec) else (spec, False)
        )
        where = f"tools: {tool}: target {path!r}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", path):
            raise InputError("BAD_INPUT.POLICY", f"{where}: nested target paths need issue 8")
        if kind not in TARGET_KINDS:
            raise InputError("BAD_INPUT.POLICY", f"{where}: kind {kind!r} needs issue 8")
        prop = props.get(path)
        if not isinstance(prop, dict) or prop.get("type") != "string":
            raise InputError(
                "BAD_INPUT.POLICY", f"{where}: the upstream's schema must make it a string"
            )
        if not optional and path not in required:
            raise InputError(
                "BAD_INPUT.POLICY",
                f"{where}: the upstream may leave it out; declare it optional: true",
            )
        out[path] = kind
    return out


def _amount(tool: str, manifest: ToolPolicy) -> str | None:
    if manifest.amount is None or isinstance(manifest.amount, str):
        return manifest.amount
    if manifest.amount.unit != "cents":
        raise InputError("BAD_INPUT.POLICY", f"tools: {tool}: decimal amounts need issue 8")
    return manifest.amount.param


class Catalogue:
    """Entries by visible name and by kernel name; built once per (re)connection."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.by_visible = {e.visible: e for e in entries if e.treatment in ("declared", "parked")}
        self.by_kernel = {e.kernel: e for e in entries if e.treatment != "refused"}

    @classmethod
    def build(cls, policy: Policy, announced: dict[str, Announced]) -> Catalogue:
        counts = Counter(t.name for a in announced.values() for t in a.tools)
        entries: list[Entry] = []
        for up, offer in announced.items():
            declared = policy.tools.get(up, {})
            for tool in offer.tools:
                visible = tool.name if counts[tool.name] == 1 else f"{up}_{tool.name}"
                manifest = declared.get(tool.name)
                treatment: Treatment = (
                    "declared"
                    if manifest is not None
                    else ("parked" if policy.default == "park" else "refused")
                )
                entries.append(
                    Entry(
                        visible,
                        _fold(f"{up}_{tool.name}")[:48],
                        up,
                        tool.name,
                        treatment,
                        manifest,
                        tool,
                        digest(tool),
                    )
                )
            if offer.resources:
                entries.append(
                    Entry("", f"{_fold(up)}__read_resource", up, "", "resource", None, None, "")
                )
            if offer.prompts:
                entries.append(
                    Entry("", f"{_fold(up)}__get_prompt", up, "", "prompt", None, None, "")
                )
        kernel = Counter(e.kernel for e in entries)
        clash = sorted(k for k, n in kernel.items() if n > 1)
        if clash:
            raise InputError(
                "BAD_INPUT.POLICY",
                f"upstream tools fold to the same kernel name {clash[0]!r}: rename an upstream",
            )
        return cls(entries)
