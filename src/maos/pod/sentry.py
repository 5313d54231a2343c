"""The Sentry: the kernel-side guard every frame of one pod passes before the kernel sees it.

Seed §41. One `Sentry` per pod, living in the kernel's process, never in the pod: the
agent cannot modify, configure or stop it (R4). Its profile is fixed when it is built,
no frame carries anything that reaches it, and the admin gateway refuses every operation
but the few a pod needs. Four parts, in the order `Sentry.admit` runs them:

1. Policy enforcer (MAC): workspace path prefixes for ``fs``, host[:port] destinations
   for ``api``, a fixed operation set for ``admin``. Leaving a whitelist is a
   `SentryViolation`: deterministic and certain, so the pod is killed and the agent
   restarted from its clean image (Fast Apoptosis) instead of being argued with.
2. Traffic analyzer: a token bucket and a size cap per gateway. Going over is a
   `SentryDeny`: the request is refused, the pod lives - bursts happen to honest agents.
3. Payload inspection (hardened, strict): DSC check 7's injection patterns over outgoing
   inter-agent messages, so a hijacked agent cannot pass the attack on. Soft: the agent
   may only be relaying untrusted text it was given, and a pattern can misfire.
4. Behavioural fingerprint (`maos.pod.fingerprint`): after a warm-up every request is
   scored against the agent's baseline; crossing the profile's threshold writes one
   ``sentry.danger`` record for the Security Agent, and under strict also denies.

`Sentry.record`, called once the kernel has answered, is the egress logger (one
``sentry.egress`` record per outbound request: api, outmsg, llm) and feeds the
fingerprint's warm-up. No wall clock is read except through the injected ``clock``.

Codes: ``SENTRY.MAC.FS``, ``SENTRY.MAC.NET``, ``SENTRY.MAC.ADMIN`` (violations);
``SENTRY.TRAFFIC.RATE``, ``SENTRY.TRAFFIC.SIZE``, ``SENTRY.PAYLOAD.INJECTION``,
``SENTRY.ANOMALY``, ``SENTRY.INTERNAL`` (denials).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from maos.kernel.dsc.base import AgentView, CheckInput, TaskView
from maos.kernel.dsc.prefilter import PrefilterCheck
from maos.kernel.trace import Tracing
from maos.kernel.types import Deny, Intent, OutcomeStatus
from maos.pod.fingerprint import Fingerprint, Shape
from maos.pod.frames import (
    GATEWAYS,
    ApiRequestArgs,
    ApiToolArgs,
    Frame,
    FsPathArgs,
    FsWriteArgs,
    OutMsgSendArgs,
)

if TYPE_CHECKING:
    from maos.kernel.kernel import Kernel

__all__ = [
    "ADMIN_OPS",
    "EGRESS_GATEWAYS",
    "Sentry",
    "SentryAllow",
    "SentryCode",
    "SentryDecision",
    "SentryDeny",
    "SentryProfile",
    "SentryViolation",
    "sentry_log",
]

ADMIN_OPS = frozenset({"heartbeat", "apoptosis", "wait", "status", "tools", "questions", "answer"})
"""All a pod may ask of the admin gateway; anything else would be configuring the system
(``questions``/``answer``: the agent's side of a deliberation; deciding is not among them)."""
EGRESS_GATEWAYS = frozenset({"api", "outmsg", "llm"})
"""Gateways whose requests leave the pod for the world or another agent: egress-logged."""


class SentryCode:
    """Stable codes of Sentry decisions."""

    MAC_FS = "SENTRY.MAC.FS"
    MAC_NET = "SENTRY.MAC.NET"
    MAC_ADMIN = "SENTRY.MAC.ADMIN"
    TRAFFIC_RATE = "SENTRY.TRAFFIC.RATE"
    TRAFFIC_SIZE = "SENTRY.TRAFFIC.SIZE"
    PAYLOAD_INJECTION = "SENTRY.PAYLOAD.INJECTION"
    ANOMALY = "SENTRY.ANOMALY"
    INTERNAL = "SENTRY.INTERNAL"


@dataclass(frozen=True, slots=True)
class SentryAllow:
    """The frame may go on to the kernel, which still decides everything else."""


@dataclass(frozen=True, slots=True)
class SentryDeny:
    """Soft: this request is refused with a code; the pod lives."""

    code: str
    reason: str
    """A sentence for a human."""


@dataclass(frozen=True, slots=True)
class SentryViolation:
    """Hard: a certain breach of the pod's whitelists; the pod is killed and restarted."""

    code: str
    detail: str
    """What was asked for, for the log and the Commander."""


SentryDecision = SentryAllow | SentryDeny | SentryViolation

_ALLOW = SentryAllow()
_DEFAULT_PORTS: Mapping[str, int] = MappingProxyType({"http": 80, "https": 443})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""urllib deletes tabs and newlines anywhere before it splits a URL, which can reshape the
authority, and no honest client sends a control character (CRLF is header injection)."""
_AMBIGUOUS = re.compile(r"[\s\\]")
"""Whitespace and backslashes in an authority: parsers disagree on where the host is."""
_SHOWN = 200
"""Longest agent-chosen text quoted in a decision."""
_KIB = 1024
_RATES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "inmsg": (10.0, 50.0),
        "outmsg": (2.0, 20.0),
        "llm": (2.0, 10.0),
        "api": (5.0, 20.0),
        "fs": (20.0, 100.0),
        "admin": (10.0, 30.0),
    }
)
_MAX_ARGS: Mapping[str, int] = MappingProxyType(
    {
        "inmsg": 1 * _KIB,
        "outmsg": 64 * _KIB,
        "llm": 256 * _KIB,
        "api": 256 * _KIB,
        "fs": 256 * _KIB,
        "admin": 16 * _KIB,  # an answer to the Commander (4000 characters) and a proposal
    }
)


def _shown(text: str) -> str:
    return repr(text[:_SHOWN])


def _workspace_path(path: str) -> str | None:
    """The normalized workspace-relative form of ``path``, or None when it is outside.

    Absolute paths, ``..`` segments, NUL and backslashes are outside by definition: the FS
    adapter refuses them too, and no honest agent needs them. ``.`` and empty segments
    are dropped, so ``./a//b`` is ``a/b`` and ``.`` is the workspace root (``""``).
    """
    if path.startswith("/") or "\x00" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return None if ".." in parts else "/".join(parts)


def _host_text(host: str) -> str:
    """The hostname as written in a whitelist entry: lower case, brackets around IPv6."""
    host = host.lower().rstrip(".")
    return f"[{host}]" if ":" in host else host


def _net_entry(entry: str) -> str:
    """The canonical ``host`` or ``host:port`` form of a whitelist entry; ValueError if none."""
    if not entry.isascii() or _AMBIGUOUS.search(entry) or any(c in entry for c in "/?#@%"):
        raise ValueError(f"net host entry {entry!r} is not host or host:port")
    try:
        parts = urlsplit("//" + entry)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"net host entry {entry!r} is not host or host:port") from exc
    if not parts.hostname or not parts.hostname.rstrip(".") or port == 0:
        raise ValueError(f"net host entry {entry!r} is not host or host:port")
    host = _host_text(parts.hostname)
    return host if port is None else f"{host}:{port}"


def _destination(url: str) -> tuple[str, int, int] | None:
    """``(host, port, the scheme's default port)`` a URL reaches, or None if not certain.

    urllib finds the real host behind userinfo (``https://ok.com@evil.com/`` is evil.com).
    What parsers may read differently - control characters anywhere, surrounding
    whitespace, whitespace or backslashes or a second ``@`` in the authority, a non-ASCII
    authority - and schemes other than http(s) have no certain destination. Spaces or
    backslashes in the path or query do not move the host and are left to the adapter.
    """
    if _CONTROL.search(url) or url != url.strip():
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    default = _DEFAULT_PORTS.get(parts.scheme)
    netloc = parts.netloc
    if default is None or not netloc.isascii() or netloc.count("@") > 1:
        return None
    if _AMBIGUOUS.search(netloc):
        return None
    if not parts.hostname or not parts.hostname.rstrip("."):
        return None
    return _host_text(parts.hostname), default if port is None else port, default


@dataclass(frozen=True, slots=True)
class SentryProfile:
    """One pod's policy. Frozen: the Commander changes it only through ``with_*`` copies,
    and nothing a frame carries reaches it (R4). Every copy is validated again."""

    name: str = "standard"
    fs_prefixes: tuple[str, ...] = ("",)
    """Workspace-relative prefixes (whole segments) the pod may touch: ``""`` is all of the
    workspace, ``()`` none of it."""
    net_hosts: frozenset[str] = frozenset()
    """``host`` (the URL scheme's default port only) or ``host:port``; empty: no api at all."""
    rates: Mapping[str, tuple[float, float]] = field(default_factory=lambda: _RATES)
    """Per gateway: (requests per second sustained, burst). Every gateway must be named."""
    max_args_bytes: Mapping[str, int] = field(default_factory=lambda: _MAX_ARGS)
    """Per gateway: the largest JSON-encoded args. Every gateway must be named."""
    warmup: int = 50
    """Requests the fingerprint learns from before it starts scoring."""
    anomaly_threshold: float = 0.8
    """Danger score at which one ``sentry.danger`` record is written (and strict denies)."""
    anomaly_half_life_s: float = 300.0
    """Seconds for the danger score to halve while the agent behaves normally."""
    inspect_payloads: bool = False
    """Match outgoing inter-agent messages against DSC check 7's injection patterns."""
    anomaly_denies: bool = False
    """Deny anomalous requests while the danger score is at or above the threshold."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fs_prefixes", tuple(_prefix(p) for p in self.fs_prefixes))
        object.__setattr__(self, "net_hosts", frozenset(_net_entry(h) for h in self.net_hosts))
        object.__setattr__(self, "rates", _per_gateway("rates", self.rates, _check_rate))
        object.__setattr__(
            self, "max_args_bytes", _per_gateway("max_args_bytes", self.max_args_bytes, _check_cap)
        )
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be a non-negative int, not {self.warmup!r}")
        if not 0.0 < self.anomaly_threshold <= 1.0:
            raise ValueError(f"anomaly_threshold must be in (0, 1], not {self.anomaly_threshold}")
        if not (math.isfinite(self.anomaly_half_life_s) and self.anomaly_half_life_s > 0):
            raise ValueError(
                f"anomaly_half_life_s must be positive, not {self.anomaly_half_life_s}"
            )

    @classmethod
    def standard(cls) -> SentryProfile:
        """MAC minimal: fs and network whitelists, traffic caps; the fingerprint only signals."""
        return cls(name="standard")

    @classmethod
    def hardened(cls) -> SentryProfile:
        """Standard plus inspection of inter-agent payloads."""
        return cls(name="hardened", inspect_payloads=True)

    @classmethod
    def strict(cls) -> SentryProfile:
        """Hardened plus anomaly denies, at a lower threshold."""
        return cls(name="strict", inspect_payloads=True, anomaly_denies=True, anomaly_threshold=0.6)

    def with_fs_prefixes(self, *prefixes: str) -> SentryProfile:
        return dataclasses.replace(self, fs_prefixes=prefixes)

    def with_net_hosts(self, *hosts: str) -> SentryProfile:
        return dataclasses.replace(self, net_hosts=frozenset(hosts))

    def with_rate(self, gw: str, rate: float, burst: float) -> SentryProfile:
        return dataclasses.replace(self, rates={**self.rates, gw: (rate, burst)})

    def with_max_args_bytes(self, gw: str, limit: int) -> SentryProfile:
        return dataclasses.replace(self, max_args_bytes={**self.max_args_bytes, gw: limit})

    def with_warmup(self, warmup: int) -> SentryProfile:
        return dataclasses.replace(self, warmup=warmup)

    def with_anomaly_threshold(self, threshold: float) -> SentryProfile:
        return dataclasses.replace(self, anomaly_threshold=threshold)


def _prefix(prefix: str) -> str:
    norm = _workspace_path(prefix)
    if norm is None:
        raise ValueError(f"fs prefix {prefix!r} is not a workspace-relative path")
    return norm


def _check_rate(gw: str, value: tuple[float, float]) -> None:
    rate, burst = value
    if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst >= 1):
        raise ValueError(f"rate of {gw} must be positive with a burst of at least 1: {value}")


def _check_cap(gw: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_args_bytes of {gw} must be a positive int, not {value!r}")


_V = TypeVar("_V")


def _per_gateway(
    name: str, raw: Mapping[str, _V], check: Callable[[str, _V], None]
) -> Mapping[str, _V]:
    """A read-only copy naming exactly the six gateways: a forgotten one would be unlimited."""
    if set(raw) != GATEWAYS:
        raise ValueError(f"{name} must name exactly the gateways {sorted(GATEWAYS)}")
    for gw, value in raw.items():
        check(gw, value)
    return MappingProxyType(dict(raw))


class _Bucket:
    """A token bucket; starts full. A clock that steps backwards refills nothing."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    bytes: int = 0
    denied: int = 0
    violations: int = 0


_NO_TASK = TaskView(task_id="")
_UNTRACED = Tracing()


class Sentry:
    """The guard of one pod, built by the kernel's pod runtime; see the module docstring.

    Nothing here takes its orders from a frame: the profile, the clock and the log are
    given at construction and never change.
    """

    __slots__ = (
        "_agent_id",
        "_buckets",
        "_clock",
        "_counters",
        "_fingerprint",
        "_log",
        "_prefilter",
        "_profile",
        "_sized",
        "_trace",
    )

    def __init__(
        self,
        agent_id: str,
        profile: SentryProfile,
        *,
        log: Callable[[str, Mapping[str, Any]], Awaitable[object]],
        clock: Callable[[], float] = time.time,
        trace: Tracing | None = None,
    ) -> None:
        """``log`` writes its records: the kernel's service desk with the Sentry's Ring 1
        capability (`sentry_log`), so they carry ``service:sentry`` as their principal."""
        self._agent_id = agent_id
        self._trace = trace or _UNTRACED
        """The kernel's tracer: `admit` opens a frame's span, `record` closes it."""
        self._profile = profile
        self._log = log
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._counters = {gw: _Counters() for gw in sorted(GATEWAYS)}
        self._fingerprint = Fingerprint(
            warmup=profile.warmup,
            half_life_s=profile.anomaly_half_life_s,
            threshold=profile.anomaly_threshold,
        )
        self._prefilter = PrefilterCheck()
        self._sized: tuple[Frame, int] | None = None
        """The last admitted frame and its encoded size: `record` of the same frame (the
        runtime's next call on it) reuses it instead of encoding the args again."""

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def profile(self) -> SentryProfile:
        return self._profile

    @property
    def danger_score(self) -> float:
        """The fingerprint's running score in [0, 1], decayed to the clock's now."""
        return self._fingerprint.score_at(self._clock())

    def stats(self) -> dict[str, Any]:
        """Counters per gateway and the fingerprint's state, for the dashboard and tests."""
        return {
            "agent_id": self._agent_id,
            "profile": self._profile.name,
            "danger_score": self.danger_score,
            "danger_signalled": self._fingerprint.signalled,
            "warmup_remaining": self._fingerprint.warmup_remaining,
            "gateways": {gw: dataclasses.asdict(c) for gw, c in self._counters.items()},
        }

    async def admit(self, frame: Frame) -> SentryDecision:
        """The decision on ``frame`` before the kernel sees it. Never raises: any internal
        error is a `SentryDeny` with ``SENTRY.INTERNAL`` (fail closed, R11)."""
        with self._trace.sentry(self._agent_id, frame.gw, frame.op) as span:
            try:
                decision = await self._admit(frame)
            except Exception as exc:
                decision = SentryDeny(
                    SentryCode.INTERNAL,
                    f"the sentry could not evaluate {frame.gw}.{frame.op} ({type(exc).__name__})",
                )
            if span is not None:
                span.set_attribute("maos.sentry.verdict", getattr(decision, "code", "allow"))
        if span is not None and isinstance(decision, SentryViolation):
            self._trace.frame_done("violation", decision.code)  # no record() follows
        if not isinstance(decision, SentryAllow):
            why = decision.reason if isinstance(decision, SentryDeny) else decision.detail
            self._trace.refused(self._agent_id, f"{frame.gw}.{frame.op}", decision.code, why)
        counters = self._counters.get(frame.gw)
        if counters is not None:
            if isinstance(decision, SentryDeny):
                counters.denied += 1
            elif isinstance(decision, SentryViolation):
                counters.violations += 1
        return decision

    async def record(self, frame: Frame, *, status: str, code: str = "") -> None:
        """The kernel answered ``frame`` (``status`` is the `OutcomeStatus` value): log the
        egress and let the fingerprint learn. Raises `WalError` if the egress record cannot
        be made durable - an unlogged egress must stop the pod like any log failure."""
        self._trace.frame_done(str(status), code)
        sized, self._sized = self._sized, None
        size = sized[1] if sized is not None and sized[0] is frame else _args_bytes(frame)
        target = _target(frame)
        if frame.gw != "admin" and status != OutcomeStatus.DENIED:
            keys = frozenset(frame.args.model_fields_set)
            self._fingerprint.learn(Shape(frame.gw, frame.op, keys, size, target))
        if frame.gw in EGRESS_GATEWAYS:
            body = {
                "agent_id": self._agent_id,
                "gw": frame.gw,
                "op": frame.op,
                "target": target or "",
                "bytes_out": size,
                "status": str(status),
                "code": code,
            }
            await self._log("sentry.egress", body)

    async def _admit(self, frame: Frame) -> SentryDecision:
        counters = self._counters[frame.gw]
        counters.requests += 1
        if frame.agent_id != self._agent_id:
            return SentryDeny(SentryCode.INTERNAL, "the frame is bound to another agent")
        size = _args_bytes(frame)
        self._sized = (frame, size)
        counters.bytes += size
        violation = self._enforce(frame)
        if violation is not None:
            return violation
        if frame.gw == "admin" and frame.op == "apoptosis":
            return _ALLOW  # R9: self-termination is never rate-limited or scored
        now = self._clock()
        denial = self._traffic(frame.gw, size, now) or self._inspect(frame, now)
        if denial is None and frame.gw != "admin":
            keys = frozenset(frame.args.model_fields_set)
            shape = Shape(frame.gw, frame.op, keys, size, _target(frame))
            denial = await self._watch(frame, shape, now)
        return _ALLOW if denial is None else denial

    def _enforce(self, frame: Frame) -> SentryViolation | None:
        """The policy enforcer; an args model it does not know raises (fail closed)."""
        args = frame.args
        if frame.gw == "fs":
            if not isinstance(args, FsPathArgs | FsWriteArgs):
                raise TypeError(f"no path rule for fs args {type(args).__name__}")
            norm = _workspace_path(args.path)
            if norm is None or not any(
                not p or norm == p or norm.startswith(p + "/") for p in self._profile.fs_prefixes
            ):
                return SentryViolation(
                    SentryCode.MAC_FS,
                    f"fs.{frame.op} of {_shown(args.path)} is outside the whitelist",
                )
        elif frame.gw == "api" and isinstance(args, ApiToolArgs):
            pass  # no socket of the pod's: the kernel checks the tool's grant and targets
        elif frame.gw == "api":
            if not isinstance(args, ApiRequestArgs):
                raise TypeError(f"no destination rule for api args {type(args).__name__}")
            dest = _destination(args.url)
            hosts = self._profile.net_hosts
            if dest is None:
                return SentryViolation(
                    SentryCode.MAC_NET, f"{_shown(args.url)} has no certain http(s) destination"
                )
            host, port, default = dest
            if f"{host}:{port}" not in hosts and not (port == default and host in hosts):
                return SentryViolation(
                    SentryCode.MAC_NET, f"{host}:{port} is not on the network whitelist"
                )
        elif frame.gw == "admin" and frame.op not in ADMIN_OPS:
            return SentryViolation(
                SentryCode.MAC_ADMIN, f"admin.{frame.op} is not an operation a pod may ask for"
            )
        return None

    def _traffic(self, gw: str, size: int, now: float) -> SentryDeny | None:
        """Rate first, so every attempt costs a token - oversized ones too."""
        bucket = self._buckets.get(gw)
        if bucket is None:
            rate, burst = self._profile.rates[gw]
            bucket = self._buckets[gw] = _Bucket(rate, burst, now)
        if not bucket.take(now):
            return SentryDeny(SentryCode.TRAFFIC_RATE, f"the {gw} gateway's rate limit is reached")
        cap = self._profile.max_args_bytes[gw]
        if size > cap:
            return SentryDeny(
                SentryCode.TRAFFIC_SIZE, f"{size} bytes of {gw} arguments exceed the cap of {cap}"
            )
        return None

    def _inspect(self, frame: Frame, now: float) -> SentryDeny | None:
        """Hardened and strict: DSC check 7 itself over an outgoing message and its recipient,
        so the Sentry and the kernel can never disagree on what an injection looks like."""
        args = frame.args
        if not (self._profile.inspect_payloads and frame.gw == "outmsg"):
            return None
        if not isinstance(args, OutMsgSendArgs):
            raise TypeError(f"no payload rule for outmsg args {type(args).__name__}")
        intent = Intent(
            intent_id=f"sentry:{frame.id}",
            agent_id=self._agent_id,
            task_id="",
            op=f"outmsg.{frame.op}",
            target=args.to,
            idempotency_key="",
            content=args.body,
        )
        # Check 7 reads only the intent; agent and task are placeholders it ignores.
        verdict = self._prefilter(
            CheckInput(intent, AgentView(self._agent_id, ring=3), _NO_TASK, now, node_id="")
        )
        if isinstance(verdict, Deny):
            return SentryDeny(SentryCode.PAYLOAD_INJECTION, verdict.reason)
        return None

    async def _watch(self, frame: Frame, shape: Shape, now: float) -> SentryDeny | None:
        """Scores the request; a crossing writes ONE danger record, and under strict denies."""
        seen = self._fingerprint.observe(shape, now)
        threshold = self._profile.anomaly_threshold
        if seen.crossed:
            body = {
                "agent_id": self._agent_id,
                "profile": self._profile.name,
                "score": seen.score,
                "threshold": threshold,
                "reasons": list(seen.recent),
                "frame_id": frame.id,
                "gw": frame.gw,
                "op": frame.op,
            }
            try:
                await self._log("sentry.danger", body)
            except BaseException:
                self._fingerprint.unsignal()
                raise
        if self._profile.anomaly_denies and seen.anomaly > 0 and seen.score >= threshold:
            why = "; ".join(seen.reasons)
            return SentryDeny(
                SentryCode.ANOMALY, f"behaviour departs from the baseline ({seen.score:.2f}): {why}"
            )
        return None


def _args_bytes(frame: Frame) -> int:
    return len(frame.args.model_dump_json().encode())


def _target(frame: Frame) -> str | None:
    """What the request is aimed at, for the fingerprint and the egress log: ``host:port``
    for api, the recipient for outmsg, the first path segment (area) for fs."""
    args = frame.args
    if frame.gw == "api" and isinstance(args, ApiRequestArgs):
        dest = _destination(args.url)
        return None if dest is None else f"{dest[0]}:{dest[1]}"
    if frame.gw == "outmsg" and isinstance(args, OutMsgSendArgs):
        return args.to
    if frame.gw == "api" and isinstance(args, ApiToolArgs):
        return f"tool:{args.name}"
    if frame.gw == "fs" and isinstance(args, FsPathArgs | FsWriteArgs):
        norm = _workspace_path(args.path)
        return None if norm is None else norm.split("/", 1)[0]
    return None


def sentry_log(kernel: Kernel) -> Callable[[str, Mapping[str, Any]], Awaitable[int]]:
    """The Sentry's writes: through ``kernel``'s service desk (Ring 1: write no), with the
    Sentry's capability, so each record is chartered and carries ``service:sentry``. In
    batches: every pod's Sentry shares the desk's one batcher, so the records they make
    in the same turn of the event loop go as one order (`maos.kernel.services.Batcher`);
    each `Sentry.record` still returns only once its own record is durable."""
    return kernel.services.batched("sentry")
