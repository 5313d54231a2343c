"""Node runtimes on real nats-servers: hub + two leaves + a pawn each (issue 11)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from maos.cli import app
from maos.federation.errors import FederationError
from maos.federation.node import Node
from maos.federation.nodeconfig import load_node_config
from maos.federation.pki import NodeSpec, issue_pki
from maos.kernel.tokens import Grant
from maos.kernel.types import Allow, Deny, Outcome
from maos.testing import intent_frame


def _decision(node: Any, token: str) -> Allow | Deny:
    return node.kernel.tokens.authorize(
        token, agent_id="a1", op="fs.write", resource="reports/x", amount_cents=0,
        now=time.time(), task_id="t1",
    )  # fmt: skip


async def _agent(node: Any, agent: str = "a1") -> str:
    await node.register_agent(agent, ring=3, budgets={"api_calls": 10})
    if "t1" not in node.kernel.registry.tasks:
        await node.kernel.open_task("t1", trusted_targets=["reports/*"])
    return str(node.kernel.mint(agent, "t1", [Grant("fs.write", "reports/*")]))


async def _write(node: Any, token: str, key: str) -> Outcome:
    frame = intent_frame(token, "fs.write", f"reports/{key}.txt", key, content="x")
    out: Outcome = await node.kernel.submit(frame, agent_id="a1")
    return out


def test_a_revocation_anywhere_is_refused_everywhere_and_policy_flows_down(
    start_fed: Callable[[], Awaitable[Any]],
) -> None:
    """issue 11 items 2-3: a token revoked at a Pawn of site-a is refused at every node of
    both sites; a Pawn's token is refused at another node (audience); a policy epoch
    written at the Sovereign is enforced by every node's DSC."""

    async def scenario() -> dict[str, Any]:
        fed = await start_fed()
        try:
            tokens = {n.name: await _agent(n) for n in fed.nodes}
            elsewhere = _decision(fed.site_b, tokens["pawn-a"])
            before = {n.name: _decision(n, tokens[n.name]) for n in fed.nodes}
            written = {n.name: await _write(n, tokens[n.name], "k1") for n in fed.nodes}
            ids = await fed.pawn_a.revoke(tokens["pawn-a"])
            others = [n for n in fed.nodes if n is not fed.pawn_a]
            await fed.until(lambda: all(ids[0] in n.kernel.tokens.revocations for n in others))
            policy = await fed.hq.set_policy({"denied_ops": ["fs.write"]})
            await fed.until(lambda: all(n._epoch() == policy.epoch for n in fed.nodes))
            denied = {n.name: await _write(n, tokens[n.name], "k2") for n in others}
            return {"before": before, "written": written, "denied": denied,
                    "elsewhere": elsewhere, "ids": ids, "others": others}  # fmt: skip
        finally:
            await fed.stop()

    out = asyncio.run(scenario())
    assert all(isinstance(d, Allow) for d in out["before"].values())
    assert all(o.status == "committed" for o in out["written"].values()), out["written"]
    assert isinstance(out["elsewhere"], Deny)
    assert {o.code for o in out["denied"].values()} == {"FED.POLICY_DENIED"}


def test_a_node_with_another_federations_certificate_is_refused(
    start_fed: Callable[[], Awaitable[Any]], node_cfg: Callable[..., Any], tmp_path: Path
) -> None:
    """issue 11 item 4: a Pawn whose certificate another CA issued cannot join site-b
    (FED.UNREACHABLE at start, its kernel closed), and a Sentinel with one never links
    to the hub; the federation's own nodes are unaffected."""
    other = issue_pki(
        tmp_path / "other",
        [NodeSpec("hq", "sovereign"), NodeSpec("site-x", "sentinel"), NodeSpec("pawn-x", "pawn")],
        federation="other",
    )

    async def scenario() -> tuple[str, bool, int, bool]:
        fed = await start_fed()
        try:
            assert fed.site_b.natsd is not None and fed.hq.natsd is not None
            url = fed.site_b.natsd.client_url
            pawn = Node(node_cfg(other, tmp_path, "pawn", "pawn-x", upstream=url,
                                 upstream_name="site-b"))  # fmt: skip
            try:
                await pawn.start()
                code = "started"
            except FederationError as exc:
                code = exc.code
            closed = pawn.kernel is None and pawn.natsd is None
            leaf = fed.hq.natsd.leaf_url
            site = await Node(node_cfg(other, tmp_path, "sentinel", "site-x", upstream=leaf,
                                       upstream_name="hq")).start()  # fmt: skip
            try:
                for _ in range(5):
                    await site.tick()
                    await asyncio.sleep(0.1)
                leafs = fed.hq.natsd.get("/leafz")["leafnodes"]
                linked = site.link.up
            finally:
                await site.stop()
            await fed.tick(2)
            return code, closed, leafs, linked and fed.site_b.link.up
        finally:
            await fed.stop()

    code, closed, leafs, linked = asyncio.run(scenario())
    assert code == "FED.UNREACHABLE" and closed
    assert leafs == 2 and not linked


def test_a_node_config_is_strict_and_its_misuse_is_an_error_code(tmp_path: Path) -> None:
    """issue 11 item 1: `maos node pawn --config` refuses an unknown key, a wrong type, a
    missing upstream, a plain-text link and another role's file, before starting anything."""
    good = "role: pawn\nname: p1\ndata_dir: d\ncerts: {ca: c, cert: c, key: k}\n"
    good += "upstream: tls://127.0.0.1:4222\nupstream_name: site-a\n"
    cases = {
        "typo": (good + "tikc: 1\n", "FED.BAD_CONFIG", "tikc"),
        "type": (good + "tick: 'fast'\n", "FED.BAD_CONFIG", "tick"),
        "no-link": (good.replace("upstream: tls://127.0.0.1:4222\n", ""), "FED.BAD_CONFIG", ""),
        "plain": (good.replace("tls://", "nats://"), "FED.BAD_CONFIG", "tls://"),
        "order": (
            good + "partition: {degraded_1_after: 900, degraded_2_after: 300}\n",
            "FED.BAD_CONFIG",
            "rise",
        ),
        "yaml": ("role: [pawn\n", "FED.BAD_CONFIG", "YAML"),
    }
    cli = CliRunner()
    for name, (text, code, says) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        out = cli.invoke(app, ["node", "pawn", "--config", str(path)])
        assert out.exit_code == 2 and f"error {code}" in out.output and says in out.output, name
        assert not (tmp_path / "d").exists(), name
    path = tmp_path / "good.yaml"
    path.write_text(good)
    out = cli.invoke(app, ["node", "sentinel", "--config", str(path)])
    assert out.exit_code == 2 and "error FED.WRONG_ROLE" in out.output
    assert load_node_config(path, role="pawn").data_dir == tmp_path / "d"
