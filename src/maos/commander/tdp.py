"""The Trusted Display Path (seed §43): the minimal truth, in a process of its own.

The dashboard is the richest view and not a root of trust: it runs in the kernel's
process, behind a browser. The TDP is the other end of that trade. It opens the log
read-only, checks the hash chain and the head anchor itself (`maos.kernel.walcheck`, the
same verifier `maos wal verify` runs), folds the records through the kernel's own pure
folds (`Registry`, `ApprovalBook`) and prints what they say in the terminal: the agents
and their status, the decisions that wait, the system's mode. If the log was tampered
with it says so first, naming the record.

It imports nothing of the dashboard, the web stack or the kernel's write path (`Wal`,
`Kernel`, the Commit Layer): ``tests/commander/test_tdp.py`` checks that, and that this
file stays under 500 lines. ``maos tdp`` starts it as ``python -m maos.commander.tdp`` so
the console's own imports never enter its process.

Exit codes of ``--once``: 0 the log verifies, 2 it does not (the screen says why), 1 the
TDP could not run (bad arguments, unreadable data dir).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from maos.kernel import walcheck
from maos.kernel.anchor import HeadAnchor
from maos.kernel.approvals import Approval, ApprovalBook
from maos.kernel.chain import COLUMNS, parse_body
from maos.kernel.errors import MaosError
from maos.kernel.registry import Registry

__all__ = ["Screen", "TrustedView", "main", "render"]

_PAGE = 4096
_PREVIEW = 60
"""Characters of an agent-written value shown per cell: enough to recognise, never markup."""


@dataclass(frozen=True, slots=True)
class Screen:
    """What one look at the log found: the chain's verdict and the fold of what it holds."""

    verdict: walcheck.VerifyReport
    agents: tuple[dict[str, Any], ...]
    pending: tuple[dict[str, Any], ...]
    mode: dict[str, Any]
    records: int


@dataclass
class TrustedView:
    """A data directory's log, re-verified and folded a little further on each look.

    The first look re-hashes the whole chain (as ``maos wal verify``); later ones check
    the anchor against the head from the last checkpoint, as a boot does, and fold only
    the records that arrived since. A verdict that was once bad stays on screen.
    """

    data_dir: Path
    witness: Path | None = None
    registry: Registry = field(default_factory=Registry)
    approvals: ApprovalBook = field(default_factory=ApprovalBook)
    seen_seq: int = 0
    _looked: bool = False
    _bad: walcheck.VerifyReport | None = None

    @property
    def wal_path(self) -> Path:
        return self.data_dir / "wal.sqlite3"

    def look(self) -> Screen:
        anchor = HeadAnchor(self.data_dir, witness=self.witness)
        verdict = walcheck.check(self.wal_path, anchor, full=not self._looked)
        self._looked = True
        if not verdict.ok and self._bad is None:
            self._bad = verdict
        if verdict.ok and verdict.code is None:
            self._fold()
        shown = self._bad or verdict
        return Screen(
            verdict=shown,
            agents=tuple(self._agents()),
            pending=tuple(_pending(a) for a in self.approvals.pending()),
            mode=self._mode(),
            records=self.seen_seq,
        )

    def _fold(self) -> None:
        conn = walcheck.open_readonly(self.wal_path)
        try:
            while True:
                rows = conn.execute(
                    f"SELECT {COLUMNS} FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                    (self.seen_seq, _PAGE),
                ).fetchall()
                for row in rows:
                    kind = bytes(row[2]).decode()
                    body = parse_body(bytes(row[5]))
                    self.registry.apply(kind, body)
                    self.approvals.apply(kind, body)
                    self.seen_seq = int(row[0])
                if len(rows) < _PAGE:
                    return
        finally:
            conn.close()

    def _agents(self) -> list[dict[str, Any]]:
        # The same report the kernel's status gives, from the same fold.
        report = self.registry.agents_report()
        return [{"agent_id": k, **report[k]} for k in sorted(report)]

    def _mode(self) -> dict[str, Any]:
        safe = self.registry.safe_state
        return {
            "safe_state": None if safe is None else str(safe.get("reason", "")),
            "fever": self.registry.fever_report(),
        }


def _pending(item: Approval) -> dict[str, Any]:
    details = item.details or {}
    return {
        "approval_id": item.approval_id,
        "agent_id": item.agent_id,
        "op": str(details.get("op", item.intent.get("op", ""))),
        "targets": [str(t) for t in details.get("targets", [])],
        "code": item.code,
        "first_seen": {
            str(t): _origin(seen)
            for t, seen in dict(details.get("first_seen") or {}).items()
            if isinstance(seen, dict)
        },
    }


def _origin(seen: dict[str, Any]) -> str:
    """Where a flagged target first reached the task, as the decision packet says."""
    origin = str(seen.get("first_seen", ""))
    sources = seen.get("sources") or []
    return f"{origin} from {', '.join(map(str, sources))}" if sources else origin


def _stage(agent: dict[str, Any]) -> Text:
    """The agent's place in the quarantine cascade, its danger score and why it is there."""
    stage = str(agent.get("stage", "normal"))
    out = Text(stage, style="" if stage == "normal" else "bold yellow")
    out.append(f" ({float(agent.get('danger') or 0):.1f})")
    if agent.get("stage_cause") and stage != "normal":
        out.append(": ")
        out.append(_cell(agent["stage_cause"]))
    return out


def _cell(value: object) -> Text:
    """Agent-influenced text as plain text: no markup is ever interpreted."""
    raw = str(value)
    return Text(raw if len(raw) <= _PREVIEW else raw[: _PREVIEW - 1] + "…")


def render(screen: Screen) -> Group:
    """The screen as rich renderables; everything an agent could have written is `Text`."""
    v = screen.verdict
    if v.ok:
        head = Text(
            f"log verified: {v.records} records, chain and anchor intact"
            + ("" if v.anchored is None else f" (anchored at {v.anchored})"),
            style="bold green",
        )
    else:
        where = "" if v.first_bad_seq is None else f" at record {v.first_bad_seq}"
        head = Text(f"LOG NOT TRUSTED{where}: {v.code}: {v.reason}", style="bold white on red")
    mode = screen.mode
    if mode["safe_state"] is not None:
        mode_line = Text("mode: MINIMAL SAFE STATE - ", style="bold red")
        mode_line.append(_cell(mode["safe_state"]))
    elif mode["fever"].get("on"):
        mode_line = Text("mode: SECURITY FEVER", style="bold yellow")
    else:
        mode_line = Text("mode: normal", style="green")

    agents = Table(title="agents", expand=True)
    for col in ("agent", "ring", "status", "stage (danger)", "context"):
        agents.add_column(col)
    for a in screen.agents:
        ctx = a["context"]
        style = "" if a["status"] == "active" else "bold red"
        agents.add_row(
            _cell(a["agent_id"]),
            str(a["ring"]),
            Text(a["status"], style=style),
            _stage(a),
            Text(f"{ctx.get('conf', '?')}/{ctx.get('integrity', '?')}"),
        )

    pending = Table(title="decisions waiting", expand=True)
    for col in ("id", "agent", "op", "targets (first seen)", "code"):
        pending.add_column(col)
    for p in screen.pending:
        targets = Text()
        for i, t in enumerate(p["targets"]):
            if i:
                targets.append(", ")
            targets.append(_cell(t))
            origin = p["first_seen"].get(t)
            if origin:
                targets.append(f" ({origin})", style="yellow")
        pending.add_row(p["approval_id"], _cell(p["agent_id"]), p["op"], targets, str(p["code"]))
    if not v.ok:  # never an all-clear from a log that does not verify
        known = f"as the log stood at record {screen.records}, before it failed" * bool(
            screen.records
        )
        caption = known or "not known: nothing of this log is trusted enough to show"
        agents.caption = pending.caption = caption
    elif not screen.pending:
        pending.caption = "nothing waits for a decision"
    return Group(head, mode_line, agents, pending)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="maos tdp",
        description="The Trusted Display Path: verify the log and show what it says.",
    )
    p.add_argument("-d", "--data-dir", type=Path, default=Path(".maos"))
    p.add_argument("--witness", type=Path, default=None, help="config.json's wal.witness")
    p.add_argument("--once", action="store_true", help="print one screen and exit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between looks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    if not (args.data_dir / "wal.sqlite3").is_file():
        console.print(
            Text(
                f"error STATE.NO_LOG: {args.data_dir} holds no log (wal.sqlite3); "
                "give the data dir a kernel ran in with -d"
            )
        )
        return 1
    if not 0.1 <= args.interval <= 3600:
        console.print(Text("error BAD_INPUT.INTERVAL: --interval takes 0.1 to 3600 seconds"))
        return 1
    view = TrustedView(args.data_dir, witness=args.witness)
    try:
        if args.once:
            screen = view.look()
            console.print(render(screen))
            if not screen.verdict.ok:
                console.print(
                    Text(
                        f"error {screen.verdict.code}: the log does not verify; "
                        f"`maos wal verify -d {args.data_dir}` names what is wrong"
                    )
                )
            return 0 if screen.verdict.ok else 2
        with Live(render(view.look()), console=console, screen=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(render(view.look()))
    except KeyboardInterrupt:
        return 0
    except (MaosError, sqlite3.Error, OSError) as exc:
        code = getattr(exc, "code", "TDP.FAILED")
        console.print(Text(f"error {code}: {exc}"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
