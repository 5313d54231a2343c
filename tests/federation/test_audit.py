"""Audit up: the Sovereign re-checks every site's chain and witnesses its anchor (issue 11)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from maos.cli import app
from maos.federation.audit import ChainState, verify_message
from maos.kernel.chain import GENESIS


def test_a_record_tampered_with_at_a_site_is_detected_at_the_hub(
    start_fed: Callable[[], Awaitable[Any]],
) -> None:
    """issue 11 item 6: every node's records reach the Sovereign's audit stream and verify;
    a record whose body a local attacker rewrote in pawn-b's log before it was shipped is
    reported by the hub (federation.tampered), with the node and the seq."""

    async def scenario() -> tuple[dict[str, int], dict[str, int], list[dict[str, Any]], int]:
        fed = await start_fed()
        try:
            await fed.until(
                lambda: all(
                    (c := fed.hq.witness.chains.get(n.name)) is not None
                    and c.seq == n.kernel.wal.tail_seq() and c.anchored > 0
                    for n in fed.nodes if n is not fed.hq
                )
            )  # fmt: skip
            heads = {n.name: n.kernel.wal.tail_seq() for n in fed.nodes}
            audited = {n: c.seq for n, c in fed.hq.witness.chains.items()}
            pawn = fed.pawn_b
            await pawn.kernel.register_agent("mallory", ring=3, budgets={"api_calls": 1})
            seq = pawn.kernel.wal.tail_seq()
            with sqlite3.connect(pawn.kernel.wal.path) as db:
                db.execute(
                    "UPDATE records SET body = ? WHERE seq = ?",
                    (b'{"agent_id":"nobody","ring":2}', seq),
                )
            await fed.until(
                lambda: any(True for _ in fed.hq.kernel.wal.read(kinds=("federation.tampered",)))
            )
            found = [dict(r.body) for r in fed.hq.kernel.wal.read(kinds=("federation.tampered",))]
            return heads, audited, found, seq
        finally:
            await fed.stop()

    heads, audited, found, seq = asyncio.run(scenario())
    for name in ("site-a", "site-b", "pawn-a", "pawn-b"):
        assert audited[name] == heads[name], name
    assert found == [
        {"node": "pawn-b", "seq": seq, "code": "FED.AUDIT_TAMPERED",
         "reason": "the record's hash does not match it"}
    ]  # fmt: skip


def _rec(seq: int, prev: bytes, body: dict[str, Any]) -> tuple[bytes, bytes]:
    import orjson

    from maos.kernel.chain import digest

    raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    h = digest(prev, seq, 1.0, b"k", None, None, raw)
    msg = {"seq": seq, "ts": 1.0, "kind": "k", "intent_id": None, "idem_key": None,
           "body": body, "prev_hash": prev.hex(), "hash": h.hex()}  # fmt: skip
    return orjson.dumps(msg), h


def test_a_gap_a_broken_link_and_an_anchor_that_goes_back_or_names_another_record() -> None:
    """issue 11 item 6: the witness's checks, one message at a time."""
    import orjson

    chain = ChainState()
    m1, h1 = _rec(1, GENESIS, {"a": 1})
    first = {"seq": 1, "kind": "k", "intent_id": None, "body": {"a": 1}}
    assert verify_message(chain, "n", "rec", m1) == (None, first)
    anchor = orjson.dumps({"seq": 2, "hash": "00" * 32, "log_id": "00" * 32})
    assert verify_message(chain, "n", "anchor", anchor)[0] is None  # ahead of its record
    m2, h2 = _rec(2, h1, {"a": 2})
    assert verify_message(chain, "n", "rec", m2)[0].code == "FED.ANCHOR_MISMATCH"  # type: ignore[union-attr]
    m4, _ = _rec(4, h2, {"a": 4})
    assert verify_message(chain, "n", "rec", m4)[0].code == "FED.AUDIT_GAP"  # type: ignore[union-attr]
    m5, _ = _rec(5, GENESIS, {"a": 5})
    assert verify_message(chain, "n", "rec", m5)[0].code == "FED.AUDIT_TAMPERED"  # type: ignore[union-attr]
    back = orjson.dumps({"seq": 1, "hash": h1.hex(), "log_id": "00" * 32})
    assert verify_message(chain, "n", "anchor", back)[0].code == "FED.ANCHOR_ROLLBACK"  # type: ignore[union-attr]
    assert verify_message(chain, "n", "rec", b"junk")[0].code == "FED.AUDIT_TAMPERED"  # type: ignore[union-attr]


def test_the_commander_retires_and_admits_a_site_from_the_command_line(
    start_fed: Callable[[], Awaitable[Any]], as_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    """issue 11 item 5: `maos federation retire` stops the hub sourcing a site's audit on
    its next tick, `admit` sources it again; a certificate naming another node is refused
    before anything is logged. Both Sentinels are admitted with their certificates (the
    hub's leaf listener pins them from the first: its server restarts at each admission
    with a new pin, and the audit sources are back before the tick returns)."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            hq_yaml = str(as_yaml(fed.hq.config, tmp_path / "hq.yaml"))
            cli = CliRunner()
            seen: dict[str, Any] = {}
            cert = str(fed.site_b.config.certs.cert)
            admit_b = ["federation", "admit", "site-b", "--role", "sentinel", "-c", hq_yaml]
            assert cli.invoke(app, [*admit_b, "--cert", cert]).exit_code == 0
            before = fed.hq.kernel.wal.tail_seq()
            admit = ["federation", "admit", "site-a", "--role", "sentinel", "-c", hq_yaml]
            seen["bad"] = cli.invoke(app, [*admit, "--cert", cert])
            seen["logged"] = fed.hq.kernel.wal.tail_seq() - before
            seen["retire"] = cli.invoke(app, ["federation", "retire", "site-a", "-c", hq_yaml])
            await fed.tick()
            js = fed.hq.nc.jetstream()
            seen["retired"] = [s.name for s in (await js.stream_info("AUDIT")).config.sources]
            cert = str(fed.site_a.config.certs.cert)
            seen["admit"] = cli.invoke(app, [*admit, "--cert", cert])
            await fed.tick()
            seen["admitted"] = [s.name for s in (await js.stream_info("AUDIT")).config.sources]
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    assert seen["bad"].exit_code == 2 and "error FED.BAD_CERT" in seen["bad"].output
    assert seen["logged"] == 0
    assert seen["retire"].exit_code == 0 and seen["admit"].exit_code == 0
    assert seen["retired"] == ["AUDIT_site-b"]
    assert sorted(seen["admitted"]) == ["AUDIT_site-a", "AUDIT_site-b"]
