"""Each framework's own agent loop in a pod (issue 13, item 5): the OpenAI Agents SDK's
``Runner``, LangGraph's ``create_react_agent`` graph and pydantic-ai's
``Agent.run_sync``. Their model calls go through the kernel's LLM gateway, their tools
are MAOS's, and the injected mail is refused."""

from __future__ import annotations

import pytest
from framework_scenario import assert_the_task_ran_and_the_injection_was_refused, run_example

from maos.kernel.kernel import KernelConfig
from maos.pod.isolation import PodHome
from maos.pod.upstream_runtime import Runtime
from maos.testing import ChatServer, Mailbox


@pytest.mark.parametrize(
    "example", ["openai_agents_agent.py", "langgraph_agent.py", "pydantic_ai_agent.py"]
)
def test_issue_13_the_framework_runs_in_a_pod_and_the_injected_mail_is_refused(
    example: str,
    config: KernelConfig,
    home: PodHome,
    frameworks: Runtime,
    model_server: ChatServer,
    mailbox: Mailbox,
) -> None:
    run = run_example(example, config, home, frameworks, model_server)
    assert_the_task_ran_and_the_injection_was_refused(run, model_server, mailbox)
