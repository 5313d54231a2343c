"""Tool manifests: the one validator, and what a manifest says a call's arguments hold.

Every way a tool reaches the kernel - ``@maos.tool`` through the tool host, the MCP
gateway, a test - ends in `parse_manifest`, so a manifest is checked once, strictly, by
this code, and a refusal is ``TOOL.BAD_MANIFEST`` with the field it is about. ``maos.tool``
(which runs inside sandboxes, where the kernel is not installed) only turns a Python
function into the raw form below; it decides nothing (docs/tools.md).

The raw form (JSON-ready, as a host announces it or `Kernel.register_tool` builds it)::

    {"name": "send_invite", "description": "...", "parameters": {<JSON schema>},
     "effect_classes": ["send", "write"],          # or one string; aliases accepted
     "targets": {"to": "recipient",                # str or list[str]: each element
                 "cc": {"kind": "recipient", "optional": True},
                 "attendees[].email": "recipient"},
     "amount": "amount_cents" | {"param": "amount", "unit": "decimal",
                                 "currency_param": "currency"} | None,
     "result_label": {"conf": "internal", "integrity": "untrusted"},
     "accepts": "public" | None, "external": true | None, "timeout_s": 30}

Target paths: ``param`` then ``.field`` or ``[]`` steps, at most `MAX_PATH_STEPS`; a path
that ends on a list checks each element. `ToolManifest.targets_of` walks a call's
arguments along every path: each value found is a target (in path order, then element
order), and a value it cannot read as a non-empty string is a refusal, never a
call without that target (R11: what cannot be checked is denied).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from maos.kernel.errors import MaosError
from maos.kernel.labels import Conf, Integrity, Label
from maos.kernel.types import EffectClass

__all__ = [
    "EFFECT_ALIASES",
    "MAX_TARGETS",
    "TARGET_KINDS",
    "AmountSpec",
    "ManifestError",
    "Target",
    "TargetSpec",
    "ToolManifest",
    "effect_class",
    "parse_manifest",
]

MAX_TARGETS = 64
"""Targets one call may have; a call with more is refused (a list that long is a mass
mailing, not an assistant's errand, and every target costs a check)."""
MAX_PATH_STEPS = 8
MAX_TARGET_CHARS = 2048
"""As long as an intent's target may be (`maos.kernel.intents`)."""
MAX_CENTS = 10**12
"""The Input Sanitizer's bound on a cost."""

TARGET_KINDS = ("recipient", "account", "url", "path", "phone", "name", "channel", "user")
"""What a target is; each kind has one normalisation (`maos.kernel.identifiers.normalise`)."""
EFFECT_ALIASES: Mapping[str, EffectClass] = {
    "read-only": EffectClass.READ,
    "reversible": EffectClass.WRITE,
    "irreversible": EffectClass.DELETE,
    "financial": EffectClass.PAY,
    "external-communication": EffectClass.SEND,
    "credential-change": EffectClass.CREDENTIALS,
}
_SEVERITY = (
    EffectClass.CREDENTIALS,
    EffectClass.PAY,
    EffectClass.DELETE,
    EffectClass.EXECUTE,
    EffectClass.SEND,
    EffectClass.WRITE,
    EffectClass.READ,
)
"""Most severe first: a tool of several classes is shown, and treated by checks that take
one class (the SSE's exemption, lock versions), as its most severe."""
_CLASS_NAMES = frozenset(c.value for c in _SEVERITY)
_CONFS = {c.name.lower(): c for c in Conf}
_NAME = re.compile(r"^[a-z][a-z_]{0,47}$")
_PATH = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]{0,63})((?:\.[A-Za-z_][A-Za-z0-9_-]{0,63}|\[\])*)$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]{0,63})|\[\]")
_DECIMAL = re.compile(r"^[0-9]{1,15}(?:\.[0-9]{1,15})?$")
_KEYS = frozenset(
    {
        "name",
        "description",
        "parameters",
        "effect_classes",
        "targets",
        "amount",
        "result_label",
        "accepts",
        "external",
        "timeout_s",
    }
)
_LEGACY = {"effect_class": "effect_classes", "amount_param": "amount"}
"""Keys of ``tool.registered`` records written before issue 8; read, never written."""


class ManifestError(MaosError):
    """A manifest that is not valid (``TOOL.BAD_MANIFEST``), or a call whose targets or
    amount the manifest cannot vouch for (``TOOL.TARGET_*``, ``TOOL.BAD_AMOUNT``)."""


def _bad(field: str, why: str) -> NoReturn:
    raise ManifestError("TOOL.BAD_MANIFEST", f"{field}: {why}", field=field)


def effect_class(name: object) -> EffectClass:
    """The effect class ``name`` stands for (aliases accepted); never ``kernel``."""
    if isinstance(name, str):
        if name in EFFECT_ALIASES:
            return EFFECT_ALIASES[name]
        if name in _CLASS_NAMES:
            return EffectClass(name)
    names = ", ".join(c.value for c in _SEVERITY[::-1])
    _bad("effect_classes", f"{name!r} is not one of {names} (or their aliases)")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One declared target path."""

    path: str
    kind: str
    optional: bool = False
    param: str = ""
    steps: tuple[str | None, ...] = ()
    """Field names, ``None`` for ``[]``."""

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "optional": self.optional}


@dataclass(frozen=True, slots=True)
class AmountSpec:
    """Where a call's money is: integer cents, or a decimal sum in the currency."""

    param: str
    unit: str = "cents"
    """``cents`` or ``decimal``."""
    currency_param: str | None = None

    def record(self) -> dict[str, Any]:
        return {"param": self.param, "unit": self.unit, "currency_param": self.currency_param}


@dataclass(frozen=True, slots=True)
class Target:
    """A value found at a declared path of one call: what the checks see."""

    value: str
    kind: str
    where: str
    """The concrete path, e.g. ``attendees[2].email``."""


@dataclass(frozen=True, slots=True)
class ToolManifest:
    """A validated manifest; `record` is its normalised form (``tool.registered``)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    effect_classes: tuple[EffectClass, ...]
    """Sorted most severe first; a call needs every one granted (R2)."""
    targets: tuple[TargetSpec, ...]
    result_label: Label
    accepts: Conf
    external: bool
    amount: AmountSpec | None
    timeout_s: float
    manifest_sha256: str
    """Of the normalised manifest, description and schema included: any change shows."""

    @property
    def effect_class(self) -> EffectClass:
        """The most severe of the classes."""
        return self.effect_classes[0]

    def record(self) -> dict[str, Any]:
        """The normalised, JSON-ready manifest; `parse_manifest` of it gives it back."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": _plain(self.parameters),
            "effect_classes": [c.value for c in self.effect_classes],
            "targets": {t.path: t.record() for t in self.targets},
            "amount": None if self.amount is None else self.amount.record(),
            "result_label": {
                "conf": self.result_label.conf.name.lower(),
                "integrity": self.result_label.integrity.name.lower(),
            },
            "accepts": self.accepts.name.lower(),
            "external": self.external,
            "timeout_s": self.timeout_s,
        }

    def targets_of(self, args: Mapping[str, Any]) -> tuple[Target, ...]:
        """Every target ``args`` hold, or `ManifestError` (``TOOL.TARGET_MISSING`` for a
        required path with nothing there, ``TOOL.TARGET_UNCHECKABLE`` for a value that is
        not a non-empty one-line string, a shape the path does not fit, or too many)."""
        out: list[Target] = []
        for spec in self.targets:
            before = len(out)
            _walk(self.name, spec, args.get(spec.param), spec.param, 0, out)
            if len(out) == before and not spec.optional:
                _missing(self.name, spec, spec.param)
        return tuple(out)

    def amount_cents(self, args: Mapping[str, Any]) -> int:
        """The money ``args`` move, in cents, exactly; 0 for a tool without an amount."""
        if self.amount is None:
            return 0
        param = self.amount.param
        value = args.get(param)
        if value is None:
            return 0  # an optional amount left out moves nothing
        if self.amount.unit == "cents":
            if type(value) is not int or not 0 <= value <= MAX_CENTS:
                _bad_amount(param, "a non-negative whole number of cents")
            return value
        return _decimal_cents(param, value)


def _bad_amount(param: str, what: str) -> NoReturn:
    raise ManifestError("TOOL.BAD_AMOUNT", f"{param} must be {what}", field=param)


def _decimal_cents(param: str, value: object) -> int:
    """A sum in the currency to cents with `Decimal` only: ``12.34`` and ``"12.34"`` are
    1234; a third decimal place, a sign, NaN, infinity or text is refused."""
    what = 'a non-negative amount with at most 2 decimal places (12.34 or "12.34")'
    if type(value) is int:
        amount = Decimal(value)
    elif type(value) is float:
        amount = Decimal(repr(value))  # the shortest text that reads back as this float
    elif type(value) is str and _DECIMAL.match(value):
        amount = Decimal(value)
    else:
        _bad_amount(param, what)
    try:
        cents = amount * 100
        if not cents.is_finite() or cents < 0 or cents != cents.to_integral_value():
            _bad_amount(param, what)
    except InvalidOperation:
        _bad_amount(param, what)
    if cents > MAX_CENTS:
        _bad_amount(param, f"at most {MAX_CENTS // 100} in the currency")
    return int(cents)


def _walk(
    tool: str, spec: TargetSpec, value: Any, where: str, step: int, out: list[Target]
) -> None:
    """Every value at ``spec``'s path below ``value``. A required path must reach a value
    on every branch (one attendee without an address would be invited unchecked); an
    optional one may stop anywhere, and then sends nothing there."""
    if value is None or value == "" or (step == len(spec.steps) and value in ([], ())):
        if not spec.optional:
            _missing(tool, spec, where)
        return
    if step == len(spec.steps):
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                _leaf(tool, spec, item, f"{where}[{i}]", out)
        else:
            _leaf(tool, spec, value, where, out)
        return
    name = spec.steps[step]
    if name is None:
        if not isinstance(value, (list, tuple)):
            _uncheckable(tool, spec, where, "a list")
        for i, item in enumerate(value):
            _walk(tool, spec, item, f"{where}[{i}]", step + 1, out)
        return
    if not isinstance(value, Mapping):
        _uncheckable(tool, spec, where, "an object")
    _walk(tool, spec, value.get(name), f"{where}.{name}", step + 1, out)


def _missing(tool: str, spec: TargetSpec, where: str) -> NoReturn:
    raise ManifestError(
        "TOOL.TARGET_MISSING",
        f"{tool}: {where} holds no {spec.kind}, and {spec.path} is a required target: "
        "name who or what the call goes to",
        field=where,
    )


def _leaf(tool: str, spec: TargetSpec, value: Any, where: str, out: list[Target]) -> None:
    if type(value) is not str or not value.strip():
        _uncheckable(tool, spec, where, "a non-empty string")
    if len(value) > MAX_TARGET_CHARS or not value.isprintable():
        _uncheckable(tool, spec, where, f"one printable line of at most {MAX_TARGET_CHARS}")
    out.append(Target(value, spec.kind, where))
    if len(out) > MAX_TARGETS:
        raise ManifestError(
            "TOOL.TARGET_UNCHECKABLE",
            f"{tool}: more than {MAX_TARGETS} targets in one call; split it",
            field=spec.path,
        )


def _uncheckable(tool: str, spec: TargetSpec, where: str, due: str) -> NoReturn:
    raise ManifestError(
        "TOOL.TARGET_UNCHECKABLE",
        f"{tool}: {where} must be {due} ({spec.kind} target {spec.path}); the kernel checks "
        "every target, so a value it cannot read is refused",
        field=where,
    )


def parse_manifest(raw: Mapping[str, Any]) -> ToolManifest:
    """The validated manifest, or `ManifestError` ``TOOL.BAD_MANIFEST`` naming the field."""
    if not isinstance(raw, Mapping):
        _bad("manifest", "must be an object")
    body = dict(raw)
    for old, new in _LEGACY.items():
        if old in body:
            if new in body:
                _bad(old, f"give {new} only")
            body[new] = body.pop(old)
    for key in body:
        if key not in _KEYS:
            _bad(str(key)[:64], f"is not a manifest field (one of {', '.join(sorted(_KEYS))})")
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        _bad("name", "1-48 of a-z and '_', a letter first")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        _bad("description", "a string of at most 2000 characters")
    props = _parameters(body.get("parameters"))
    classes = _effect_classes(body.get("effect_classes"))
    declared = _mapping(body, "targets")
    # In path order: a mapping's key order does not survive every JSON round trip.
    targets = tuple(_target(path, declared[path], props) for path in sorted(declared, key=str))
    amount = _amount(body.get("amount"), props)
    label = _label(body.get("result_label"))
    external = body.get("external")
    if external is None:
        external = EffectClass.SEND in classes or EffectClass.PAY in classes
    elif type(external) is not bool:
        _bad("external", "true or false")
    accepts = body.get("accepts")
    if accepts is None:
        # A tool that sends outside, pays or changes credentials may be sent public data
        # only, unless its manifest says more; other tools stay on this machine.
        outward = external or EffectClass.CREDENTIALS in classes
        accepts = "public" if outward else "confidential"
    if accepts not in _CONFS:
        _bad("accepts", f"one of {', '.join(_CONFS)}")
    timeout = body.get("timeout_s", 30.0)
    if type(timeout) not in (int, float) or not 0 < timeout <= 3600:
        _bad("timeout_s", "a number of seconds in (0, 3600]")
    normal = {
        "name": name,
        "description": description,
        "parameters": _plain(body["parameters"]),
        "effect_classes": [c.value for c in classes],
        "targets": {t.path: t.record() for t in targets},
        "amount": None if amount is None else amount.record(),
        "result_label": body["result_label"],
        "accepts": accepts,
        "external": external,
        "timeout_s": float(timeout),
    }
    digest = hashlib.sha256(json.dumps(normal, sort_keys=True).encode()).hexdigest()
    return ToolManifest(
        name=name,
        description=description,
        parameters=normal["parameters"],
        effect_classes=classes,
        targets=targets,
        result_label=label,
        accepts=_CONFS[accepts],
        external=external,
        amount=amount,
        timeout_s=float(timeout),
        manifest_sha256=digest,
    )


def _mapping(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, Mapping):
        _bad(key, "must be an object")
    return value


def _parameters(value: object) -> Mapping[str, Any]:
    """The properties of the arguments' JSON schema (an object schema)."""
    if not isinstance(value, Mapping) or value.get("type") != "object":
        _bad("parameters", 'a JSON schema of type "object"')
    props = value.get("properties", {})
    if not isinstance(props, Mapping) or not all(isinstance(p, Mapping) for p in props.values()):
        _bad("parameters.properties", "an object of schemas")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        _bad("parameters", "must be JSON")
    return props


def _effect_classes(value: object) -> tuple[EffectClass, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        _bad("effect_classes", "one effect class or a non-empty list of them")
    classes = {effect_class(n) for n in names}
    return tuple(c for c in _SEVERITY if c in classes)


def _types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema admits (empty: it does not say)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {str(k) for k in kind}
    return set()


def _target(path: object, spec: object, props: Mapping[str, Any]) -> TargetSpec:
    field = f"targets.{str(path)[:80]}"
    kind: object
    optional: object
    if isinstance(spec, str):
        kind, optional = spec, False
    elif isinstance(spec, Mapping) and set(spec) <= {"kind", "optional"}:
        kind, optional = spec.get("kind"), spec.get("optional", False)
    else:
        _bad(field, 'a kind, or {"kind": K, "optional": true|false}')
    if kind not in TARGET_KINDS:
        _bad(field, f"kind {kind!r} is not one of {', '.join(TARGET_KINDS)}")
    if type(optional) is not bool:
        _bad(field, "optional is true or false")
    match = _PATH.match(path) if isinstance(path, str) else None
    if match is None:
        _bad(field, "a path is param, then .field or [] steps (attendees[].email)")
    param = match.group(1)
    steps = tuple(m.group(1) for m in _STEP.finditer(match.group(2)))
    if len(steps) > MAX_PATH_STEPS:
        _bad(field, f"at most {MAX_PATH_STEPS} steps")
    if param not in props:
        _bad(field, f"{param!r} is not a parameter")
    schema: Mapping[str, Any] | None = props[param]
    for step in steps:  # follow the schema as far as it describes the value
        if schema is None:
            break
        types = _types(schema) - {"null"}
        if step is None:
            if types and "array" not in types:
                _bad(field, "[] steps into a parameter that is not a list")
            items = schema.get("items")
            schema = items if isinstance(items, Mapping) else None
        else:
            if types and "object" not in types:
                _bad(field, f".{step} steps into a value that is not an object")
            inner = schema.get("properties")
            schema = inner.get(step) if isinstance(inner, Mapping) else None
            if isinstance(inner, Mapping) and schema is None:
                _bad(field, f"{step!r} is not a field there")
    if schema is not None:
        types = _types(schema) - {"null"}
        if types and not types <= {"string", "array"}:
            _bad(field, "a target is a string or a list of strings")
    return TargetSpec(match.group(0), str(kind), optional, param, steps)


def _amount(value: object, props: Mapping[str, Any]) -> AmountSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        spec = AmountSpec(value)
    elif isinstance(value, Mapping) and set(value) <= {"param", "unit", "currency_param"}:
        param, unit = value.get("param"), value.get("unit", "cents")
        currency = value.get("currency_param")
        if not isinstance(param, str) or unit not in ("cents", "decimal"):
            _bad("amount", 'param is a parameter name and unit "cents" or "decimal"')
        if currency is not None and (
            not isinstance(currency, str) or "string" not in _types(props.get(currency, {}))
        ):
            _bad("amount.currency_param", f"{currency!r} is not a string parameter")
        spec = AmountSpec(param, unit, currency)
    else:
        _bad("amount", 'a parameter name, or {"param", "unit", "currency_param"}')
    if spec.param not in props:
        _bad("amount", f"{spec.param!r} is not a parameter")
    types = _types(props[spec.param]) - {"null"}
    allowed = {"integer"} if spec.unit == "cents" else {"integer", "number", "string"}
    if not types or not types <= allowed:
        unit = "an integer (cents)" if spec.unit == "cents" else "a number or numeric string"
        _bad("amount", f"{spec.param!r} must be {unit}")
    return spec


def _label(value: object) -> Label:
    if (
        not isinstance(value, Mapping)
        or set(value) != {"conf", "integrity"}
        or value["conf"] not in _CONFS
        or value["integrity"] not in ("trusted", "untrusted")
    ):
        _bad("result_label", f"{{conf: {'|'.join(_CONFS)}, integrity: trusted|untrusted}}")
    return Label(_CONFS[value["conf"]], Integrity[str(value["integrity"]).upper()])


def _plain(value: Any) -> Any:
    """Plain dicts and lists (a frozen intent's params are proxies and tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value
