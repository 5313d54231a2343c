"""Aggregate figures per agent over sliding windows, checked BEFORE an effect (seed §49.11).

Each effect may pass every check on its own while together they exfiltrate: a thousand
small mails, one new recipient a minute. The kernel keeps, per agent, running sums of
what its committed effects sent, and check 3 (budget) asks this ledger, as its
sub-check 3b, whether the intent in hand would carry a figure past its limit. If so the
intent is refused with ``SECURITY.AGGREGATE.<METRIC>``, naming the window and the
figure, and the Security Agent (Ring 1) soft-isolates the agent when it reads the deny.

    metric                      default     window   counted from
    outbound_bytes              100 MiB     24 h     params of committed external effects
    external_destinations       50 unique   7 days   targets of committed external effects
    external_api_calls          500         24 h     committed external effects other than mail
    a2a_bytes_to_one_agent      50 MiB      24 h     params of committed msg.send and a2a.send,
                                                     per recipient (an agent id; an A2A agent's URL)
    declassifications           10          24 h     task.declassified (any task; alert only)

An ``a2a.send`` leaves the machine, so it also counts in the three external figures; its
recipient is the A2A agent's URL with the card's well-known path and trailing slashes
cut (`a2a_agent`), so addressing one agent by its card and by its base URL in turn does
not split its volume in two.

The sums are a fold of the log (`fold`, called by `LogView` for every record), so a
booting kernel and any CLI process hold the same figures, and the log's own time (each
record's ``ts``) slides the windows: a replay gives the same answers. The check is cheap
by construction: each window is a queue of the entries inside it with a running total
(and a count per distinct key), expired from the front as time moves, so a decision
touches only what left the window since the last one - never the history.

An effect counts once it committed (or once the Commander judged an in-doubt one as
having happened). A pod serves one request at a time, so an agent's next intent is
decided after its previous effect's record is folded. In monitoring-only mode (the
seed's calibration month) the check allows and the fold records would-be breaches
(`breaches`) for the Security Agent to log without acting.

The limits are ``config.json``'s (`AggregateLedger.configure`, at boot), replaced per
metric by the Commander's orders in the log (``security.threshold``, `maos security
threshold set`): folded like every other record, so they survive a restart and a
config reload. An order may name an agent class (``ring2``, ``ring3``): its limit then
holds that ring's agents, over every agent's (`limit_for`). Tightening is one step;
loosening is an Override once a second factor is enrolled (`maos.kernel.orders.threshold`,
docs/hacf.md).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from maos.kernel.ops import OpSpec
from maos.kernel.types import Deny, Intent

if TYPE_CHECKING:
    from maos.kernel.dsc.base import CheckInput  # annotations only: dsc imports this module

    # the log's record type only; importing the WAL here would pull it into
    from maos.kernel.wal import WalRecord  # every reader of the DSC package (the TDP)

__all__ = [
    "AGENT_CLASSES",
    "AGGREGATE_CODE",
    "DEFAULT_THRESHOLDS",
    "KINDS",
    "THRESHOLD_KIND",
    "AggregateLedger",
    "Breach",
    "Threshold",
    "a2a_agent",
    "destination",
    "limit_text",
    "thresholds",
]

AGGREGATE_CODE = "SECURITY.AGGREGATE."
"""Prefix of every pre-effect aggregate deny; the metric follows in upper case."""
_DAY = 24 * 3600.0
THRESHOLD_KIND = "security.threshold"
"""The Commander's order setting one metric's limit (body: metric, limit, before)."""
AGENT_CLASSES = ("ring2", "ring3")
"""What a threshold may be set for besides every agent (as `maos security calibrate`)."""
KINDS = frozenset(
    {
        THRESHOLD_KIND,
        "agent.registered",
        "intent.prepared",
        "intent.committed",
        "intent.resolved",
        "intent.failed",
        "task.declassified",
        "agent.status",
        "agent.stage",
    }
)
"""The only records `fold` reads."""


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    limit: float
    window_s: float


def thresholds(
    *,
    outbound_bytes_per_day: float = 100 * 1024 * 1024,
    external_destinations_per_week: float = 50,
    external_api_calls_per_day: float = 500,
    bytes_to_one_agent_per_day: float = 50 * 1024 * 1024,
    declassifications_per_day: float = 10,
) -> tuple[Threshold, ...]:
    """The seed's table with its windows; the limits default to its figures (the
    ``security`` section of ``config.json`` sets them)."""
    return (
        Threshold("outbound_bytes", outbound_bytes_per_day, _DAY),
        Threshold("external_destinations", external_destinations_per_week, 7 * _DAY),
        Threshold("external_api_calls", external_api_calls_per_day, _DAY),
        Threshold("a2a_bytes_to_one_agent", bytes_to_one_agent_per_day, _DAY),
        Threshold("declassifications", declassifications_per_day, _DAY),
    )


DEFAULT_THRESHOLDS = thresholds()


def limit_text(value: float) -> str:
    """One spelling of a limit, so an override's ``to`` and the order agree exactly
    (``104857600``, not ``1.04858e+08``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True, slots=True)
class Breach:
    """A figure past its threshold after the fact; ``agent_id`` None: system-wide."""

    agent_id: str | None
    metric: str
    value: float
    limit: float
    window_s: float
    seq: int
    """The record that carried the figure over."""

    def record(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "metric": self.metric,
            "value": self.value,
            "limit": self.limit,
            "window_s": self.window_s,
            "seq": self.seq,
        }


@dataclass(slots=True)
class _Window:
    """Amounts (or distinct keys) seen in the last ``window_s`` seconds."""

    window_s: float
    entries: deque[tuple[float, float, str]] = field(default_factory=deque)
    total: float = 0.0
    keys: Counter[str] = field(default_factory=Counter)

    def expire(self, now: float) -> None:
        entries, edge = self.entries, now - self.window_s
        while entries and entries[0][0] <= edge:
            _, old, old_key = entries.popleft()
            self.total -= old
            if old_key:
                self.keys[old_key] -= 1
                if self.keys[old_key] == 0:
                    del self.keys[old_key]

    def add(self, ts: float, amount: float, key: str = "") -> None:
        self.entries.append((ts, amount, key))
        self.total += amount
        if key:
            self.keys[key] += 1
        self.expire(ts)


_NONE: Mapping[str, _Window] = MappingProxyType({})
_NONE_KEYS: Mapping[str, int] = MappingProxyType({})


def _released(body: Mapping[str, object]) -> bool:
    """An agent let out of isolation: the Commander's resume, or a stage record leaving
    soft or hard isolation for a running, unrestricted stage."""
    if body.get("status") != "active":
        return False
    return "stage" not in body or body.get("from") in ("soft_isolation", "hard_isolation")


_A2A_OPS = frozenset({"msg.send", "a2a.send"})
"""Ops whose bytes count per recipient agent."""


def a2a_agent(op: str, target: str) -> str:
    """The recipient agent an ``a2a_bytes_to_one_agent`` figure is kept for."""
    if op != "a2a.send":
        return target
    parts = urlsplit(target)
    path = parts.path
    if "/.well-known/" in path:
        path = path[: path.index("/.well-known/")]
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path.rstrip('/')}"


def destination(target: str) -> str:
    """A URL counts by its host (a thousand paths on one API are one destination)."""
    if "://" in target:
        return urlsplit(target).hostname or target
    return target.lower()


class AggregateLedger:
    """The running sums; `fold` feeds them from the log, `check` is sub-check 3b.

    ``ops`` is the kernel's op catalogue (built-in ops and registered tools): it says
    which ops leave the machine. Not thread-safe: the kernel folds and decides on its
    event loop.
    """

    def __init__(
        self, ops: Mapping[str, OpSpec], limits: Sequence[Threshold] = DEFAULT_THRESHOLDS
    ) -> None:
        self._ops = ops
        self._windows: dict[str | None, dict[str, _Window]] = {}
        """Owner (an agent, None: system-wide) -> slot (metric[:recipient]) -> window."""
        self._prepared: dict[str, Mapping[str, object]] = {}
        self.breaches: list[Breach] = []
        """Figures found past their limit while folding (monitoring-only mode, a limit
        lowered, a system-wide figure), in log order, for the Security Agent."""
        self.enforce = True
        """False in monitoring-only mode: the check allows, `breaches` still records."""
        self._ordered: dict[str, float] = {}
        """Metric -> the limit the Commander's last ``security.threshold`` set."""
        self._by_class: dict[tuple[str, str], float] = {}
        """(metric, agent class) -> a limit set for that class only (over ``_ordered``)."""
        self._rings: dict[str, int] = {}
        """Agent -> its ring, for its class's limits."""
        self.configure(limits)

    def configure(self, limits: Sequence[Threshold], *, enforce: bool = True) -> None:
        """Set the configured limits (the windows are the seed's); figures so far, and
        the limits the Commander ordered in the log, are kept."""
        self._base = {t.metric: t for t in limits}
        self._limits = self._merged()
        self.enforce = enforce

    def _merged(self) -> dict[str, Threshold]:
        return {
            m: t if m not in self._ordered else Threshold(m, self._ordered[m], t.window_s)
            for m, t in self._base.items()
        }

    @property
    def limits(self) -> Mapping[str, Threshold]:
        return self._limits

    @property
    def ordered(self) -> Mapping[str, float]:
        """The limits the Commander set in the log, by metric (the rest are config's)."""
        return MappingProxyType(self._ordered)

    @property
    def by_class(self) -> Mapping[tuple[str, str], float]:
        """The limits the Commander set for one agent class, by (metric, class)."""
        return MappingProxyType(self._by_class)

    def limit_of(self, metric: str, agent_class: str | None) -> Threshold | None:
        """The limit in force for ``agent_class`` (None: every agent's)."""
        threshold = self._limits.get(metric)
        value = self._by_class.get((metric, agent_class or ""))
        if threshold is None or value is None:
            return threshold
        return Threshold(metric, value, threshold.window_s)

    def limit_for(self, metric: str, agent_id: str | None) -> Threshold | None:
        """The limit an agent's figure is held to: its class's, else every agent's."""
        if not self._by_class or agent_id is None:  # the common case: one dict lookup
            return self._limits.get(metric)
        return self.limit_of(metric, f"ring{self._rings.get(agent_id)}")

    # -- the fold ----------------------------------------------------------------------

    def fold(self, rec: WalRecord) -> None:
        kind = rec.kind
        if kind == "intent.prepared":
            if rec.idem_key is not None:
                self._prepared[rec.idem_key] = rec.body
        elif kind in ("intent.committed", "intent.failed", "intent.resolved"):
            prepared = self._prepared.pop(rec.idem_key or "", None)
            happened = kind == "intent.committed" or (
                kind == "intent.resolved" and bool(rec.body.get("happened"))
            )
            if prepared is not None and happened:
                self._effect(prepared, rec)
        elif kind == "task.declassified":
            self._add(None, "declassifications", rec, 1)
        elif kind == THRESHOLD_KIND:
            metric, limit = str(rec.body["metric"]), float(rec.body["limit"])
            agent_class = rec.body.get("agent_class")
            if agent_class:
                self._by_class[(metric, str(agent_class))] = limit
            else:
                self._ordered[metric] = limit
                self._limits = self._merged()
        elif kind == "agent.registered":
            self._rings[str(rec.body["agent_id"])] = int(rec.body["ring"])
        elif kind in ("agent.status", "agent.stage") and _released(rec.body):
            self.forget(str(rec.body["agent_id"]))  # the Commander (or a clean window) judged

    def forget(self, agent_id: str) -> None:
        """Start the agent's figures again from zero (it was released from isolation)."""
        self._windows.pop(agent_id, None)

    def _effect(self, prepared: Mapping[str, object], rec: WalRecord) -> None:
        op, agent = str(prepared["op"]), str(prepared["agent_id"])
        size = len(orjson.dumps(prepared.get("params") or {}))
        target = str(prepared.get("target", ""))
        if op in _A2A_OPS:
            self._add(agent, "a2a_bytes_to_one_agent", rec, size, per=a2a_agent(op, target))
            if op == "msg.send":
                return
        spec = self._ops.get(op)
        if spec is None or not spec.external:
            return
        self._add(agent, "outbound_bytes", rec, size)
        self._add(agent, "external_destinations", rec, 0, key=destination(target))
        if op != "email.send":
            self._add(agent, "external_api_calls", rec, 1)

    def _add(
        self,
        agent_id: str | None,
        metric: str,
        rec: WalRecord,
        amount: float,
        *,
        key: str = "",
        per: str = "",
    ) -> None:
        threshold = self.limit_for(metric, agent_id)
        if threshold is None:
            return
        window = self._window(agent_id, metric, per, threshold.window_s)
        window.add(rec.ts, amount, key)
        value = float(len(window.keys)) if metric == "external_destinations" else window.total
        if value > threshold.limit:
            self.breaches.append(
                Breach(agent_id, metric, value, threshold.limit, threshold.window_s, rec.seq)
            )

    def _window(self, agent_id: str | None, metric: str, per: str, window_s: float) -> _Window:
        slot = f"{metric}:{per}" if per else metric
        owned = self._windows.setdefault(agent_id, {})
        window = owned.get(slot)
        if window is None:
            window = owned[slot] = _Window(window_s)
        return window

    # -- what the Commander and the Security Agent read ----------------------------------

    def figures(self, agent_id: str | None, now: float) -> dict[str, float]:
        """The agent's figures now, per metric (per recipient for agent-to-agent bytes)."""
        out: dict[str, float] = {}
        for slot, window in self._windows.get(agent_id, {}).items():
            window.expire(now)
            metric = slot.split(":", 1)[0]
            out[slot] = (
                float(len(window.keys)) if metric == "external_destinations" else window.total
            )
        return out

    # -- sub-check 3b: before the effect -----------------------------------------------

    def check(self, inp: CheckInput) -> Deny | None:
        """Would this intent carry one of its agent's figures past a limit? Most intents
        (reads, workspace writes, the LLM) leave the machine not at all and cost one dict
        lookup here; an outbound one, a lookup per figure and the window's expiry."""
        intent = inp.intent
        op = intent.op
        spec = self._ops.get(op)
        if spec is None or not self.enforce or not (spec.external or op == "msg.send"):
            return None
        owned = self._windows.get(intent.agent_id) or _NONE
        now, size = inp.now, intent.params_bytes
        if op in _A2A_OPS:
            slot = "a2a_bytes_to_one_agent:" + a2a_agent(op, intent.target)
            deny = self._over(intent, owned.get(slot), "a2a_bytes_to_one_agent", now, size)
            if deny is not None or op == "msg.send":
                return deny
        deny = self._over(intent, owned.get("outbound_bytes"), "outbound_bytes", now, size)
        if deny is None:
            deny = self._new_destination(intent, owned.get("external_destinations"), now)
        if deny is None and op != "email.send":
            deny = self._over(intent, owned.get("external_api_calls"), "external_api_calls", now, 1)
        return deny

    def _over(
        self, intent: Intent, window: _Window | None, metric: str, now: float, amount: float
    ) -> Deny | None:
        threshold = self.limit_for(metric, intent.agent_id)
        if threshold is None:
            return None
        total = 0.0
        if window is not None:
            window.expire(now)
            total = window.total
        if total + amount <= threshold.limit:
            return None
        figure = f"{total:g} + {amount:g} asked > {threshold.limit:g}"
        return self._deny(intent.agent_id, threshold, figure)

    def _new_destination(self, intent: Intent, window: _Window | None, now: float) -> Deny | None:
        threshold = self.limit_for("external_destinations", intent.agent_id)
        if threshold is None:
            return None
        known: Mapping[str, int] = _NONE_KEYS
        if window is not None:
            window.expire(now)
            known = window.keys
        if intent.extra_targets:
            fresh = len({destination(t) for t in intent.targets}.difference(known))
        else:
            fresh = 0 if destination(intent.target) in known else 1
        if fresh == 0 or len(known) + fresh <= threshold.limit:
            return None
        figure = f"{len(known)} distinct + {fresh} new > {threshold.limit:g}"
        return self._deny(intent.agent_id, threshold, figure)

    @staticmethod
    def _deny(agent: str, threshold: Threshold, figure: str) -> Deny:
        hours = threshold.window_s / 3600
        return Deny(
            AGGREGATE_CODE + threshold.metric.upper(),
            f"agent {agent}: {threshold.metric.replace('_', ' ')} over {hours:g} h: {figure}",
            check="budget",
        )
