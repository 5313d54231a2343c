"""LangGraph (with ``langchain-openai``) inside a pod.

    from langgraph.prebuilt import create_react_agent
    from maos.adapters import langgraph as maos

    graph = create_react_agent(maos.chat_model(), maos.tools(), prompt="...")
    state = graph.invoke({"messages": [("user", "Summarise inbox/note.txt ...")]})

The graph - prebuilt or your own ``StateGraph`` - runs unchanged; what changes is the
chat model, a ``ChatOpenAI`` whose HTTP clients reach only the kernel's LLM gateway
(`maos.adapters.transport`; chat completions, not the Responses API), and the tools,
``StructuredTool`` s over `maos.adapters.tools`. LangSmith tracing stays off unless the
pod's environment turns it on, and it could not reach anyone: the pod has no network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from maos.adapters.tools import MaosTool, maos_tools
from maos.adapters.transport import BASE_URL, MODEL, async_http_client, http_client

__all__ = ["chat_model", "structured_tool", "tools"]


def chat_model(name: str = MODEL, **kwargs: Any) -> Any:
    """A ``ChatOpenAI`` that thinks through the kernel (``kwargs`` go to it too)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=name,
        api_key="maos",
        base_url=BASE_URL,
        http_client=http_client(),
        http_async_client=async_http_client(),
        max_retries=0,  # every attempt is a logged, budgeted intent: the agent decides
        use_responses_api=False,
        **kwargs,
    )


def structured_tool(tool: MaosTool) -> Any:
    """``tool`` as a LangChain ``StructuredTool`` (sync, and async off the event loop)."""
    from langchain_core.tools import StructuredTool

    def call(**arguments: Any) -> str:
        return tool.run(arguments)

    async def acall(**arguments: Any) -> str:
        return await asyncio.to_thread(tool.run, arguments)

    return StructuredTool.from_function(
        func=call,
        coroutine=acall,
        name=tool.name,
        description=tool.description,
        args_schema=dict(tool.parameters),
    )


def tools(
    wanted: Sequence[str] | None = None,
    *,
    wait_s: float = 0.0,
    on_call: Callable[[dict[str, Any]], None] | None = None,
) -> list[Any]:
    """The MAOS tools (`maos.adapters.tools.maos_tools`) as LangChain tools."""
    return [structured_tool(t) for t in maos_tools(wanted, wait_s=wait_s, on_call=on_call)]
