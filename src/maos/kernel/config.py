"""``<data_dir>/config.json``: one strict reading for every command.

The file's top level is closed: ``node_id``, ``node_type``, ``smtp``, ``wal`` and
``resilience`` are the kernel's and are validated here; ``llm``, ``sse`` and ``security``
must be objects and are validated, on the same reading, by the LLM layer's settings
loader (the kernel may not import the layer that owns them). Anything else - a typo, a
section from another version - is refused, as is a value of the wrong type
(``"node_id": 5`` is not ``"5"``), a key given twice, or a file over `MAX_CONFIG_BYTES`:
a setting that is silently ignored is a setting the Commander believes in and does not
have. Every command reads the file
through `read_config`, so ``maos status`` refuses what ``maos up`` refuses.

Errors are `InputError` with code ``BAD_INPUT.CONFIG`` and the field path
(``smtp.port: ...``), or ``BAD_INPUT.TOO_LARGE`` / ``BAD_INPUT.DUPLICATE_KEY``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from maos.effects.email import valid_address
from maos.kernel import strictjson
from maos.kernel.a2aspec import A2aSection
from maos.kernel.cronspec import CronSection
from maos.kernel.errors import InputError
from maos.kernel.hacfconfig import CommanderSection
from maos.kernel.resilience import ResilienceSettings
from maos.kernel.telemetry import TelemetrySettings
from maos.kernel.tokens import DEFAULT_TTL
from maos.kernel.wal import CHECKPOINT_EVERY
from maos.kernel.walconfig import log_section, log_settings

__all__ = [
    "CONFIG_CODE",
    "CONFIG_FILE",
    "MAX_CONFIG_BYTES",
    "SERVICE_SECTIONS",
    "ConfigFile",
    "KernelConfig",
    "SmtpConfig",
    "config_error",
    "error_sentence",
    "read_config",
    "validation_error",
]

CONFIG_FILE = "config.json"
CONFIG_CODE = "BAD_INPUT.CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024
"""Checked before the file is read: a config is a few hundred bytes."""
SERVICE_SECTIONS = ("llm", "sse", "security")
"""Sections validated above the kernel (by the LLM layer), on the same reading."""
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
DEFAULT_SENDER = "maos@maos.localhost"
"""The sender when ``smtp`` names none: a plain address in the reserved ``.localhost``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Smtp(_Strict):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    sender: str = Field(default=DEFAULT_SENDER, min_length=3, max_length=254)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        # The adapter refuses any other sender when the kernel boots; refusing it here
        # keeps that a config error, before anything is written (issue 9).
        if not valid_address(value):
            raise ValueError("must be one plain address like maos@example.com")
        return value


class _Wal(_Strict):
    witness: str | None = Field(default=None, min_length=1)
    """An append-only anchor file on another path or mount (docs/wal.md)."""
    checkpoint_every: int | None = Field(default=None, ge=1)


class ConfigFile(_Strict):
    """The whole file, validated: the kernel's keys typed, the services' sections as
    the objects the LLM layer validates next."""

    node_id: str = Field(default="local", pattern=_ID)
    node_type: str = "sovereign"
    smtp: _Smtp | None = None
    wal: _Wal | None = None
    resilience: ResilienceSettings | None = None
    llm: dict[str, Any] | None = None
    sse: dict[str, Any] | None = None
    security: dict[str, Any] | None = None
    commander: CommanderSection = CommanderSection()  # HACF levels (maos.kernel.hacfconfig)
    telemetry: TelemetrySettings | None = None
    cron: CronSection | None = None
    a2a: A2aSection | None = None

    @field_validator("node_type")
    @classmethod
    def _node_type(cls, value: str) -> str:
        if value not in DEFAULT_TTL:
            raise ValueError(f"must be one of {', '.join(DEFAULT_TTL)}")
        return value

    def services(self) -> dict[str, Any]:
        """The ``llm``, ``sse`` and ``security`` sections that are present, as written."""
        return {n: getattr(self, n) for n in SERVICE_SECTIONS if n in self.model_fields_set}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str = DEFAULT_SENDER


@dataclass(frozen=True, slots=True)
class KernelConfig:
    data_dir: Path
    """Holds the WAL, the root key and the task workspaces."""
    node_id: str = "local"
    """The audience every token this kernel accepts must name."""
    node_type: str = "sovereign"
    smtp: SmtpConfig | None = None
    clock: Callable[[], float] = time.time
    follow_interval: float = 0.2
    """How often a running kernel picks up decisions other processes logged (CLI approvals)."""
    wal_witness: Path | None = None
    """An append-only copy of the log's anchor on another path or mount (docs/wal.md)."""
    wal_checkpoint_every: int = CHECKPOINT_EVERY
    """Records between two checkpoints: at most about this many are re-hashed at boot."""
    resilience: ResilienceSettings = field(default_factory=ResilienceSettings)
    """Degradation modes and heartbeats (`maos.kernel.resilience`)."""
    telemetry: TelemetrySettings | None = None
    """Traces, metrics' scrape token, JSON logs (`maos.kernel.telemetry`); None: all off."""

    @classmethod
    def load(cls, data_dir: Path, **overrides: Any) -> KernelConfig:
        """Embedded defaults, overridden by ``<data_dir>/config.json`` when present."""
        return replace(cls.of(read_config(data_dir), data_dir), **overrides)

    @classmethod
    def of(cls, config: ConfigFile, data_dir: Path) -> KernelConfig:
        """The kernel's part of a file `read_config` validated."""
        smtp = config.smtp
        wal = {} if config.wal is None else config.wal.model_dump(exclude_unset=True)
        witness, every = log_settings(wal, data_dir, data_dir / CONFIG_FILE)
        return cls(
            data_dir=data_dir,
            node_id=config.node_id,
            node_type=config.node_type,
            smtp=None if smtp is None else SmtpConfig(smtp.host, smtp.port, smtp.sender),
            wal_witness=witness,
            wal_checkpoint_every=every,
            resilience=config.resilience or ResilienceSettings(),
            telemetry=config.telemetry,
        )

    def save(self) -> None:
        """Write the kernel's keys as a fresh ``config.json`` (other sections are not kept)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw: dict[str, Any] = {"node_id": self.node_id, "node_type": self.node_type}
        if self.smtp is not None:
            raw["smtp"] = {
                "host": self.smtp.host,
                "port": self.smtp.port,
                "sender": self.smtp.sender,
            }
        raw.update(log_section(self.wal_witness, self.wal_checkpoint_every))
        if self.telemetry is not None:
            raw["telemetry"] = self.telemetry.model_dump(exclude_unset=True)
        (self.data_dir / CONFIG_FILE).write_text(json.dumps(raw, indent=2) + "\n")

    @property
    def wal_path(self) -> Path:
        return self.data_dir / "wal.sqlite3"

    @property
    def workspaces(self) -> Path:
        return self.data_dir / "workspaces"


def read_config(data_dir: Path) -> ConfigFile:
    """``<data_dir>/config.json`` validated whole (defaults when there is none)."""
    path = data_dir / CONFIG_FILE
    try:
        with path.open("rb") as f:
            strictjson.check_size(os.fstat(f.fileno()).st_size, MAX_CONFIG_BYTES, str(path))
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return ConfigFile()
    except NotADirectoryError:
        raise config_error(str(data_dir), "is not a directory") from None
    except InputError as exc:  # over MAX_CONFIG_BYTES
        raise InputError(exc.code, exc.message, **{**exc.fields, "hint": HINT}) from None
    except OSError as exc:
        raise config_error(str(path), f"cannot be read ({exc.strerror})") from None
    try:
        value = strictjson.loads(raw, limit=MAX_CONFIG_BYTES, what=str(path))
    except InputError as exc:
        if exc.code != strictjson.NOT_JSON:
            raise InputError(exc.code, exc.message, **{**exc.fields, "hint": HINT}) from None
        raise config_error(str(path), exc.message.removeprefix(f"{path} is ")) from None
    if not isinstance(value, dict):
        raise config_error(str(path), "must be a JSON object")
    try:
        return ConfigFile.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


HINT = (
    "fix config.json in the data dir: its keys are node_id, node_type, smtp, wal, "
    "resilience, llm, sse and security (docs/kernel.md, docs/resilience.md)"
)


def config_error(where: str, sentence: str) -> InputError:
    return InputError(CONFIG_CODE, f"{where}: {sentence}", path=where, hint=HINT)


def validation_error(exc: ValidationError, prefix: Sequence[str] = ()) -> InputError:
    """The first of pydantic's errors as one ``BAD_INPUT.CONFIG`` sentence with its path."""
    err = exc.errors()[0]
    return config_error(_path([*prefix, *err["loc"]]) or CONFIG_FILE, error_sentence(err))


_UNION_TAGS = ("openai", "anthropic")
"""pydantic names the union member it tried in the location; the kind is in the file."""


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i and isinstance(loc[i - 1], int) and part in _UNION_TAGS:
            continue
        else:
            out += f".{part}" if out else part
    return out


def error_sentence(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "not a known setting (a typo?)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be an object"
    if kind == "union_tag_invalid":
        return f"kind must be 'openai' or 'anthropic', not {err['ctx']['tag']!r}"
    if kind == "union_tag_not_found":
        return "needs a kind: 'openai' or 'anthropic'"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "string_pattern_mismatch":
        return "must be 1-64 letters, digits, '.', '_', ':' or '-'"
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:]
