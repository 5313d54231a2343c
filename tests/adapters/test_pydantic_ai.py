"""pydantic-ai's own run loop (``Agent.run_sync``) in a pod
(issue 13, item 5): its model calls go through the kernel's LLM gateway, its tools
are MAOS's, and the injected mail is refused."""

from __future__ import annotations

from framework_scenario import assert_the_task_ran_and_the_injection_was_refused, run_example

from maos.kernel.kernel import KernelConfig
from maos.pod.isolation import PodHome
from maos.pod.upstream_runtime import Runtime
from maos.testing import ChatServer, Mailbox


def test_issue_13_pydantic_ai_runs_in_a_pod_and_the_injected_mail_is_refused(
    config: KernelConfig,
    home: PodHome,
    frameworks: Runtime,
    model_server: ChatServer,
    mailbox: Mailbox,
) -> None:
    run = run_example("pydantic_ai_agent.py", config, home, frameworks, model_server)
    assert_the_task_ran_and_the_injection_was_refused(run, model_server, mailbox)
