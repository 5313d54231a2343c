"""The Commander's side of the cascade in the console (issue 12): `maos agent release`,
`maos agent rca`, stages and danger scores in `maos agent list` and `maos status`, and
`maos security calibrate`. The log is written by a real kernel and a Security Agent; the
commands fold it in this process, as the CLI does."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.stages import Stage
from maos.kernel.tokens import Grant
from maos.services.security import SecurityAgent
from maos.testing import Mailbox, intent_frame, with_kernel

runner = CliRunner()


def _hard_isolated(config: KernelConfig) -> Path:
    """An agent that asked four times for MAOS's own log (R4): hard isolation."""

    async def body(k: Kernel) -> None:
        await k.register_agent("snoop", ring=3)
        await k.register_agent("mailer", ring=2)
        await k.open_task("t1", trusted_targets=["a@example.com"])
        token = k.mint("snoop", "t1", [Grant("fs.read", "*")])
        security = SecurityAgent(k, interval_s=3600)
        for n in range(4):
            frame = intent_frame(token, "fs.read", str(config.wal_path), f"r{n}")
            await k.submit(frame, agent_id="snoop")
            await security.poll()
        mail = k.mint("mailer", "t1", [Grant("email.send", "*")])
        for n in range(3):
            frame = intent_frame(mail, "email.send", "a@example.com", f"m{n}", body="hello")
            await k.submit(frame, agent_id="mailer")
        assert k.registry.agent("snoop").stage is Stage.HARD_ISOLATION

    with_kernel(config, body)
    return config.data_dir


def test_release_rca_list_and_status_show_the_cascade(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    data = str(_hard_isolated(config))
    listed = runner.invoke(app, ["agent", "list", "--data-dir", data, "--json"])
    assert listed.exit_code == 0, listed.output
    snoop = next(r for r in json.loads(listed.output) if r["agent_id"] == "snoop")
    assert snoop["stage"] == "hard_isolation" and snoop["danger_now"] > 10
    assert [e["code"] for e in snoop["evidence"]] == ["RULE.R4.PROTECTED"] * 4

    status = runner.invoke(app, ["status", "--data-dir", data])
    assert "snoop" in status.output and "hard_isolation" in status.output

    rca = runner.invoke(app, ["agent", "rca", "snoop", "--data-dir", data])
    assert rca.exit_code == 0, rca.output
    assert "hard_isolation" in rca.output and "log excerpt  " in rca.output
    assert "elimination   el-snoop" in rca.output and "pending" in rca.output

    asked = runner.invoke(app, ["approvals", "list", "-d", data])
    assert "eliminate snoop: rule_violation (RULE.R4.PROTECTED)" in asked.output, asked.output
    assert "evidence #" in asked.output and "maos agent rca" in asked.output

    wrong = runner.invoke(app, ["agent", "release", "snoop", "--to", "elimination", "-d", data])
    assert wrong.exit_code != 0 and "BAD_INPUT.STAGE" in wrong.output
    ok = runner.invoke(app, ["agent", "release", "snoop", "--to", "observation", "-d", data])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(app, ["agent", "release", "snoop", "--to", "soft_isolation", "-d", data])
    assert again.exit_code != 0 and "STATE.CASCADE.NOT_A_RELEASE" in again.output

    after = json.loads(runner.invoke(app, ["agent", "list", "-d", data, "--json"]).output)
    snoop = next(r for r in after if r["agent_id"] == "snoop")
    assert (snoop["stage"], snoop["status"], snoop["danger_now"]) == ("observation", "active", 0)


def test_calibrate_proposes_three_times_the_95th_percentile(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    data = str(_hard_isolated(replace(config)))
    out = runner.invoke(app, ["security", "calibrate", "--days", "1", "-d", data, "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    ring2 = {p["metric"]: p for p in result["proposals"] if p["agent_class"] == "ring2"}
    # three mails of the same size to one recipient, in one day, by the one ring-2 agent
    assert (
        ring2["external_destinations"]["p95"] == 1 and ring2["external_destinations"]["limit"] == 3
    )
    assert ring2["outbound_bytes"]["limit"] == 3 * ring2["outbound_bytes"]["p95"] > 0
    assert result["security"]["external_destinations_per_week"] == 3


def test_a_restarted_security_agent_asks_once_per_hard_isolation(
    config: KernelConfig, mailbox: Mailbox
) -> None:
    """The elimination request is in the log: a new Security Agent does not file it again."""
    _hard_isolated(config)

    async def restarted(k: Kernel) -> int:
        await SecurityAgent(k).poll()
        return len(list(k.wal.read(kinds=["approval.pending"])))

    assert with_kernel(config, restarted) == 1
