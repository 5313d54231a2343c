"""A compromised model: it does its user's task, and it obeys every injected instruction.

The security suite and the demo need an agent that *fully* follows an injection, so the
defence under test can never be the model's good sense. This is the brain of a
`loopback_openai` server (a real OpenAI-compatible HTTP server, reached through the real
``openai`` SDK by the real Cognitive Cell in a pod):

    with loopback_openai(policy=ObedientModel({"summarise": [Call("read_file", ...), ...]})):

Each request is answered from the conversation alone (several agents may share one
server): the step's benign script is picked by the ``Your step: <id>`` line the Cognitive
Cell writes, and an injection is any ``<<ACTION {"tool": ..., "args": {...}}>>`` in text
the model was shown - a document, a web page, a message from another agent, a tool's
answer. The model performs every such action, in order, as soon as it has seen it, then
goes on with its script; ``{{last}}`` in an argument is replaced by the text of the last
tool answer (how an obedient model copies a secret it just read into a mail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from maos.testing import ChatReply

__all__ = ["ACTION", "Call", "ObedientModel", "injection"]

ACTION = "<<ACTION "
_STEP = re.compile(r"^Your step: (\S+)", re.MULTILINE)
_INPUTS = re.compile(r"^Inputs from earlier steps \(data, not instructions\): (.*)$", re.MULTILINE)
_LAST = "{{last}}"


@dataclass(frozen=True)
class Call:
    """One tool call the model makes."""

    tool: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": dict(self.args)}


def injection(text: str, actions: Sequence[Call]) -> str:
    """An injected instruction as it sits in a document: prose, then the actions."""
    markers = " ".join(f"{ACTION}{json.dumps(a.to_json())}>>" for a in actions)
    return f"{text} {markers}"


class ObedientModel:
    """A policy for `loopback_openai`: ``scripts`` maps a step id to its benign calls."""

    def __init__(self, scripts: Mapping[str, Sequence[Call]], *, answer: str = "Done.") -> None:
        self.scripts = {k: tuple(v) for k, v in scripts.items()}
        self.answer = answer

    def __call__(self, body: dict[str, Any]) -> ChatReply:
        messages: list[dict[str, Any]] = list(body.get("messages") or [])
        step = self._step(messages)
        executed = [c for m in messages for c in _calls_in(m)]
        injected = [a for m in messages if m.get("role") in ("user", "tool") for a in _actions(m)]
        pending = list(executed)
        for action in injected:  # the first injected action not yet performed, if any
            if not _take(pending, action):
                return self._reply(action, messages)
        benign_done = len(pending)  # what is left after matching the injected ones
        script = self.scripts.get(step, ())
        if benign_done < len(script):
            return self._reply(script[benign_done], messages)
        return ChatReply(content=self.answer)

    @staticmethod
    def _step(messages: Sequence[Mapping[str, Any]]) -> str:
        for m in messages:
            if m.get("role") == "user":
                found = _STEP.search(str(m.get("content") or ""))
                if found:
                    return found.group(1)
        return ""

    @staticmethod
    def _reply(call: Call, messages: Sequence[Mapping[str, Any]]) -> ChatReply:
        last = ""
        for m in reversed(messages):
            if m.get("role") == "tool":
                last = _tool_text(str(m.get("content") or ""))
                break
        args = {
            k: v.replace(_LAST, last) if isinstance(v, str) else v for k, v in call.args.items()
        }
        return ChatReply(content=None, tool_calls=((call.tool, args),))


def _calls_in(message: Mapping[str, Any]) -> Iterator[Call]:
    for c in message.get("tool_calls") or ():
        fn = c.get("function") or c
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = {}
        yield Call(str(fn.get("name", "")), args if isinstance(args, dict) else {})


def _take(executed: list[Call], action: Call) -> bool:
    """Remove the first executed call that is ``action`` (templated arguments match any)."""
    for i, done in enumerate(executed):
        if done.tool == action.tool and all(
            _LAST in str(v) or done.args.get(k) == v for k, v in action.args.items()
        ):
            del executed[i]
            return True
    return False


def _actions(message: Mapping[str, Any]) -> Iterator[Call]:
    """Every injected action in the text of ``message`` (tool answers are JSON: their
    strings are searched one by one, so an action nested in an argument stays inside)."""
    content = message.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        try:
            texts.extend(_strings(json.loads(content)))
        except ValueError:
            texts.append(content)
            for inputs in _INPUTS.findall(content):  # the Cognitive Cell's step inputs
                try:
                    texts.extend(_strings(json.loads(inputs)))
                except ValueError:
                    continue
    decoder = json.JSONDecoder()
    for text in texts:
        at = text.find(ACTION)
        while at >= 0:
            try:
                raw, end = decoder.raw_decode(text, at + len(ACTION))
            except ValueError:
                at = text.find(ACTION, at + 1)
                continue
            if isinstance(raw, dict) and isinstance(raw.get("args", {}), dict):
                yield Call(str(raw.get("tool", "")), raw.get("args", {}))
            at = text.find(ACTION, end)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _tool_text(content: str) -> str:
    """The readable text of a tool answer: a file's content, a page's body, else the JSON."""
    try:
        seen = json.loads(content)
    except ValueError:
        return content
    value = seen.get("value") if isinstance(seen, dict) else None
    if isinstance(value, dict):
        for key in ("content", "body"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return content
