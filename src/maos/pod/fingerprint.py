"""The Sentry's behavioural fingerprint: what one agent normally does, and how far it strays.

A hijacked agent (OWASP ASI10, rogue agents) seldom sends a request the whitelists forbid
- those are the policy enforcer's - but it starts doing what it never did before: a new
operation, a new host, a new recipient, requests many times larger than usual. The
fingerprint learns the agent's habits from its first ``warmup`` mediated requests and then
scores every request against that baseline.

Invariants:

- Deterministic: scores depend only on the shapes and the times passed in (no clock, no
  randomness), so a recorded session replays to the same scores.
- The baseline freezes when warm-up ends: an agent cannot train it afterwards by repeating
  a new behaviour until it looks normal.
- Only requests the kernel did not deny are learned (the caller decides which), so a
  warm-up cannot bless a behaviour the kernel refused.
- Every score is in [0, 1]. A request's anomaly is the noisy-or of its findings; the
  running score is the noisy-or of the previous score, halved every ``half_life_s``
  seconds, and the new anomaly - several medium findings in a short time add up to a
  high score, and a quiet agent drifts back to zero. Time that runs backwards decays
  nothing.
- One signal per episode: reaching the threshold is reported once (`Observation.crossed`)
  and re-armed only when the score has fallen below half the threshold, so a score
  hovering at the line cannot flood the log.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Fingerprint", "Observation", "Shape"]

_NEW_OP = 0.9
"""Weight of a (gateway, operation) pair the baseline never saw."""
_NEW_TARGET: Mapping[str, float] = MappingProxyType({"api": 0.9, "outmsg": 0.6, "fs": 0.4})
"""Weight of a target never seen on that gateway: host, recipient, workspace area."""
_NEW_KEYS = 0.3
"""Weight of a set of argument keys never seen for the pair."""
_LARGER = 0.5
"""Weight of a request at least two size buckets (4x) above the largest seen for the pair."""
_FLOOR_BITS = 8
"""Requests under 256 bytes share one size bucket: small sizes vary for no reason."""
_TARGET_NAMES: Mapping[str, str] = MappingProxyType(
    {"api": "host", "outmsg": "recipient", "fs": "workspace area"}
)
_SHOWN = 80
_RECENT = 16
"""Findings kept for the next danger record."""
"""Longest target text quoted in a reason; the rest of an agent-chosen value is cut."""


@dataclass(frozen=True, slots=True)
class Shape:
    """The features of one request that the fingerprint compares; built by the Sentry."""

    gw: str
    op: str
    keys: frozenset[str]
    """The argument keys the agent set (not the defaults it left out)."""
    size: int
    """Bytes of the JSON-encoded arguments."""
    target: str | None
    """``host:port`` for api, the recipient for outmsg, the first path segment for fs."""


@dataclass(frozen=True, slots=True)
class Observation:
    """The fingerprint's view of one request."""

    anomaly: float
    """How unusual this request alone is, in [0, 1]; 0 during warm-up."""
    score: float
    """The running score after this request."""
    reasons: tuple[str, ...]
    """One sentence per finding; empty when the request looked normal."""
    crossed: bool = False
    """This request took the score to the threshold while no danger was signalled: the
    one moment a danger record is due."""
    recent: tuple[str, ...] = ()
    """When ``crossed``: the findings since the score was last calm, newest last."""


def _bucket(size: int) -> int:
    """log2 size bucket, with everything below 2**_FLOOR_BITS in the lowest."""
    return max(size.bit_length(), _FLOOR_BITS)


@dataclass(slots=True)
class _Pair:
    """What the baseline holds for one (gateway, operation) pair."""

    keys: set[frozenset[str]] = field(default_factory=set)
    max_bucket: int = 0


class Fingerprint:
    """One agent's baseline and running score; owned by its Sentry, never shared."""

    __slots__ = (
        "_half_life",
        "_last",
        "_learned",
        "_pairs",
        "_recent",
        "_score",
        "_signalled",
        "_targets",
        "_threshold",
        "_warmup",
    )

    def __init__(self, *, warmup: int, half_life_s: float, threshold: float) -> None:
        self._warmup = warmup
        self._half_life = half_life_s
        self._threshold = threshold
        self._learned = 0
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._targets: dict[str, set[str]] = {}
        self._score = 0.0
        self._last: float | None = None
        # Invariant: True from a crossing until the score falls below half the threshold;
        # no second crossing before that (one danger record per episode, not per request).
        self._signalled = False
        self._recent: deque[str] = deque(maxlen=_RECENT)

    @property
    def learning(self) -> bool:
        """True while the warm-up lasts: requests are learned, not scored."""
        return self._learned < self._warmup

    @property
    def warmup_remaining(self) -> int:
        return max(0, self._warmup - self._learned)

    @property
    def signalled(self) -> bool:
        """A crossing was reported and the score has not been calm since."""
        return self._signalled

    def unsignal(self) -> None:
        """The danger record of a crossing could not be written: the next request that
        keeps the score at the threshold crosses again, so the record is retried."""
        self._signalled = False

    def learn(self, shape: Shape) -> None:
        """Adds a request the kernel accepted to the baseline; a no-op once warm-up is over."""
        if not self.learning:
            return
        self._learned += 1
        pair = self._pairs.setdefault((shape.gw, shape.op), _Pair())
        pair.keys.add(shape.keys)
        pair.max_bucket = max(pair.max_bucket, _bucket(shape.size))
        if shape.target is not None:
            self._targets.setdefault(shape.gw, set()).add(shape.target)

    def score_at(self, now: float) -> float:
        """The running score as it has decayed by ``now``."""
        if self._last is None or not now > self._last:
            return self._score
        return self._score * math.exp2(-(now - self._last) / self._half_life)

    def observe(self, shape: Shape, now: float) -> Observation:
        """Scores one request against the baseline and folds it into the running score."""
        decayed = self.score_at(now)
        if self._last is None or now > self._last:
            self._last = now
        if self.learning:
            self._score = decayed
            return Observation(0.0, decayed, ())
        findings = self._findings(shape)
        normal = 1.0
        for weight, _ in findings:
            normal *= 1.0 - weight
        if decayed < self._threshold / 2:  # calm again: the next crossing is a new episode
            self._signalled = False
            self._recent.clear()
        score = self._score = 1.0 - (1.0 - decayed) * normal
        reasons = tuple(reason for _, reason in findings)
        self._recent.extend(reasons)
        crossed = score >= self._threshold and not self._signalled
        self._signalled = self._signalled or crossed
        recent = tuple(self._recent) if crossed else ()
        return Observation(1.0 - normal, score, reasons, crossed, recent)

    def _findings(self, shape: Shape) -> list[tuple[float, str]]:
        pair = self._pairs.get((shape.gw, shape.op))
        if pair is None:  # every other feature is new too; one finding says it all
            return [(_NEW_OP, f"new operation {shape.gw}.{shape.op}")]
        found: list[tuple[float, str]] = []
        seen = self._targets.get(shape.gw, set())
        if shape.target is not None and shape.target not in seen and shape.gw in _NEW_TARGET:
            shown = shape.target[:_SHOWN]
            found.append((_NEW_TARGET[shape.gw], f"new {_TARGET_NAMES[shape.gw]} {shown!r}"))
        if shape.keys not in pair.keys:
            found.append((_NEW_KEYS, f"new argument keys for {shape.gw}.{shape.op}"))
        # Only growth counts: exfiltration and abuse make requests bigger, never smaller.
        if _bucket(shape.size) >= pair.max_bucket + 2:
            found.append((_LARGER, f"{shape.size} bytes, far above the baseline"))
        return found
