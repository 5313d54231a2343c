"""Declare your own tools: Python functions an agent may ask the kernel to run.

    from maos.tool import tool

    @tool(effect="financial", targets={"iban": "account"}, amount="amount_cents")
    def pay_invoice(iban: str, amount_cents: int, reference: str = "") -> dict:
        "Pay an invoice by bank transfer."
        ...

A tool is an effect like mail or HTTP: an agent calls it with ``client.tools.call(name,
**args)``, the kernel checks the call (capability ``tool.<name>``, budgets, information
flow, the task's effect classes, targets, approvals), writes it ahead to the log, and only
then runs it - in the tool host, a sandboxed process like a pod (Ring 1), never inside
the kernel and never inside the agent. The manifest below is what the kernel checks:

``effect``
    What the tool does to the world, one of `EFFECT_CLASSES` (or the aliases
    ``read-only``, ``reversible``, ``irreversible``, ``financial``,
    ``external-communication``, ``credential-change``). A task whose plan never asked for
    a class cannot use a tool of it, whatever the injected text says.
``targets``
    Which parameters are targets, and of which kind (`TARGET_KINDS`): a recipient, an
    account/IBAN, a URL, a path, a phone number. With untrusted content in its context,
    an agent may aim a tool only at targets a trusted principal named (R10).
``returns``
    The label of the result: ``untrusted`` when it carries third-party content (a web
    page, an inbox), ``trusted`` when the tool's own system vouches for it; ``conf`` is
    its confidentiality.
``accepts``
    The highest confidentiality the tool may be sent (its sink, R6). Default: ``public``
    for tools that send or pay outside, ``confidential`` otherwise.
``amount``
    The parameter holding the money a call moves, in cents: budgets and token caps
    (``max_amount_cents``) apply to it.

Parameters come from the function's signature (str, int, float, bool, list, dict, each
optionally ``| None``); the docstring's first line is the description the model sees.

Stands alone (standard library only): it is importable inside the tool host's sandbox,
where nothing else of MAOS is installed.
"""

from __future__ import annotations

import inspect
import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = [
    "EFFECT_CLASSES",
    "TARGET_KINDS",
    "Tool",
    "ToolError",
    "check_args",
    "collect",
    "effect_class",
    "tool",
]

EFFECT_CLASSES = ("read", "write", "delete", "send", "pay", "credentials", "execute")
_ALIASES = {
    "read-only": "read",
    "reversible": "write",
    "irreversible": "delete",
    "financial": "pay",
    "external-communication": "send",
    "credential-change": "credentials",
}
TARGET_KINDS = ("recipient", "account", "url", "path", "phone")
_CONFS = ("public", "internal", "confidential", "secret")
_NAME = re.compile(r"^[a-z][a-z_]{0,47}$")
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
_JSON_TYPES_BY_NAME = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


class ToolError(Exception):
    """A tool declaration or a call that does not fit its manifest; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def effect_class(name: str) -> str:
    """The canonical effect class for ``name`` (aliases accepted); `ToolError` otherwise."""
    canonical = _ALIASES.get(name, name)
    if canonical not in EFFECT_CLASSES:
        raise ToolError(
            "TOOL.BAD_MANIFEST",
            f"effect {name!r} is not one of {', '.join(EFFECT_CLASSES)} (or their aliases)",
        )
    return canonical


class Tool:
    """A declared tool: the function and the manifest the kernel checks calls against."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        effect: str,
        targets: Mapping[str, str],
        returns: str,
        conf: str,
        accepts: str | None,
        amount: str | None,
        timeout_s: float,
    ) -> None:
        self.fn = fn
        self.name = name
        self.effect = effect_class(effect)
        self.parameters = _schema(fn)
        props = self.parameters["properties"]
        if not _NAME.match(name):
            raise ToolError("TOOL.BAD_MANIFEST", f"tool name {name!r}: 1-48 of a-z and '_'")
        for param, kind in targets.items():
            if param not in props:
                raise ToolError("TOOL.BAD_MANIFEST", f"{name}: target {param!r} is no parameter")
            if kind not in TARGET_KINDS:
                raise ToolError(
                    "TOOL.BAD_MANIFEST", f"{name}: target kind {kind!r} not in {TARGET_KINDS}"
                )
            if _base(props[param]) != "string":
                raise ToolError("TOOL.BAD_MANIFEST", f"{name}: target {param!r} must be a str")
        self.targets = dict(targets)
        if returns not in ("trusted", "untrusted") or conf not in _CONFS:
            raise ToolError(
                "TOOL.BAD_MANIFEST",
                f"{name}: returns is trusted|untrusted and conf one of {', '.join(_CONFS)}",
            )
        self.returns, self.conf = returns, conf
        self.external = self.effect in ("send", "pay")
        default = "public" if self.external or self.effect == "credentials" else "confidential"
        self.accepts = default if accepts is None else accepts
        if self.accepts not in _CONFS:
            raise ToolError("TOOL.BAD_MANIFEST", f"{name}: accepts is one of {_CONFS}")
        if amount is not None and (amount not in props or _base(props[amount]) != "integer"):
            raise ToolError("TOOL.BAD_MANIFEST", f"{name}: amount {amount!r} is no int parameter")
        self.amount = amount
        if not 0 < timeout_s <= 3600:
            raise ToolError("TOOL.BAD_MANIFEST", f"{name}: timeout_s is in (0, 3600]")
        self.timeout_s = float(timeout_s)
        self.description = (inspect.getdoc(fn) or "").split("\n\n")[0].strip()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def manifest(self) -> dict[str, Any]:
        """What the host tells the kernel, as JSON-ready data (validated on the other side)."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "effect_class": self.effect,
            "targets": self.targets,
            "result_label": {"conf": self.conf, "integrity": self.returns},
            "accepts": self.accepts,
            "external": self.external,
            "amount_param": self.amount,
            "timeout_s": self.timeout_s,
        }


def tool(
    *,
    effect: str,
    targets: Mapping[str, str] | None = None,
    returns: str = "untrusted",
    conf: str = "internal",
    accepts: str | None = None,
    amount: str | None = None,
    name: str | None = None,
    timeout_s: float = 30.0,
) -> Callable[[Callable[..., Any]], Tool]:
    """Declare a function as a tool (see the module docstring for each field).

    ``returns`` defaults to ``untrusted``: unless the tool's author says otherwise, what
    a tool brings back is data, never instructions."""

    def wrap(fn: Callable[..., Any]) -> Tool:
        return Tool(
            fn,
            name=name or fn.__name__,
            effect=effect,
            targets=targets or {},
            returns=returns,
            conf=conf,
            accepts=accepts,
            amount=amount,
            timeout_s=timeout_s,
        )

    return wrap


def collect(namespace: Mapping[str, Any]) -> list[Tool]:
    """The tools a module defines (its globals), in definition order; names are unique."""
    tools = [v for v in namespace.values() if isinstance(v, Tool)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ToolError("TOOL.BAD_MANIFEST", f"tool names repeat: {sorted(names)}")
    return tools


def _schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """A JSON schema for the keyword arguments of ``fn``, from its annotations."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise ToolError("TOOL.BAD_MANIFEST", f"{fn.__name__}: *args/**kwargs are not allowed")
        json_type, optional = _json_type(param.annotation, fn.__name__, param.name)
        props[param.name] = {"type": [json_type, "null"] if optional else json_type}
        if param.default is param.empty and not optional:
            required.append(param.name)
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _json_type(annotation: Any, fn: str, param: str) -> tuple[str, bool]:
    """("string", optional?) for ``str`` / ``"str | None"``; annotations may be strings
    (``from __future__ import annotations``), so both forms are read."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if annotation in _JSON_TYPES:
        return _JSON_TYPES[annotation], False
    parts = [p.strip() for p in str(text or annotation).split("|")]
    optional = "None" in parts
    names = [p.split("[")[0] for p in parts if p != "None"]
    if len(names) == 1 and names[0] in _JSON_TYPES_BY_NAME:
        return _JSON_TYPES_BY_NAME[names[0]], optional
    raise ToolError(
        "TOOL.BAD_MANIFEST",
        f"{fn}({param}): annotate with str, int, float, bool, list or dict (optionally | None)",
    )


def _base(prop: Mapping[str, Any]) -> str:
    """The JSON type of a parameter, without its ``null`` when it is optional."""
    kind = prop.get("type")
    return str(kind[0]) if isinstance(kind, list) and kind else str(kind)


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check_args(schema: Mapping[str, Any], args: Mapping[str, Any]) -> None:
    """Strict: no unknown argument, every required one, exact JSON types (``"1"`` is not 1).

    Run on the kernel's side before the call is logged and again in the host, so a call
    that does not fit the manifest never reaches the function."""
    props: Mapping[str, Any] = schema.get("properties", {})
    for key in args:
        if key not in props:
            raise ToolError("TOOL.BAD_ARGS", f"no parameter {key!r}")
    for key in schema.get("required", ()):
        if key not in args:
            raise ToolError("TOOL.BAD_ARGS", f"missing argument {key!r}")
    for key, value in args.items():
        expected = _base(props[key])
        if value is None and props[key].get("type") == [expected, "null"]:
            continue
        if not _CHECKS.get(expected, lambda v: False)(value):
            raise ToolError("TOOL.BAD_ARGS", f"{key} must be {expected}")
    try:
        json.dumps(dict(args))
    except (TypeError, ValueError) as exc:
        raise ToolError("TOOL.BAD_ARGS", f"arguments are not JSON: {exc}") from None
