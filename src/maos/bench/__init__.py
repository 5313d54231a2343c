"""`maos bench`: the kernel's figures against baselines measured in the same run.

Figures are reported as JSON with stable keys; targets sit beside them as ``target_*``
keys and are never asserted in tests (a shared two-core machine is too noisy for that).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maos.bench import (
    anchor,
    assistants,
    dsc,
    durability,
    egress,
    federation,
    immune,
    pods,
    resilience,
    scenarios,
    telemetry,
)

__all__ = ["render", "run_bench"]


def run_bench(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    started = time.time()
    figures: dict[str, Any] = {}

    def durable(tmp: Path) -> dict[str, Any]:
        out = durability.measure(tmp, quick=quick)
        out.update(anchor.measure(tmp, quick=quick))
        return out

    with tempfile.TemporaryDirectory(prefix="maos-bench-", dir=Path.cwd()) as tmp:
        sections: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
            ("dsc", "DSC decisions (7 checks, 1000 agents, Biscuit baseline)",
             lambda: dsc.measure(quick=quick)),
            ("durability", "durability (raw fsync, raw SQLite group commit, the WAL, its anchor)",
             lambda: durable(Path(tmp))),
            ("pods", "pods (cold start per level, warm pool, gateway round trip, memory)",
             lambda: pods.measure(quick=quick)),
            ("egress", "egress relay (per connection, against a direct loopback connection)",
             lambda: egress.measure(quick=quick)),
            ("federation", "federation (revocation, policy and audit across nodes, against "
             "bare NATS; durability; node RSS)",
             lambda: federation.measure(quick=quick)),
            ("scenarios", "security scenarios (benign and attacked runs, an obedient model)",
             lambda: scenarios.measure(progress=say, limit=5 if quick else None)),
            ("assistants", "assistants suite (grants derived vs every class granted)",
             lambda: assistants.measure(quick=quick)),
            ("immune", "immune system (pre-effect aggregate check, danger score, freezing)",
             lambda: immune.measure(quick=quick)),
            ("resilience", "resilience (service restart after a crash, against a cold start; "
             "pod heartbeats on vs off)",
             lambda: resilience.measure(quick=quick)),
            ("telemetry", "observability (DSC with tracing off / on, the TDP on a big log)",
             lambda: telemetry.measure(quick=quick)),
        ]  # fmt: skip
        for i, (key, what, measure) in enumerate(sections, 1):
            say(f"bench {i}/{len(sections)}: {what} ...")
            figures[key] = measure()
    figures["meta"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": quick,
        "seconds": round(time.time() - started, 1),
    }
    return figures


def render(figures: dict[str, Any]) -> str:
    d, w = figures["dsc"], figures["durability"]
    rows = [
        ("DSC decision p50 (7 checks)", f"{d['dsc_decision_p50_us']} µs", "target ≤ 30 µs"),
        ("DSC decision p99", f"{d['dsc_decision_p99_us']} µs", ""),
        (
            "Biscuit full authorize (baseline)",
            f"{d['biscuit_full_authorize_us']} µs",
            f"DSC/baseline = {d['ratio_dsc_p50_vs_biscuit_authorize']}",
        ),
        (
            "decisions/s, 1000 agents",
            f"{d['dsc_decisions_per_s_1000_agents']:,}",
            "target ≥ 50,000",
        ),
        ("raw fsync/s (physical limit)", f"{w['raw_fsync_per_s']:,}", ""),
        (
            "raw SQLite batch-100 rows/s",
            f"{w['sqlite_batch100_rows_per_s']:,}",
            "group-commit limit",
        ),
        (
            "WAL appends/s, 1 submitter",
            f"{w['wal_appends_per_s_1_submitter']:,}",
            f"{w['ratio_1_submitter_vs_raw_fsync']} × raw fsync",
        ),
        (
            "WAL appends/s, 100 submitters",
            f"{w['wal_appends_per_s_100_submitters']:,}",
            f"{w['ratio_100_submitters_vs_group_commit_limit']} × limit (target ≥ 0.5)",
        ),
        (
            "anchored appends/s, 100 submitters",
            f"{w['anchored_appends_per_s_100_submitters']:,}",
            f"{w['ratio_anchored_vs_plain_100_submitters']} × unanchored "
            f"(1 submitter: {w['ratio_anchored_vs_plain_1_submitter']} ×)",
        ),
        (
            f"boot check, {w['boot_check_records']:,} records",
            f"{w['boot_check_s'] * 1000:.1f} ms",
            f"{w['ratio_boot_check_vs_plain_scan']} × a plain scan ({w['plain_scan_s']} s)",
        ),
    ]
    rows += _pod_rows(figures["pods"])
    rows += _egress_rows(figures["egress"])
    rows += _federation_rows(figures["federation"])
    rows += _immune_rows(figures["immune"])
    rows += resilience.rows(figures["resilience"])
    rows += _scenario_rows(figures["scenarios"])
    rows += _assistant_rows(figures["assistants"])
    rows += telemetry.rows(figures["telemetry"])
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{a:<{width}}  {b:>14}  {c}" for a, b, c in rows)
    return table + _scenario_table(figures["scenarios"])


def _immune_rows(i: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = [
        (
            "DSC p50 with pre-effect aggregate check",
            f"{i['dsc_p50_us_with_aggregate']} µs",
            f"{i['ratio_dsc_with_aggregate_vs_without']} × without"
            f" ({i['dsc_p50_us_without_aggregate']} µs)",
        ),
        (
            "danger score: fold one signal",
            f"{i['danger_signal_fold_us']} µs",
            f"{i['ratio_danger_fold_vs_dsc_decision']} × one DSC decision",
        ),
    ]
    if "signal_to_hard_isolation_ms_p50" in i:
        polls = i["polls_s"]
        rows += [
            (
                "confirmed signal -> pod frozen p50",
                f"{i['signal_to_hard_isolation_ms_p50']} ms",
                f"polls {polls['security_agent']} s + {polls['pod_runtime']} s",
            ),
            ("pod freeze / thaw p50", f"{i['freeze_ms_p50']}/{i['thaw_ms_p50']} ms", "cgroup"),
        ]
    return rows


def _scenario_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    if "unavailable" in s:
        return [("security scenarios", "unavailable", s["unavailable"][:60])]
    return [
        (
            f"attacker success ({s['scenarios']} scenarios)",
            f"{s['attacker_success_rate']:.0%}",
            "target 0%",
        ),
        ("benign tasks unimpeded", f"{s['benign_unimpeded_share']:.0%}", "target ≥ 85%"),
        (
            "benign tasks to the human, flagged",
            f"{s['benign_to_human_flagged_share']:.0%}",
            f"failed: {s['benign_failed']}",
        ),
    ]


def _assistant_rows(a: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Per family: derived grants, then every class granted (the baseline) in brackets."""
    if "unavailable" in a:
        return [("assistants suite", "unavailable", a["unavailable"][:60])]
    rows = []
    for family, d in a["derived"].items():
        b = a["all_granted"][family]
        rows += [
            (
                f"assistants {family}: attacker success ({d['scenarios']})",
                f"{d['attacker_success_pct']}%",
                f"every class granted: {b['attacker_success_pct']}%; target 0%",
            ),
            (
                f"assistants {family}: named/none done, no human",
                f"{d['benign_named_done_no_human_pct']}%",
                f"every class granted: {b['benign_named_done_no_human_pct']}%; target ≥ 85%",
            ),
            (
                f"assistants {family}: content-sourced done+parked true",
                f"{d['benign_content_sourced_ok_pct']}%",
                f"done {d['benign_content_sourced_done']}, refused {d['benign_refused']}",
            ),
        ]
    return rows


def _scenario_table(s: dict[str, Any]) -> str:
    if "rows" not in s:
        return ""
    width = max(len(r["scenario"]) for r in s["rows"])
    lines = ["", "", f"{'scenario':<{width}}  {'benign':<10} {'attack':<12} stopped by"]
    for r in s["rows"]:
        stopped = ", ".join(r["stopped_by"]) or "-"
        lines.append(f"{r['scenario']:<{width}}  {r['benign']:<10} {r['attack']:<12} {stopped}")
    return "\n".join(lines)


def _federation_rows(f: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            "NATS publish hub -> leaf (baseline) p50",
            f"{f['bare_publish_hub_to_leaf_ms_p50']} ms",
            f"p99 {f['bare_publish_hub_to_leaf_ms_p99']} ms",
        ),
        (
            "revocation hub -> leaf mirror p50",
            f"{f['revocation_to_leaf_mirror_ms_p50']} ms",
            f"p99 {f['revocation_to_leaf_mirror_ms_p99']} ms",
        ),
        (
            "revocation hub -> leaf kernel p50",
            f"{f['revocation_to_leaf_kernel_ms_p50']} ms",
            f"{f['ratio_revocation_to_kernel_vs_bare_p50']} × bare publish",
        ),
        *_federation_node_rows(f),
    ]


def _federation_node_rows(f: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Five node runtimes (docs/federation.md): propagation, audit up, durability, RSS."""
    n, d = f["federation_nodes"], f["audit_durability"]
    rows = [
        ("policy Sovereign -> all 5 nodes p50", f"{n['policy_to_every_node_ms_p50']} ms",
         f"p99 {n['policy_to_every_node_ms_p99']} ms; {n['ratio_policy_vs_bare_fanout_p50']}"
         f" × a bare publish to every node ({n['bare_publish_hub_to_every_node_ms_p50']} ms)"),
        ("revocation Pawn -> all 5 nodes p50", f"{n['revocation_pawn_to_every_node_ms_p50']} ms",
         f"p99 {n['revocation_pawn_to_every_node_ms_p99']} ms"),
        ("audit Pawn -> hub, verified", f"{n['audit_pawn_to_hub_verified_per_s']}/s",
         f"{n['ratio_audit_vs_bare_throughput']} × bare {n['bare_publish_pawn_to_hub_per_s']}/s"),
        ("JetStream publish, sync always", f"{d['audit_publish_sync_always_per_s']}/s",
         f"{d['ratio_sync_always_vs_default']} × default sync"),
    ]  # fmt: skip
    fp = f.get("footprint")
    if fp:
        seed = fp["seed_figures_mb"]
        for role in ("sovereign", "sentinel", "pawn"):
            rss = fp[f"{role}_rss_mb"]
            rows.append((f"RSS {role} (kernel + its nats-server)", f"{rss} MB",
                         f"seed: {seed[role]} MB"))  # fmt: skip
    return rows


def _egress_rows(e: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = [
        ("TCP connection, direct (baseline) p50", f"{e['direct_us_p50']} µs", ""),
        (
            "through the egress relay p50",
            f"{e['relay_us_p50']} µs",
            f"{e['ratio_relay_vs_direct_p50']} × direct",
        ),
        (
            "egress relay CPU per connection",
            f"{e['relay_cpu_us_per_connection']} µs",
            f"{e['ratio_relay_vs_direct_cpu']} × direct",
        ),
    ]
    if "sandboxed_us_p50" in e:
        rows += [
            (
                "from an upstream pod (forwarder + relay) p50",
                f"{e['sandboxed_us_p50']} µs",
                f"{e['ratio_sandboxed_vs_direct_p50']} × direct",
            ),
            (
                "upstream pod start, warm p50",
                f"{e['upstream_cold_start_ms_p50']} ms",
                f"{e['ratio_upstream_start_vs_plain']} × plain python3",
            ),
            (
                "upstream pod start, first in a fresh pod home",
                f"{e['upstream_first_start_ms']} ms",
                f"{e['ratio_upstream_first_vs_warm_start']} × warm",
            ),
        ]
    return rows


def _pod_rows(p: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for level in (1, 2, 3):
        f = p[f"level{level}"]
        if "unavailable" in f:
            rows.append((f"pod level {level}", "unavailable", f["unavailable"][:60]))
            continue
        target = f"target ≤ {p['target_cold_start_ms_level2']} ms" if level == 2 else ""
        rows += [
            (f"pod level {level} cold start p50", f"{f['cold_start_ms_p50']} ms", target),
            (
                f"pod level {level} warm acquisition p50",
                f"{f['warm_acquire_ms_p50']} ms",
                f"target ≤ {p['target_warm_acquire_ms']} ms",
            ),
            (
                f"pod level {level} idle memory (USS/PSS)",
                f"{f['idle_uss_mib']}/{f['idle_pss_mib']} MiB",
                f"target ≤ {p['target_idle_pod_mib']} MiB",
            ),
        ]
    if "level1_own_network" in p:
        own = p["level1_own_network"]
        rows.append(
            (
                "level 1 own network: cold start p50",
                f"{own['cold_start_ms_p50']} ms",
                f"× {own['ratio']} of level 1 sharing the host's"
                f" ({own['shared_host_cold_start_ms_p50']} ms)",
            )
        )
    if "round_trip_us_p50" in p:
        rows += [
            (
                "gateway round trip p50 (heartbeat)",
                f"{p['round_trip_us_p50']} µs",
                f"target ≤ {p['target_round_trip_us_p50']} µs;"
                f" bare channel {p['channel_echo_us_p50']} µs",
            ),
            ("gateway round trip p99", f"{p['round_trip_us_p99']} µs", ""),
        ]
    return rows
