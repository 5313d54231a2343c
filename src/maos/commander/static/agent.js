// One agent's page (#agent/ID): its stage in the quarantine cascade, the danger score and
// the evidence behind it, its context label, budget spent, the capability tokens the
// kernel saw it present (each revocable here), and its latest intents. Text only.
"use strict";

let shownAgent = null;

async function showAgent(id) {
  shownAgent = id;
  try {
    drawAgent(await api("agents/" + encodeURIComponent(id)));
  } catch (err) {
    if (err.status === 401) return;
    document.getElementById("agent-id").textContent = id;
    document.getElementById("agent-meta").textContent = String(err.message);
  }
}

function drawAgent(a) {
  if (a.agent_id !== shownAgent) return;
  const view = document.getElementById("agent-view");
  view.dataset.agentId = a.agent_id;
  document.getElementById("agent-id").textContent = a.agent_id;
  const status = document.getElementById("agent-status");
  status.textContent = a.status;
  status.className = "status-" + a.status;
  document.getElementById("agent-meta").textContent = "ring " + a.ring + " · context " +
    a.context.conf + "/" + a.context.integrity +
    (a.context.sources && a.context.sources.length ? " from " + a.context.sources.join(", ") : "");
  replace(document.getElementById("agent-actions"), statusButtons(a.agent_id, a));
  replace(document.getElementById("agent-stages"), a.stages.map((s) =>
    el("li", s.replace("_", " "), s === a.stage ? "current stage-" + s : "")));
  document.getElementById("agent-danger").textContent = a.stage === "normal" && !a.danger
    ? "No danger signal put this agent in the cascade."
    : "danger " + Number(a.danger).toFixed(1) + (a.stage_cause ? " · " + a.stage_cause : "") +
      (a.stage_at ? " · since " + utc(a.stage_at) + " UTC" : "") +
      (a.replaced_by ? " · replaced by " + a.replaced_by : "");
  replace(document.querySelector("#agent-evidence tbody"), (a.evidence || []).map((e) => {
    const row = el("tr");
    row.append(el("td", e.seq === undefined ? "" : e.seq), el("td", e.kind || ""), el("td", e.code || ""),
      el("td", e.weight === undefined ? "" : "+" + e.weight));
    return row;
  }));
  const budget = a.budget;
  const rows = budget ? [["spent", budget.spent], ["reserved", budget.reserved], ["limit", budget.limit]] : [];
  replace(document.querySelector("#agent-budget tbody"), rows.filter(([, v]) => v).map(([name, v]) => {
    const row = el("tr");
    row.dataset.row = name;
    row.append(el("th", name), el("td", v.tokens), el("td", v.api_calls), el("td", v.money_cents));
    return row;
  }));
  document.getElementById("agent-no-tokens").hidden = a.tokens.length > 0;
  replace(document.querySelector("#agent-tokens tbody"), a.tokens.map(tokenRow));
  replace(document.getElementById("agent-intents"), a.intents.map(logRow));
}

function tokenRow(t) {
  const row = el("tr", undefined, t.revoked ? "revoked" : "");
  row.dataset.revocationId = t.revocation_id;
  const action = el("td");
  if (t.revoked) {
    action.textContent = "revoked";
  } else {
    action.append(button("Revoke", "revoke", () => {
      if (!confirm("Revoke this token of " + shownAgent + " for good?")) return;
      act("tokens/revoke", { revocation_ids: [t.revocation_id] },
        (r) => "revoked (epoch " + r.revocation_epoch + ")");
    }));
  }
  row.append(el("td", t.task_id), el("td", t.grants.join(", ")), el("td", utc(t.expires_at)),
    el("td", t.revocation_id.slice(0, 16) + "…", "rid"), action);
  return row;
}

// A pushed change redraws the page of the agent shown.
onState.push(() => {
  if (shownAgent !== null && !document.getElementById("agent-view").hidden) showAgent(shownAgent);
});
