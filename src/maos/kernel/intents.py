"""The Input Sanitizer: the one place an agent's frame becomes an `Intent`.

Everything past this module may assume an intent is well formed, so this module is
deliberately small, hand-written and total: for *any* input it returns an `Intent` or
raises `InputError` with a stable ``BAD_INPUT.*`` code and a sentence naming the field.
Hand-written rather than a schema library so every refusal has its own code and the
whole sanitizer stays auditable (seed §15.7, layer 5).

Three fields are never taken from the frame: the agent id comes from the authenticated
channel and the intent id from the kernel (a frame may repeat them, as logged frames do,
but must then agree), and ``content`` (what the injection pre-filter reads) is derived
here from every string and key in ``params``, so nothing can hide from the filter.

Codes: ``BAD_INPUT.`` + ``JSON``, ``NOT_AN_OBJECT``, ``MISSING_FIELD``, ``UNKNOWN_FIELD``,
``TYPE``, ``TOO_LARGE``, ``TOO_DEEP``, ``RANGE``, ``BAD_ID``, ``BAD_OP``, ``BAD_KEY``,
``BAD_CHAR``, ``EMPTY``, ``AGENT_MISMATCH``, ``INTENT_MISMATCH``, and ``INVALID`` (a
defect of this module, never expected: it exists so not even a bug lets a foreign
exception out).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NoReturn

import orjson

from maos.kernel import strictjson
from maos.kernel.errors import InputError
from maos.kernel.manifest import MAX_TARGETS, TARGET_KINDS
from maos.kernel.types import Cost, Intent

__all__ = ["MAX_FRAME_BYTES", "MAX_PARAMS_BYTES", "intent_to_wire", "parse_intent", "thaw"]

MAX_FRAME_BYTES = 256 * 1024
"""A whole encoded frame; bigger frames are refused before decoding."""
MAX_PARAMS_BYTES = 64 * 1024
"""``params`` encoded as JSON."""
MAX_PARAMS_DEPTH = 8
"""``params`` itself is depth 1."""
MAX_EXTRA_TARGETS = MAX_TARGETS - 1
MAX_COST = 10**12
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_CAPS = {"task_id": 128, "op": 64, "target": 2048, "idempotency_key": 128, "token": 16384}
_MAX_KEY = 256

_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_OP = re.compile(r"[a-z][a-z0-9]*\.[a-z_]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]*")
_REQUIRED = ("task_id", "op", "target", "idempotency_key", "token")
_OPTIONAL = (
    "agent_id",
    "intent_id",
    "params",
    "cost",
    "expected_version",
    "extra_targets",
    "target_kinds",
)
_KINDS = frozenset({*TARGET_KINDS, "none"})
_FIELDS = frozenset(_REQUIRED + _OPTIONAL)
_COST_FIELDS = ("tokens", "api_calls", "money_cents")


def _fail(code: str, message: str, field: str) -> NoReturn:
    raise InputError(f"BAD_INPUT.{code}", message, field=field)


def parse_intent(raw: object, *, agent_id: str, intent_id: str) -> Intent:
    """Validate one frame (a decoded JSON object, or its bytes/str encoding) into an Intent."""
    try:
        return _parse(raw, agent_id, intent_id)
    except InputError as exc:
        fields = {**exc.fields, "agent_id": agent_id, "intent_id": intent_id}
        raise InputError(exc.code, exc.message, **fields) from None
    except Exception as exc:  # a foreign exception must never cross the sanitizer
        raise InputError(
            "BAD_INPUT.INVALID",
            f"the intent could not be validated ({type(exc).__name__})",
            agent_id=agent_id,
            intent_id=intent_id,
        ) from exc


def _parse(raw: object, agent_id: str, intent_id: str) -> Intent:
    frame = _decode(raw)
    for name in frame:
        if type(name) is not str or name not in _FIELDS:
            _fail("UNKNOWN_FIELD", f"field {_show(name)} is not part of an intent", "frame")
    for name in _REQUIRED:
        if name not in frame:
            _fail("MISSING_FIELD", f"required field {name!r} is missing", name)
    if "agent_id" in frame and not _same(frame["agent_id"], agent_id):
        _fail("AGENT_MISMATCH", "agent_id differs from the authenticated agent", "agent_id")
    if "intent_id" in frame and not _same(frame["intent_id"], intent_id):
        _fail("INTENT_MISMATCH", "intent_id differs from the one the kernel assigned", "intent_id")
    task_id = _ident(frame["task_id"], "task_id")
    key = _ident(frame["idempotency_key"], "idempotency_key")
    op = _text(frame["op"], "op")
    if _OP.fullmatch(op) is None:
        _fail(
            "BAD_OP", "op must look like 'adapter.verb' (lower-case letters and digits, '_')", "op"
        )
    target = _text(frame["target"], "target")
    token = _text(frame["token"], "token")
    if _TOKEN.fullmatch(token) is None:
        _fail("BAD_CHAR", "token contains a character outside base64", "token")
    content: list[str] = []
    params, size = _params(frame.get("params", {}), content)
    extra = _extra_targets(frame.get("extra_targets", []))
    return Intent(
        intent_id=intent_id,
        agent_id=agent_id,
        task_id=task_id,
        op=op,
        target=target,
        idempotency_key=key,
        token=token,
        params=params,
        params_bytes=size,
        content="\n".join(content),
        cost=_cost(frame.get("cost", {})),
        expected_version=_version(frame.get("expected_version")),
        extra_targets=extra,
        target_kinds=_target_kinds(frame.get("target_kinds", []), 1 + len(extra)),
    )


def _show(name: object) -> str:
    """A field name for an error sentence: quoted, escaped and short (it is agent text)."""
    return repr(name[:64]) if type(name) is str else "with a non-string name"


def _same(claimed: object, agent_id: str) -> bool:
    return type(claimed) is str and claimed == agent_id


def _decode(raw: object) -> dict[Any, Any]:
    if isinstance(raw, (bytes, bytearray, memoryview, str)):
        if len(raw) > MAX_FRAME_BYTES:
            _fail("TOO_LARGE", f"frame is larger than {MAX_FRAME_BYTES} bytes", "frame")
        try:
            text = raw if isinstance(raw, str) else bytes(raw)
            raw = strictjson.loads(text, limit=MAX_FRAME_BYTES, what="frame")
        except InputError as exc:
            if exc.code == strictjson.DUPLICATE_KEY:
                raise InputError(exc.code, exc.message, field="frame") from None
            _fail("JSON", "frame is not valid UTF-8 JSON", "frame")
    if type(raw) is not dict:
        _fail("NOT_AN_OBJECT", "an intent must be a JSON object", "frame")
    return raw


def _text(value: object, field: str) -> str:
    """A short single-line field: printable, so no control, format or bidi characters."""
    if type(value) is not str:
        _fail("TYPE", f"{field} must be a string", field)
    if len(value) > _CAPS.get(field, 2048):
        _fail("TOO_LARGE", f"{field} is longer than {_CAPS.get(field, 2048)} characters", field)
    if not value.isprintable():
        _fail("BAD_CHAR", f"{field} contains a control or invisible character", field)
    return value


def _ident(value: object, field: str) -> str:
    text = _text(value, field)
    if _ID.fullmatch(text) is None:
        _fail("BAD_ID", f"{field} must be 1-128 characters of [A-Za-z0-9._:-]", field)
    return text


def _bounded_int(value: object, field: str, low: int, high: int) -> int:
    if type(value) is not int:  # bool is not an int here
        _fail("TYPE", f"{field} must be an integer", field)
    if not low <= value <= high:
        _fail("RANGE", f"{field} must be between {low} and {high}", field)
    return value


def _cost(value: object) -> Cost:
    if type(value) is not dict:
        _fail("NOT_AN_OBJECT", "cost must be a JSON object", "cost")
    for name in value:
        if name not in _COST_FIELDS:
            _fail("UNKNOWN_FIELD", f"cost has no field {_show(name)}", "cost")
    amounts = [_bounded_int(value.get(n, 0), f"cost.{n}", 0, MAX_COST) for n in _COST_FIELDS]
    return Cost(*amounts)


def _version(value: object) -> int | None:
    return None if value is None else _bounded_int(value, "expected_version", 0, _INT_MAX)


def _extra_targets(value: object) -> tuple[str, ...]:
    if type(value) is not list:
        _fail("TYPE", "extra_targets must be a list of strings", "extra_targets")
    if len(value) > MAX_EXTRA_TARGETS:
        _fail("TOO_LARGE", f"extra_targets holds more than {MAX_EXTRA_TARGETS}", "extra_targets")
    targets = tuple(_text(t, "extra_targets") for t in value)
    if "" in targets:
        _fail("EMPTY", "an extra target must not be empty", "extra_targets")
    return targets


def _target_kinds(value: object, targets: int) -> tuple[str, ...]:
    if type(value) is not list:
        _fail("TYPE", "target_kinds must be a list of strings", "target_kinds")
    if value and len(value) != targets:
        _fail("RANGE", "target_kinds names one kind per target, or none", "target_kinds")
    for kind in value:
        if type(kind) is not str or kind not in _KINDS:
            _fail("BAD_CHAR", f"a target kind is one of {sorted(_KINDS)}", "target_kinds")
    return tuple(value)


def _params(value: object, content: list[str]) -> tuple[Mapping[str, Any], int]:
    """The frozen params and their encoded size (what aggregate monitoring counts)."""
    if type(value) is not dict:
        _fail("NOT_AN_OBJECT", "params must be a JSON object", "params")
    budget = [MAX_PARAMS_BYTES]
    frozen: Mapping[str, Any] = _freeze(value, 1, budget, content)
    size = len(orjson.dumps(value))
    if size > MAX_PARAMS_BYTES:  # exact size; the budget is a bound
        _fail("TOO_LARGE", f"params encode to more than {MAX_PARAMS_BYTES} bytes", "params")
    return frozen, size


def _freeze(value: object, depth: int, budget: list[int], content: list[str]) -> Any:
    """Copy a JSON value into read-only containers, collecting its text for the pre-filter.

    ``budget`` counts down the encoded size so a huge value is refused as soon as it is
    known to be too big, before it is walked or encoded whole. Exact type checks: a
    subclass of dict or str could run code while being read.
    """
    if type(value) is str:
        _spend(budget, len(value) + 2)
        _check_string(value)
        content.append(value)
        return value
    if type(value) is int:
        return _bounded_int(value, "params", _INT_MIN, _INT_MAX)
    if type(value) is float:
        if not math.isfinite(value):
            _fail("TYPE", "params holds a non-finite number (not JSON)", "params")
        return value
    if value is None or type(value) is bool:
        return value
    if type(value) is not dict and type(value) is not list:
        _fail("TYPE", f"params holds a {type(value).__name__}, not a JSON value", "params")
    if depth > MAX_PARAMS_DEPTH:
        _fail("TOO_DEEP", f"params nest deeper than {MAX_PARAMS_DEPTH} levels", "params")
    _spend(budget, 2)
    if isinstance(value, list):  # exactly a list or a dict by now
        return tuple(_freeze(v, depth + 1, budget, content) for v in value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str or not key or len(key) > _MAX_KEY or not key.isprintable():
            _fail("BAD_KEY", "params keys must be 1-256 printable characters", "params")
        _spend(budget, len(key) + 4)
        content.append(key)
        out[key] = _freeze(item, depth + 1, budget, content)
    return MappingProxyType(out)


def _spend(budget: list[int], amount: int) -> None:
    budget[0] -= amount
    if budget[0] < 0:
        _fail("TOO_LARGE", f"params encode to more than {MAX_PARAMS_BYTES} bytes", "params")


def _check_string(value: str) -> None:
    """Free text may hold tabs and newlines, but no other C0 control and no lone surrogate.

    Controls would let an agent hide words from the pre-filter (``ig\\x08nore``) and
    corrupt logs and terminals; no legitimate mail, file or request body needs them.
    """
    if _CONTROL.search(value) is not None:
        _fail("BAD_CHAR", "params holds a string with a control character", "params")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail("BAD_CHAR", "params holds a string with a lone surrogate", "params")


def thaw(value: Any) -> Any:
    """Plain dicts and lists again, for JSON encoders (``orjson`` also takes ``default=dict``)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def intent_to_wire(intent: Intent) -> dict[str, Any]:
    """The intent as a JSON-ready frame (for the log); ``parse_intent`` of it gives it back."""
    cost = intent.cost
    return {
        "intent_id": intent.intent_id,
        "agent_id": intent.agent_id,
        "task_id": intent.task_id,
        "op": intent.op,
        "target": intent.target,
        "idempotency_key": intent.idempotency_key,
        "token": intent.token,
        "params": thaw(intent.params),
        "cost": {
            "tokens": cost.tokens,
            "api_calls": cost.api_calls,
            "money_cents": cost.money_cents,
        },
        "expected_version": intent.expected_version,
        "extra_targets": list(intent.extra_targets),
        "target_kinds": list(intent.target_kinds),
    }
