// The Commander's dashboard. Everything an agent could have influenced is written with
// textContent, never as markup (the trusted display path); the CSP forbids inline script.
// The state is pushed by the server over an EventSource stream (docs/dashboard.md); the
// page fetches it once at start and after each of its own actions.
"use strict";

const TOKEN_KEY = "maos-commander-token";
const RETRY_MS = [1000, 2000, 5000, 10000];
const onState = [];  // other scripts' redraws: each gets the state pushed

function token() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(code + ": " + message);
    this.status = status;
    this.code = code;
  }
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
  if (response.status === 401) unauthorised(data.message);
  if (!response.ok) throw new ApiError(response.status, data.error, data.message);
  return data;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function button(label, className, onClick) {
  const node = el("button", label, className);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function replace(parent, children) {
  parent.replaceChildren(...children);
}

function utc(ts) {
  return ts ? new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " ") : "";
}

// An action on the kernel: its answer flashed, a refusal shown, the page redrawn.
async function act(path, body, done) {
  try {
    const answer = await api(path, body);
    if (done) flash(done(answer));
  } catch (err) {
    flash(String(err.message), true);
  }
  refresh();
}

// -- not authorised: say so, never an empty (all-clear looking) page ---------------------

function unauthorised(why) {
  document.getElementById("auth").hidden = false;
  document.getElementById("overview").hidden = true;
  document.getElementById("agent-view").hidden = true;
  document.getElementById("auth-why").textContent = why
    ? "The server refused this page's token: " + why + "."
    : "This page shows nothing until it has the Commander's token.";
  const status = document.getElementById("connection");
  status.textContent = "not authorised";
  status.className = "flagged";
  document.body.dataset.auth = "no";
  if (live.source) live.source.close();
  live.source = null;
}

function authorised() {
  if (document.body.dataset.auth === "yes") return;
  document.body.dataset.auth = "yes";
  document.getElementById("auth").hidden = true;
  route();
}

// -- approvals ---------------------------------------------------------------------------

function approvalCard(item) {
  const card = document.getElementById("approval-card").content.firstElementChild.cloneNode(true);
  card.dataset.approvalId = item.approval_id;
  card.querySelector(".op").textContent = item.intent.op || "?";
  card.querySelector(".target").textContent = item.intent.target || "";
  card.querySelector(".meta").textContent =
    item.rule + " · agent " + item.agent_id + " · task " + item.task_id + " · " + item.approval_id +
    " · parked " + utc(item.created_at) +
    // Kept past its plan's end (issue 9): it expires then, and never runs after.
    (item.expires_at ? " · kept until " + new Date(item.expires_at * 1000).toISOString() : "");
  card.querySelector(".why").textContent = item.reason;
  replace(card.querySelector(".packet"), item.packet.map((line) =>
    el("li", line, line.startsWith("flagged ") ? "flagged" : "")));
  const note = card.querySelector(".note");
  const decide = (verb) => () => act(
    "approvals/" + encodeURIComponent(item.approval_id) + "/" + verb,
    { note: note.value, packet_digest: item.packet_digest },
    (outcome) => item.approval_id + ": " + outcome.status + (outcome.code ? " " + outcome.code : ""));
  card.querySelector(".approve").addEventListener("click", decide("approve"));
  card.querySelector(".deny").addEventListener("click", decide("deny"));
  return card;
}

// Cards stay in place while their approval waits: redrawing them on every push would
// wipe a note being typed and move the buttons under the pointer.
function drawApprovals(pending) {
  const list = document.getElementById("approvals");
  const shown = new Map([...list.children].map((card) => [card.dataset.approvalId, card]));
  const waiting = new Set(pending.map((item) => item.approval_id));
  for (const [id, card] of shown) if (!waiting.has(id)) card.remove();
  for (const item of pending) if (!shown.has(item.approval_id)) list.append(approvalCard(item));
}

// What a decided approval came to: approved and committed is good news; a denial, an
// expiry, or an approved intent the kernel then refused or that failed, is not.
function outcomeClass(outcome) {
  if (!outcome) return "outcome-none";
  return outcome.status === "committed" ? "outcome-ok" : "outcome-bad";
}

function decidedItem(a) {
  const outcome = a.outcome ? a.outcome.status + (a.outcome.code ? " " + a.outcome.code : "") : "not run yet";
  const item = el("li", "", outcomeClass(a.outcome));
  item.dataset.approvalId = a.approval_id;
  item.append(el("span", utc(a.created_at), "time"), " ",
    el("strong", a.status), " by " + (a.decided_by || "?") + ": " + a.op + " → " + a.target +
    " (agent " + a.agent_id + ", " + a.rule + ") → " + outcome);
  if (a.note) item.append(el("div", "note: " + a.note, "muted"));
  return item;
}

// -- agents, tasks, in doubt ---------------------------------------------------------------

// The agent's place in the quarantine cascade: stage, the score that put it there, and
// the signals behind it (codes the kernel logged, shown as text).
function stageCell(agent) {
  const cell = el("td", undefined, "cascade");
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

function statusButtons(id, agent) {
  const verbs = agent.status === "killed" ? [] :
    [agent.status === "active" ? ["pause", "paused"] : ["resume", "active"],
     ["isolate", "isolated"], ["quarantine", "quarantined"], ["kill", "killed"]];
  return verbs.filter(([, status]) => status !== agent.status).map(([label, status]) =>
    button(label, label, () => {
      if (status === "killed" && !confirm("Kill " + id + "? It can never act again.")) return;
      act("agents/" + encodeURIComponent(id) + "/status", { status });
    }));
}

function agentLink(id) {
  const link = el("a", id, "agent-link");
  link.href = "#agent/" + encodeURIComponent(id);
  return link;
}

function agentRow(id, agent) {
  const row = el("tr");
  row.dataset.agentId = id;
  const name = el("td", undefined, "id");
  name.append(agentLink(id));
  const actions = el("td", undefined, "row-actions");
  actions.append(...statusButtons(id, agent));
  row.append(name, el("td", agent.ring, "ring"), el("td", agent.status, "status status-" + agent.status),
    el("td", agent.context.conf + "/" + agent.context.integrity, "context"), stageCell(agent), actions);
  return row;
}

function spent(budget) {
  if (!budget) return "nothing yet";
  const s = budget.spent;
  const l = budget.limit || {};
  const part = (v, max) => v + (max !== undefined ? "/" + max : "");
  return part(s.tokens, l.tokens) + " · " + part(s.api_calls, l.api_calls) + " · " +
    part(s.money_cents, l.money_cents) + "¢";
}

// Declassify (R6): let the task's data flow down to a level, with the reason logged.
function declassifyCell(t) {
  const cell = el("td", undefined, "declassify");
  const level = el("select");
  for (const name of ["public", "internal", "confidential"]) level.append(el("option", name));
  const reason = el("input");
  reason.type = "text";
  reason.maxLength = 2000;
  reason.placeholder = "why (logged)";
  cell.append(level, reason, button("Declassify", "declassify-go", () => {
    if (!reason.value.trim()) { flash("declassify: say why (it is logged with who)", true); return; }
    act("tasks/" + encodeURIComponent(t.task_id) + "/declassify", { to: level.value, reason: reason.value },
      (a) => a.task_id + ": data may flow down to " + a.declassified_to);
  }));
  return cell;
}

function taskRow(t) {
  const row = el("tr");
  row.dataset.taskId = t.task_id;
  row.append(el("td", t.task_id, "id"), el("td", t.status, "task-status status-" + t.status),
    el("td", spent(t.budget), "spent"), el("td", t.declassified_to || "its labels", "flow"), declassifyCell(t));
  return row;
}

// Declassify controls being filled in must survive a push: rows are redrawn only when
// what they show changed.
function drawTasks(rows) {
  const body = document.querySelector("#tasks tbody");
  const shown = new Map([...body.children].map((r) => [r.dataset.taskId, r]));
  const next = rows.map((t) => {
    const key = JSON.stringify(t);
    const old = shown.get(t.task_id);
    if (old && old.dataset.key === key) return old;
    const row = taskRow(t);
    row.dataset.key = key;
    return row;
  });
  replace(body, next);
  document.getElementById("no-tasks").hidden = rows.length > 0;
}

// An effect a crash left in doubt: the person checks the world, then says what happened.
function doubtItem(d) {
  const item = el("li", d.idem_key + "  " + d.op + " → " + d.target + "  (" + d.reason + ")", "flagged");
  item.dataset.idemKey = d.idem_key;
  for (const [label, happened] of [["It happened", true], ["It did not", false]]) {
    item.append(" ", button(label, happened ? "happened" : "not-happened", () =>
      act("in-doubt/" + encodeURIComponent(d.idem_key) + "/resolve", { happened })));
  }
  return item;
}

// -- the log -------------------------------------------------------------------------------

const SUMMARY_KEYS = ["agent_id", "op", "target", "code", "status", "approval_id", "approval_ids",
  "expires_at", "task_id", "reason", "to"];

function summary(record) {
  const b = record.body || {};
  const parts = [];
  for (const key of SUMMARY_KEYS) {
    if (b[key] !== undefined && b[key] !== "") parts.push(key + "=" + (typeof b[key] === "object" ? JSON.stringify(b[key]) : b[key]));
  }
  if (b.outcome) parts.push("outcome=" + b.outcome.status + (b.outcome.code ? " " + b.outcome.code : ""));
  return parts.join("  ");
}

// One record: when, what, and its fields as text. An executed approval is coloured by
// what it came to, not by its kind.
function logRow(r) {
  let tone = "kind-" + r.kind.replace(/\./g, "-");
  if (r.kind === "approval.executed") tone += " " + outcomeClass((r.body || {}).outcome);
  const item = el("li", undefined, tone);
  item.dataset.seq = r.seq;
  const time = el("time", utc(r.ts).slice(11), "time");
  time.dateTime = new Date(r.ts * 1000).toISOString();
  time.title = utc(r.ts) + " UTC";
  item.append(time, " ", el("span", r.seq, "seq"), " ", el("span", r.kind, "kind"), "  ", summary(r));
  return item;
}

// -- drawing the state ---------------------------------------------------------------------

function flash(text, bad) {
  const node = document.getElementById("banner");
  node.textContent = text;
  node.className = bad ? "bad" : "good";
  node.hidden = false;
}

function draw(state) {
  authorised();
  document.getElementById("node").textContent = state.node_id + " · " + state.data_dir + " · " + state.wal_records + " records";
  document.body.dataset.seq = state.wal_records;
  const pending = state.pending_approvals;
  document.getElementById("approvals-count").textContent = pending.length;
  document.getElementById("no-approvals").hidden = pending.length > 0;
  drawApprovals(pending);
  const decidedList = state.decided_approvals || [];
  replace(document.getElementById("decided"), decidedList.map(decidedItem));
  document.getElementById("no-decided").hidden = decidedList.length > 0;
  const agents = Object.entries(state.agents);
  replace(document.querySelector("#agents tbody"), agents.map(([id, agent]) => agentRow(id, agent)));
  document.getElementById("no-agents").hidden = agents.length > 0;
  drawTasks(state.task_status || []);
  replace(document.getElementById("plans"), (state.plans || []).map((p) => {
    const item = el("li", p.task + ": " + p.status + (p.detail ? " (" + p.detail + ")" : ""));
    item.title = p.plan;
    if (p.log.length) item.append(el("div", p.log[p.log.length - 1], "muted"));
    return item;
  }));
  replace(document.getElementById("in-doubt"), state.in_doubt.map(doubtItem));
  document.getElementById("no-doubt").hidden = state.in_doubt.length > 0;
  if (!document.getElementById("log-panel").dataset.filtered) {
    replace(document.getElementById("recent"), state.recent.map(logRow));
  }
  const safe = document.getElementById("safe-state");
  safe.disabled = false;
  safe.dataset.on = state.safe_state ? "1" : "";
  safe.textContent = state.safe_state ? "Leave Minimal Safe State" : "Enter Minimal Safe State";
  if (state.fever.on && !state.safe_state) flash("SECURITY FEVER: " + state.fever.quarantined.join(", ") + " in quarantine; rate limits halved, Ring 3 effects to the SSE", true);
  if (state.safe_state) flash("MINIMAL SAFE STATE: every agent stopped (" + (state.safe_state.reason || "no reason given") + ")", true);
  for (const hook of onState) hook(state);
}

function connection(text, bad) {
  const status = document.getElementById("connection");
  status.textContent = text;
  status.className = bad ? "flagged" : "muted";
}

async function refresh() {
  if (!token()) return unauthorised();
  try {
    draw(await api("state"));
  } catch (err) {
    if (err.status !== 401) connection(String(err.message), true);
  }
}

// -- live: the server pushes each change -------------------------------------------------

const live = { source: null, attempt: 0 };

// EventSource cannot send the token in a header, and a URL is what gets logged: the
// page fetches a single-use ticket with the header, and opens the stream with that.
async function connect() {
  if (live.source) live.source.close();
  live.source = null;
  if (!token()) return unauthorised();
  let ticket;
  try {
    ticket = (await api("stream/ticket", {})).ticket;
  } catch (err) {
    if (err.status === 401) return;
    return retry();
  }
  const source = new EventSource("/api/stream?ticket=" + encodeURIComponent(ticket));
  live.source = source;
  source.addEventListener("state", (event) => {
    live.attempt = 0;
    connection("live");
    draw(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    if (live.source !== source) return;
    source.close();  // its ticket is spent: a reconnect needs a new one
    live.source = null;
    retry();
  });
}

function retry() {
  const wait = RETRY_MS[Math.min(live.attempt, RETRY_MS.length - 1)];
  live.attempt += 1;
  connection("reconnecting…", true);
  setTimeout(connect, wait);
}

// -- which view: the overview, or one agent's page (#agent/ID) ----------------------------

function route() {
  if (document.body.dataset.auth !== "yes") return;
  const match = /^#agent\/(.+)$/.exec(location.hash);
  document.getElementById("overview").hidden = Boolean(match);
  document.getElementById("agent-view").hidden = !match;
  if (match && typeof showAgent === "function") showAgent(decodeURIComponent(match[1]));
}

function start() {
  refresh();
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  token();
  window.addEventListener("hashchange", route);
  document.getElementById("token-use").addEventListener("click", () => {
    const input = document.getElementById("token-input");
    if (!input.value.trim()) return;
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    start();
  });
  document.getElementById("token-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") document.getElementById("token-use").click();
  });
  document.getElementById("safe-state").addEventListener("click", async (event) => {
    const on = !event.target.dataset.on;
    const reason = on ? prompt("Why stop every agent?") : "";
    if (reason === null) return;
    await act("safe-state", { on, reason });
    if (!on) document.getElementById("banner").hidden = true;
  });
  document.getElementById("plan-run").addEventListener("click", () => {
    const path = document.getElementById("plan-path");
    act("plans", { path: path.value }, (run) => {
      path.value = "";
      return "queued " + run.task + " (run " + run.run + ")";
    });
  });
  start();
});
