// The flowbot playground: a phone-like chat with the bot on a virtual
// clock, the trace, the variables, the cost, the diagram with the current
// step, and the YAML with lint errors at their lines. All the work is the
// server's (the same engine and loader as flowbot run and test); this page
// only shows it.
"use strict";

const base = location.pathname.replace(/\/+$/, "");
const api = base + "/api";
let chat = null;
let bot = null;
let diagramSeq = 0;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function call(method, path, body, raw) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    if (raw) {
      opts.body = body;
      opts.headers["Content-Type"] = "text/plain";
    } else {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
  }
  const resp = await fetch(api + path, opts);
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new Error((data && data.error) || data || resp.statusText);
  return data;
}

function clock(t) {
  return new Date(t).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

// --- the bot and its files ---

async function loadBot() {
  bot = await call("GET", "/bot");
  $("botdir").textContent = bot.dir + " (version " + bot.version + (bot.write_through ? ", edits are saved to disk" : ", edits stay in this page's server") + ")";
  const flow = $("flow");
  const keep = flow.value;
  flow.innerHTML = "";
  flow.append(new Option("(match triggers)", ""));
  for (const f of bot.flows || []) flow.append(new Option(f.id, f.id));
  flow.value = keep;
  // The contact's language: the bot's languages to pick from, or any code.
  const langs = $("langs");
  langs.innerHTML = "";
  for (const l of bot.languages || []) langs.append(new Option(l, l));
  const file = $("file");
  if (!file.options.length) {
    for (const f of bot.files) file.append(new Option(f, f));
    const first = bot.files.find((f) => f.startsWith("flows/")) || bot.files[0];
    file.value = first;
    await openFile(first);
  }
  showDiagnostics(bot.diagnostics);
}

async function openFile(name) {
  $("source").value = await call("GET", "/files/" + name);
  $("file").value = name;
  paintGutter();
}

function paintGutter() {
  const lines = $("source").value.split("\n").length;
  const marks = {};
  for (const d of (bot && bot.diagnostics) || []) {
    if (d.file === $("file").value && d.line) marks[d.line] = marks[d.line] === "err" ? "err" : d.severity === "error" ? "err" : "warn";
  }
  const g = $("gutter");
  g.innerHTML = "";
  for (let i = 1; i <= lines; i++) {
    const s = el("span", marks[i] || "", String(i));
    s.dataset.line = i;
    g.append(s, "\n");
  }
  g.scrollTop = $("source").scrollTop;
}

function showDiagnostics(diags) {
  const ul = $("diags");
  ul.innerHTML = "";
  for (const d of diags || []) {
    const li = el("li", "diag " + d.severity, d.file + ":" + d.line + ":" + d.col + ": " + d.severity + ": " + d.message);
    li.dataset.file = d.file;
    li.dataset.line = d.line;
    li.onclick = () => jumpTo(d.file, d.line, d.col);
    ul.append(li);
  }
  paintGutter();
}

async function jumpTo(file, line, col) {
  if ($("file").value !== file) await openFile(file);
  const ta = $("source");
  const lines = ta.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[line - 1] || "").length;
  ta.focus();
  ta.setSelectionRange(start + Math.max(0, (col || 1) - 1), end);
  ta.scrollTop = Math.max(0, (line - 5) * 18);
}

async function save() {
  const status = $("status");
  try {
    bot = await call("PUT", "/files/" + $("file").value, $("source").value, true);
  } catch (e) {
    status.className = "bad";
    status.textContent = e.message;
    return;
  }
  const errors = (bot.diagnostics || []).filter((d) => d.severity === "error").length;
  if (errors) {
    status.className = "bad";
    status.textContent = errors + " error(s): the last version that loaded keeps running";
    const first = bot.diagnostics.find((d) => d.severity === "error" && d.file === $("file").value);
    if (first) jumpTo(first.file, first.line, first.col);
  } else {
    status.className = "good";
    status.textContent = "reloaded: version " + bot.version + "; new chats use it";
  }
  await loadBot();
}

// --- the chat ---

async function newChat() {
  chat = await call("POST", "/sessions", { flow: $("flow").value, name: $("name").value, language: $("lang").value });
  $("contact").textContent = ($("name").value || "Tester") + " ↔ bot";
  render();
}

async function send(body) {
  chat = await call("POST", "/sessions/" + chat.id + "/say", body);
  render();
}

async function wait(duration) {
  chat = await call("POST", "/sessions/" + chat.id + "/wait", { duration });
  render();
}

function choiceButton(cls, label, id, sub) {
  const b = el("button", cls, label);
  if (sub) b.append(el("small", "", sub));
  b.type = "button";
  b.dataset.choice = id;
  b.onclick = () => send({ choice: id }).catch(alert);
  return b;
}

function botBubble(e) {
  const m = e.message || { kind: "text", text: e.text };
  const div = el("div", "msg bot" + (e.from === "agent" ? " agent" : ""));
  if (m.kind === "template" && m.template) {
    const t = m.template;
    div.classList.add("template");
    div.dataset.template = t.name;
    div.append(el("div", "tpl-head", "Template · " + t.name + " · " + (t.category || "").toUpperCase() + " · " + t.language + (e.fallback ? " · fallback" : "")));
    // As the contact sees it: header, body, footer, buttons.
    if (t.header) div.append(el("strong", "tpl-header", t.header + "\n"));
    else if (t.header_texts && t.header_texts.length) div.append(el("strong", "tpl-header", t.header_texts.join(" ") + "\n"));
    div.append(document.createTextNode(t.body || m.text || ""));
    if (t.footer) div.append(el("div", "tpl-footer", t.footer));
    const params = (t.params || []).map((p, i) => "{{" + (i + 1) + "}} = " + p)
      .concat((t.named || []).map((n) => "{{" + n.name + "}} = " + n.value));
    if (params.length) div.append(el("div", "tpl-params", params.join("   ")));
    const texts = t.button_texts || [];
    const c = el("div", "choices");
    texts.forEach((label, i) => {
      const b = (t.buttons || []).find((x) => x.index === i);
      if (b && b.sub_type === "quick_reply") c.append(choiceButton("choice", label, b.value)); // tappable: its payload comes back
      else c.append(el("span", "choice tpl-link", label));
    });
    for (const b of (t.buttons || []).filter((x) => x.sub_type === "quick_reply" && x.index >= texts.length)) {
      c.append(choiceButton("choice", b.value, b.value));
    }
    if (c.childNodes.length) div.append(c);
  } else if (m.kind === "link" && m.link) {
    div.append(document.createTextNode(m.text || ""));
    const c = el("div", "choices");
    const a = el("a", "choice tpl-link", "🔗 " + m.link.text);
    a.href = m.link.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    c.append(a);
    div.append(c);
  } else if (m.kind === "form" && m.form) {
    div.append(document.createTextNode(m.text || ""));
    const c = el("div", "choices");
    const b = el("button", "choice", "📋 " + m.form.cta);
    b.type = "button";
    b.title = "Flow " + m.form.flow_id + ", screen " + m.form.screen;
    b.onclick = () => {
      const answer = prompt("The form's answers, as JSON (Flow " + m.form.flow_id + ", screen " + m.form.screen + ")", "{}");
      if (answer === null) return;
      let form;
      try { form = JSON.parse(answer); } catch (err) { alert("not JSON: " + err.message); return; }
      send({ form: form }).catch(alert);
    };
    c.append(b);
    div.append(c);
  } else if (m.kind === "location_request") {
    div.append(document.createTextNode(m.text || ""));
    const c = el("div", "choices");
    const b = el("button", "choice", "📍 Send location");
    b.type = "button";
    b.onclick = () => {
      const answer = prompt("latitude, longitude, name", "38.71, -9.14, Office");
      if (answer === null) return;
      const [lat, lng, ...name] = answer.split(",").map((s) => s.trim());
      send({ location: { latitude: Number(lat), longitude: Number(lng), name: name.join(", ") } }).catch(alert);
    };
    c.append(b);
    div.append(c);
  } else if (m.kind === "reaction") {
    div.append(el("div", "media", "reacted " + (m.text || "")));
  } else if (["image", "video", "audio", "document"].includes(m.kind)) {
    div.append(el("div", "media", "[" + m.kind + "] " + ((m.media && (m.media.link || "id " + m.media.id)) || "")));
    if (m.text) div.append(document.createTextNode(m.text));
  } else {
    div.append(document.createTextNode(m.text || ""));
  }
  if (m.buttons && m.buttons.length) {
    const c = el("div", "choices");
    for (const b of m.buttons) c.append(choiceButton("choice", b.title, b.id));
    div.append(c);
  }
  if (m.list) {
    const c = el("div", "choices");
    const rows = el("div", "rows");
    const open = el("button", "choice list-open", "☰ " + m.list.button);
    open.type = "button";
    open.onclick = () => rows.classList.toggle("open");
    for (const s of m.list.sections) {
      if (s.title) rows.append(el("div", "media", s.title));
      for (const r of s.rows) rows.append(choiceButton("row", r.title, r.id, r.description));
    }
    c.append(open, rows);
    div.append(c);
  }
  div.append(el("span", "meta", clock(e.at).slice(11, 16) + (e.from === "agent" ? " · agent" : "") + " · " + e.via + " · window " + e.window + " · " + e.step));
  return div;
}

function render() {
  if (!chat) return;
  const box = $("messages");
  box.innerHTML = "";
  for (const e of chat.entries || []) {
    if (e.from === "bot" || e.from === "agent") box.append(botBubble(e));
    else if (e.from === "user") box.append(el("div", "msg user", e.text));
    else box.append(el("div", "msg note", e.text));
  }
  box.scrollTop = box.scrollHeight;
  $("clock").textContent = clock(chat.now);
  const w = $("window");
  w.dataset.open = chat.window.open;
  if (chat.window.open) {
    w.className = "badge";
    w.textContent = "window open · closes in " + chat.window.left;
  } else {
    w.className = "badge closed";
    w.textContent = "window closed";
  }
  $("where").textContent = chat.flow ? "flow " + chat.flow + " · step " + chat.step + (chat.waiting ? " · waiting: " + chat.waiting : "") : "in no flow";
  $("vars").textContent = JSON.stringify({ flow: chat.flow || null, step: chat.step || null, waiting: chat.waiting || null, vars: chat.vars || {}, contact_fields: chat.fields || {}, handoff: chat.handoff || null, opted_out: !!chat.opted_out }, null, 2);
  const trace = $("trace");
  trace.innerHTML = "";
  for (const r of chat.trace || []) {
    const where = r.flow ? " " + r.flow + (r.step ? "/" + r.step : "") : "";
    trace.append(el("li", r.kind, clock(r.at).slice(11, 16) + " " + r.kind + where + ": " + (r.detail || "")));
  }
  const cost = $("cost");
  cost.innerHTML = "";
  cost.append(el("p", "", chat.cost_summary || ""));
  const table = el("table", "cost");
  for (const [k, v] of Object.entries(chat.cost || {})) {
    const tr = el("tr");
    tr.append(el("th", "", k), el("td", "", Number(v).toFixed(4)));
    table.append(tr);
  }
  cost.append(table);
  drawDiagram(chat.diagram);
}

async function drawDiagram(src) {
  const target = $("diagram");
  if (!src) {
    target.textContent = "";
    return;
  }
  try {
    const { svg } = await mermaid.render("flowdiagram" + ++diagramSeq, src);
    target.innerHTML = svg;
  } catch (e) {
    target.textContent = "diagram: " + e.message;
  }
}

// --- wiring ---

function wire() {
  // useMaxWidth: the diagram scales to its panel instead of overflowing it.
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict", flowchart: { htmlLabels: true, useMaxWidth: true, wrappingWidth: 220 } });
  $("newchat").onclick = () => newChat().catch(alert);
  $("composer").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("text").value = "";
    send({ text }).catch(alert);
  };
  for (const b of document.querySelectorAll("[data-wait]")) b.onclick = () => wait(b.dataset.wait).catch(alert);
  $("waitbtn").onclick = () => wait($("waitfor").value || "1h").catch(alert);
  $("agentbtn").onclick = async () => {
    const text = prompt("The agent writes:");
    if (!text) return;
    try {
      chat = await call("POST", "/sessions/" + chat.id + "/agent", { text });
    } catch (e) {
      chat = await call("GET", "/sessions/" + chat.id);
    }
    render();
  };
  $("releasebtn").onclick = async () => {
    try {
      chat = await call("POST", "/sessions/" + chat.id + "/release");
      render();
    } catch (e) {
      alert(e.message);
    }
  };
  for (const b of document.querySelectorAll("nav button")) {
    b.onclick = () => {
      for (const o of document.querySelectorAll("nav button")) o.classList.toggle("active", o === b);
      for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== "tab-" + b.dataset.tab;
    };
  }
  $("file").onchange = () => openFile($("file").value).catch(alert);
  $("save").onclick = () => save();
  $("source").oninput = paintGutter;
  $("source").onscroll = () => ($("gutter").scrollTop = $("source").scrollTop);
}

wire();
loadBot().then(newChat).catch((e) => {
  document.body.prepend(el("p", "msg note", "playground: " + e.message));
});
