// Searching the log (on the server, bounded) and the chart of decisions over time. The
// chart is SVG built element by element (createElementNS, attributes, text nodes): no
// markup strings, no inline script, no library.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const OUTCOMES = ["allowed", "denied", "parked"];
const CHART = { width: 600, height: 180, left: 34, bottom: 22, top: 8 };

// -- search --------------------------------------------------------------------------------

function filterQuery() {
  const query = new URLSearchParams();
  for (const input of document.querySelectorAll("#log-filter input")) {
    const value = input.value.trim();
    if (!value) continue;
    // the page shows UTC, so a time typed is read as UTC; the API takes epoch seconds
    query.set(input.name, input.type === "datetime-local" ? String(new Date(value + "Z").getTime() / 1000) : value);
  }
  query.set("limit", "200");
  return query;
}

async function searchLog() {
  const panel = document.getElementById("log-panel");
  const query = filterQuery();
  try {
    const found = await api("log?" + query.toString());
    panel.dataset.filtered = "1";
    replace(document.getElementById("recent"), found.records.map(logRow));
    document.getElementById("log-mode").textContent = "Search: " + found.records.length +
      " record(s)" + (found.records.length >= 200 ? " (the newest 200; narrow the search for more)" : "") +
      ". Live updates resume with Live.";
  } catch (err) {
    flash(String(err.message), true);
  }
}

function liveLog() {
  for (const input of document.querySelectorAll("#log-filter input")) input.value = "";
  delete document.getElementById("log-panel").dataset.filtered;
  document.getElementById("log-mode").textContent = "Live: the latest records as they are written.";
  refresh();
}

// -- the chart -----------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.append(document.createTextNode(String(text)));
  return node;
}

function drawChart(data) {
  const chart = document.getElementById("chart");
  chart.dataset.allowed = data.totals.allowed;
  chart.dataset.denied = data.totals.denied;
  chart.dataset.parked = data.totals.parked;
  const { width, height, left, bottom, top } = CHART;
  const plot = height - bottom - top;
  const peak = Math.max(1, ...data.buckets.map((b) => b.allowed + b.denied + b.parked));
  const step = (width - left) / data.buckets.length;
  const nodes = [
    svg("line", { x1: left, y1: top + plot, x2: width, y2: top + plot, class: "axis" }),
    svg("text", { x: left - 4, y: top + 10, "text-anchor": "end", class: "tick" }, peak),
    svg("text", { x: left - 4, y: top + plot, "text-anchor": "end", class: "tick" }, 0),
    svg("text", { x: left, y: height - 6, class: "tick" }, utc(data.since).slice(11, 16)),
    svg("text", { x: width, y: height - 6, "text-anchor": "end", class: "tick" }, utc(data.until).slice(11, 16) + " UTC"),
  ];
  data.buckets.forEach((b, i) => {
    let y = top + plot;
    for (const outcome of OUTCOMES) {
      if (!b[outcome]) continue;
      const h = (b[outcome] / peak) * plot;
      y -= h;
      const bar = svg("rect", { x: left + i * step + 1, y, width: Math.max(1, step - 2), height: h,
        class: "bar " + outcome, "data-outcome": outcome, "data-count": b[outcome] });
      bar.append(svg("title", {}, b[outcome] + " " + outcome + " from " + utc(b.start).slice(11) + " UTC"));
      nodes.push(bar);
    }
  });
  replace(chart, nodes);
  document.getElementById("chart-totals").textContent = OUTCOMES.map((o) => data.totals[o] + " " + o).join(" · ");
  const rows = [];
  for (const outcome of OUTCOMES) {
    for (const [code, count] of Object.entries(data.codes[outcome]).sort((x, y) => y[1] - x[1])) {
      const row = el("tr", undefined, outcome);
      row.dataset.outcome = outcome;
      row.dataset.code = code;
      row.append(el("td", outcome), el("td", outcome === "allowed" ? "" : code), el("td", count, "n"));
      rows.push(row);
    }
  }
  replace(document.querySelector("#chart-codes tbody"), rows);
}

let chartDue = null;

async function loadChart() {
  chartDue = null;
  const span = Number(document.getElementById("chart-range").value);
  const until = Date.now() / 1000;
  try {
    drawChart(await api("chart?" + new URLSearchParams({ since: String(until - span), until: String(until), buckets: "30" })));
  } catch (err) {
    if (err.status !== 401) flash(String(err.message), true);
  }
}

// A pushed change redraws the chart, at most every half second.
onState.push(() => {
  if (chartDue === null) chartDue = setTimeout(loadChart, 500);
});

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("log-search").addEventListener("click", searchLog);
  document.getElementById("log-clear").addEventListener("click", liveLog);
  for (const input of document.querySelectorAll("#log-filter input")) {
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") searchLog(); });
  }
  document.getElementById("chart-range").addEventListener("change", loadChart);
});
