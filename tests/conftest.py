"""Fixtures shared across the suite: real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maos.kernel.kernel import KernelConfig, SmtpConfig
from maos.pod.isolation import PodHome
from maos.testing import Mailbox, loopback_smtp


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


@pytest.fixture(scope="module")
def home() -> Iterator[PodHome]:
    """Where pods find their interpreter, bootstrap and SDK; one per test module."""
    pod_home = PodHome()
    yield pod_home
    pod_home.close()
