// The Commander's dashboard. Everything an agent could have influenced is written with
// textContent, never as markup (the trusted display path); the CSP forbids inline script.
"use strict";

const TOKEN_KEY = "maos-commander-token";
const POLL_MS = 1500;

function token() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, body) {
  const init = { headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api/" + path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error + ": " + data.message);
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function replace(parent, children) {
  parent.replaceChildren(...children);
}

function approvalCard(item) {
  const card = document.getElementById("approval-card").content.firstElementChild.cloneNode(true);
  card.dataset.approvalId = item.approval_id;
  card.querySelector(".op").textContent = item.intent.op || "?";
  card.querySelector(".target").textContent = item.intent.target || "";
  card.querySelector(".meta").textContent =
    item.rule + " · agent " + item.agent_id + " · task " + item.task_id + " · " + item.approval_id +
    // Kept past its plan's end (issue 9): it expires then, and never runs after.
    (item.expires_at ? " · kept until " + new Date(item.expires_at * 1000).toISOString() : "");
  card.querySelector(".why").textContent = item.reason;
  replace(card.querySelector(".packet"), item.packet.map((line) =>
    el("li", line, line.startsWith("flagged ") ? "flagged" : "")));
  const note = card.querySelector(".note");
  const decide = (verb) => async () => {
    try {
      const outcome = await api("approvals/" + encodeURIComponent(item.approval_id) + "/" + verb,
        { note: note.value, packet_digest: item.packet_digest });
      flash(item.approval_id + ": " + outcome.status + (outcome.code ? " " + outcome.code : ""));
    } catch (err) {
      flash(String(err.message), true);
    }
    refresh();
  };
  card.querySelector(".approve").addEventListener("click", decide("approve"));
  card.querySelector(".deny").addEventListener("click", decide("deny"));
  return card;
}

// Cards stay in place while their approval waits: redrawing them on every poll would
// wipe a note being typed and move the buttons under the pointer.
function drawApprovals(pending) {
  const list = document.getElementById("approvals");
  const shown = new Map([...list.children].map((card) => [card.dataset.approvalId, card]));
  const waiting = new Set(pending.map((item) => item.approval_id));
  for (const [id, card] of shown) if (!waiting.has(id)) card.remove();
  for (const item of pending) if (!shown.has(item.approval_id)) list.append(approvalCard(item));
}

// The agent's place in the quarantine cascade: stage, the score that put it there, and
// the signals behind it (codes the kernel logged, shown as text).
function stageCell(agent) {
  const cell = el("td");
  if (!agent.stage || agent.stage === "normal") {
    cell.textContent = "normal";
    return cell;
  }
  cell.append(el("div", agent.stage.replace("_", " ") + " (danger " + Number(agent.danger).toFixed(1) + ")",
    "stage-" + agent.stage));
  const cause = agent.replaced_by ? "replaced by " + agent.replaced_by : agent.stage_cause;
  if (cause) cell.append(el("div", cause, "muted"));
  const codes = (agent.evidence || []).map((e) => e.code + " +" + e.weight);
  if (codes.length) cell.append(el("div", "evidence: " + codes.join(", "), "muted"));
  return cell;
}

function agentRow(id, agent) {
  const row = el("tr");
  row.dataset.agentId = id;
  row.append(el("td", id), el("td", agent.ring), el("td", agent.status, "status-" + agent.status),
    el("td", agent.context.conf + "/" + agent.context.integrity), stageCell(agent));
  const actions = el("td");
  const verbs = agent.status === "killed" ? [] :
    [agent.status === "active" ? ["pause", "paused"] : ["resume", "active"],
     ["isolate", "isolated"], ["quarantine", "quarantined"], ["kill", "killed"]];
  for (const [label, status] of verbs) {
    if (status === agent.status) continue;
    const button = el("button", label, label);
    button.type = "button";
    button.addEventListener("click", async () => {
      if (status === "killed" && !confirm("Kill " + id + "? It can never act again.")) return;
      try {
        await api("agents/" + encodeURIComponent(id) + "/status", { status });
      } catch (err) {
        flash(String(err.message), true);
      }
      refresh();
    });
    actions.append(button);
  }
  row.append(actions);
  return row;
}

// An effect a crash left in doubt: the person checks the world, then says what happened.
function doubtItem(d) {
  const item = el("li", d.idem_key + "  " + d.op + " → " + d.target + "  (" + d.reason + ")", "flagged");
  item.dataset.idemKey = d.idem_key;
  for (const [label, happened] of [["It happened", true], ["It did not", false]]) {
    const button = el("button", label, happened ? "happened" : "not-happened");
    button.type = "button";
    button.addEventListener("click", async () => {
      try {
        await api("in-doubt/" + encodeURIComponent(d.idem_key) + "/resolve", { happened });
      } catch (err) {
        flash(String(err.message), true);
      }
      refresh();
    });
    item.append(" ", button);
  }
  return item;
}

function summary(record) {
  const b = record.body || {};
  const parts = [record.seq, record.kind];
  for (const key of ["agent_id", "op", "target", "code", "status", "approval_id", "approval_ids", "expires_at", "task_id", "reason"]) {
    if (b[key] !== undefined && b[key] !== "") parts.push(key + "=" + (typeof b[key] === "object" ? JSON.stringify(b[key]) : b[key]));
  }
  return parts.join("  ");
}

function flash(text, bad) {

  const node = document.getElementById("banner");
  node.textContent = text;
  node.style.background = bad ? "" : "#2f6f4f";
  node.hidden = false;
}

function draw(state) {
  document.getElementById("node").textContent = state.node_id + " · " + state.data_dir + " · " + state.wal_records + " records";
  const pending = state.pending_approvals;
  document.getElementById("approvals-count").textContent = pending.length;
  document.getElementById("no-approvals").hidden = pending.length > 0;
  drawApprovals(pending);
  replace(document.querySelector("#agents tbody"),
    Object.entries(state.agents).map(([id, agent]) => agentRow(id, agent)));
  replace(document.getElementById("tasks"), state.tasks.map((t) => el("li", t)));
  replace(document.getElementById("plans"), (state.plans || []).map((p) => {
    const item = el("li", p.task + ": " + p.status + (p.detail ? " (" + p.detail + ")" : ""));
    item.title = p.plan;
    if (p.log.length) item.append(el("div", p.log[p.log.length - 1], "muted"));
    return item;
  }));
  replace(document.getElementById("in-doubt"), state.in_doubt.map(doubtItem));
  replace(document.getElementById("recent"), state.recent.map((r) => el("li", summary(r), "kind-" + r.kind.replace(/\./g, "-"))));
  const safe = document.getElementById("safe-state");
  safe.disabled = false;
  safe.dataset.on = state.safe_state ? "1" : "";
  safe.textContent = state.safe_state ? "Leave Minimal Safe State" : "Enter Minimal Safe State";
  if (state.fever.on && !state.safe_state) flash("SECURITY FEVER: " + state.fever.quarantined.join(", ") + " in quarantine; rate limits halved, Ring 3 effects to the SSE", true);
  if (state.safe_state) flash("MINIMAL SAFE STATE: every agent stopped (" + (state.safe_state.reason || "no reason given") + ")", true);
}

async function refresh() {
  const status = document.getElementById("connection");
  try {
    draw(await api("state"));
    status.textContent = "live";
    status.className = "muted";
  } catch (err) {
    status.textContent = String(err.message);
    status.className = "flagged";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  token();
  document.getElementById("safe-state").addEventListener("click", async (event) => {
    const on = !event.target.dataset.on;
    const reason = on ? prompt("Why stop every agent?") : "";
    if (reason === null) return;
    try {
      await api("safe-state", { on, reason });
      if (!on) document.getElementById("banner").hidden = true;
    } catch (err) {
      flash(String(err.message), true);
    }
    refresh();
  });
  document.getElementById("plan-run").addEventListener("click", async () => {
    const path = document.getElementById("plan-path");
    try {
      const run = await api("plans", { path: path.value });
      flash("queued " + run.task + " (run " + run.run + ")");
      path.value = "";
    } catch (err) {
      flash(String(err.message), true);
    }
    refresh();
  });
  refresh();
  setInterval(refresh, POLL_MS);
});
