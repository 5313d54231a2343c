"""The log's head, vouched for outside the database: the anchor, the witness, the seals.

A hash chain shows that no record was *changed*; it cannot show that none is *missing*
at the end, or that the whole chain was not rebuilt. So every durable group commit of a
keyed writer advances an anchor held outside the database before its callers are
acknowledged, and a verifier compares the log with it (`maos.kernel.walcheck`).

- **Anchor** (``<data-dir>/wal.anchor``): one fixed 120-byte record, overwritten in place
  and fdatasynced (the size never changes, so no metadata is flushed): the seq and hash
  of the last record anchored, the log's identity (the hash of record 1) and a
  generation counter, under an HMAC-SHA256 whose key is derived from the root key
  (`maos.kernel.tokens.derive_key`). Measured against the two other shapes in
  docs/wal.md: in place ~195 µs, append-only ~260 µs, write-temp-and-rename ~1.1 ms.
- **Witness** (``config.json``'s ``wal.witness``, optional): an append-only file on
  another path or mount; each advance appends one line with the same fields.
- **Seal**: the MAC a checkpoint record (``wal.checkpoint``) carries for the seq and hash
  it vouches for.

Invariants:

- *Never ahead.* The anchor is written after the records' COMMIT, so it never names a
  record the database could lose; a crash in between leaves the last group commits beyond
  the anchor, never acknowledged (docs/wal.md: what a boot accepts).
- *Never backwards.* Advancing takes an exclusive ``flock`` on the anchor, re-reads it
  and writes only a higher seq; a writer checks that the chain extends the anchor before
  it commits on top (`maos.kernel.wal`). Only `HeadAnchor.reset` (``maos wal adopt``,
  ``maos wal accept-loss``, both logged) moves it elsewhere.
- *Witness never ahead of the anchor.* The witness line is appended after the anchor is
  synced, so a witness beyond the local anchor means the local anchor was rolled back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import orjson

from maos.kernel.errors import TokenError, WalError
from maos.kernel.tokens import derive_key

__all__ = ["ANCHOR_FILE", "AnchorState", "HeadAnchor"]

ANCHOR_FILE = "wal.anchor"
_MAGIC = b"MAOSANC1"
_FIELDS = struct.Struct(">8sQq32s32s")
"""magic, generation, seq, log id, hash; then a 32-byte MAC over these 88 bytes."""
_SIZE = _FIELDS.size + 32
_WITNESS_TAIL = 64 * 1024
"""How much of the witness's end is read to find its last entry (lines are ~250 bytes)."""


@dataclass(frozen=True, slots=True)
class AnchorState:
    """What an anchor, a witness line or a checkpoint vouches for."""

    seq: int
    """The last record it vouches for (0: the log was empty)."""
    hash: bytes
    """That record's hash (`maos.kernel.chain.GENESIS` for seq 0)."""
    log_id: bytes
    """The hash of the log's record 1: which log this is (32 zero bytes before record 1)."""
    gen: int = 0
    """Bumped by every write of the anchor file; 0 for witness lines and seals."""


class HeadAnchor:
    """The anchor of one data directory, and its witness; shared by a Wal's threads.

    The key is derived lazily, when the anchor is first read or written, so building one
    for a command that only reads creates nothing.
    """

    def __init__(self, data_dir: Path, *, witness: Path | None = None) -> None:
        self.path = data_dir / ANCHOR_FILE
        self.witness = witness
        self._key_dir = data_dir / "keys"
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self._high = -1
        """The highest seq this process saw anchored: the file going below it is tampering."""

    # -- the key and the MACs --------------------------------------------------------------

    def _mac_key(self, *, create: bool) -> bytes:
        if self._key is None:
            try:
                self._key = derive_key(self._key_dir, "wal-anchor", create=create)
            except TokenError as exc:
                raise WalError(
                    "WAL.NO_KEY",
                    f"cannot authenticate the log's anchor: {exc.message}",
                    path=str(self._key_dir),
                ) from exc
        return self._key

    def _mac(self, domain: bytes, state: AnchorState, *, create: bool = False) -> bytes:
        msg = domain + struct.pack(">q", state.seq) + state.log_id + state.hash
        return hmac.new(self._mac_key(create=create), msg, sha256).digest()

    def seal(self, state: AnchorState) -> str:
        """The MAC a ``wal.checkpoint`` record carries for what it vouches for (hex)."""
        return self._mac(b"maos/wal/checkpoint\0", state, create=True).hex()

    def seal_ok(self, state: AnchorState, mac_hex: object) -> bool:
        if not isinstance(mac_hex, str):
            return False
        try:
            given = bytes.fromhex(mac_hex)
        except ValueError:
            return False
        return hmac.compare_digest(self._mac(b"maos/wal/checkpoint\0", state), given)

    # -- reading -----------------------------------------------------------------------------

    def read(self) -> AnchorState | None:
        """The anchor, or None if there is none; ``WAL.ANCHOR_INVALID`` if it does not
        authenticate (edited, torn, or made with another data dir's key)."""
        try:
            with open(self.path, "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # never half of a concurrent write
                raw = handle.read(_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            why = f"cannot read {self.path}: {exc.strerror}"
            raise WalError("WAL.ANCHOR_INVALID", why) from exc
        if not raw:  # created, never written: a crash before the first anchor
            return None
        state = self._parse(raw)
        self._high = max(self._high, state.seq)
        return state

    def _parse(self, raw: bytes) -> AnchorState:
        bad = WalError(
            "WAL.ANCHOR_INVALID",
            f"the anchor {self.path} does not authenticate: edited, damaged, or made with "
            "another data directory's root key",
            path=str(self.path),
        )
        if len(raw) != _SIZE:
            raise bad
        magic, gen, seq, log_id, digest = _FIELDS.unpack(raw[: _FIELDS.size])
        if magic != _MAGIC or seq < 0:
            raise bad
        state = AnchorState(seq, digest, log_id, gen)
        mac = hmac.new(self._mac_key(create=False), raw[: _FIELDS.size], sha256).digest()
        if not hmac.compare_digest(mac, raw[_FIELDS.size :]):
            raise bad
        return state

    def read_witness(self) -> AnchorState | None:
        """The witness's last complete entry, or None if there is no witness file (or no
        entry yet). A torn last line (a crash mid-append) is skipped; a complete line that
        does not authenticate is ``WAL.WITNESS_INVALID``."""
        if self.witness is None:
            return None
        try:
            with open(self.witness, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _WITNESS_TAIL))
                tail = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WalError(
                "WAL.WITNESS_INVALID", f"cannot read the witness {self.witness}: {exc.strerror}"
            ) from exc
        lines = tail.split(b"\n")[:-1]  # the part after the last newline is torn or empty
        if not lines:
            return None
        return self._witness_entry(lines[-1])

    def _witness_entry(self, line: bytes) -> AnchorState:
        try:
            entry = orjson.loads(line)
            state = AnchorState(
                int(entry["seq"]), bytes.fromhex(entry["hash"]), bytes.fromhex(entry["log"])
            )
            good = hmac.compare_digest(
                self._mac(b"maos/wal/witness\0", state), bytes.fromhex(entry["mac"])
            )
        except (ValueError, TypeError, KeyError):
            good = False
        if not good:
            raise WalError(
                "WAL.WITNESS_INVALID",
                f"the witness {self.witness} ends in an entry that does not authenticate",
                path=str(self.witness),
            )
        return state

    # -- writing -----------------------------------------------------------------------------

    def advance(self, state: AnchorState) -> None:
        """Anchors ``state`` unless the anchor already vouches for as much or more.

        Called by a Wal's writer after COMMIT and before it acknowledges the batch; the
        writer has checked, inside the transaction, that the chain extends the anchor.
        """
        with self._locked() as fd:
            current = self._parse(os.pread(fd, _SIZE + 1, 0)) if os.fstat(fd).st_size else None
            if current is None and self._high >= 0:
                raise WalError(
                    "WAL.ANCHOR_MISMATCH",
                    f"the anchor {self.path} disappeared while this process wrote the log",
                    path=str(self.path),
                )
            if current is not None:
                if current.seq < self._high:
                    raise WalError(
                        "WAL.ANCHOR_MISMATCH",
                        f"the anchor went back from seq {self._high} to {current.seq} while "
                        "this process wrote the log: it was replaced",
                        path=str(self.path),
                    )
                if current.seq >= state.seq:
                    return
            self._write(fd, state, 0 if current is None else current.gen + 1)

    def reset(self, state: AnchorState) -> None:
        """Anchors ``state`` whatever the anchor held: only for ``maos wal adopt`` and
        ``maos wal accept-loss``, after a full verify, with a record saying so."""
        with self._locked() as fd:
            try:
                gen = self._parse(os.pread(fd, _SIZE + 1, 0)).gen + 1
            except WalError:
                gen = 0
            self._high = -1
            self._write(fd, state, gen)

    def _write(self, fd: int, state: AnchorState, gen: int) -> None:
        fields = _FIELDS.pack(_MAGIC, gen, state.seq, state.log_id, state.hash)
        raw = fields + hmac.new(self._mac_key(create=True), fields, sha256).digest()
        if os.pwrite(fd, raw, 0) != _SIZE:
            raise WalError("WAL.WRITE_FAILED", f"short write to {self.path}")
        os.fdatasync(fd)
        self._high = state.seq
        if self.witness is not None:
            self._append_witness(state)

    def _append_witness(self, state: AnchorState) -> None:
        line = orjson.dumps(
            {
                "seq": state.seq,
                "hash": state.hash.hex(),
                "log": state.log_id.hex(),
                "mac": self._mac(b"maos/wal/witness\0", state, create=True).hex(),
            }
        )
        assert self.witness is not None
        fd = os.open(self.witness, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The anchor file, created if absent, under an exclusive flock (all processes)."""
        with self._lock:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)  # closing drops the flock

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            pass
        # Created empty and linked into place: a crash leaves no file or an empty one
        # (read as "no anchor yet" by `advance`), and two racing creators share one.
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
