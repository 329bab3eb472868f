// The results page: a running bot's figures for a flow (GET
// api/results, the server's /api/analytics), its diagram with each edge's
// count and each step's drop-off shaded, and a table of the steps.
"use strict";

const $ = (id) => document.getElementById(id);
let seq = 0;

function iso(input) {
  return input.value ? new Date(input.value).toISOString().replace(/\.\d{3}Z$/, "Z") : "";
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function cell(row, text) {
  const td = document.createElement(row.parentElement && row.parentElement.tagName === "THEAD" ? "th" : "td");
  td.textContent = text;
  row.appendChild(td);
}

async function show() {
  const q = new URLSearchParams({ flow: $("rflow").value, diagram: "mermaid" });
  if (iso($("rfrom"))) q.set("from", iso($("rfrom")));
  if (iso($("rto"))) q.set("to", iso($("rto")));
  const summary = $("rsummary");
  let r;
  try {
    r = await getJSON("api/results?" + q);
  } catch (e) {
    summary.textContent = "results: " + e.message;
    return;
  }
  const conv = r.started ? ((100 * r.converted) / r.started).toFixed(1) + "%" : "-";
  summary.textContent = `flow ${r.flow}: started ${r.started}, ended ${r.ended}, handed off ${r.handed_off}, converted ${r.converted} (${conv}) · ` +
    `cost ${r.currency} confirmed ${JSON.stringify(r.cost.confirmed)}, estimated ${JSON.stringify(r.cost.estimated)}`;
  summary.dataset.started = r.started;
  const table = $("rsteps");
  table.textContent = "";
  const head = table.createTHead().insertRow();
  ["step", "entered", "waiting", "dropped", "retries", "answer p50 (s)", "exits"].forEach((h) => cell(head, h));
  const body = table.createTBody();
  for (const name of r.step_order) {
    const s = r.steps[name];
    const row = body.insertRow();
    row.dataset.step = name;
    [name, s.entered, s.waiting, s.dropped, s.retries, s.answer_seconds_p50 || "-",
      Object.entries(s.exits || {}).map(([k, v]) => `${k} ${v}`).join(", ")].forEach((v) => cell(row, String(v)));
  }
  try {
    const { svg } = await mermaid.render("results" + ++seq, r.diagram);
    $("rdiagram").innerHTML = svg;
  } catch (e) {
    $("rdiagram").textContent = "diagram: " + e.message;
  }
}

async function init() {
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict", flowchart: { htmlLabels: true, useMaxWidth: true, wrappingWidth: 220 } });
  const bot = await getJSON("api/bot");
  const select = $("rflow");
  for (const f of bot.flows || []) {
    const o = document.createElement("option");
    o.value = o.textContent = f.id || f;
    select.appendChild(o);
  }
  const want = new URLSearchParams(location.search).get("flow");
  if (want) select.value = want;
  $("rshow").onclick = () => show();
  select.onchange = () => show();
  await show();
}

init().catch((e) => ($("rsummary").textContent = "results: " + e.message));
