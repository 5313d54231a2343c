"""Partitions on real sockets with a stepped clock, a killed hub, and reconciliation (issue 11)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from maos.cli import app
from maos.federation.errors import FederationError
from maos.kernel.errors import MaosError
from maos.kernel.modes import Mode
from maos.kernel.tokens import Grant
from maos.kernel.types import EffectClass, Outcome
from maos.testing import intent_frame

MINUTE = 60.0


async def _setup(node: Any) -> tuple[str, str]:
    """A Ring 2 and a Ring 3 agent on one task that may write, read and delete reports."""
    k = node.kernel
    await node.register_agent("r2", ring=2, budgets={"api_calls": 10})
    await node.register_agent("r3", ring=3, budgets={"api_calls": 10})
    await k.open_task(
        "t1",
        request="Keep the reports: write, read and delete files under reports",
        trusted_targets=["reports/*"],
        effect_classes=[EffectClass.READ, EffectClass.WRITE, EffectClass.DELETE],
    )
    return _mint(node)


def _mint(node: Any) -> tuple[str, str]:
    """Fresh tokens (a Pawn's live minutes: each step of the clock outlives them)."""
    grants = [Grant("fs.*", "reports/*")]
    return node.kernel.mint("r2", "t1", grants), node.kernel.mint("r3", "t1", grants)


async def _do(node: Any, agent: str, token: str, op: str, name: str, **params: Any) -> Outcome:
    """``op`` on reports/<name>.txt, under an idempotency key of its own."""
    _do.n += 1  # type: ignore[attr-defined]
    key = f"{op}-{name}-{_do.n}"  # type: ignore[attr-defined]
    frame = intent_frame(token, op, f"reports/{name}.txt", key, **params)
    out: Outcome = await node.kernel.submit(frame, agent_id=agent)
    return out


_do.n = 0  # type: ignore[attr-defined]


async def _promote(node: Any) -> str:
    try:
        await node.promote("ov-never-asked")
    except MaosError as exc:
        return exc.code
    return "promoted"


async def _admit(node: Any, agent: str) -> str:
    try:
        await node.register_agent(agent, ring=3, budgets={"api_calls": 1})
    except FederationError as exc:
        return exc.code
    return "admitted"


def test_a_cut_pawn_restricts_at_5_15_60_minutes_and_heals_and_the_hub_reconciles(
    start_fed: Callable[[], Awaitable[Any]], as_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    """issue 11 item 5: pawn-a's link through a loopback proxy is cut; stepping the clock
    past 5, 15 and 60 minutes pauses Ring 3, then allows critical ops only, then Minimal
    Safe State; healing lifts it. What pawn-a committed offline under the old policy is
    re-validated at the Sovereign: the read is accepted, the write the new policy denies is
    surfaced to the Commander."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        pawn = fed.pawn_a
        try:
            r2, r3 = await _setup(pawn)
            await fed.hq.set_policy({"denied_ops": []})
            await fed.until(lambda: pawn._epoch() == 1)
            seen: dict[str, Any] = {
                "pre": await _do(pawn, "r2", r2, "fs.write", "pre", content="x")
            }
            await fed.proxy.cut()
            await fed.until(lambda: not pawn.link.up)
            await fed.hq.set_policy({"denied_ops": ["fs.write"]})  # epoch 2, pawn-a cut off
            await fed.until(lambda: fed.site_b._epoch() == 2)
            seen["offline_write"] = await _do(pawn, "r2", r2, "fs.write", "off", content="y")
            seen["offline_read"] = await _do(pawn, "r2", r2, "fs.read", "pre")
            seen["new_agent_cut"] = await _admit(pawn, "late")
            fed.clock.step(5 * MINUTE + 1)
            await fed.tick()
            r2, r3 = _mint(pawn)
            seen["d1"] = pawn.kernel.mode()
            seen["d1_r3"] = await _do(pawn, "r3", r3, "fs.write", "d1-r3", content="z")
            seen["d1_r2"] = await _do(pawn, "r2", r2, "fs.read", "pre")
            fed.clock.step(10 * MINUTE)
            await fed.tick()
            r2, r3 = _mint(pawn)
            seen["d2"] = pawn.kernel.mode()
            seen["d2_delete"] = await _do(pawn, "r2", r2, "fs.delete", "pre")
            seen["d2_read"] = await _do(pawn, "r2", r2, "fs.read", "pre")
            fed.clock.step(45 * MINUTE)
            await fed.tick()
            r2, r3 = _mint(pawn)
            seen["mss"] = pawn.kernel.mode()
            seen["mss_read"] = await _do(pawn, "r2", r2, "fs.read", "pre")
            await fed.proxy.heal()
            await fed.until(lambda: pawn.link.up and pawn.kernel.mode() is Mode.NORMAL)
            r2, r3 = _mint(pawn)
            seen["healed_read"] = await _do(pawn, "r2", r2, "fs.read", "pre")

            def surfaced() -> list[Any]:
                return [r for r in fed.hq.kernel.wal.read(kinds=("federation.unreconciled",))]

            await fed.until(lambda: bool(surfaced()))
            seen["unreconciled"] = [dict(r.body) for r in surfaced()]
            seen["reconciled"] = [
                dict(r.body) for r in fed.hq.kernel.wal.read(kinds=("federation.reconciled",))
            ]
            seen["tampered"] = list(fed.hq.kernel.wal.read(kinds=("federation.tampered",)))
            hq_yaml = as_yaml(fed.hq.config, tmp_path / "hq.yaml")
            cli = CliRunner()
            seen["status"] = cli.invoke(app, ["federation", "status", "--config", str(hq_yaml)])
            raw = cli.invoke(app, ["federation", "status", "-c", str(hq_yaml), "--json"])
            seen["json"] = json.loads(raw.output)
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    assert seen["pre"].status == "committed"
    assert seen["offline_write"].status == "committed"  # cached policy: epoch 1
    assert seen["offline_read"].status == "committed", seen["offline_read"]
    assert seen["new_agent_cut"] == "FED.CUT_OFF"
    assert seen["d1"] is Mode.DEGRADED_1
    assert seen["d1_r3"].code == "MODE.DEGRADED_1" and seen["d1_r2"].status == "committed"
    assert seen["d2"] is Mode.DEGRADED_2
    assert seen["d2_delete"].code == "MODE.DEGRADED_2" and seen["d2_read"].status == "committed"
    assert seen["mss"] is Mode.MSS and seen["mss_read"].code == "MODE.MSS"
    assert seen["healed_read"].status == "committed"
    bad = [u for u in seen["unreconciled"] if u["node"] == "pawn-a"]
    assert len(bad) == 1, [(u["op"], u["reason"], u["seq"]) for u in bad]
    (bad,) = bad
    assert bad["op"] == "fs.write" and bad["epoch_then"] == 1 and bad["epoch_now"] == 2
    assert "denies fs.write" in bad["reason"]
    accepted = [r for r in seen["reconciled"] if r["node"] == "pawn-a"]
    assert accepted and all(r["op"] == "fs.read" for r in accepted)
    assert seen["tampered"] == []
    out = seen["status"]
    assert out.exit_code == 0, out.output
    assert "UNRECONCILED pawn-a" in out.output and "fs.write" in out.output
    nodes = seen["json"]["nodes"]
    assert set(nodes) == {"hq", "site-a", "site-b", "pawn-a", "pawn-b"}
    assert nodes["pawn-a"]["epoch"] == 2 and nodes["pawn-a"]["role"] == "pawn"


def test_with_the_hub_killed_sites_keep_working_on_cached_policy_and_admit_no_new_agent(
    start_fed: Callable[[], Awaitable[Any]],
) -> None:
    """issue 11 item 5: SIGKILL the Sovereign's server; site-b and its Pawn keep deciding
    under the cached policy (a denied op stays denied, also after the Pawn reboots) and
    refuse new agents; the link back lifts the refusal."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            site, pawn = fed.site_b, fed.pawn_b
            tokens = {n.name: await _setup(n) for n in (site, pawn)}
            await fed.hq.set_policy({"denied_ops": ["fs.delete"]})
            await fed.until(lambda: site._epoch() == 1 and pawn._epoch() == 1)
            assert fed.hq.natsd is not None
            fed.hq.natsd.kill()
            await fed.until(lambda: site.cut_off() and pawn.cut_off())
            seen: dict[str, Any] = {}
            for n in (site, pawn):
                r2 = tokens[n.name][0]
                seen[n.name] = (
                    await _do(n, "r2", r2, "fs.write", "w", content="x"),
                    await _do(n, "r2", r2, "fs.delete", "w"),
                    await _admit(n, "late"),
                    await _promote(n),
                )
            await pawn.stop()
            pawn.policy.policy = None
            await pawn.start()
            r2 = _mint(pawn)[0]
            seen["rebooted"] = await _do(pawn, "r2", r2, "fs.delete", "w")
            seen["modes"] = (site.kernel.mode(), pawn.kernel.mode())
            return seen
        finally:
            await fed.stop()

    seen = asyncio.run(scenario())
    for name in ("site-b", "pawn-b"):
        wrote, deleted, admitted, promoted = seen[name]
        assert wrote.status == "committed", name
        assert deleted.code == "FED.POLICY_DENIED", name
        assert admitted == promoted == "FED.CUT_OFF", name
    assert seen["rebooted"].code == "FED.POLICY_DENIED"
    assert seen["modes"] == (Mode.NORMAL, Mode.NORMAL)  # a site cut off from the hub only
