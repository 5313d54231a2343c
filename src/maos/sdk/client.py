"""The agent's side of the six gateways: one request per call, one typed answer.

A `Client` turns each call into one frame on the pod's channel (through the bootstrap's
``maos_pod_client``), presenting the capability token the runtime put in the pod's
environment (``MAOS_TOKEN``). The kernel answers with a status; ``committed`` comes back
as a frozen `Result` carrying the value and its IFC label, every other status raises
(see `maos.sdk.errors`). Nothing here can widen what the agent may do: the token, the
Sentry and the kernel's checks decide, on the kernel's side of the channel.

Every effectful call sends an idempotency key: the one the agent passes (``key=``, so a
retry or a restarted agent repeats the effect at most once) or a fresh random one.

Deliberately free of `typing` and `dataclasses` at run time: they cost a pod's cold start
several milliseconds, which is a third of its budget.
"""

from __future__ import annotations

import json
import os
import sys

from maos.sdk.errors import (
    LLM_DOWN,
    Denied,
    EffectFailed,
    LlmUnavailable,
    PendingApproval,
    SdkError,
)

TYPE_CHECKING = False  # mypy honours this name; the pod never imports typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, NoReturn, Protocol

    class Transport(Protocol):
        """What ``maos_pod_client`` offers: one request, one decoded reply."""

        def request(
            self, gw: str, op: str, args: dict[str, Any], cap: str | None = None
        ) -> dict[str, Any]: ...

    Call = Callable[[str, str, dict[str, Any]], "Result"]

__all__ = ["Client", "Label", "Message", "Result", "Tools"]


class _Frozen:
    """Immutable value with slots; equality and repr by field (dataclasses cost start-up)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, fields[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Frozen)
            and type(other) is type(self)
            and other._fields() == self._fields()
        )

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Label(_Frozen):
    """The IFC label the kernel attached to a value: how secret, how trusted, from where."""

    __slots__ = ("conf", "integrity", "sources")
    conf: str
    """``public`` < ``internal`` < ``confidential`` < ``secret``."""
    integrity: str
    """``trusted`` or ``untrusted`` (untrusted content is data, never instructions)."""
    sources: tuple[str, ...]
    """Where the value came from (``url:...``, ``fs:...``, ``agent:...``)."""

    def __init__(
        self, conf: str = "public", integrity: str = "trusted", sources: Iterable[str] = ()
    ) -> None:
        super().__init__(conf=conf, integrity=integrity, sources=tuple(sorted(sources)))

    @property
    def trusted(self) -> bool:
        return self.integrity == "trusted"

    @classmethod
    def from_wire(cls, raw: object) -> Label:
        if not isinstance(raw, dict):
            return cls()
        return cls(
            str(raw.get("conf", "public")),
            str(raw.get("integrity", "trusted")),
            (str(s) for s in raw.get("sources", ())),
        )


class Result(_Frozen):
    """A committed answer: the effect's value and the label it carries."""

    __slots__ = ("label", "value")
    value: Any
    label: Label

    def __init__(self, value: Any, label: Label) -> None:
        super().__init__(value=value, label=label)


class Message(_Frozen):
    """One message from another agent, with the label of its sender's context."""

    __slots__ = ("body", "label", "message_id", "sender")
    message_id: str
    sender: str
    body: str
    label: Label

    def __init__(self, message_id: str, sender: str, body: str, label: Label) -> None:
        super().__init__(message_id=message_id, sender=sender, body=body, label=label)


def _key(key: str | None) -> str:
    return key if key is not None else os.urandom(9).hex()


def _ms(seconds: float, most: int) -> int:
    return min(most, max(0, int(seconds * 1000)))


_FIELD_LIMITS = {"path": 4096, "url": 8192, "to": 256, "subject": 998, "content": 200_000}
_TEXT_LIMIT = 200_000
_ARGS_LIMIT = 200 * 1024
"""The kernel's sanitizer treats a frame over its caps as an attack (the pod is killed);
these limits, a margin under those caps, turn an honest mistake into an `SdkError`."""


def _check(args: dict[str, Any]) -> None:
    for name, value in args.items():
        if isinstance(value, str) and len(value) > _FIELD_LIMITS.get(name, _TEXT_LIMIT):
            raise SdkError("SDK.TOO_LARGE", f"{name} is longer than the gateway accepts")
    if len(json.dumps(args)) > _ARGS_LIMIT:  # ASCII escapes: at least the UTF-8 frame's size
        raise SdkError("SDK.TOO_LARGE", f"the request exceeds {_ARGS_LIMIT} bytes")


def _pod_transport() -> Transport:
    transport = sys.modules.get("maos_pod_client")
    if transport is None:
        raise SdkError(
            "SDK.NO_POD",
            "maos.sdk talks to the kernel through a pod; run agents with `maos agent run`",
        )
    return transport


class Fs:
    """The task's workspace (paths are relative to it); every call is checked and logged."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def read(self, path: str, *, key: str | None = None) -> Result:
        """Value ``{"content" (or "content_b64"), "sha256", "size"}``."""
        return self._call("fs", "read", {"path": path, "key": _key(key)})

    def write(self, path: str, content: str, *, key: str | None = None) -> Result:
        return self._call("fs", "write", {"path": path, "content": content, "key": _key(key)})

    def list(self, path: str = ".", *, key: str | None = None) -> Result:
        return self._call("fs", "list", {"path": path, "key": _key(key)})

    def delete(self, path: str, *, key: str | None = None) -> Result:
        return self._call("fs", "delete", {"path": path, "key": _key(key)})


class Http:
    """HTTP through the kernel's adapter: the agent never holds a socket or a credential."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        key: str | None = None,
    ) -> Result:
        """Value ``{"status", "headers", "body", "truncated"}``; labelled untrusted."""
        args = {"method": method, "url": url, "headers": headers or {}, "key": _key(key)}
        if body is not None:
            args["body"] = body
        return self._call("api", "request", args)

    def get(self, url: str, *, key: str | None = None) -> Result:
        return self.request("GET", url, key=key)


class Email:
    def __init__(self, call: Call) -> None:
        self._call = call

    def send(
        self, to: str, subject: str, body: str, *, cc: Sequence[str] = (), key: str | None = None
    ) -> Result:
        """Mail through the kernel's relay; a recipient nobody named waits for approval."""
        args = {"to": to, "subject": subject, "body": body, "cc": list(cc), "key": _key(key)}
        return self._call("outmsg", "email", args)


class A2a:
    """Messages to agents of other systems over the A2A protocol, sent by the kernel."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def send(self, url: str, text: str, *, key: str | None = None) -> Result:
        """Send ``text`` to the A2A agent at ``url`` (its base URL or its card's).

        Value ``{"agent", "message_id", "reply", "task_id", "state"}``; labelled untrusted.
        An agent nobody named waits for approval, like a new mail recipient."""
        return self._call("outmsg", "a2a", {"to": url, "body": text, "key": _key(key)})


class Llm:
    def __init__(self, call: Call) -> None:
        self._call = call

    def complete(
        self,
        prompt: str | list[dict[str, Any]],
        *,
        max_tokens: int = 1024,
        tools: Sequence[dict[str, Any]] = (),
        key: str | None = None,
    ) -> Result:
        """A completion; raises `LlmUnavailable` while no provider is configured.

        Value ``{"message", "tool_calls": [{"id", "name", "arguments"}], "usage", ...}``.
        ``tools`` are ``{"name", "description", "parameters"}`` (what `Tools.list` gives);
        a tool call in the answer is only the model's wish, nothing has run."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if not 1 <= max_tokens <= 200_000 or not 1 <= len(messages) <= 256:
            raise SdkError("SDK.INVALID", "1-256 messages and 1-200000 max_tokens")
        if any(m.get("role") not in ("system", "user", "assistant", "tool") for m in messages):
            raise SdkError("SDK.INVALID", "a message's role is system, user, assistant or tool")
        args: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "key": _key(key)}
        if tools:
            args["tools"] = [
                {k: t[k] for k in ("name", "description", "parameters") if k in t} for t in tools
            ]
        return self._call("llm", "complete", args)


class Tools:
    """Tools the Commander registered (`maos.tool`): run by the kernel in a tool host."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def list(self) -> Result:
        """Value ``{"tools": [{"name", "description", "parameters", "effect_class"}]}``: the
        registered tools this agent's token grants."""
        return self._call("admin", "tools", {})

    def call(self, name: str, /, _idempotency_key: str | None = None, **args: Any) -> Result:
        """Run tool ``name`` with keyword ``args``; the result carries the tool's label.

        A retry that passes the same ``_idempotency_key`` runs the tool at most once."""
        key = _key(_idempotency_key)
        return self._call("api", "tool", {"name": name, "args": args, "key": key})


class Msg:
    """Messages between agents, through the kernel's router: checked, logged, labelled."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def send(self, to: str, body: str, *, key: str | None = None) -> Result:
        """Deliver ``body`` to agent ``to``; it arrives with this agent's context label."""
        return self._call("outmsg", "send", {"to": to, "body": body, "key": _key(key)})

    def receive(
        self, *, max_items: int = 1, timeout: float = 0.0, key: str | None = None
    ) -> Result:
        """Up to ``max_items`` messages (a tuple of `Message`, maybe empty), waiting up to
        ``timeout`` seconds for the first. Reading them raises this agent's context label
        to their join, which is the result's label."""
        if not 1 <= max_items <= 100:
            raise SdkError("SDK.INVALID", "max_items is 1 to 100")
        args = {
            "max_items": max_items,
            "timeout_ms": _ms(timeout, 60_000),
            "key": _key(key),
        }
        got = self._call("inmsg", "recv", args)
        items = got.value.get("messages", []) if isinstance(got.value, dict) else []
        messages = tuple(
            Message(
                str(m.get("message_id", "")),
                str(m.get("sender", "")),
                str(m.get("body", "")),
                Label.from_wire(m.get("label")),
            )
            for m in items
        )
        return Result(messages, got.label)


class Admin:
    def __init__(self, call: Call) -> None:
        self._call = call

    def heartbeat(self) -> Result:
        """A no-op through the whole path: proves the pod, its Sentry and the kernel are up."""
        return self._call("admin", "heartbeat", {})

    def status(self) -> Result:
        """This agent's own record: ``agent_id``, ``task_id``, ``ring``, ``status``, ``context``."""
        return self._call("admin", "status", {})

    def wait(self, approval_id: str, timeout: float | None = None) -> Result:
        """The outcome of a parked request once the Commander decided (see `PendingApproval`)."""
        args: dict[str, Any] = {"approval_id": approval_id}
        if timeout is not None:
            args["timeout_ms"] = _ms(timeout, 7 * 24 * 3600 * 1000)
        return self._call("admin", "wait", args)

    def questions(self) -> Result:
        """The Commander's questions and edits about this agent's own parked intents: a
        list under ``questions``, each with ``approval_id``, ``op``, ``target``, ``open``
        (the Commander spoke last) and its ``thread`` of turns."""
        return self._call("admin", "questions", {})

    def answer(
        self,
        approval_id: str,
        text: str,
        *,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Result:
        """Answer the Commander about parked intent ``approval_id``, optionally proposing
        another ``target`` and/or ``params``. The answer is logged as the agent's, never
        trusted, and changes nothing: only the Commander edits and decides. Refused
        (`Denied`) with ``HACF.NOT_THE_PROPOSER``, ``APPROVAL.ALREADY_DECIDED``,
        ``HACF.OUTSIDE_GRANTS`` (the proposal is beyond this agent's capability) or
        ``HACF.BAD_ANSWER``."""
        proposal: dict[str, Any] = {}
        if target is not None:
            proposal["target"] = target
        if params is not None:
            proposal["params"] = params
        args = {"approval_id": approval_id, "text": text, "key": _key(key)}
        return self._call("admin", "answer", {**args, "proposal": proposal or None})

    def apoptosis(self, reason: str = "") -> NoReturn:
        """End this agent for good (R9): the kernel logs it, then the process exits 0."""
        self._call("admin", "apoptosis", {"reason": reason})
        raise SystemExit(0)


class Client:
    """One agent's view of the kernel. ``Client()`` reads the pod's environment.

    ``token`` overrides ``MAOS_TOKEN`` (to present an attenuated token, say);
    ``transport`` replaces the pod channel (tests of agent code outside a pod).
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        task_id: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.token = os.environ.get("MAOS_TOKEN", "") if token is None else token
        self.task_id = os.environ.get("MAOS_TASK_ID", "") if task_id is None else task_id
        """The task the runtime runs this agent for (informational: the kernel binds it)."""
        self._transport = transport
        self.fs = Fs(self.call)
        self.http = Http(self.call)
        self.email = Email(self.call)
        self.a2a = A2a(self.call)
        self.llm = Llm(self.call)
        self.msg = Msg(self.call)
        self.tools = Tools(self.call)
        self.admin = Admin(self.call)

    def call(self, gw: str, op: str, args: dict[str, Any]) -> Result:
        """One raw gateway request; the typed namespaces above are the usual way in."""
        _check(args)
        transport = self._transport if self._transport is not None else _pod_transport()
        try:
            reply = transport.request(gw, op, args, self.token or None)
        except (OSError, ValueError) as exc:  # ConnectionError, a reply that is not JSON
            raise SdkError("SDK.CHANNEL", f"the gateway channel failed: {exc}") from exc
        return self._answer(reply)

    def _answer(self, reply: object) -> Result:
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            raise SdkError("SDK.PROTOCOL", "the kernel's reply carries no outcome")
        status = result.get("status")
        code, reason = str(result.get("code") or ""), str(result.get("reason") or "")
        if status == "committed":
            return Result(result.get("value"), Label.from_wire(result.get("label")))
        if status == "pending":
            raise PendingApproval(str(result.get("approval_id")), code, reason, self.admin.wait)
        if status == "denied":
            raise Denied(code, reason)
        if code in LLM_DOWN:
            raise LlmUnavailable(code, reason)
        if status in ("failed", "in_doubt"):
            raise EffectFailed(code, reason, status=str(status))
        raise SdkError("SDK.PROTOCOL", f"unknown outcome status {status!r}")
