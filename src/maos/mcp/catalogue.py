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
import orjson

from maos.kernel.errors import InputError
from maos.kernel.intents import thaw
from maos.kernel.labels import Conf, Integrity
from maos.kernel.labels import Label as KernelLabel
from maos.kernel.manifest import ToolManifest, parse_manifest
from maos.mcp.policy import Label, Policy, ToolPolicy
from maos.mcp.upstream import Announced, digest

__all__ = ["Catalogue", "Entry", "Registration", "kernel_label", "same_definition"]

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
    """The kernel's view of one entry: what `Kernel.register_tool` is given, which
    validates it with the one manifest validator (`maos.kernel.manifest`)."""

    effect_classes: tuple[str, ...]
    targets: dict[str, Any]
    """Target path -> kind or {kind, optional}, as the manifest contract has them."""
    amount: str | dict[str, Any] | None
    result_label: Label
    """As the policy says it; `kernel_label` is the kernel's value."""
    accepts: Conf
    external: bool
    parameters: dict[str, Any]
    description: str
    timeout_s: float

    def manifest(self, name: str) -> ToolManifest:
        """The manifest as the kernel will hold it; `ManifestError` if it is not one."""
        return parse_manifest(
            {
                "name": name,
                "description": self.description,
                "parameters": self.parameters,
                "effect_classes": list(self.effect_classes),
                "targets": self.targets,
                "amount": self.amount,
                "result_label": self.result_label.model_dump(),
                "accepts": self.accepts.name.lower(),
                "external": self.external,
                "timeout_s": self.timeout_s,
            }
        )


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
            return Registration(("read",), {}, None, labels, Conf.SECRET, False, schema, "", 30.0)
        assert self.tool is not None
        manifest = self.policy or _PARKED
        effects = (manifest.effect,) if isinstance(manifest.effect, str) else manifest.effect
        targets = {
            path: spec if isinstance(spec, str) else spec.model_dump()
            for path, spec in manifest.targets.items()
        }
        amount = manifest.amount
        return Registration(
            effect_classes=tuple(effects),
            targets=targets,
            amount=amount if amount is None or isinstance(amount, str) else amount.model_dump(),
            result_label=manifest.result_label,
            accepts=Conf[manifest.accepts.upper()],
            external=manifest.external,
            parameters=dict(self.tool.input_schema),
            description=self.tool.description or "",
            timeout_s=manifest.timeout_s,
        )


def same_definition(known: ToolManifest, reg: Registration) -> bool:
    """Whether the upstream still offers what was registered: its description and schema
    (the operator's manifest fields may change between runs; the upstream's may not)."""
    return known.description == reg.description and orjson.dumps(
        thaw(known.parameters), option=orjson.OPT_SORT_KEYS
    ) == orjson.dumps(reg.parameters, option=orjson.OPT_SORT_KEYS)


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
