"""Framework adapters: run the agents people already have inside a MAOS pod.

An agent built with the OpenAI Agents SDK, LangGraph or pydantic-ai keeps its own loop;
two things change, and this package supplies both (docs/frameworks.md):

* the **model client**: an OpenAI-compatible transport (`maos.adapters.transport`) that
  carries each chat completion over the pod's channel to the kernel's LLM gateway, so
  capabilities, budgets, R6 and Rule-Based Mode apply to every model call;
* the **tools**: MAOS's built-in effects and the registered tools the token grants
  (`maos.adapters.tools`), each call one request the kernel checks, logs and answers
  with data (a refusal too, with its code).

    maos.adapters.openai_agents   model(), tools()
    maos.adapters.langgraph       chat_model(), tools()
    maos.adapters.pydantic_ai     model(), toolset()

It runs inside pods only and imports `maos.sdk` and nothing else of MAOS (an import
contract keeps it so); each module imports its framework when called, from the pod's
read-only runtime (``maos agent-runtime build``).
"""
