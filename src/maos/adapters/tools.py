"""MAOS tools for a framework: the same tools, with the same answers, as the Cognitive Cell.

Each `MaosTool` is a name, a description, a JSON schema and `run`, which turns one call
into one gateway request (`maos.sdk.toolbox.call_tool`) and returns the text the model
sees: the value, or the kernel's refusal with its code, or the approval it was parked
for. A framework adapter wraps these in its own tool type; nothing here is framework
specific, so the three frameworks cannot drift apart on what a refusal looks like.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from maos.sdk.toolbox import call_tool, model_text, offered_tools

__all__ = ["MaosTool", "maos_tools"]


@dataclass(frozen=True)
class MaosTool:
    """One tool as the model sees it; `run` asks the kernel."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    """The JSON schema of its arguments (an object)."""
    wait_s: float = 0.0
    """How long a call parked for the Commander waits for the decision (0: not at all)."""
    on_call: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)
    """Sees each call's record (``tool``, ``status``, ``code``), for the agent's report."""

    def run(self, arguments: str | Mapping[str, Any]) -> str:
        """The model's call (JSON text or an object); the text of the answer."""
        raw = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        seen, record = call_tool(self.name, raw, self.wait_s)
        if self.on_call is not None:
            self.on_call(record)
        return model_text(seen)


def maos_tools(
    wanted: Sequence[str] | None = None,
    *,
    wait_s: float = 0.0,
    on_call: Callable[[dict[str, Any]], None] | None = None,
) -> list[MaosTool]:
    """The built-ins named in ``wanted`` (``MAOS_TOOLS`` when None) and the registered
    tools the token grants; one gateway request (``admin.tools``) to learn the latter."""
    return [
        MaosTool(t["name"], t["description"], t["parameters"], wait_s, on_call)
        for t in offered_tools(wanted)
    ]
