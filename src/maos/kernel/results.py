"""The label of a committed effect's result: what the kernel hands back with it (IFC).

One function, because every result an agent receives takes its label here and nowhere
else: a tool's manifest, a file's recorded writers, the web's untrusted content, or the
prompt's own label for a model's reply. The agent's context label rises by it.
"""

from __future__ import annotations

from maos.kernel.labels import BOTTOM, Conf, Integrity, Label
from maos.kernel.ops import TOOL_PREFIX
from maos.kernel.registry import Registry, TaskRecord
from maos.kernel.types import Intent

__all__ = ["result_label"]


def result_label(registry: Registry, intent: Intent, task: TaskRecord) -> Label:
    """The label of ``intent``'s committed result in ``task``."""
    if intent.op.startswith(TOOL_PREFIX):
        tool = registry.tools.get(intent.op[len(TOOL_PREFIX) :])
        if tool is None:  # unreachable: R1 refuses uncatalogued ops; label it as foreign
            return Label(Conf.SECRET, Integrity.UNTRUSTED, frozenset({intent.op}))
        declared = tool.result_label
        return Label(declared.conf, declared.integrity, frozenset({f"tool:{tool.name}"}))
    if intent.op in ("fs.read", "fs.list"):
        return task.label_for_path(intent.target)
    if intent.op.startswith("http."):
        return Label(Conf.PUBLIC, Integrity.UNTRUSTED, frozenset({f"url:{intent.target}"}))
    if intent.op == "a2a.send":  # another agent's answer: its author is not ours to trust
        return Label(Conf.PUBLIC, Integrity.UNTRUSTED, frozenset({f"a2a:{intent.target}"}))
    if intent.op == "llm.complete":
        # A reply is a function of its prompt, and the prompt is drawn from what the
        # agent holds: it inherits the agent's context label (injected text in, tainted
        # text out), so the reply can never launder a label.
        return registry.agent(intent.agent_id).context
    return BOTTOM
