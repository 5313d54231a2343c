"""A file a person wrote (an agent's script; a plan, a node's config, a gateway policy in
YAML), read so that no file can hang, exhaust or crash the command that reads it.

Each of those readers met the same hostile files: a FIFO or ``/dev/zero`` given as the
path (an open that blocks, a read that never ends), a file larger than any real one,
bytes that are not UTF-8, a "billion laughs" of anchors and aliases (300 bytes that
expand into gigabytes as soon as the result is walked) and brackets nested deeper than
the parser's recursion. Every one of them is an `InputError` with the caller's code and
a sentence that names the file, raised before anything is written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from maos.kernel.errors import InputError
from maos.kernel.strictjson import check_size

__all__ = ["ALIASES", "read_text", "read_yaml"]

ALIASES = "BAD_INPUT.YAML_ALIASES"


class _PlainLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: such a file is written out in full. Refusing
    them while composing costs nothing, so a bomb never expands."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise InputError(
                ALIASES,
                f"line {mark.line + 1}: YAML anchors and aliases (& and *) are not accepted "
                "here; write each value out",
                line=mark.line + 1,
            )
        return super().compose_node(parent, index)


def read_text(path: Path, *, limit: int, what: str, code: str) -> str:
    """The UTF-8 text in ``path`` (at most ``limit`` bytes); ``what`` names it in the
    sentence ("the plan p.yaml"), ``code`` is the error code of anything but its size
    (``BAD_INPUT.TOO_LARGE``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except OSError as exc:
        raise InputError(code, f"cannot read {what}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a directory, a FIFO, a device: never a document
        os.close(fd)
        raise InputError(code, f"cannot read {what}: it is not a regular file")
    with os.fdopen(fd, "rb") as f:
        check_size(info.st_size, limit, what)
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise InputError(code, f"cannot read {what}: {exc.strerror}") from None
    check_size(len(data), limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(code, f"{what} is not UTF-8 text (byte {exc.start})") from None


def read_yaml(path: Path, *, limit: int, what: str, code: str) -> Any:
    """The YAML document in ``path``, as `read_text` reads it; anchors and aliases are
    refused (``BAD_INPUT.YAML_ALIASES``)."""
    text = read_text(path, limit=limit, what=what, code=code)
    try:
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader that refuses aliases
    except yaml.YAMLError as exc:
        raise InputError(code, f"{what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(code, f"{what} nests too deeply to be read") from None
