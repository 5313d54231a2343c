"""The OpenAI Agents SDK (``openai-agents``) inside a pod.

    from agents import Agent, Runner
    from maos.adapters import openai_agents as maos

    agent = Agent(name="clerk", instructions="...", model=maos.model(), tools=maos.tools())
    result = Runner.run_sync(agent, "Summarise inbox/note.txt for boss@example.com")

The SDK's own loop runs unchanged; its model is ``OpenAIChatCompletionsModel`` over the
channel transport (`maos.adapters.transport`), and its tools are `FunctionTool` s over
`maos.adapters.tools`. Tracing is switched off: the SDK would otherwise export traces to
OpenAI's servers, and a pod has no network (the kernel's log is the trace).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from maos.adapters.tools import MaosTool, maos_tools
from maos.adapters.transport import MODEL, async_openai_client

__all__ = ["function_tool", "model", "tools"]


def model(name: str = MODEL) -> Any:
    """An ``OpenAIChatCompletionsModel`` that thinks through the kernel's LLM gateway."""
    from agents import OpenAIChatCompletionsModel, set_tracing_disabled

    set_tracing_disabled(True)
    return OpenAIChatCompletionsModel(model=name, openai_client=async_openai_client())


def function_tool(tool: MaosTool) -> Any:
    """``tool`` as the SDK's `FunctionTool`; the call runs off the event loop."""
    from agents import FunctionTool

    async def invoke(_context: Any, arguments: str) -> str:
        return await asyncio.to_thread(tool.run, arguments)

    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=dict(tool.parameters),
        on_invoke_tool=invoke,
        strict_json_schema=False,  # MAOS's schemas are plain JSON schema, not OpenAI-strict
    )


def tools(
    wanted: Sequence[str] | None = None,
    *,
    wait_s: float = 0.0,
    on_call: Callable[[dict[str, Any]], None] | None = None,
) -> list[Any]:
    """The MAOS tools (`maos.adapters.tools.maos_tools`) as the SDK's tools."""
    return [function_tool(t) for t in maos_tools(wanted, wait_s=wait_s, on_call=on_call)]
