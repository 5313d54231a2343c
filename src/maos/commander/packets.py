"""Decision packets: what a person needs to decide a parked intent, in words.

The facts come from the kernel (the approval's ``details``: where each flagged target
first appeared, what the agent had read, the sum and what the task named), never from
the agent; the console and the dashboard both show these lines, so the two cannot tell a
person different things about the same intent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from maos.kernel.dsc.ifc import money

__all__ = ["packet_lines"]

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
