"""The gateway tests' fixture: a fresh policy and data directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from gwtest import Setup, make_setup


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)
