"""Filesystem effects, confined to one workspace directory.

Confinement never trusts a path string: every target is walked one component at a time
with ``openat``-style calls (``dir_fd`` plus ``O_NOFOLLOW``), so no symlink is ever
followed, not even one swapped in between a check and its use. Any symlink on the way is
refused, ``..`` is refused outright, and the final rename or unlink happens relative to
the directory descriptor that was verified, never to a path re-resolved later.

Not covered, and left to whoever provisions the workspace: hard links and bind mounts
placed inside the root by someone with direct access to it (agents have none).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from maos.effects.base import EffectCall, EffectError, EffectResult

__all__ = ["FsAdapter"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 10_000
TEMP_PREFIX = ".maos-tmp-"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the workspace must not hang the kernel.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


def _fail(code: str, message: str) -> EffectError:
    return EffectError(f"EFFECT.FS.{code}", message)


def _translate(exc: OSError, target: str) -> EffectError:
    if exc.errno == errno.ENOENT:
        return _fail("NOT_FOUND", f"{target!r} does not exist in the workspace.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _fail("PERMISSION", f"the operating system refused access to {target!r}.")
    if exc.errno == errno.ENOSPC:
        return _fail("NO_SPACE", f"no space left to write {target!r}.")
    return _fail("IO", f"I/O error on {target!r}: {exc.strerror or exc}.")


def _split(target: str) -> list[str]:
    """Workspace-relative path -> components; refuses anything that could leave the root."""
    if "\x00" in target:
        raise _fail("BAD_PATH", "the path contains a NUL byte.")
    if target.startswith("/"):
        raise _fail("ESCAPE", f"{target!r} is absolute; targets are relative to the workspace.")
    parts = [p for p in target.split("/") if p not in ("", ".")]
    if ".." in parts:
        # Refused even when it would stay inside: lexical ".." resolution is where
        # traversal bugs live, and no legitimate caller needs it.
        raise _fail("ESCAPE", f"{target!r} uses '..'; parent traversal is not allowed.")
    return parts


def _lstat_or_none(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_dir(parent: int, name: str, target: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        # O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR or ELOOP: ask lstat which.
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        st = _lstat_or_none(name, parent)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise _fail("SYMLINK", f"{name!r} in {target!r} is a symlink.") from exc
        raise _fail("NOT_A_DIRECTORY", f"{name!r} in {target!r} is not a directory.") from exc


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _max_bytes(call: EffectCall) -> int:
    return int(call.constraints.get("max_bytes", DEFAULT_MAX_BYTES))


def _temp_name(key: str, name: str) -> str:
    """Derived from the effect, so a redo after a crash reuses the name rather than litter.

    The file name is mixed in so that one key reused for two targets cannot collide.
    """
    return TEMP_PREFIX + _digest(f"{key}\0{name}".encode())[:16]


def _payload(call: EffectCall) -> bytes:
    text, b64 = call.params.get("content"), call.params.get("content_b64")
    if (text is None) == (b64 is None):
        raise _fail("BAD_PARAMS", "fs.write needs exactly one of 'content' or 'content_b64'.")
    if text is not None:
        if not isinstance(text, str):
            raise _fail("BAD_PARAMS", "'content' must be a string.")
        data = text.encode("utf-8")
    else:
        try:
            data = base64.b64decode(str(b64), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail("BAD_PARAMS", "'content_b64' is not valid base64.") from exc
    if len(data) > _max_bytes(call):
        raise _fail("TOO_LARGE", f"{len(data)} bytes exceed the limit of {_max_bytes(call)}.")
    return data


class FsAdapter:
    """``fs.read``, ``fs.write``, ``fs.list``, ``fs.delete`` under one workspace root.

    All four are idempotent: reads and lists change nothing, a write of the same bytes
    to the same path and the deletion of an absent file are no-ops in effect.
    """

    ops = frozenset({"fs.read", "fs.write", "fs.list", "fs.delete"})

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Resolved once: the root itself is the operator's choice and may sit under
        # symlinks; only what lies below it is walked without following any.
        self.root = root.resolve(strict=True)

    def idempotent(self, call: EffectCall) -> bool:
        return call.op in self.ops

    async def execute(self, call: EffectCall) -> EffectResult:
        if call.op not in self.ops:
            raise _fail("UNKNOWN_OP", f"{call.op!r} is not a filesystem operation.")
        return await asyncio.to_thread(self._run, call)

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        if call.op not in self.ops:
            raise _fail("UNKNOWN_OP", f"{call.op!r} is not a filesystem operation.")
        return await asyncio.to_thread(self._confirm, call)

    def _run(self, call: EffectCall) -> EffectResult:
        parts = _split(call.target)
        try:
            if call.op == "fs.list":
                with self._walk(parts, call.target) as fd:
                    return self._list(fd, call)
            if not parts:
                raise _fail("BAD_PATH", f"{call.op} needs a file path, not the workspace root.")
            with self._walk(parts[:-1], call.target, create=call.op == "fs.write") as dfd:
                if call.op == "fs.read":
                    return self._read(dfd, parts[-1], call)
                if call.op == "fs.write":
                    return self._write(dfd, parts[-1], call)
                return self._delete(dfd, parts[-1], call)
        except OSError as exc:
            raise _translate(exc, call.target) from exc

    def _confirm(self, call: EffectCall) -> EffectResult | None:
        """Proves a write or delete from the file's current state; None means redo.

        Reads and lists are never "confirmed": redoing them is the cheapest proof. A call
        that cannot be proved for a reason of its own (a symlink, bad params) is redone
        too, so the redo reports that reason as the effect's failure.
        """
        deleted = EffectResult({"path": call.target, "deleted": True})
        try:
            parts = _split(call.target)
            if call.op not in ("fs.write", "fs.delete") or not parts:
                return None
            with self._walk(parts[:-1], call.target) as dfd:
                if call.op == "fs.delete":
                    return deleted if _lstat_or_none(parts[-1], dfd) is None else None
                want = _digest(_payload(call))
                try:
                    got = self._read_bytes(dfd, parts[-1], call)
                except FileNotFoundError:
                    return None
                if _digest(got) != want:
                    return None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_temp_name(call.idempotency_key, parts[-1]), dir_fd=dfd)
                return EffectResult({"path": call.target, "sha256": want, "size": len(got)})
        except EffectError:
            return None
        except FileNotFoundError:
            # A parent directory is missing: a delete is done, a write never happened.
            return deleted if call.op == "fs.delete" else None
        except OSError as exc:
            raise _translate(exc, call.target) from exc

    @contextlib.contextmanager
    def _walk(self, parts: list[str], target: str, *, create: bool = False) -> Iterator[int]:
        """Yields a descriptor of the directory ``parts`` names, never leaving the root."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for name in parts:
                try:
                    nxt = _open_dir(fd, name, target)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    nxt = _open_dir(fd, name, target)
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    def _open_file(self, dfd: int, name: str, target: str) -> int:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _fail("SYMLINK", f"{target!r} is a symlink.") from exc
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _fail("NOT_A_FILE", f"{target!r} is not a regular file.")
        return fd

    def _read_bytes(self, dfd: int, name: str, call: EffectCall) -> bytes:
        limit = _max_bytes(call)
        fd = self._open_file(dfd, name, call.target)
        try:
            chunks: list[bytes] = []
            total = 0
            # Bounded by reading, not by fstat alone: the file may grow while we read.
            while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise _fail("TOO_LARGE", f"{call.target!r} exceeds {limit} bytes.")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _read(self, dfd: int, name: str, call: EffectCall) -> EffectResult:
        data = self._read_bytes(dfd, name, call)
        value: dict[str, Any] = {"sha256": _digest(data), "size": len(data)}
        try:
            value["content"] = data.decode("utf-8")
        except UnicodeDecodeError:
            value["content_b64"] = base64.b64encode(data).decode("ascii")
        return EffectResult(value)

    def _write(self, dfd: int, name: str, call: EffectCall) -> EffectResult:
        data = _payload(call)
        mode = call.params.get("mode", "overwrite")
        if mode not in ("create", "overwrite"):
            raise _fail("BAD_PARAMS", f"mode must be 'create' or 'overwrite', not {mode!r}.")
        existing = _lstat_or_none(name, dfd)
        if existing is not None:
            if stat.S_ISLNK(existing.st_mode):
                raise _fail("SYMLINK", f"{call.target!r} is a symlink.")
            if not stat.S_ISREG(existing.st_mode):
                raise _fail("NOT_A_FILE", f"{call.target!r} is not a regular file.")
            if mode == "create":
                raise _fail("EXISTS", f"{call.target!r} already exists (mode 'create').")
        tmp = _temp_name(call.idempotency_key, name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)  # left by a crash before the rename
        fd = os.open(tmp, _TEMP_FLAGS, 0o644, dir_fd=dfd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if mode == "create":
                # link() refuses an existing name atomically; a check above is only advice.
                try:
                    os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileExistsError as exc:
                    raise _fail("EXISTS", f"{call.target!r} already exists.") from exc
                os.unlink(tmp, dir_fd=dfd)
            else:
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)  # the rename itself must survive a power cut
        return EffectResult({"path": call.target, "sha256": _digest(data), "size": len(data)})

    def _delete(self, dfd: int, name: str, call: EffectCall) -> EffectResult:
        st = _lstat_or_none(name, dfd)
        if st is None:
            raise _fail("NOT_FOUND", f"{call.target!r} does not exist in the workspace.")
        if stat.S_ISLNK(st.st_mode):
            raise _fail("SYMLINK", f"{call.target!r} is a symlink.")
        if not stat.S_ISREG(st.st_mode):
            raise _fail("NOT_A_FILE", f"{call.target!r} is not a file; directories stay.")
        # unlink() never follows a symlink, so a swap after the check harms nothing.
        os.unlink(name, dir_fd=dfd)
        os.fsync(dfd)
        return EffectResult({"path": call.target, "deleted": True})

    def _list(self, fd: int, call: EffectCall) -> EffectResult:
        limit = int(call.constraints.get("max_entries", DEFAULT_MAX_ENTRIES))
        entries: list[dict[str, Any]] = []
        with os.scandir(fd) as it:
            for entry in it:
                if entry.name.startswith(TEMP_PREFIX):
                    continue
                if len(entries) >= limit:
                    raise _fail("TOO_LARGE", f"{call.target!r} has more than {limit} entries.")
                st = entry.stat(follow_symlinks=False)
                kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
                size = st.st_size if kind == "file" else 0
                entries.append({"name": entry.name, "type": kind, "size": size})
        entries.sort(key=lambda e: e["name"])
        return EffectResult({"path": call.target, "entries": entries})
