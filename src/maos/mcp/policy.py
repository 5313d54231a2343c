"""gateway.yaml: what an MCP gateway puts in front of which upstream servers, and on what terms.

The file is validated strictly (unknown keys, wrong types and out-of-range values are
refused with the path of the offending field) by the pydantic models below; the JSON
schema shipped beside this module (``gateway.schema.json``) is generated from them and a
test keeps the two equal, so editors and CI can check a policy without MAOS installed.

A policy loads once and compiles (`maos.mcp.rules`): the hot path of a call never reads
YAML or walks these models.

    version: 1
    name: reports                  # the task id the gateway's calls run under
    task: "..."                    # the Commander's words: trusted targets and amounts
    effects: [read, send]          # the effect-class ceiling of the task
    default: refuse | park         # an upstream tool the policy does not declare
    on_pending: {mode: wait, timeout_s: 30} | {mode: return}
    upstreams: {NAME: {command, args, env, cwd} | {url, headers}}
    tools: {UPSTREAM: {TOOL: manifest + rules}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from maos.kernel.errors import InputError

__all__ = [
    "SCHEMA_PATH",
    "ArgRule",
    "Label",
    "Manifest",
    "OnPending",
    "Policy",
    "RateRule",
    "ToolPolicy",
    "Upstream",
    "load_policy",
    "policy_schema",
]

SCHEMA_PATH = Path(__file__).with_name("gateway.schema.json")

_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
_EFFECTS = Literal["read", "write", "delete", "send", "pay", "credentials", "execute"]
_CONF = Literal["public", "internal", "confidential", "secret"]
_KIND = Literal["recipient", "account", "url", "path", "phone", "name", "channel", "user"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Label(_Strict):
    """What a result from the upstream is to the kernel (IFC): untrusted unless said."""

    conf: _CONF = "internal"
    integrity: Literal["trusted", "untrusted"] = "untrusted"


class TargetSpec(_Strict):
    kind: _KIND
    optional: bool = False


class AmountSpec(_Strict):
    param: str = Field(min_length=1, max_length=64)
    unit: Literal["cents", "decimal"] = "cents"
    currency_param: str | None = None


class RateRule(_Strict):
    """A token bucket per tool, on top of the kernel's per-agent limit."""

    per_s: float = Field(gt=0, le=10_000)
    burst: int = Field(default=1, ge=1, le=100_000)


class ArgRule(_Strict):
    """An operator's constraint on one argument; a value it cannot judge is refused."""

    under: str | None = Field(default=None, pattern=r"^/")
    """The argument is a path inside this directory (after normalisation; no ``..``)."""
    max: float | None = None
    """The argument is a number (or numeric string) no greater than this."""
    min: float | None = None
    one_of: list[str | int] | None = Field(default=None, min_length=1, max_length=256)
    pattern: str | None = Field(default=None, max_length=512)
    """A regular expression the whole (string) argument must match."""

    @model_validator(mode="after")
    def _something(self) -> ArgRule:
        if all(v is None for v in (self.under, self.max, self.min, self.one_of, self.pattern)):
            raise ValueError("an argument rule needs one of under, max, min, one_of, pattern")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
        return self


class Manifest(_Strict):
    """The contract fields of a tool manifest (issue 8), as the operator declares them."""

    effect: _EFFECTS | list[_EFFECTS] = Field(
        description="Effect class(es): a call needs every one granted to the task."
    )
    targets: dict[str, _KIND | TargetSpec] = Field(
        default_factory=dict,
        description="Target path (param, param[], param.field) -> kind or {kind, optional}.",
    )
    amount: str | AmountSpec | None = Field(
        default=None, description="The parameter holding money (integer cents, or decimal)."
    )
    result_label: Label = Field(default_factory=Label)
    accepts: _CONF = Field(
        default="internal",
        description="The highest confidentiality the tool may be sent (R6); what upstreams"
        " return is internal by default, so a tool that must never see it says public.",
    )
    external: bool = Field(default=True, description="Its targets lie outside this machine.")
    timeout_s: float = Field(default=30.0, gt=0, le=3600)


class ToolPolicy(Manifest):
    """A declared upstream tool: its manifest and the operator's rules for it."""

    rate: RateRule | None = None
    max_calls: int | None = Field(default=None, ge=0, description="Committed calls, ever.")
    args: dict[str, ArgRule] = Field(default_factory=dict)


class Upstream(_Strict):
    """One MCP server: a command the gateway launches (stdio) or a URL (streamable HTTP)."""

    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="The server's whole environment beyond neutral HOME/PATH: nothing is"
        " inherited from the gateway.",
    )
    cwd: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Start and list timeout.")
    max_result_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    resources: Label = Field(default_factory=Label, description="Label of resources read.")
    prompts: Label = Field(default_factory=Label, description="Label of prompts fetched.")

    @model_validator(mode="after")
    def _one_transport(self) -> Upstream:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("args, env and cwd are for a command, not a url")
        if self.command is not None and self.headers:
            raise ValueError("headers are for a url, not a command")
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise ValueError(f"env name {key!r} is not a variable name")
        return self


class OnPending(_Strict):
    """What a call parked for the Commander does: wait for the decision, or return at once."""

    mode: Literal["wait", "return"] = "wait"
    timeout_s: float = Field(default=30.0, ge=0, le=24 * 3600)


class Policy(_Strict):
    """The whole gateway.yaml."""

    version: Literal[1] = 1
    name: str = Field(default="mcp", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    task: str = Field(
        min_length=1,
        max_length=20_000,
        description="The Commander's words for this client: trusted targets and amounts.",
    )
    effects: list[_EFFECTS] = Field(min_length=1, description="The effect-class ceiling.")
    default: Literal["refuse", "park"] = "refuse"
    on_pending: OnPending = Field(default_factory=OnPending)
    upstreams: Annotated[dict[str, Upstream], Field(min_length=1, max_length=64)]
    tools: dict[str, dict[str, ToolPolicy]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> Policy:
        for name in self.upstreams:
            if not re.match(_NAME, name):
                raise ValueError(f"upstream name {name!r}: 1-32 of [a-z0-9_-], a letter first")
        for name in self.tools:
            if name not in self.upstreams:
                raise ValueError(f"tools.{name}: no upstream named {name!r}")
        return self


def policy_schema() -> dict[str, Any]:
    """The JSON schema of gateway.yaml, as shipped in ``gateway.schema.json``."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "MAOS MCP gateway policy (gateway.yaml)"
    return schema


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-", "json-or")))


def load_policy(path: Path) -> Policy:
    """Read and validate ``path``; `InputError` ``BAD_INPUT.POLICY`` names the bad field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("BAD_INPUT.POLICY", f"cannot read {path}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError("BAD_INPUT.POLICY", f"{path} is not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError("BAD_INPUT.POLICY", f"{path}: the top level must be a mapping")
    try:
        # Through JSON so YAML's own types (dates, sets) are refused as JSON would refuse them.
        return Policy.model_validate_json(json.dumps(raw, default=str))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _where(tuple(err["loc"])) or "(top level)"
        raise InputError(
            "BAD_INPUT.POLICY", f"{path}: {where}: {err['msg']}", field=where
        ) from None
