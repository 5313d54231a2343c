"""Decision packets: what a person needs to decide a parked intent, in words.

The facts come from the kernel (the approval's ``details``: where each flagged target
first appeared, what the agent had read, the sum and what the task named), never from
the agent; the console and the dashboard both show these lines, so the two cannot tell a
person different things about the same intent. The signed packet itself is built in the
kernel (`maos.kernel.packets`); `signed_lines` renders it, with whether its signature holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from maos.kernel.dsc.ifc import money

__all__ = ["packet_lines", "signed_lines"]

_ORIGINS = {
    "commander": "in the Commander's own words",
    "trusted_source": "in a trusted source",
    "untrusted_content": "only in untrusted content",
    "never_seen": "nowhere: the agent produced it itself",
}
PARAMS_SHOWN = 300
"""Characters of the intent's parameters a packet shows before it cuts them."""


def _where(seen: Mapping[str, Any]) -> str:
    """``only in untrusted content (in tool:read_inbox, field messages[2].from, intent
    i-1; the label's sources; handed to a1)``: the kernel's own record of it."""
    origin = _ORIGINS.get(str(seen.get("first_seen")), str(seen.get("first_seen")))
    facts = []
    if seen.get("source"):
        field = seen.get("field")
        at = f", field {field}" if field else ", the whole result"
        intent = f", intent {seen['intent_id']}" if seen.get("intent_id") else ""
        facts.append(f"in {seen['source']}{at}{intent}")
    if seen.get("sources"):
        facts.append(", ".join(seen["sources"]))
    if seen.get("agent_id"):
        facts.append(f"handed to {seen['agent_id']}")
    text = f"{origin} ({'; '.join(facts)})" if facts else origin
    if seen.get("checksum") is False:
        text += "; as an IBAN it fails its checksum (a typo, test data or a forgery)"
    return text


def packet_lines(details: Mapping[str, Any], intent: Mapping[str, Any]) -> list[str]:
    """Each flagged target and where it first appeared, the sum against the sums the task
    named, what the agent had read, and exactly what would be sent."""
    if "danger_score" in details:  # an elimination request (the quarantine cascade)
        return _elimination_lines(details)
    lines = []
    for target, seen in (details.get("first_seen") or {}).items():
        lines.append(f"flagged {target}: first seen {_where(seen)}")
    if "amount_cents" in details:
        named = ", ".join(money(c) for c in details.get("named_amounts", ()))
        lines.append(f"amount {money(details['amount_cents'])}; the task named {named}")
    if details.get("context_sources"):
        lines.append(f"the agent had read: {', '.join(details['context_sources'])}")
    if "effect_class" in details:
        lines.append(f"effect class: {details['effect_class']}")
    params = json.dumps(intent.get("params") or {}, sort_keys=True)
    cut = params if len(params) <= PARAMS_SHOWN else params[:PARAMS_SHOWN] + " ..."
    lines.append(f"would send: {cut}")
    return lines


def _elimination_lines(details: Mapping[str, Any]) -> list[str]:
    """Why the Security Agent asks to eliminate a frozen agent, and where its state is."""
    lines = [
        f"eliminate {', '.join(details.get('targets') or ())}: {details.get('cause', '')}",
        f"danger score {details['danger_score']} (soft isolation, then hard: the pod is frozen)",
    ]
    for e in details.get("evidence") or ():
        lines.append(
            f"evidence #{e.get('seq')}: {e.get('kind')} {e.get('code')} (+{e.get('weight')})"
        )
    lines.append(f"root-cause material kept in {details.get('rca', '?')} (maos agent rca)")
    lines.append("approve: the pod is killed and a clean copy takes over; deny: it stays frozen")
    return lines


def signed_lines(packet: Mapping[str, Any], *, verified: bool) -> list[str]:
    """A signed packet (`maos.kernel.packets.DecisionPacket.to_dict`) in words: the effect,
    each target and where it first appeared, the payload, the label context, the rule
    that asked, the agent's recent history, and the digest an approval sends back."""
    c = packet.get("content") or {}
    effect = c.get("effect") or {}
    kind = f" ({effect['effect_class']})" if effect.get("effect_class") else ""
    lines = [f"effect: {effect.get('op')} -> {', '.join(effect.get('targets') or ())}{kind}"]
    for t in c.get("targets") or ():
        if t.get("flagged"):
            lines.append(f"flagged {t['value']}: first seen {_where(t.get('first_seen') or {})}")
    details = c.get("details") or {}
    if "amount_cents" in details:
        named = ", ".join(money(n) for n in details.get("named_amounts", ()))
        lines.append(f"amount {money(details['amount_cents'])}; the task named {named}")
    payload = c.get("payload") or {}
    lines.append(f"payload sha256 {str(payload.get('digest'))[:16]}: {payload.get('preview')}")
    labels = c.get("labels") or {}
    ctx = labels.get("agent_context") or {}
    lines.append(
        f"label context: agent {ctx.get('conf')}/{ctx.get('integrity')}"
        f" from {', '.join(ctx.get('sources') or ()) or 'nothing'};"
        f" {labels.get('agent_status')}, stage {labels.get('agent_stage')};"
        f" task declassified to {labels.get('task_declassified_to') or 'nothing'},"
        f" grants {', '.join(labels.get('task_effect_classes') or ()) or 'as requested'}"
    )
    rules = c.get("rules") or {}
    lines.append(f"asked by {rules.get('rule')} {rules.get('code')}: {rules.get('reason')}")
    for h in c.get("history") or ():
        code = f" {h['code']}" if h.get("code") else ""
        lines.append(
            f"history #{h.get('seq')}: {h.get('kind')} {h.get('op')} -> {h.get('target')}{code}"
        )
    state = "signed by this kernel" if verified else "SIGNATURE DOES NOT VERIFY: do not approve"
    lines.append(f"packet {packet.get('digest')} ({state})")
    return lines
