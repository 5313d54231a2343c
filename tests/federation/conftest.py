"""Real nats-server processes on loopback for the federation's tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.pki import NodeSpec, PkiFiles, issue_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return issue_pki(
        tmp_path_factory.mktemp("pki"),
        [NodeSpec("hq", "sovereign"), NodeSpec("site-a", "sentinel"), NodeSpec("pawn-1", "pawn")],
    )


def _wait_for(cond: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll a condition until true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def wait_for() -> Callable[[Callable[[], object]], None]:
    """The poll the tests wait on servers with (a fixture: conftest is not importable)."""
    return _wait_for


@pytest.fixture
def hub(tmp_path: Path, pki: PkiFiles) -> Iterator[Natsd]:
    cfg = NatsdConfig(name="hq", data_dir=tmp_path / "hq", tls=pki.tls("hq"), leaf_listen=True)
    with Natsd(cfg).start() as server:
        yield server


@pytest.fixture
def leaf(tmp_path: Path, pki: PkiFiles, hub: Natsd) -> Iterator[Natsd]:
    cfg = NatsdConfig(
        name="site-a",
        data_dir=tmp_path / "site-a",
        tls=pki.tls("site-a"),
        hub_urls=(hub.leaf_url,),
    )
    with Natsd(cfg).start() as server:
        _wait_for(lambda: hub.get("/leafz").get("leafnodes", 0) == 1)
        yield server
