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
    upstreams: {NAME: {command, args, env, secrets, sandbox} | {url, headers}}
    tools: {UPSTREAM: {TOOL: manifest + rules}}

A path that starts with ``./`` or ``../`` (in ``command``, ``args``, ``secrets`` and the
sandbox's ``files`` and ``writable``) is relative to the policy file's directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from maos.kernel.errors import InputError, MaosError
from maos.kernel.textfile import read_yaml
from maos.pod.egress import parse_destination
from maos.pod.isolation.base import ENV_NAME
from maos.pod.upstream import RESERVED_ENV

__all__ = [
    "SCHEMA_PATH",
    "ArgRule",
    "Label",
    "Manifest",
    "OnPending",
    "Policy",
    "RateRule",
    "RuntimeSpec",
    "Sandbox",
    "ToolPolicy",
    "Upstream",
    "load_policy",
    "policy_schema",
]

MAX_POLICY_BYTES = 1024 * 1024
"""A gateway policy is a page or two of YAML; anything this large is not one."""
SCHEMA_PATH = Path(__file__).with_name("gateway.schema.json")

_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
_EFFECTS = Literal["read", "write", "delete", "send", "pay", "credentials", "execute"]
_CONF = Literal["public", "internal", "confidential", "secret"]
_KIND = Literal["recipient", "account", "url", "path", "phone", "name", "channel", "user"]


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


def _relative(value: Any, base: Path | None) -> Any:
    """``./x`` and ``../x`` against the policy's directory; anything else as given."""
    if base is not None and isinstance(value, str) and value.startswith(("./", "../")):
        return str((base / value).resolve())
    return value


class RuntimeSpec(_Strict):
    """The read-only runtime a sandboxed server runs from (`maos.pod.upstream_runtime`):
    built once on first start into the policy's ``runtime_cache``, then reused."""

    python: list[str] = Field(
        default_factory=list, max_length=256, description="pip requirements, e.g. mcp==2.3.0."
    )
    npm: list[str] = Field(
        default_factory=list, max_length=256, description="npm packages name@version."
    )
    node: bool = Field(default=False, description="Also give the pod Debian's node.")


class Sandbox(_Strict):
    """How a stdio server is isolated: a level-2 pod unless the operator says ``none``."""

    level: Literal[2, "none"] = Field(
        default=2,
        description="2: a level-2 pod (namespaces, seccomp, Landlock, uid nobody, no host"
        " files, only the egress below). none: a plain child process with only the policy's"
        " environment - for servers you trust as you trust MAOS itself.",
    )
    runtime: RuntimeSpec | None = None
    files: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Absolute paths the server sees read-only at the same path (its script,"
        " its data). Files are copied in at each start; directories are bound.",
    )
    writable: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Directories the server may write (bound read-write); owned by nobody.",
    )
    egress: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="host:port destinations the server may connect to, through the relay"
        " (HTTPS_PROXY); each connection is logged (mcp.egress). Empty: no network.",
    )

    @model_validator(mode="after")
    def _paths(self) -> Sandbox:
        for path in (*self.files, *self.writable):
            if not path.startswith("/"):
                raise ValueError(f"{path!r}: give an absolute path, or one starting with ./")
        for entry in self.egress:
            try:
                parse_destination(entry)
            except MaosError as exc:
                raise ValueError(f"egress {entry!r}: {exc.message}") from None
        if self.level == "none" and (self.runtime or self.files or self.writable or self.egress):
            raise ValueError("runtime, files, writable and egress are for level 2")
        return self


class Upstream(_Strict):
    """One MCP server: a command the gateway launches (stdio) or a URL (streamable HTTP)."""

    command: str | None = Field(
        default=None,
        min_length=1,
        description="Sandboxed: python/python3 (the runtime's, else /usr/bin/python3), node,"
        " a command of the runtime's bin/, or an absolute path among files.",
    )
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="The server's whole environment beyond a fixed base (PATH, HOME, LANG,"
        " TMPDIR and, with egress, the proxy): nothing is inherited from the gateway.",
    )
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variable -> file holding its value (read at each start)."
        " Never logged; a result or listing that contains the value reaches the client and"
        " the log with the value replaced by [secret NAME].",
    )
    cwd: str | None = Field(default=None, description="Level none only (a pod runs in /work).")
    sandbox: Sandbox = Field(default_factory=Sandbox)
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    protocol: Literal["auto", "legacy"] = Field(
        default="auto",
        description="auto: the 2026-07-28 discovery-based protocol when the server offers it,"
        " else the initialize handshake; legacy: always the handshake.",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Start and list timeout.")
    max_result_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    resources: Label = Field(default_factory=Label, description="Label of resources read.")
    prompts: Label = Field(default_factory=Label, description="Label of prompts fetched.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        base = (info.context or {}).get("base")
        if not isinstance(data, dict) or base is None:
            return data
        data = dict(data)
        data["command"] = _relative(data.get("command"), base)
        if isinstance(data.get("args"), list):
            data["args"] = [_relative(a, base) for a in data["args"]]
        if isinstance(data.get("secrets"), dict):
            data["secrets"] = {k: _relative(v, base) for k, v in data["secrets"].items()}
        sandbox = data.get("sandbox")
        if isinstance(sandbox, dict):
            sandbox = dict(sandbox)
            for key in ("files", "writable"):
                if isinstance(sandbox.get(key), list):
                    sandbox[key] = [_relative(v, base) for v in sandbox[key]]
            data["sandbox"] = sandbox
        return data

    @model_validator(mode="after")
    def _one_transport(self) -> Upstream:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.url is not None and (
            self.args or self.env or self.secrets or self.cwd or "sandbox" in self.model_fields_set
        ):
            raise ValueError("args, env, secrets, cwd and sandbox are for a command, not a url")
        if self.command is not None and self.headers:
            raise ValueError("headers are for a url, not a command")
        if self.cwd is not None and self.sandbox.level != "none":
            raise ValueError("cwd is for level none; a sandboxed server runs in its /work")
        for key in (*self.env, *self.secrets):
            if not ENV_NAME.match(key):
                raise ValueError(f"env name {key!r}: upper-case letters, digits and _ only")
            if key in RESERVED_ENV and self.sandbox.level != "none":
                raise ValueError(f"env name {key!r} is set by the sandbox")
        both = set(self.env) & set(self.secrets)
        if both:
            raise ValueError(f"{sorted(both)[0]!r} is in both env and secrets")
        for path in self.secrets.values():
            if not path.startswith("/"):
                raise ValueError(f"secret file {path!r}: give an absolute path, or ./")
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
    runtime_cache: str | None = Field(
        default=None,
        description="Where sandboxed servers' runtimes are built and kept; uid nobody must"
        " traverse to it [default: /var/cache/maos/mcp-runtime as root, else"
        " ~/.cache/maos/mcp-runtime].",
    )

    @field_validator("runtime_cache", mode="before")
    @classmethod
    def _cache_path(cls, value: Any, info: ValidationInfo) -> Any:
        return _relative(value, (info.context or {}).get("base"))

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
    raw = read_yaml(path, limit=MAX_POLICY_BYTES, what=str(path), code="BAD_INPUT.POLICY")
    if not isinstance(raw, dict):
        raise InputError("BAD_INPUT.POLICY", f"{path}: the top level must be a mapping")
    try:
        # Through JSON so YAML's own types (dates, sets) are refused as JSON would refuse them.
        return Policy.model_validate_json(
            json.dumps(raw, default=str), context={"base": path.resolve().parent}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _where(tuple(err["loc"])) or "(top level)"
        raise InputError(
            "BAD_INPUT.POLICY", f"{path}: {where}: {err['msg']}", field=where
        ) from None
