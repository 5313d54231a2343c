"""A node's YAML configuration (`maos node sovereign|sentinel|pawn --config X.yaml`).

Strict like ``config.json``: an unknown key, a value of the wrong type or a role's missing
link is refused before anything starts (``FED.BAD_CONFIG``), because a node that guessed
would join the wrong federation or none. Relative paths are relative to the file, so a
deployment directory can move as a whole.

The partition thresholds are the seed's (5 / 15 / 60 minutes); a deployment may shorten
them, never reorder them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from maos.federation.errors import FederationError
from maos.federation.pki import NodeTls
from maos.kernel.config import error_sentence
from maos.kernel.errors import InputError
from maos.kernel.textfile import read_yaml

__all__ = ["NodeConfig", "load_node_config"]

MAX_CONFIG_BYTES = 1024 * 1024
"""A node's settings are a page of YAML; anything this large is not one."""
_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Certs(_Strict):
    ca: Path
    """The federation's CA bundle: the only issuer a peer's certificate may come from."""
    cert: Path
    key: Path


class _Nats(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=-1, ge=-1, le=65535)
    """The client port (-1: the server picks)."""
    leaf_port: int = Field(default=-1, ge=-1, le=65535)
    """The leaf-node port a Sovereign listens on (-1: the server picks)."""


class _Partition(_Strict):
    """Seconds without the upstream before each restriction (a Pawn; issue 11 item 5)."""

    degraded_1_after: float = Field(default=300.0, gt=0)
    degraded_2_after: float = Field(default=900.0, gt=0)
    mss_after: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> _Partition:
        if not self.degraded_1_after < self.degraded_2_after < self.mss_after:
            raise ValueError("the thresholds must rise: degraded_1 < degraded_2 < mss")
        return self


class NodeConfig(_Strict):
    """One node: its role and name, where it keeps its kernel, its certificate, its link."""

    role: Literal["sovereign", "sentinel", "pawn"]
    name: str = Field(pattern=_NAME)
    """The node's name: its certificate's, its kernel's node id, its JetStream domain."""
    data_dir: Path
    certs: _Certs
    nats: _Nats = _Nats()
    upstream: str | None = None
    """A Sentinel: the Sovereign's leaf URL (``tls://host:7422``); a Pawn: its Sentinel's
    client URL (``tls://host:4222``). A Sovereign has none."""
    upstream_name: str | None = Field(default=None, pattern=_NAME)
    """The upstream node's name (a Sentinel: the Sovereign's, its hub domain)."""
    policy: str = Field(default="default", pattern=r"^[-A-Za-z0-9][-_A-Za-z0-9]{0,63}$")
    """The policy (a key of the federation's policy bucket) this node enforces."""
    tick: float = Field(default=1.0, gt=0, le=60)
    """Seconds between two rounds of heartbeat, policy, revocations and audit."""
    heartbeat_timeout: float = Field(default=2.0, gt=0, le=60)
    partition: _Partition = _Partition()

    @model_validator(mode="after")
    def _links(self) -> NodeConfig:
        if self.role == "sovereign" and (self.upstream or self.upstream_name):
            raise ValueError("a sovereign has no upstream")
        if self.role != "sovereign" and not (self.upstream and self.upstream_name):
            raise ValueError(f"a {self.role} needs upstream (a URL) and upstream_name")
        if self.upstream is not None and not self.upstream.startswith("tls://"):
            raise ValueError("upstream must be a tls:// URL: every link is mTLS")
        return self

    @property
    def tls(self) -> NodeTls:
        return NodeTls(cert=self.certs.cert, key=self.certs.key, ca=self.certs.ca)


def _rebase(raw: dict[str, object], base: Path) -> dict[str, object]:
    """Paths in the file are relative to it (and become `Path`s, which strict mode wants)."""
    out = dict(raw)
    if isinstance(out.get("data_dir"), str):
        out["data_dir"] = base / str(out["data_dir"])
    certs = out.get("certs")
    if isinstance(certs, dict):
        out["certs"] = {k: base / v if isinstance(v, str) else v for k, v in certs.items()}
    return out


def load_node_config(path: Path, *, role: str | None = None) -> NodeConfig:
    """Read and validate ``path``; ``role``: the command that reads it (``maos node pawn``
    refuses a sovereign's file rather than starting the wrong node)."""
    try:
        raw = read_yaml(path, limit=MAX_CONFIG_BYTES, what=str(path), code="FED.BAD_CONFIG")
    except InputError as exc:
        raise FederationError("FED.BAD_CONFIG", f"{exc.message}.", path=str(path)) from None
    if not isinstance(raw, dict):
        raise FederationError(
            "FED.BAD_CONFIG", f"{path} must be a mapping of settings (see examples/federation/)."
        )
    data = _rebase(raw, path.resolve().parent)
    try:
        config = NodeConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise FederationError(
            "FED.BAD_CONFIG",
            f"{path}: {where}: {error_sentence(first)}; fix it (examples/federation/ has one "
            "file per role).",
            path=str(path),
        ) from None
    if role is not None and config.role != role:
        raise FederationError(
            "FED.WRONG_ROLE",
            f"{path} configures a {config.role}, not a {role}; run `maos node {config.role}`.",
        )
    return config
