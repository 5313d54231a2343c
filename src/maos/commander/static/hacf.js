// HACF on the page (docs/hacf.md): the overrides waiting, each with its diff and the
// cooling-off left, confirmed with a code from the Commander's authenticator; and the
// deliberate-level approvals: ask the agent, edit its proposal, decide. Built on
// dashboard.js's api/el/button/act/onState; everything shown is text, never markup.
"use strict";

function hacfPanel() {
  let panel = document.getElementById("hacf-panel");
  if (panel) return panel;
  panel = el("section");
  panel.id = "hacf-panel";
  const overrides = el("ul");
  overrides.id = "overrides";
  const deliberations = el("div");
  deliberations.id = "deliberations";
  panel.append(el("h2", "Overrides waiting"), overrides, el("h2", "Deliberate"), deliberations);
  document.getElementById("approvals-panel").prepend(panel);
  return panel;
}

// Items stay in place while what they show is unchanged (the cooling-off left is
// rewritten in place): a push must not wipe a code or a question being typed.
function keep(list, rows, key, draw) {
  const shown = new Map([...list.children].map((node) => [node.dataset.id, node]));
  list.replaceChildren(...rows.map((row) => {
    const sig = JSON.stringify(row, (k, v) => (k === "cooling_off_left_s" ? undefined : v));
    const old = shown.get(row[key]);
    if (old && old.dataset.sig === sig) return old;
    const node = draw(row);
    node.dataset.id = row[key];
    node.dataset.sig = sig;
    return node;
  }));
}

function input(className, placeholder, maxLength) {
  const node = el("input", undefined, className);
  node.type = "text";
  node.maxLength = maxLength;
  node.placeholder = placeholder;
  node.autocomplete = "off";
  return node;
}

function cooling(o) {
  const left = Math.ceil(o.cooling_off_left_s);
  return left > 0 ? "cooling-off: " + left + " s left" : "cooling-off over: confirm with your code";
}

function overrideItem(o) {
  const item = el("li", undefined, "override status-" + o.status);
  item.append(el("strong", o.override_id), " " + o.action + " " + o.subject + " → " + o.to +
    " · " + o.status + " · by " + o.principal + (o.reason ? " · " + o.reason : ""));
  const diff = el("ul", undefined, "diff");
  for (const [field, [was, now]] of Object.entries(o.diff)) {
    diff.append(el("li", field + ": " + JSON.stringify(was) + " → " + JSON.stringify(now)));
  }
  item.append(diff);
  if (o.status !== "requested") return item;
  item.append(el("div", cooling(o), "muted cooling"));
  const code = input("code", "6-digit code", 6);
  code.inputMode = "numeric";
  item.append(code, " ", button("Confirm", "confirm", () =>
    act("commander/overrides/" + encodeURIComponent(o.override_id) + "/confirm", { code: code.value },
      (done) => done.override_id + ": " + done.status)));
  return item;
}

function deliberation(d) {
  const card = el("article", undefined, "deliberation");
  const path = "approvals/" + encodeURIComponent(d.approval_id) + "/deliberate/";
  card.append(el("h3", d.op + " → " + d.target), el("p", d.approval_id + " · agent " + d.agent_id, "meta"));
  const talk = el("ol", undefined, "thread");
  for (const turn of d.thread) {
    const said = turn.question || turn.answer || (turn.params ? "edit: " + JSON.stringify(turn.params) : "");
    talk.append(el("li", turn.kind.replace("hacf.", "") + ": " + said));
  }
  const question = input("question", "ask the agent", 2000);
  const params = el("textarea", JSON.stringify(d.params), "params");
  params.maxLength = 20000;
  const note = input("note", "note (optional)", 2000);
  const ask = button("Ask", "ask", () => act(path + "ask", { question: question.value }, () => "asked"));
  const edit = button("Edit", "edit", () => {
    let parsed;
    try { parsed = JSON.parse(params.value); } catch (err) { flash("edit: not JSON: " + err.message, true); return; }
    act(path + "edit", { params: parsed }, () => "edited");
  });
  const decide = (decision) => button(decision === "approve" ? "Approve" : "Deny", decision, () =>
    act(path + "decide", { decision, packet_digest: d.packet_digest, note: note.value },
      (out) => d.approval_id + ": " + out.status + (out.code ? " " + out.code : "")));
  card.append(talk, question, ask, el("div", "params:", "muted"), params, edit, el("div"), note,
    decide("approve"), decide("deny"));
  return card;
}

async function drawHacf() {
  try {
    const [overrides, deliberations] = await Promise.all(
      [api("commander/overrides"), api("commander/deliberations")]);
    hacfPanel();
    const waiting = overrides.filter((o) => o.status === "requested");
    const list = document.getElementById("overrides");
    keep(list, waiting, "override_id", overrideItem);
    waiting.forEach((o, n) => { list.children[n].querySelector(".cooling").textContent = cooling(o); });
    keep(document.getElementById("deliberations"), deliberations, "approval_id", deliberation);
  } catch (err) {
    if (err.status !== 401) flash(String(err.message), true);
  }
}

onState.push(drawHacf);
