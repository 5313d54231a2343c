"""The gateway tests' fixture: a fresh policy, data directory and record directory per
test, over upstreams that run as level-2 pods from the pinned runtime."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwtest import Setup, make_setup

from maos.pod.upstream_runtime import Runtime


@pytest.fixture
def setup(tmp_path: Path, mcp_runtime: Runtime) -> Iterator[Setup]:
    s = make_setup(tmp_path, mcp_runtime)
    yield s
    shutil.rmtree(s.records, ignore_errors=True)
