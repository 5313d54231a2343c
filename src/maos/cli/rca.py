"""The root-cause report `maos agent rca ID` prints: the agent's way through the
quarantine cascade, the evidence behind each step, and what was kept of its pod.

Everything comes from the log and from ``<data-dir>/rca/ID/`` (written when the pod was
frozen and when the elimination was asked for); nothing from the agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maos.kernel import cascade
from maos.kernel.stages import stage_report
from maos.kernel.view import LogView

__all__ = ["rca_report"]

POD_LOG_LINES = 20
"""Lines of the pod's output the report shows (the whole of it is in pod.log)."""


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def rca_report(view: LogView, data_dir: Path, agent_id: str) -> dict[str, Any]:
    agent = view.registry.agent(agent_id)  # STATE.UNKNOWN_AGENT otherwise
    steps = [
        {
            "seq": r.seq,
            "ts": r.ts,
            "kind": r.kind,
            "stage": r.body.get("stage"),
            "status": r.body.get("status"),
            "cause": r.body.get("cause", ""),
            "score": r.body.get("score"),
            "principal": r.body.get("principal"),
        }
        for r in view.wal.read(kinds=["agent.stage", "agent.status", "pod.frozen", "pod.thawed"])
        if r.body.get("agent_id") == agent_id
    ]
    asks = [a.to_dict() for a in view.approvals.all() if cascade.is_elimination(a.intent)]
    asks = [a for a in asks if a["agent_id"] == agent_id]
    where = cascade.rca_dir(data_dir, agent_id)
    workspace = where / "workspace"
    files = (
        sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*") if p.is_file())
        if workspace.is_dir()
        else []
    )
    pod_log = (where / "pod.log").read_text() if (where / "pod.log").exists() else ""
    report: dict[str, Any] = {
        "agent_id": agent_id,
        "status": agent.status.value,
        **stage_report(agent),
        "steps": steps,
        "eliminations": asks,
        "rca_dir": str(where) if where.exists() else None,
        "workspace_files": files,
        "log_records": _count(where / "log.jsonl"),
        "conversation_records": _count(where / "conversation.jsonl"),
        "pod_log_tail": pod_log.splitlines()[-POD_LOG_LINES:],
    }
    report["lines"] = _lines(report)
    return report


def _lines(r: dict[str, Any]) -> list[str]:
    out = [
        f"agent         {r['agent_id']}  {r['status']}, stage {r['stage']}"
        + (f" (replaced by {r['replaced_by']})" if r["replaced_by"] else ""),
        f"cause         {r['stage_cause'] or '-'}  (danger score {r['danger']:g})",
        "cascade",
    ]
    for s in r["steps"]:
        what = s["stage"] or s["status"] or s["kind"].split(".")[-1]
        out.append(f"  #{s['seq']:<6} {what:<16} {s['principal'] or '':<20} {s['cause']}")
    out.append("evidence")
    for e in r["evidence"]:
        out.append(f"  #{e.get('seq')}  {e.get('kind')} {e.get('code')} (+{e.get('weight')})")
    for a in r["eliminations"]:
        by = f" by {a['decided_by']}" if a["decided_by"] else ""
        out.append(f"elimination   {a['approval_id']} {a['status']}{by}")
    if r["rca_dir"] is None:
        out.append("kept          nothing (the agent was never frozen)")
        return out
    out.append(f"kept          {r['rca_dir']}")
    shown = ", ".join(r["workspace_files"][:10])
    out.append(f"  workspace    {len(r['workspace_files'])} file(s): {shown}")
    out.append(f"  log excerpt  {r['log_records']} record(s) (log.jsonl)")
    out.append(f"  conversation {r['conversation_records']} LLM record(s) (conversation.jsonl)")
    out.append("  pod output (last lines of pod.log)")
    out.extend(f"    {line}" for line in r["pod_log_tail"])
    return out
