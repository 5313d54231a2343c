"""`maos bench --quick`: every section runs and reports its stable keys (never its times)."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from maos.bench import render
from maos.bench.assistants import load_scenarios
from maos.cli import app

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")


def test_the_quick_bench_reports_every_section_with_its_baselines() -> None:
    result = CliRunner().invoke(app, ["bench", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(figures) == {
        "dsc", "durability", "pods", "egress", "federation", "scenarios", "assistants", "immune",
        "meta", "mcp_gateway", "resilience", "telemetry", "dashboard",
    }  # fmt: skip
    # Issue 12: a crashed service's restart against its own cold start, same run.
    assert figures["resilience"]["ratio_restart_vs_cold_start"] > 0
    # ... and the Sentry's records in batched orders against one order per record.
    assert figures["resilience"]["ratio_sentry_batched_vs_single"] > 0
    tel = figures["telemetry"]  # issue 10: tracing off against the bare loop and on
    assert tel["ratio_dsc_tracing_off_vs_bare"] > 0 and tel["ratio_dsc_tracing_on_vs_off"] > 0
    assert tel["tdp_records"] == 10_000 and tel["ratio_tdp_once_vs_wal_verify"] > 0
    # Issue 10: a committed record at the dashboard's event stream, against one state fetch.
    assert figures["dashboard"]["ratio_event_latency_vs_state_fetch_p50"] > 0
    # Issue 13: a call through the MCP gateway against a direct call to the same upstream.
    assert figures["mcp_gateway"]["ratio_gateway_vs_direct_p50"] > 0
    assert figures["mcp_gateway"]["ratio_gateway_vs_direct_p99"] > 0
    # ... and calls/s of 50 HTTP sessions at once through it against the same direct.
    assert figures["mcp_gateway"]["ratio_http_gateway_vs_direct_calls_per_s"] > 0
    immune = figures["immune"]  # issue 12: the pre-effect check beside the DSC without it
    assert immune["ratio_dsc_with_aggregate_vs_without"] > 0
    assert immune["ratio_danger_fold_vs_dsc_decision"] > 0
    assert immune["ratio_dsc_with_memory_vs_empty"] > 0  # the immune memory's cost
    dsc, log, pods, scenarios = (figures[k] for k in ("dsc", "durability", "pods", "scenarios"))
    # Each figure stands beside the baseline it is read against, measured in the same run.
    assert dsc["ratio_dsc_p50_vs_biscuit_authorize"] > 0
    assert log["ratio_100_submitters_vs_group_commit_limit"] > 0
    assert log["ratio_anchored_vs_plain_100_submitters"] > 0  # issue 9: the anchor's cost
    assert log["ratio_boot_check_vs_plain_scan"] > 0 and log["boot_check_records"] == 20_000
    assert pods["channel_echo_us_p50"] > 0 and pods["round_trip_us_p50"] > 0
    own = pods["level1_own_network"]  # issue 9: level 1 against the one before it
    assert own["ratio"] > 0 and own["shared_host_cold_start_ms_p50"] > 0
    fed = figures["federation"]  # issue 11: revocation time, against a bare NATS publish
    assert fed["ratio_revocation_to_kernel_vs_bare_p50"] > 0
    assert fed["revocation_to_leaf_kernel_ms_p50"] >= fed["revocation_to_leaf_mirror_ms_p50"] > 0
    nodes = fed["federation_nodes"]  # issue 11: five node runtimes, against bare NATS
    assert nodes["nodes"] == 5 and nodes["ratio_audit_vs_bare_throughput"] > 0
    assert (
        nodes["policy_to_every_node_ms_p50"] > 0
        and nodes["ratio_policy_vs_bare_fanout_p50"] > 0
        and fed["audit_durability"]["ratio_sync_always_vs_default"] > 0
    )
    egress = figures["egress"]  # issue 13: the relay's cost per connection, against direct
    assert egress["ratio_relay_vs_direct_p50"] > 0 and egress["direct_us_p50"] > 0
    assert egress["ratio_relay_vs_direct_cpu"] > 0
    assert egress["ratio_sandboxed_vs_direct_p50"] > 0
    assert egress["ratio_upstream_start_vs_plain"] > 0
    assert egress["ratio_upstream_first_vs_warm_start"] > 0  # cold (a fresh pod home) vs warm
    assert egress["relay_logged"] >= egress["connections"]  # every connection was logged
    assert figures["meta"]["quick"] is True
    # The quick run plays five scenarios, both ways, for real.
    assert scenarios["scenarios"] == 5 and len(scenarios["outcomes"]) == 10
    assert scenarios["attacker_success_rate"] == 0.0
    assert {r["attack"] for r in scenarios["rows"]} == {"blocked"}
    # The assistants suite (issue 8): a slice of it, derived grants beside every class granted.
    assistants = figures["assistants"]
    sliced = len(load_scenarios()[::16])
    assert assistants["scenarios"] == sliced
    assert set(assistants["derived"]) == set(assistants["all_granted"])
    assert assistants["derived"]["all"]["scenarios"] == sliced
    assert assistants["derived"]["all"]["attacker_success"] == 0
    table = render(figures)
    assert "attacker success (5 scenarios)" in table and "stopped by" in table
    assert "assistants mail: attacker success" in table
