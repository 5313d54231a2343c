"""pydantic-ai (``pydantic-ai-slim[openai]``) inside a pod.

    from pydantic_ai import Agent
    from maos.adapters import pydantic_ai as maos

    agent = Agent(maos.model(), toolsets=[maos.toolset()], instructions="...")
    result = agent.run_sync("Summarise inbox/note.txt for boss@example.com")

The agent's own graph runs unchanged; its model is an ``OpenAIChatModel`` whose
provider's client reaches only the kernel's LLM gateway (`maos.adapters.transport`),
and its tools are a ``FunctionToolset`` over `maos.adapters.tools` (pydantic-ai runs a
sync tool in a worker thread; the pod's channel client sends one frame at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from maos.adapters.tools import MaosTool, maos_tools
from maos.adapters.transport import MODEL, async_openai_client

__all__ = ["model", "pydantic_tool", "toolset"]


def model(name: str = MODEL, **kwargs: Any) -> Any:
    """An ``OpenAIChatModel`` that thinks through the kernel (``kwargs`` go to it too)."""
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(openai_client=async_openai_client())
    return OpenAIChatModel(name, provider=provider, **kwargs)


def pydantic_tool(tool: MaosTool) -> Any:
    """``tool`` as a pydantic-ai ``Tool`` with the MAOS schema (the kernel validates)."""
    from pydantic_ai import Tool

    def call(**arguments: Any) -> str:
        return tool.run(arguments)

    return Tool.from_schema(call, tool.name, tool.description, dict(tool.parameters))


def toolset(
    wanted: Sequence[str] | None = None,
    *,
    wait_s: float = 0.0,
    on_call: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """The MAOS tools (`maos.adapters.tools.maos_tools`) as a ``FunctionToolset``."""
    from pydantic_ai.toolsets import FunctionToolset

    found = maos_tools(wanted, wait_s=wait_s, on_call=on_call)
    return FunctionToolset([pydantic_tool(t) for t in found])
