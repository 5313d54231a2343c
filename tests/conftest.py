"""Fixtures shared across the suite: real servers on loopback."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from maos.kernel.kernel import KernelConfig, SmtpConfig
from maos.pod.isolation import PodHome
from maos.pod.isolation.home import pod_uid, reachable
from maos.pod.upstream_runtime import Runtime, build_runtime
from maos.testing import Mailbox, StepClock, loopback_smtp


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 that keeps what it receives."""
    with loopback_smtp() as box:
        yield box


@pytest.fixture
def config(tmp_path: Path, mailbox: Mailbox) -> KernelConfig:
    """A fresh data directory whose kernel mails through the loopback server."""
    return KernelConfig(
        data_dir=tmp_path / "data",
        smtp=SmtpConfig("127.0.0.1", mailbox.port, "maos@test.local"),
        follow_interval=0.02,
    )


@pytest.fixture
def clock() -> StepClock:
    """The kernel's clock, moved only by the test."""
    return StepClock()


@pytest.fixture
def kconfig(config: KernelConfig, clock: StepClock) -> KernelConfig:
    """``config`` on the stepped ``clock``."""
    return replace(config, clock=clock)


@pytest.fixture(scope="module")
def home() -> Iterator[PodHome]:
    """Where pods find their interpreter, bootstrap and SDK; one per test module."""
    pod_home = PodHome()
    yield pod_home
    pod_home.close()


# Read-only runtimes for upstream (MCP) servers' pods (tests/pod, tests/mcp_gateway).
LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


FILESYSTEM_SERVER = "@modelcontextprotocol/server-filesystem@2026.8.31"
"""The reference MCP filesystem server, from npm, pinned."""


def _cached_runtime(request: pytest.FixtureRequest, **build: Any) -> Iterator[Runtime]:
    """Cached in pytest's cache dir when uid nobody can traverse to it (a checkout under
    ``/root`` cannot be mounted by bwrap running as nobody); otherwise built in a fresh
    world-traversable temporary dir and removed afterwards."""
    store = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = store.mkdir("mcp-runtime") if store is not None else None
    if cache is not None and reachable(cache.parent, pod_uid()):
        yield build_runtime(cache=cache, constraints=LOCK, **build)
        return
    scratch = Path(tempfile.mkdtemp(prefix="maos-runtime-"))
    try:
        yield build_runtime(cache=scratch, constraints=LOCK, **build)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def mcp_runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A real read-only runtime with the pinned ``mcp`` SDK, built once and cached."""
    yield from _cached_runtime(request, packages=["mcp==2.3.0"])


@pytest.fixture(scope="session")
def npm_runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A real read-only runtime holding the npm filesystem MCP server (and node)."""
    yield from _cached_runtime(request, packages=[], npm_packages=[FILESYSTEM_SERVER])
