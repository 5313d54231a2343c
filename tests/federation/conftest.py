"""Real nats-server processes on loopback for the federation's tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from maos.federation.natsd import Natsd, NatsdConfig
from maos.federation.node import Node
from maos.federation.nodeconfig import NodeConfig
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


def _peer_pins(server: Natsd, kind: str = "Client") -> set[str]:
    """The pins of the certificates ``server``'s peers presented on its connections of
    ``kind`` now (``Client`` or ``Leafnode``: a leaf's link to its hub shows the hub's).
    The server lists each peer's verified chain, the peer's own certificate first."""
    conns = server.get("/connz?auth=true").get("connections") or ()
    return {
        str(conn["tls_peer_certs"][0]["spki_sha256"])  # what `pki.cert_pin` computes
        for conn in conns
        if conn.get("kind") == kind and conn.get("tls_peer_certs")
    }


@pytest.fixture
def peer_pins() -> Callable[..., set[str]]:
    return _peer_pins


def _certificates(node: Node) -> list[dict[str, Any]]:
    """The certificates ``node`` took up after a rotation (``federation.certificate``)."""
    assert node.kernel is not None
    return [dict(r.body) for r in node.kernel.wal.read(kinds=("federation.certificate",))]


@pytest.fixture
def certificates() -> Callable[[Node], list[dict[str, Any]]]:
    return _certificates


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


class LinkProxy:
    """A loopback TCP proxy the test controls: `cut` drops every connection through it and
    refuses new ones (a partition on real sockets); `heal` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    async def start(self) -> LinkProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._conns |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._conns -= {writer, up_w}

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()
        await self._server.wait_closed()
        self._server = None

    async def heal(self) -> None:
        await self.start()


@dataclass
class StepClock:
    """The nodes' clock: real time plus what the test stepped it by."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


def node_config(
    pki: PkiFiles, root: Path, role: str, name: str, *, upstream: str | None = None,
    upstream_name: str | None = None,
) -> NodeConfig:  # fmt: skip
    """A node's config as `maos node` would read it from YAML (ticks driven by the test)."""
    tls = pki.tls(name)
    return NodeConfig(
        role=role,  # type: ignore[arg-type]
        name=name,
        data_dir=root / name,
        certs={"ca": tls.ca, "cert": tls.cert, "key": tls.key},  # type: ignore[arg-type]
        upstream=upstream,
        upstream_name=upstream_name,
        heartbeat_timeout=0.5,
    )


@pytest.fixture(scope="module")
def fed_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return issue_pki(
        tmp_path_factory.mktemp("fedpki"),
        [
            NodeSpec("hq", "sovereign"),
            NodeSpec("site-a", "sentinel"),
            NodeSpec("site-b", "sentinel"),
            NodeSpec("pawn-a", "pawn"),
            NodeSpec("pawn-b", "pawn"),
        ],
    )


@dataclass
class Federation:
    """A running federation: hub + two leaves + a pawn behind each, pawn-a via a proxy."""

    hq: Node
    site_a: Node
    site_b: Node
    pawn_a: Node
    pawn_b: Node
    proxy: LinkProxy
    clock: StepClock

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.hq, self.site_a, self.site_b, self.pawn_a, self.pawn_b)

    async def tick(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            for node in self.nodes:
                if node.kernel is not None:
                    await node.tick()

    async def until(self, cond: Callable[[], Awaitable[bool] | bool], timeout: float = 20) -> None:
        """Tick every node until ``cond`` holds; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if not isinstance(got, bool):
                got = await got
            if got:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout} s")
            await self.tick()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for node in reversed(self.nodes):
            await node.stop()
        with contextlib.suppress(AssertionError):
            await self.proxy.cut()


async def start_federation(pki: PkiFiles, root: Path) -> Federation:
    clock = StepClock()
    started: list[Node] = []
    try:
        hq = await Node(node_config(pki, root, "sovereign", "hq"), clock=clock).start()
        started.append(hq)
        assert hq.natsd is not None
        sites = []
        for site in ("site-a", "site-b"):
            await hq.admit(site, role="sentinel")
            cfg = node_config(
                pki, root, "sentinel", site, upstream=hq.natsd.leaf_url, upstream_name="hq"
            )
            sites.append(await Node(cfg, clock=clock).start())
            started.append(sites[-1])
        _wait_for(lambda: hq.natsd is not None and hq.natsd.get("/leafz")["leafnodes"] == 2)
        a_natsd = sites[0].natsd
        assert a_natsd is not None
        proxy = await LinkProxy(urlsplit(a_natsd.client_url).port or 0).start()
        pawn_a = await Node(
            node_config(pki, root, "pawn", "pawn-a", upstream=proxy.url, upstream_name="site-a"),
            clock=clock,
        ).start()
        started.append(pawn_a)
        b_natsd = sites[1].natsd
        assert b_natsd is not None
        pawn_b = await Node(
            node_config(
                pki, root, "pawn", "pawn-b", upstream=b_natsd.client_url, upstream_name="site-b"
            ),
            clock=clock,
        ).start()
        started.append(pawn_b)
    except BaseException:
        for node in reversed(started):
            await node.stop()
        raise
    return Federation(hq, sites[0], sites[1], pawn_a, pawn_b, proxy, clock)


@pytest.fixture
def start_fed(fed_pki: PkiFiles, tmp_path: Path) -> Callable[[], Awaitable[Federation]]:
    """Start the test federation inside the test's event loop (`Federation.stop` it)."""
    return lambda: start_federation(fed_pki, tmp_path / "fed")


@pytest.fixture
def node_cfg() -> Callable[..., NodeConfig]:
    """`node_config` for a test's own nodes (conftest is not importable)."""
    return node_config


def write_yaml(cfg: NodeConfig, path: Path) -> Path:
    """``cfg`` as the YAML file `maos node` and `maos federation` read."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def as_yaml() -> Callable[[NodeConfig, Path], Path]:
    return write_yaml
