"""Capability tokens: what one agent may do for one task, signed by the kernel (rule R2).

A token is a Biscuit: an Ed25519 signature chain of Datalog blocks. The authority block,
minted by the kernel, names the holder agent, its task, the audience node, an expiry and
a list of grants; a grant allows an op (``fs.write``) or an op family (``fs.*``) on a
resource (exact, or a prefix ending in ``*``) up to an amount in cents. Any holder may
append attenuation blocks naming fewer grants or an earlier expiry, without a key. An
action is allowed only when every block allows it, so appending can only narrow; the
kernel also refuses a token whose later block claims more than the blocks before it.

Verifying signatures costs ~150 µs, the whole DSC budget is 30 µs: so a token is verified
once, cached under the token string itself, and compiled into a closure; each action then
costs a dict lookup and a few comparisons. Keying by the string, not a digest of it, saves
hashing ~1 KB per action: CPython caches a str's hash on the object, and an equal key is
found by identity or one memcmp; a changed token is a different key. The closure is
Biscuit's Datalog, not a second policy language: every block must be in the vocabulary of
`maos.kernel._token_caveats`, whose Datalog is generated from a ``maos_caveat`` JSON fact
and compared on reading; any other block is refused (fail closed). Revocation is checked
on every action, never cached.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import math
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from biscuit_auth import (
    Biscuit,
    BiscuitBlockError,
    BiscuitBuilder,
    BiscuitSerializationError,
    BiscuitValidationError,
    KeyPair,
    PrivateKey,
    PublicKey,
    UnverifiedBiscuit,
)

from maos.kernel._token_caveats import (
    ATTENUATION,
    AUTHORITY,
    MAX_TIME,
    Caveat,
    Grant,
    block_builder,
    check_id,
    covered,
    grant_tuple,
    read_chain,
)
from maos.kernel.errors import TokenError
from maos.kernel.ops import TOOL_PREFIX, OpSpec
from maos.kernel.types import Allow, Deny

if TYPE_CHECKING:
    from maos.kernel.types import Intent

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "Grant",
    "RevocationList",
    "TokenAuthority",
    "TokenInfo",
    "attenuate",
    "check_grant_ops",
    "derive_key",
]

DEFAULT_TTL = MappingProxyType({"sovereign": 3600.0, "sentinel": 900.0, "pawn": 300.0})
"""Seconds a minted token lives by node type; docs/tokens.md gives the reasons."""
MAX_TTL = MappingProxyType({"sovereign": 86400.0, "sentinel": 3600.0, "pawn": 900.0})
"""The longest life a node type may mint: a leaked token dies within this, whatever is asked."""

_CHECK = "capability"
_ALLOW = Allow(check=_CHECK)
_MAX_TOKEN_CHARS = 16384
"""Longer strings are refused before hashing, so junk cannot make every action slow."""
_CACHE_CHARS = 1 << 24
"""Bound on the token text the cache keeps as keys (16 Mi characters, ~4 KiB a token at
the default size): a digest key was 32 bytes, a token key is the token, so without this
4096 junk tokens of 16 KiB would pin 64 MiB."""
_MISSING = Deny("DSC.CAPABILITY.MISSING", "The intent carries no capability token.", _CHECK)
_BISCUIT_ERRORS = (BiscuitValidationError, BiscuitSerializationError, BiscuitBlockError)
_REVOCATION_ID = re.compile(r"(?:[0-9a-f]{2})+")


def check_grant_ops(grants: Sequence[Grant], ops: Mapping[str, OpSpec]) -> None:
    """Refuse a grant no op could ever use (``TOKEN.UNKNOWN_OP``), before it is minted.

    ``ops`` is the kernel's catalogue: the built-in ops and the registered tools. A
    grant names one of them exactly, or a prefix ending in ``*`` that covers at least
    one (``fs.*``). ``tool.*`` is always accepted: it covers the tools
    registered later too, as a token for "this task's tools" should. A typo such as
    ``fs.nuke`` would otherwise mint a token that looks like authority and is none,
    and hide the mistake until the first denial."""
    for grant in grants:
        op = grant.op
        if op.endswith("*"):
            prefix = op[:-1]
            if prefix == TOOL_PREFIX or any(name.startswith(prefix) for name in ops):
                continue
        elif op in ops:
            continue
        families = sorted({name.split(".", 1)[0] + ".*" for name in ops} | {"tool.*"})
        raise TokenError(
            "TOKEN.UNKNOWN_OP",
            f"no op {op!r}: grant one of {sorted(n for n in ops if not n.startswith(TOOL_PREFIX))}"
            f", a registered tool (tool.<name>), or a family: {', '.join(families)}",
            op=op,
        )


class RevocationList:
    """Revoked block ids, numbered by epoch so a replica can tell it is behind.

    Pure on purpose: the kernel logs revocations to the WAL and replays them here at boot.
    """

    __slots__ = ("_epoch", "_ids")

    def __init__(self) -> None:
        self._ids: frozenset[str] = frozenset()
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Bumped by every `add` that changes the set; replays of known ids change nothing."""
        return self._epoch

    def add(self, revocation_ids: Iterable[str]) -> int:
        """Revoke ``revocation_ids``; returns the epoch after the change."""
        if isinstance(revocation_ids, str):
            raise TokenError(
                "TOKEN.BAD_REVOCATION_ID",
                "Pass revocation ids as an iterable, not one string: that revokes its letters.",
            )
        new = frozenset(revocation_ids)
        if not all(isinstance(r, str) and _REVOCATION_ID.fullmatch(r) for r in new):
            raise TokenError("TOKEN.BAD_REVOCATION_ID", "Revocation ids are lower-case hex.")
        if not new <= self._ids:
            # Copy on write: readers on the hot path hold a frozenset that never changes.
            self._ids |= new
            self._epoch += 1
        return self._epoch

    def __contains__(self, rid: str) -> bool:
        return rid in self._ids

    def ids(self) -> frozenset[str]:
        return self._ids


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a verified token says, for display and for the kernel's own decisions."""

    agent_id: str
    """The holder: the only agent that may present the token."""
    task_id: str
    """The task the token was minted for."""
    audience: str
    """The node id of the kernel that accepts the token."""
    expires_at: float
    """Effective expiry (the earliest of all blocks), seconds since the epoch."""
    grants: tuple[Grant, ...]
    """Effective grants after attenuation: those of the last block that names grants."""
    blocks: int
    """1 for a freshly minted token, plus one per attenuation."""
    revocation_ids: tuple[str, ...]
    """One per block; revoking any of them revokes this token and all attenuated from it."""


class _Verified:
    """A cache entry: signatures checked once, constraints compiled once.

    The fields the hot path reads on every action are copied out of ``info`` so each is
    one slot read, not two.
    """

    __slots__ = (
        "agent_id",
        "audience",
        "covers",
        "expires_at",
        "info",
        "revocation_ids",
        "task_id",
    )

    def __init__(self, info: TokenInfo, covers: Callable[[str, str, int], bool]) -> None:
        self.info = info
        self.covers = covers
        self.agent_id = info.agent_id
        self.task_id = info.task_id
        self.audience = info.audience
        self.expires_at = info.expires_at
        self.revocation_ids = info.revocation_ids


class TokenAuthority:
    """The kernel's side of tokens: the only holder of the root private key.

    Not thread-safe: the kernel calls it from its one event loop.
    """

    def __init__(
        self,
        key_dir: Path,
        node_id: str,
        node_type: str = "sovereign",
        revocations: RevocationList | None = None,
        cache_size: int = 4096,
    ) -> None:
        if node_type not in DEFAULT_TTL:
            raise TokenError(
                "TOKEN.BAD_NODE_TYPE",
                f"Unknown node type {node_type!r}; expected one of {', '.join(DEFAULT_TTL)}.",
                node_type=str(node_type),
            )
        if cache_size < 1:
            raise TokenError("TOKEN.BAD_CACHE_SIZE", "The token cache needs at least one entry.")
        self.node_id = check_id(node_id, "node id")
        self.node_type = node_type
        self.revocations = revocations if revocations is not None else RevocationList()
        keypair = _load_or_create_key(Path(key_dir))
        self._private = keypair.private_key
        self._public = keypair.public_key
        public = self._public.to_bytes()
        self.root_key_id = int.from_bytes(hashlib.sha256(public).digest()[:4], "big")
        """Carried in every token, so a foreign token is told apart from a tampered one."""
        self._public_hex = public.hex()
        self._cache: OrderedDict[str, _Verified | Deny] = OrderedDict()
        """Keyed by the exact token string: equality, not a digest, decides a hit."""
        self._cache_size = cache_size
        self._cache_chars = 0
        self.verifications = 0
        """Signature verifications so far: a cache hit does not add one."""

    @property
    def public_key(self) -> PublicKey:
        """The root public key: what another node needs to verify this kernel's tokens."""
        return self._public

    def mint(
        self,
        *,
        agent_id: str,
        task_id: str,
        grants: Sequence[Grant],
        now: float,
        ttl: float | None = None,
        audience: str | None = None,
    ) -> str:
        """A base64url token for ``agent_id`` on ``task_id``; least privilege is the caller's."""
        ttl = DEFAULT_TTL[self.node_type] if ttl is None else ttl
        if ttl > MAX_TTL[self.node_type]:
            raise TokenError(
                "TOKEN.TTL_TOO_LONG",
                f"A {self.node_type} node mints tokens for at most "
                f"{MAX_TTL[self.node_type]:.0f} s, not {ttl} s.",
            )
        caveat = Caveat(
            AUTHORITY,
            grant_tuple(grants),
            _expiry(now, ttl),
            check_id(agent_id, "agent id"),
            check_id(task_id, "task id"),
            check_id(self.node_id if audience is None else audience, "audience"),
            self._public_hex,
        )
        builder = BiscuitBuilder()
        builder.merge(block_builder(caveat))
        builder.set_root_key_id(self.root_key_id)
        return builder.build(self._private).to_base64()

    def authorize(
        self,
        token: str,
        *,
        agent_id: str,
        op: str,
        resource: str,
        amount_cents: int,
        now: float,
        task_id: str | None = None,
        extra_resources: Sequence[str] = (),
    ) -> Allow | Deny:
        """May ``agent_id`` do ``op`` on ``resource`` (and every extra one)?

        ``task_id``, when given, must be the token's task. Signatures are verified only on
        the first sight of a token; revocation, holder, audience, expiry and grants every time.
        """
        return self._authorize(
            token, agent_id, op, resource, amount_cents, now, task_id, extra_resources
        )

    def authorize_intent(self, intent: Intent, now: float) -> Allow | Deny:
        """`authorize` for every target of ``intent`` and its task: the DSC's hot path.

        Positional all the way down: matching eight keywords costs ~0.1 µs a call.
        """
        return self._authorize(
            intent.token,
            intent.agent_id,
            intent.op,
            intent.target,
            intent.cost.money_cents,
            now,
            intent.task_id,
            intent.extra_targets,
        )

    def _authorize(
        self,
        token: str,
        agent_id: str,
        op: str,
        resource: str,
        amount_cents: int,
        now: float,
        task_id: str | None,
        extra_resources: Sequence[str],
    ) -> Allow | Deny:
        if type(token) is not str:
            # Exactly str: a subclass could answer __eq__ or __hash__ as it likes and so
            # find another token's cache entry.
            return Deny("DSC.CAPABILITY.MALFORMED", "The capability token is not a string.", _CHECK)
        cache = self._cache  # `_verified`, inlined: this runs on every action
        entry = cache.get(token)
        if entry is None:
            entry = self._miss(token)
        else:
            cache.move_to_end(token)
        if isinstance(entry, Deny):
            return entry
        revoked = self.revocations.ids()
        if revoked and not revoked.isdisjoint(entry.revocation_ids):
            return Deny("DSC.CAPABILITY.REVOKED", "The capability token has been revoked.", _CHECK)
        if agent_id != entry.agent_id:
            return Deny(
                "DSC.CAPABILITY.WRONG_HOLDER",
                f"The capability token was minted for agent {entry.agent_id!r}, not {agent_id!r}.",
                _CHECK,
            )
        if task_id is not None and task_id != entry.task_id:
            return Deny(
                "DSC.CAPABILITY.WRONG_TASK",
                f"The capability token is for task {entry.task_id!r}, not for {task_id!r}.",
                _CHECK,
            )
        if entry.audience != self.node_id:
            return Deny(
                "DSC.CAPABILITY.WRONG_AUDIENCE",
                f"The capability token is for node {entry.audience!r}, not for {self.node_id!r}.",
                _CHECK,
            )
        if not now < entry.expires_at:
            return Deny(
                "DSC.CAPABILITY.EXPIRED",
                f"The capability token expired {now - entry.expires_at:.0f} s ago.",
                _CHECK,
            )
        covers = entry.covers
        if not extra_resources:  # the common case: no tuple to build
            if covers(op, resource, amount_cents):
                return _ALLOW
            return _not_covered(op, resource, amount_cents)
        for target in (resource, *extra_resources):
            if not covers(op, target, amount_cents):
                return _not_covered(op, target, amount_cents)
        return _ALLOW

    def inspect(self, token: str) -> TokenInfo:
        """Verify and describe; revocation and expiry are for the caller to weigh."""
        entry = self._verified(token)
        if isinstance(entry, Deny):
            raise TokenError(entry.code, entry.reason)
        return entry.info

    def revoke(self, token: str) -> tuple[str, ...]:
        """Revoke every block of ``token``: it, its ancestors and everything attenuated from them.

        Returns all its revocation ids (already revoked ones too), for the WAL to keep.
        """
        ids = self.inspect(token).revocation_ids
        self.revocations.add(ids)
        return ids

    def seen_for(self, agent_id: str) -> list[TokenInfo]:
        """The valid tokens of ``agent_id`` this authority verified and still caches: what
        the Commander can see an agent hold (by revocation id, never the token itself)."""
        return [
            e.info
            for e in self._cache.values()
            if isinstance(e, _Verified) and e.agent_id == agent_id
        ]

    def _verified(self, token: str) -> _Verified | Deny:
        if type(token) is not str:
            return Deny("DSC.CAPABILITY.MALFORMED", "The capability token is not a string.", _CHECK)
        entry = self._cache.get(token)
        if entry is None:
            return self._miss(token)
        self._cache.move_to_end(token)
        return entry

    def _miss(self, token: str) -> _Verified | Deny:
        """Verify a token not in the cache and keep the result, evicting least recently used.

        Empty and over-long strings are answered before verification and never cached.
        """
        if not token:
            return _MISSING
        if len(token) > _MAX_TOKEN_CHARS:
            return Deny("DSC.CAPABILITY.MALFORMED", "The capability token is too long.", _CHECK)
        entry = self._verify(token)
        cache = self._cache
        cache[token] = entry
        self._cache_chars += len(token)
        while len(cache) > self._cache_size or self._cache_chars > _CACHE_CHARS:
            evicted, _ = cache.popitem(last=False)
            self._cache_chars -= len(evicted)
        return entry

    def _verify(self, token: str) -> _Verified | Deny:
        """Everything about a token that cannot change: failures are cached as well."""
        self.verifications += 1
        try:
            raw, unverified = _parse(token)
            if unverified.root_key_id() != self.root_key_id:
                raise TokenError(
                    "DSC.CAPABILITY.FORGED",
                    "The capability token was not signed by this kernel's root key.",
                )
            try:
                biscuit = Biscuit.from_bytes(raw, self._public)
            except _BISCUIT_ERRORS as exc:
                raise TokenError(
                    "DSC.CAPABILITY.TAMPERED",
                    "The capability token names this kernel's key but its signatures fail.",
                ) from exc
            chain = read_chain(biscuit, raw)
        except TokenError as exc:
            return Deny(exc.code, exc.message, _CHECK)
        authority = chain.caveats[0]
        info = TokenInfo(  # interned: one warm string for all tokens of a task or node
            agent_id=sys.intern(authority.agent_id),
            task_id=sys.intern(authority.task_id),
            audience=sys.intern(authority.audience),
            expires_at=float(chain.expires_at),
            grants=chain.grants,
            blocks=len(chain.caveats),
            revocation_ids=tuple(biscuit.revocation_ids),
        )
        return _Verified(info, chain.compile())


def _not_covered(op: str, target: str, amount_cents: int) -> Deny:
    return Deny(
        "DSC.CAPABILITY.NOT_COVERED",
        f"No grant of the capability token allows {op} on {target!r} for {amount_cents} cents.",
        _CHECK,
    )


def attenuate(
    token: str, *, grants: Sequence[Grant] | None = None, ttl: float | None = None, now: float
) -> str:
    """A narrower copy of ``token``: only ``grants`` and/or an expiry ``ttl`` s from ``now``.

    Needs no key, so a holder can delegate less than it holds; asking for anything the
    token does not already allow is refused with ``TOKEN.WIDENS``.
    """
    if grants is None and ttl is None:
        raise TokenError("TOKEN.NOTHING_TO_ATTENUATE", "Attenuate needs grants, a ttl or both.")
    new_grants = None if grants is None else grant_tuple(grants)
    expires_at = None if ttl is None else _expiry(now, ttl)
    raw, unverified = _parse(token)
    chain = read_chain(unverified, raw)
    for grant in new_grants or ():
        if not any(covered(grant, parent) for parent in chain.grants):
            raise TokenError(
                "TOKEN.WIDENS",
                f"The token does not allow {grant.op} on {grant.resource!r} up to "
                f"{grant.max_amount_cents} cents; attenuation may only narrow.",
            )
    if expires_at is not None and expires_at > chain.expires_at:
        raise TokenError(
            "TOKEN.WIDENS",
            "The requested expiry is later than the token's; attenuation may only narrow.",
        )
    # UnverifiedBiscuit cannot serialise in biscuit-python 0.4, so re-verify against the root
    # key the authority block names: a self-check, the kernel still checks against its own key.
    try:
        root = PublicKey(f"ed25519/{chain.caveats[0].root_key}")
        biscuit = unverified.verify(root)
    except (*_BISCUIT_ERRORS, ValueError) as exc:
        raise TokenError(
            "DSC.CAPABILITY.TAMPERED",
            "The token's signatures do not verify against the root key it names.",
        ) from exc
    return biscuit.append(block_builder(Caveat(ATTENUATION, new_grants, expires_at))).to_base64()


def _parse(token: str) -> tuple[bytes, UnverifiedBiscuit]:
    """Decode once in Python and hand Biscuit the same bytes, so both read one token."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        return raw, UnverifiedBiscuit.from_base64(base64.urlsafe_b64encode(raw).decode())
    except (binascii.Error, ValueError, *_BISCUIT_ERRORS) as exc:
        raise TokenError(
            "DSC.CAPABILITY.MALFORMED", "The capability token is not a readable Biscuit token."
        ) from exc


def _expiry(now: float, ttl: float) -> int:
    """Whole seconds, rounded down: Biscuit dates have no fractions, and never longer than asked."""
    if not (math.isfinite(now) and now >= 0):
        raise TokenError("TOKEN.BAD_TIME", f"now must be seconds since the epoch, not {now!r}.")
    if not (math.isfinite(ttl) and ttl >= 1):
        raise TokenError("TOKEN.BAD_TTL", f"A ttl must be at least 1 s, not {ttl!r}.")
    if now + ttl > MAX_TIME:
        raise TokenError("TOKEN.BAD_TIME", "The expiry would fall after the year 9999.")
    return math.floor(now + ttl)


def _load_or_create_key(key_dir: Path) -> KeyPair:
    """The root key, created on first boot; a key other users can read is refused."""
    path = key_dir / "root.key"
    try:
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create_key(path)
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW)) as handle:
            mode = os.fstat(handle.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise TokenError(
                    "TOKEN.KEY_PERMISSIONS",
                    f"The root key {path} is open to other users (mode {mode:o}); make it 0600.",
                    path=str(path),
                )
            text = handle.read()
    except OSError as exc:
        raise TokenError(
            "TOKEN.KEY_UNREADABLE",
            f"Cannot read or create the root key {path}: {exc.strerror}.",
            path=str(path),
        ) from exc
    try:
        return KeyPair.from_private_key(PrivateKey(text.strip()))
    except (ValueError, *_BISCUIT_ERRORS) as exc:
        raise TokenError(
            "TOKEN.KEY_INVALID",
            f"The root key {path} is not an Ed25519 private key ('ed25519-private/<hex>').",
            path=str(path),
        ) from exc


def _create_key(path: Path) -> None:
    """Write aside and link into place: a crash never leaves half a key, a race never two."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{KeyPair().private_key}\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use theirs
            os.link(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def derive_key(key_dir: Path, purpose: str, *, create: bool = False) -> bytes:
    """A 32-byte key for ``purpose`` (``wal-anchor`` ...), derived from the root key, so
    whatever holds the root key can authenticate the kernel's other state and nothing
    else can. HMAC-SHA256 keyed with the root private key over ``maos/derive/<purpose>``:
    the root key is uniformly random, so this is HKDF's expand step with one block.

    ``create`` makes the root key if there is none yet (a kernel's first boot); a reader
    (``maos wal verify``) must not, and gets ``TOKEN.KEY_UNREADABLE`` instead.
    """
    if not create and not (key_dir / "root.key").exists():
        raise TokenError(
            "TOKEN.KEY_UNREADABLE",
            f"There is no root key at {key_dir / 'root.key'}.",
            path=str(key_dir / "root.key"),
        )
    secret = bytes(_load_or_create_key(key_dir).private_key.to_bytes())
    return hmac.new(secret, b"maos/derive/" + purpose.encode("ascii"), hashlib.sha256).digest()
