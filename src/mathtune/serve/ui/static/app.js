// mathtune web UI: four pages over the /v1 API. Plain JS, no build step, no network beyond this server.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

// ---------------------------------------------------------------- API and errors

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("#api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const message = (data && (data.error || data.detail)) || `${response.status} ${response.statusText}`;
    throw new Error(`The server said (${response.status}): ${typeof message === "string" ? message : JSON.stringify(message)}`);
  }
  return data;
}

async function guarded(button, work) {
  showError("");
  if (button) button.disabled = true;
  try { await work(); } catch (e) { showError(e.message); } finally { if (button) button.disabled = false; }
}

function renderMath(node) {
  if (window.renderMathInElement) {
    window.renderMathInElement(node, {
      delimiters: [{ left: "$$", right: "$$", display: true }, { left: "\\[", right: "\\]", display: true },
                   { left: "\\(", right: "\\)", display: false }, { left: "$", right: "$", display: false }],
      throwOnError: false,
    });
  }
}

// ---------------------------------------------------------------- pages

function showPage() {
  const name = (location.hash || "#topics").slice(1);
  document.querySelectorAll(".page").forEach((p) => { p.hidden = p.id !== `page-${name}`; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  showError("");
  if (name === "models") loadModels();
}

// Topics ----------------------------------------------------------

let topicRows = [];

function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((f) => f.trim()));
}

async function questionsFromInput() {
  const file = $("#topics-file").files[0];
  if (file) {
    const rows = parseCsv(await file.text());
    if (!rows.length) throw new Error(`${file.name} is empty`);
    const header = rows[0].map((h) => h.trim());
    const col = header.findIndex((h) => h.toLowerCase() === "question");
    if (col < 0) throw new Error(`${file.name} has no Question column (its columns: ${header.join(", ")})`);
    return rows.slice(1).map((r) => (r[col] || "").trim()).filter(Boolean);
  }
  return $("#topics-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

async function classifyTopics() {
  const questions = await questionsFromInput();
  if (!questions.length) throw new Error("Type at least one question, or choose a CSV file.");
  topicRows = [];
  const batch = 32;
  for (let i = 0; i < questions.length; i += batch) {
    const part = questions.slice(i, i + batch);
    const data = await api("/v1/topics", { questions: part });
    data.predictions.forEach((p, j) => topicRows.push({ question: part[j], ...p }));
  }
  const body = $("#topics-table tbody");
  body.replaceChildren(...topicRows.map((r, i) => el("tr", {},
    el("td", { text: String(i + 1) }), el("td", { text: r.question }), el("td", { class: "topic", text: r.topic }),
    el("td", {}, el("div", { class: "barbox", title: r.probability.toFixed(3) },
      el("div", { class: "bar", style: `width:${(100 * r.probability).toFixed(1)}%` })),
      el("span", { class: "desc", text: ` ${(100 * r.probability).toFixed(1)}%` })))));
  $("#topics-table").hidden = false;
  $("#topics-download").disabled = false;
  renderMath(body);
}

function downloadTopics() {
  const quote = (s) => `"${String(s).replaceAll('"', '""')}"`;
  const lines = ["question,label,topic,probability",
    ...topicRows.map((r) => [quote(r.question), quote(r.label), quote(r.topic), r.probability.toFixed(6)].join(","))];
  const link = el("a", { href: URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })),
                         download: "topics.csv" });
  document.body.append(link);
  link.click();
  link.remove();
}

// Misconceptions --------------------------------------------------

async function diagnose() {
  const item = {
    question_text: $("#mis-question").value, mc_answer: $("#mis-answer").value,
    student_explanation: $("#mis-explanation").value, question_id: $("#mis-qid").value.trim() || null,
  };
  const data = await api("/v1/misconceptions", { items: [item] });
  const list = $("#mis-results");
  list.replaceChildren(...data.predictions[0].top3.map((r) => el("li", {},
    el("strong", { text: r.label }), el("span", { text: `  ${(100 * r.score).toFixed(1)}%` }),
    el("div", { class: "desc", text: r.description || "" }))));
  $("#mis-notes").replaceChildren(...(data.notes || []).map((note) => el("p", { class: "desc", text: `Note: ${note}` })));
}

// Tutor -----------------------------------------------------------

const EXAMPLES = [
  "A train travels 60 km in 45 minutes. What is its speed in km/h?",
  "Solve for x: $3x + 5 = 20$.",
  "What is the sum of the interior angles of a hexagon?",
  "Write a poem about the sea.",
];
let history = [];  // [{question, node}]

function assistantNode(question) {
  const node = el("div", { class: "msg assistant" }, el("div", { class: "answer", text: "…" }));
  $("#chat").append(el("div", { class: "msg user", text: question }), node);
  return node;
}

function renderAnswer(node, done, sources) {
  const answer = node.querySelector(".answer");
  answer.replaceChildren(el("ol", { class: "steps" }, ...done.steps.map((s) => el("li", { text: s }))));
  if (done.refused) answer.append(el("div", { class: "desc", text: "(declined: not a math question)" }));
  if (sources.length) {
    const details = el("details", { class: "sources" }, el("summary", { text: `${sources.length} sources` }));
    sources.forEach((s) => details.append(el("div", { text: `${s.source} (${s.score.toFixed(3)}): ${s.text}` })));
    node.append(details);
  }
  renderMath(node);
}

async function ask(question) {
  const node = assistantNode(question);
  history.push({ question, node });
  const response = await fetch("/v1/tutor", { method: "POST", headers: headers(),
    body: JSON.stringify({ question, stream: true, retrieval: $("#tutor-retrieval").checked }) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { const data = await response.json(); message = data.error || message; } catch (e) { /* not JSON */ }
    node.querySelector(".answer").textContent = "(no answer)";
    throw new Error(`The server said (${response.status}): ${message}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "", sources = [];
  const answer = node.querySelector(".answer");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
      if (event === "sources") sources = data.sources;
      else if (event === "token") { text += data.text; answer.textContent = text; }
      else if (event === "done") renderAnswer(node, data, sources);
      else if (event === "error") throw new Error(data.error);
    }
  }
}

function undo() {
  const last = history.pop();
  if (!last) return null;
  last.node.previousSibling.remove();
  last.node.remove();
  return last.question;
}

// Models ----------------------------------------------------------

function chart(title, entry, thresholds) {
  // bars for PSI and JS against their thresholds: small, readable at a glance
  const w = 180, h = 70, pairs = [["psi", entry.psi, thresholds.psi], ["js", entry.js, thresholds.js]];
  const svg = [`<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${title}">`];
  pairs.forEach(([name, value, limit], i) => {
    const scale = Math.max(limit * 2, value || 0, 1e-9);
    const y = 12 + i * 28, bar = Math.min(1, (value || 0) / scale) * (w - 60);
    svg.push(`<text x="2" y="${y + 9}" font-size="10">${name}</text>`,
      `<rect x="28" y="${y}" width="${bar.toFixed(1)}" height="12" fill="${value >= limit ? "#b42318" : "#2f6fdb"}"/>`,
      `<line x1="${28 + (limit / scale) * (w - 60)}" x2="${28 + (limit / scale) * (w - 60)}" y1="${y - 3}" y2="${y + 15}" stroke="#667085" stroke-dasharray="2"/>`,
      `<text x="${w - 30}" y="${y + 9}" font-size="10">${(value || 0).toFixed(3)}</text>`);
  });
  svg.push("</svg>");
  const box = el("div", { class: "chart" }, el("div", { class: entry.drift ? "drifted" : "", text: title }));
  box.insertAdjacentHTML("beforeend", svg.join(""));
  return box;
}

async function loadModels() {
  await guarded(null, async () => {
    const models = await api("/v1/models");
    const list = $("#models-list");
    list.replaceChildren(...Object.entries(models).map(([name, m]) => {
      const card = el("div", { class: "card model", "data-model": name },
        el("h3", { text: `${name} (${m.kind}${m.backend ? ", " + m.backend : ""})` }),
        el("div", { class: "desc", text: m.source }));
      const metrics = Object.entries(m.validation || {}).filter(([, v]) => v !== null);
      if (metrics.length) {
        card.append(el("table", {}, ...metrics.map(([k, v]) => el("tr", {}, el("td", { text: k }),
          el("td", { text: typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : String(v) })))));
      }
      const t = m.tracking || {};
      if (t.run_id) {
        const href = m.mlflow_ui_url ? `${m.mlflow_ui_url.replace(/\/$/, "")}/#/experiments/${t.experiment_id}/runs/${t.run_id}` : null;
        card.append(el("p", {}, "MLflow run: ", href ? el("a", { href, text: t.run_id }) : el("code", { text: `${t.run_id} (${t.tracking_uri})` }),
          t.registry_uri ? el("span", { text: ` · ${t.registry_uri}` }) : ""));
      }
      for (const src of m.plots || []) card.append(el("img", { src, alt: `${name}: ${src.split("/").pop()}` }));
      return card;
    }));
    const drift = await api("/v1/drift");
    const dl = $("#drift-list");
    dl.replaceChildren(...Object.entries(drift).map(([name, report]) => {
      const card = el("div", { class: "card drift", "data-model": name }, el("h3", { text: name }));
      if (!report.available) { card.append(el("p", { class: "desc", text: report.reason })); return card; }
      card.append(el("p", { class: report.retrain_suggested ? "drifted" : "desc",
        text: `window ${report.window_size} requests` + (report.enough_data ? "" : ` (flags start at ${report.min_samples})`) +
              (report.retrain_suggested ? " · retraining suggested" : "") }));
      for (const [signal, entry] of Object.entries(report.signals)) card.append(chart(signal, entry, report.thresholds));
      return card;
    }));
  });
}

// ---------------------------------------------------------------- wiring

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", showPage);
  $("#topics-submit").addEventListener("click", (e) => guarded(e.target, classifyTopics));
  $("#topics-download").addEventListener("click", downloadTopics);
  $("#mis-submit").addEventListener("click", (e) => guarded(e.target, diagnose));
  const send = (question) => guarded($("#tutor-send"), () => ask(question));
  $("#tutor-send").addEventListener("click", () => {
    const q = $("#tutor-input").value.trim();
    if (!q) { showError("Type a question first."); return; }
    $("#tutor-input").value = "";
    send(q);
  });
  $("#tutor-input").addEventListener("keydown", (e) => { if (e.key === "Enter") $("#tutor-send").click(); });
  $("#tutor-retry").addEventListener("click", () => { const q = undo(); if (q) send(q); });
  $("#tutor-undo").addEventListener("click", () => undo());
  $("#tutor-clear").addEventListener("click", () => { history = []; $("#chat").replaceChildren(); });
  EXAMPLES.forEach((q) => $("#tutor-examples").append(el("button", { class: "example", text: q })));
  $("#tutor-examples").addEventListener("click", (e) => { if (e.target.matches("button")) { $("#tutor-input").value = e.target.textContent; } });
  showPage();
});
