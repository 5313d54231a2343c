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
    What the tool does to the world: an effect class (``read``, ``write``, ``delete``,
    ``send``, ``pay``, ``credentials``, ``execute``, or the aliases ``read-only``,
    ``reversible``, ``irreversible``, ``financial``, ``external-communication``,
    ``credential-change``), or a list of them when it does several (cancelling an event
    deletes it and notifies its participants: ``["delete", "send"]``). A call needs every
    class granted to its task, whatever the injected text says.
``targets``
    Where its effect goes: a mapping from a *target path* to a kind (``recipient``,
    ``account``, ``url``, ``path``, ``phone``, ``name``, ``channel``, ``user``), or to
    ``{"kind": K, "optional": True}``. A path is a parameter, then ``.field`` or ``[]``
    steps: ``"to"`` (a str, or a list of str: each element), ``"attendees[].email"``.
    The kernel checks every value found there; a call whose target it cannot read is
    refused. With untrusted content in its context, an agent may aim a tool only at
    targets a trusted principal named (R10).
``returns``
    The label of the result: ``untrusted`` when it carries third-party content (a web
    page, an inbox), ``trusted`` when the tool's own system vouches for it; ``conf`` is
    its confidentiality.
``accepts``
    The highest confidentiality the tool may be sent (its sink, R6). Default: ``public``
    for tools that send, pay or change credentials, ``confidential`` otherwise.
``amount``
    The parameter holding the money a call moves: its name for integer cents, or
    ``{"param": "amount", "unit": "decimal", "currency_param": "currency"}`` for a sum in
    the currency (``12.34``, converted exactly). Budgets and token caps apply to it.

The kernel validates the manifest (`maos.kernel.manifest`, the one validator: this
module only writes it down) when the tool is registered; a bad one is refused there
with ``TOOL.BAD_MANIFEST`` naming the field (docs/tools.md).

Parameters come from the function's signature (str, int, float, bool, list, dict, each
optionally ``| None``); the docstring's first line is the description the model sees.

Stands alone (standard library only): it is importable inside the tool host's sandbox,
where nothing else of MAOS is installed.
"""

from __future__ import annotations

import inspect
import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = ["Tool", "ToolError", "check_args", "collect", "tool"]

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


class Tool:
    """A declared tool: the function and its manifest as declared (the kernel checks it)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        effect: str | Sequence[str],
        targets: Mapping[str, Any],
        returns: str,
        conf: str,
        accepts: str | None,
        amount: str | Mapping[str, Any] | None,
        timeout_s: float,
    ) -> None:
        self.fn = fn
        self.name = name
        self.parameters = _schema(fn)
        self.description = (inspect.getdoc(fn) or "").split("\n\n")[0].strip()
        self._declared: dict[str, Any] = {
            "effect_classes": effect if isinstance(effect, str) else list(effect),
            "targets": dict(targets),
            "amount": amount if amount is None or isinstance(amount, str) else dict(amount),
            "result_label": {"conf": conf, "integrity": returns},
            "accepts": accepts,
            "timeout_s": timeout_s,
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def manifest(self) -> dict[str, Any]:
        """What the host tells the kernel, as JSON-ready data (validated on the other side)."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            **self._declared,
        }


def tool(
    *,
    effect: str | Sequence[str],
    targets: Mapping[str, Any] | None = None,
    returns: str = "untrusted",
    conf: str = "internal",
    accepts: str | None = None,
    amount: str | Mapping[str, Any] | None = None,
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
