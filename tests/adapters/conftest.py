"""Fixtures of the framework examples' tests: the frameworks' runtime and the model server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from framework_scenario import MODEL

from maos.pod.agent_runtime import framework_runtime
from maos.pod.upstream_runtime import Runtime
from maos.testing import ChatServer, loopback_openai


@pytest.fixture(scope="session")
def frameworks() -> Runtime:
    """The frameworks' read-only runtime, built once per machine (`make test` builds it)."""
    if os.geteuid() != 0:
        pytest.skip("pods run as nobody: needs root")
    return framework_runtime()


@pytest.fixture
def model_server() -> Iterator[ChatServer]:
    """The obedient model (`framework_scenario.MODEL`) on a real loopback HTTP server."""
    with loopback_openai(policy=MODEL) as server:
        yield server
