"""Fixtures shared across the suite: real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maos.testing import Mailbox, loopback_smtp


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 that keeps what it receives."""
    with loopback_smtp() as box:
        yield box
