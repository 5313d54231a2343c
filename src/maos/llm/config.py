"""Which model providers a kernel uses, and which semantic evaluators, from its config file.

``<data_dir>/config.json`` holds, beside the kernel's own keys (`maos.kernel.config`, which
reads the file once for both and refuses any other top-level key)::

    {"llm": {"providers": [
         {"kind": "openai", "name": "ollama", "base_url": "http://127.0.0.1:11434/v1",
          "model": "llama3.1", "api_key_env": "OPENAI_API_KEY", "timeout_s": 60, "retries": 2},
         {"kind": "anthropic", "model": "claude-sonnet-4-5", "api_key_env": "ANTHROPIC_API_KEY"}],
      "probe_interval_s": 30},
     "sse": {"heuristic": false, "llm_judge": false, "embedding": false}}

Validation is strict (no coercion, unknown keys refused): a typo is a ``BAD_INPUT.CONFIG``
error naming the field path at startup, not a provider silently missing during an outage.

Keys never live in the file, only the name of the environment variable holding one, so the
file can be shared and the log's ``llm.configured`` record holds nothing secret. An
anthropic provider whose variable is unset is an error; an openai-compatible one then
runs keyless (local servers need no key). ``MAOS_LLM_BASE_URL`` + ``MAOS_LLM_MODEL``
(+ ``MAOS_LLM_API_KEY_ENV``) add one openai-compatible provider named ``env`` after the
file's, to try a server without editing JSON.

The SSE section is only validated here: ``maos.llm`` may not import ``maos.services``, so
the layer owning both (the CLI) builds the evaluators, with `ConfiguredLlm.ask` as the
judge's ``ask``.

A kernel serving the chain logs ``llm.configured`` (what, never a key) and ``llm.mode`` on
each Rule-Based Mode flip; `llm_status` folds them back for ``maos status``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maos.effects.email import valid_address
from maos.kernel.config import ConfigFile, error_sentence, read_config
from maos.kernel.config import config_error as _invalid
from maos.kernel.config import validation_error as _first_error
from maos.kernel.kernel import Kernel
from maos.kernel.stages import DEFAULT_WEIGHTS, CascadePolicy
from maos.kernel.wal import Wal, WalRecord
from maos.llm.adapter import LlmAdapter
from maos.llm.chain import FallbackChain
from maos.llm.health import Mode, ProviderHealth
from maos.llm.types import ChatRequest, Message, Provider

__all__ = [
    "CONFIGURED",
    "ENV_API_KEY_ENV",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "ENV_PROVIDER",
    "MODE",
    "AnthropicProviderConfig",
    "ConfiguredLlm",
    "LlmSettings",
    "OpenAIProviderConfig",
    "ProviderConfig",
    "SecuritySettings",
    "Settings",
    "SseSettings",
    "build_llm",
    "llm_status",
    "load_llm",
    "load_settings",
]

CONFIGURED = "llm.configured"
"""Logged once a kernel serves ``llm.*``: providers (name, kind, model, base_url), probe."""
MODE = "llm.mode"
"""Logged on each Rule-Based Mode flip: mode, last_provider, last_error, outages."""
JUDGED = "llm.judged"
"""Logged for each answer the SSE judge got: provider, model, tokens, characters sent.
The judge's completions are the kernel's own calls, not an agent's effect, so no task is
charged for them; the record makes what went to which provider visible all the same."""

ENV_BASE_URL = "MAOS_LLM_BASE_URL"
ENV_MODEL = "MAOS_LLM_MODEL"
ENV_API_KEY_ENV = "MAOS_LLM_API_KEY_ENV"
ENV_PROVIDER = "env"
"""The name of the provider the environment adds."""

JUDGE_MAX_TOKENS = 64
"""The judge answers one ``ALLOW: ...``/``DENY: ...`` line."""

_MODE_KEYS = ("mode", "last_provider", "last_error", "outages")
_CASCADE = CascadePolicy()
"""The cascade's defaults, written once in Ring 0 for the Security Agent and this file."""
"""What an ``llm.mode`` record holds: `ProviderHealth.to_dict` without its monotonic times."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_FIELDS = {"base_url": ENV_BASE_URL, "model": ENV_MODEL, "api_key_env": ENV_API_KEY_ENV}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Provider(_Section):
    name: str
    """How the chain, the log and ``maos status`` call this provider; unique."""
    base_url: str | None = None
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    """The environment variable holding the key (never the key)."""
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    """The SDK's own retries before the chain moves on."""

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_the_file(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "api_key" in data:
            raise ValueError(
                "a key never goes in config.json: put it in an environment variable and "
                "name that variable in api_key_env"
            )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError("a name is 1-64 letters, digits, '.', '_' or '-'")
        return name

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(
                "no credentials, query or fragment: the URL is logged; name the key's "
                "variable in api_key_env"
            )
        return url

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_VAR.fullmatch(name):
            # The value is not echoed: someone may have pasted the key itself here.
            raise ValueError("must name an environment variable (letters, digits, '_')")
        return name


class OpenAIProviderConfig(_Provider):
    """Any server speaking OpenAI chat completions; keyless when the variable is unset."""

    kind: Literal["openai"]
    name: str = "openai"
    base_url: str


class AnthropicProviderConfig(_Provider):
    """Anthropic's Messages API; its key's variable must be set."""

    kind: Literal["anthropic"]
    name: str = "anthropic"
    api_key_env: str


ProviderConfig = Annotated[
    OpenAIProviderConfig | AnthropicProviderConfig, Field(discriminator="kind")
]


class LlmSettings(_Section):
    """The ``llm`` section: providers in order of preference."""

    providers: tuple[ProviderConfig, ...] = ()
    probe_interval_s: float = Field(default=30.0, ge=0)
    """How long Rule-Based Mode refuses without network before a completion probes."""

    @field_validator("providers")
    @classmethod
    def _unique_names(cls, providers: tuple[ProviderConfig, ...]) -> tuple[ProviderConfig, ...]:
        seen: set[str] = set()
        for p in providers:
            if p.name in seen:
                raise ValueError(f"two providers are named {p.name!r}: give each its own name")
            seen.add(p.name)
        return providers

    def record(self) -> dict[str, Any]:
        """The ``llm.configured`` body: what was configured, never a key nor its variable."""
        return {
            "providers": [
                {"name": p.name, "kind": p.kind, "model": p.model, "base_url": p.base_url}
                for p in self.providers
            ],
            "probe_interval_s": self.probe_interval_s,
        }


class SseSettings(_Section):
    """The ``sse`` section: which evaluators run after the DSC (all off: no SSE step)."""

    heuristic: bool = False
    llm_judge: bool = False
    """Needs a provider: the judge asks the same chain, in the same Rule-Based Mode."""
    embedding: bool = False
    """Needs the ``embed`` extra."""


class DangerWeights(_Section):
    """What one danger signal adds to an agent's score (`maos.services.danger`). The
    stage thresholds below are in the same unit: a weight of 3 is "one of these and the
    agent is watched", 6 "one of these and it is soft-isolated"."""

    sentry_anomaly: float = Field(default=DEFAULT_WEIGHTS["sentry_anomaly"], ge=0)
    """The Sentry's behavioural fingerprint crossed its threshold: unusual, not proof."""
    prefilter: float = Field(default=DEFAULT_WEIGHTS["prefilter"], ge=0)
    """DSC check 7 found injection text in the intent: the agent repeats an attack."""
    rule_violation: float = Field(default=DEFAULT_WEIGHTS["rule_violation"], ge=0)
    """R4 (tampering with MAOS), R6 (a down-flow), R10 (an untrusted target): the kinds of
    deny a hijacked agent earns, rarely an honest one."""
    capability: float = Field(default=DEFAULT_WEIGHTS["capability"], ge=0)
    """Outside its token: often a plan too narrow, so light."""
    rate: float = Field(default=DEFAULT_WEIGHTS["rate"], ge=0)
    """A rate limit: pressure on the kernel, mostly a bug."""
    isolated_attempt: float = Field(default=DEFAULT_WEIGHTS["isolated_attempt"], ge=0)
    """An outbound effect tried while isolated: it keeps pushing where it was told not to."""
    sse_deny: float = Field(default=DEFAULT_WEIGHTS["sse_deny"], ge=0)
    """The Semantic Security Evaluator refused an effect the DSC allowed."""
    aggregate: float = Field(default=DEFAULT_WEIGHTS["aggregate"], ge=0)
    """An aggregate figure refused before the effect: exfiltration by volume; the default
    reaches soft isolation at once, as the seed's aggregate monitoring does."""
    pod_violation: float = Field(default=DEFAULT_WEIGHTS["pod_violation"], ge=0)
    """A certain violation (Fast Apoptosis): the pod was already killed and restarted."""
    memory_match: float = Field(default=DEFAULT_WEIGHTS["memory_match"], ge=0)
    """The intent matched a threat the immune memory deflected before."""


class SecuritySettings(_Section):
    """The ``security`` section: the Security Agent's aggregate thresholds, per agent
    (the seed's defaults; it advises 3x the 95th percentile of a month of monitoring),
    and its quarantine cascade."""

    outbound_bytes_per_day: int = Field(default=100 * 1024 * 1024, gt=0)
    external_destinations_per_week: int = Field(default=50, gt=0)
    external_api_calls_per_day: int = Field(default=500, gt=0)
    bytes_to_one_agent_per_day: int = Field(default=50 * 1024 * 1024, gt=0)
    declassifications_per_day: int = Field(default=10, gt=0)
    """System-wide: only the Commander declassifies, so a breach is an alert, no more."""
    monitor_only: bool = False
    """Calibration (seed: the first 30 days): aggregate figures past a limit are logged as
    would-be breaches; nothing is refused and no agent is isolated for them."""
    weights: DangerWeights = DangerWeights()
    observe_at: float = Field(default=_CASCADE.observe_at, gt=0)
    """Score at which an agent enters Observation: one serious signal, or a few light ones."""
    soft_at: float = Field(default=_CASCADE.soft_at, gt=0)
    """Score at which it is soft-isolated: two serious signals close together."""
    hard_at: float = Field(default=_CASCADE.hard_at, gt=0)
    """Score at which it is frozen (hard isolation): it kept misbehaving once isolated."""
    half_life_minutes: float = Field(default=_CASCADE.half_life_s / 60, gt=0)
    """A signal's weight halves in this time: a burst counts, one old slip fades."""
    observation_minutes: float = Field(default=_CASCADE.observation_s / 60, gt=0)
    """The seed's observation window; a window with no signal steps an agent down one
    stage (observation to normal, soft isolation to observation)."""

    notify_mail: str | None = None
    """Where the Commander is mailed (through the kernel's SMTP adapter) when an agent
    reaches soft isolation or beyond; needs the ``smtp`` section."""
    notify_webhook: str | None = None
    """An http(s) URL that gets a JSON POST (through the kernel's HTTP adapter) then."""

    @field_validator("notify_mail")
    @classmethod
    def _mail(cls, value: str | None) -> str | None:
        if value is not None and not valid_address(value):
            raise ValueError("must be one mail address (user@host)")
        return value

    @field_validator("notify_webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not (
            value.startswith(("http://", "https://")) and urlsplit(value).hostname
        ):
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SecuritySettings:
        if not self.observe_at < self.soft_at < self.hard_at:
            raise ValueError("observe_at < soft_at < hard_at is required")
        return self


class Settings(BaseModel):
    """The sections of ``config.json`` this module owns, with the environment's provider."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    llm: LlmSettings = LlmSettings()
    sse: SseSettings = SseSettings()
    security: SecuritySettings = SecuritySettings()


def _env_provider(environ: Mapping[str, str]) -> OpenAIProviderConfig | None:
    base_url, model, key_env = (environ.get(v) or None for v in _ENV_FIELDS.values())
    if base_url is None and model is None and key_env is None:
        return None
    if base_url is None or model is None:
        raise _invalid(
            ENV_BASE_URL if base_url is None else ENV_MODEL,
            f"not set: {ENV_BASE_URL} and {ENV_MODEL} add a provider together",
        )
    raw = {"kind": "openai", "name": ENV_PROVIDER, "base_url": base_url, "model": model}
    try:
        return OpenAIProviderConfig.model_validate(raw | {"api_key_env": key_env})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise _invalid(_ENV_FIELDS[str(err["loc"][0])], error_sentence(err)) from None


def load_settings(
    data_dir: Path, environ: Mapping[str, str] = os.environ, *, config: ConfigFile | None = None
) -> Settings:
    """The ``llm``, ``sse`` and ``security`` sections, validated on the one reading of
    ``config.json`` (`read_config`, which checks the rest; pass ``config`` when it is
    already read); `InputError` ``BAD_INPUT.CONFIG`` else."""
    config = read_config(data_dir) if config is None else config
    try:
        settings = Settings.model_validate_json(orjson.dumps(config.services()))
    except ValidationError as exc:
        raise _first_error(exc) from None
    env = _env_provider(environ)
    if env is not None:
        try:
            llm = LlmSettings(
                providers=(*settings.llm.providers, env),
                probe_interval_s=settings.llm.probe_interval_s,
            )
        except ValidationError as exc:
            raise _first_error(exc, ("llm",)) from None
        settings = settings.model_copy(update={"llm": llm})
    if settings.sse.llm_judge and not settings.llm.providers:
        raise _invalid(
            "sse.llm_judge", f"the judge needs a provider in llm.providers (or {ENV_BASE_URL})"
        )
    return settings


class ConfiguredLlm:
    """The configured chain as a kernel runs it: served as ``llm.*``, asked by the SSE
    judge, and its Rule-Based Mode flips written to the kernel's log.

    Built before the kernel boots (the judge must be passed to `Kernel.boot`), attached
    after. Close it before the kernel: the flips still being logged need the log open.
    """

    def __init__(self, settings: LlmSettings, adapter: LlmAdapter) -> None:
        self.settings = settings
        self.adapter = adapter
        self._wal: Wal | None = None
        self._waiting: list[tuple[str, dict[str, Any]]] = []
        """Records made before `attach` (the judge may be asked while the kernel boots)."""
        self._logging: set[asyncio.Task[WalRecord]] = set()

    @property
    def health(self) -> ProviderHealth:
        return self.adapter.health

    async def ask(self, system: str, user: str) -> str:
        """One short completion: the SSE judge's ``ask``. Raises `LlmError` (fail closed)."""
        request = ChatRequest(
            (Message("system", system), Message("user", user)), max_tokens=JUDGE_MAX_TOKENS
        )
        completion = await self.adapter.chain.complete(request)
        body = {
            "provider": completion.provider,
            "model": completion.model,
            **completion.usage.to_dict(),
            "chars_sent": len(system) + len(user),
        }
        self._log(JUDGED, body)
        return completion.message.content or ""

    async def attach(self, kernel: Kernel) -> None:
        """Serve ``llm.*`` on ``kernel``; log ``llm.configured``, then every mode flip."""
        if kernel.commit.adapter("llm") is not self.adapter:  # not passed to Kernel.boot
            kernel.add_adapter("llm", self.adapter)
        await kernel.wal.append(CONFIGURED, self.settings.record())
        self._wal = kernel.wal
        waiting, self._waiting = self._waiting, []
        for kind, body in waiting:
            self._log(kind, body)

        def log_mode(state: Mapping[str, Any]) -> None:
            self._log(MODE, {k: state[k] for k in _MODE_KEYS})

        self.health.on_change = log_mode
        if self.health.mode is Mode.RULE_BASED:  # the judge met the outage during boot
            log_mode(self.health.to_dict())

    def _log(self, kind: str, body: dict[str, Any]) -> None:
        """Called inside a completion: schedule the append, never wait for it."""
        if self._wal is None:
            self._waiting.append((kind, body))
            return
        task = asyncio.get_running_loop().create_task(self._wal.append(kind, body))
        self._logging.add(task)
        task.add_done_callback(self._logging.discard)

    async def aclose(self) -> None:
        """Finish logging mode flips, then close the providers' HTTP clients."""
        self.health.on_change = None
        try:
            await asyncio.gather(*self._logging)
        finally:
            await self.adapter.aclose()


def _provider(p: ProviderConfig, key: str | None) -> Provider:
    # Imported here: only a process that builds a provider pays for its SDK (seconds).
    if isinstance(p, OpenAIProviderConfig):
        from maos.llm.openai_compat import OpenAICompatible

        return OpenAICompatible(
            p.base_url, key, p.model, timeout=p.timeout_s, retries=p.retries, name=p.name
        )
    from maos.llm.anthropic_messages import Anthropic

    return Anthropic(p.base_url, key, p.model, timeout=p.timeout_s, retries=p.retries, name=p.name)


def build_llm(
    settings: LlmSettings, environ: Mapping[str, str] = os.environ
) -> ConfiguredLlm | None:
    """The chain the settings describe, keys read from ``environ``; None without providers."""
    if not settings.providers:
        return None
    keys: list[str | None] = []
    for i, p in enumerate(settings.providers):  # every key first: no client is left open
        key = (environ.get(p.api_key_env) or None) if p.api_key_env else None
        if key is None and isinstance(p, AnthropicProviderConfig):
            raise _invalid(
                f"llm.providers[{i}].api_key_env",
                f"{p.api_key_env} is not set; export the Anthropic key in it",
            )
        keys.append(key)
    chain = FallbackChain(
        [_provider(p, key) for p, key in zip(settings.providers, keys, strict=True)],
        health=ProviderHealth(probe_interval=settings.probe_interval_s),
    )
    return ConfiguredLlm(settings, LlmAdapter(chain))


def load_llm(data_dir: Path, environ: Mapping[str, str] = os.environ) -> ConfiguredLlm | None:
    """`build_llm` over `load_settings`; attach it with ``await llm.attach(kernel)``."""
    return build_llm(load_settings(data_dir, environ).llm, environ)


def llm_status(wal: Wal) -> dict[str, Any]:
    """The LLM of the kernel that booted last, as the log tells it (``maos status``).

    Stable keys: ``configured``, ``mode`` (``normal`` | ``rule_based`` |
    ``not_configured``), ``since`` (log time the mode began), ``providers``,
    ``probe_interval_s``, ``last_provider``, ``last_error``, ``outages``.
    """
    unconfigured: dict[str, Any] = {
        "configured": False,
        "mode": "not_configured",
        "since": None,
        "providers": [],
        "probe_interval_s": None,
        "last_provider": None,
        "last_error": None,
        "outages": 0,
    }
    status = dict(unconfigured)
    for rec in wal.read(kinds=("kernel.boot", CONFIGURED, MODE)):
        if rec.kind == "kernel.boot":  # a kernel that attaches a chain logs it next
            status = {**unconfigured, "since": rec.ts}
        elif rec.kind == CONFIGURED:
            status = {
                **unconfigured,
                "configured": True,
                "mode": Mode.NORMAL.value,
                "since": rec.ts,
                "providers": [dict(p) for p in rec.body["providers"]],
                "probe_interval_s": rec.body["probe_interval_s"],
            }
        elif status["configured"]:
            status.update({k: rec.body[k] for k in _MODE_KEYS})
            status["since"] = rec.ts
    return status
