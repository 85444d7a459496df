// ragdb's web page: a client of the service's JSON API (/v1), nothing more.
// Plain JavaScript, no build step. Every change it asks for carries the CSRF
// token the server put in the page.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel, root = document) => root.querySelector(sel);

// -- talking to the API ------------------------------------------------------------------------
async function api(method, path, body, isForm) {
  const headers = { "X-CSRF-Token": CSRF };
  if (body !== undefined && !isForm) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : isForm ? body : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.title || `HTTP ${response.status}`);
  return data;
}

// Server-sent events from a POST (EventSource only GETs): calls onEvent(data).
async function postEvents(path, body, onEvent) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "X-CSRF-Token": CSRF, "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new Error(data.detail || `HTTP ${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
  }
}

function flash(message) {
  const el = $("#flash");
  el.textContent = message;
  el.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function whereOf(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

function kbsOf(form) {
  const kb = form.elements.kb && form.elements.kb.value;
  return kb ? [kb] : undefined;
}

// -- a chunk, with why it ranks where it does -------------------------------------------------
function whereIn(hit) {
  const m = hit.metadata || {};
  const parts = [];
  if (m.page !== undefined) parts.push(`page ${m.page}`);
  if (m.slide !== undefined) parts.push(`slide ${m.slide}`);
  if (m.section) parts.push(m.section);
  if (m.heading) parts.push(`§ ${m.heading}`);
  parts.push(`chunk ${(m.chunk_index || 0) + 1}/${m.n_chunks || "?"}`);
  return parts.join(", ");
}

function reasons(hit) {
  const s = hit.scores || {};
  const out = [`similarity ${hit.score.toFixed(3)}`];
  if (s.dense_rank !== undefined) out.push(`dense rank ${s.dense_rank}`);
  if (s.bm25_rank !== undefined) out.push(`keyword rank ${s.bm25_rank}`);
  else if (s.fused !== undefined) out.push("no keyword match");
  if (s.bm25 !== undefined) out.push(`keyword score ${s.bm25.toFixed(2)}`);
  if (s.fused !== undefined) out.push(`fused ${s.fused.toFixed(4)}`);
  return out.join(" · ");
}

// Words not worth marking in a result.
const STOP = new Set("the and for are was were with that this what which who how why when where from into its our your their has have had not but can does did".split(" "));

function highlighted(text, query) {
  const words = ((query || "").toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []).filter((w) => !STOP.has(w));
  if (!words.length) return [text];
  const pattern = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "giu");
  return text.split(pattern).map((part, i) => (i % 2 ? el("mark", {}, part) : part));
}

function sourceLink(name) {
  return el("a", { href: `#source/${encodeURIComponent(name)}`, class: "source" }, name);
}

function chunkCard(hit, query) {
  return el(
    "article",
    { class: "chunk", "data-rank": hit.rank, "data-source": hit.source },
    el("header", {}, el("span", { class: "rank" }, `[${hit.rank}]`), " ", sourceLink(hit.source), " ",
      el("span", { class: "muted" }, whereIn(hit))),
    el("p", { class: "why" }, reasons(hit)),
    el("p", { class: "text" }, highlighted(hit.text || "", query)),
  );
}

// -- Ask ------------------------------------------------------------------------------------------
function renderAnswer(box, text, hits) {
  box.replaceChildren();
  const parts = text.split(/(\[\d+\])/);
  for (const part of parts) {
    const m = part.match(/^\[(\d+)\]$/);
    const hit = m && hits.find((h) => h.rank === Number(m[1]));
    if (!hit) {
      box.append(part);
      continue;
    }
    box.append(citeButton(hit, part));
  }
}

// A citation [n]: opens chunk n in place (and closes it again).
function citeButton(hit, label) {
  return el("button", {
    type: "button", class: "cite", "aria-expanded": "false", "data-rank": hit.rank,
    "aria-label": `source ${hit.rank}: ${hit.source}`,
    onclick: (event) => toggleCitation(event.currentTarget, hit),
  }, label);
}

// Which chunks back each sentence (ragdb's own check, whatever the model cited).
function markSupport(box, support) {
  const lines = (support.sentences || []).map((s) => {
    const backing = (s.best || []).map((n) => `[${n}]`).join(" ");
    return el("li", { "data-verdict": s.verdict }, `${s.verdict}: “${s.text}”`, backing ? ` backed by ${backing}` : "");
  });
  if (lines.length) box.after(el("details", { class: "support" }, el("summary", {}, "How well the chunks back each sentence"), el("ul", {}, lines)));
}

function toggleCitation(button, hit) {
  const item = button.closest("li");
  const open = item ? item.querySelector(".cited") : button.nextElementSibling;
  if (open && open.classList.contains("cited")) {
    open.remove();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const card = chunkCard(hit, "");
  card.classList.add("cited");
  if (item) item.append(card);
  else button.after(card);
  button.setAttribute("aria-expanded", "true");
}

async function ask(form) {
  const out = $("#ask-out");
  const question = form.elements.q.value;
  let hits = [];
  let text = "";
  const answer = el("div", { class: "answer", id: "answer" });
  const status = el("p", { class: "muted", id: "ask-status" }, "Retrieving…");
  const cited = el("ol", { class: "citations", id: "citations", "aria-label": "Sources of the answer" });
  const nearest = el("div", { class: "nearest" });
  out.replaceChildren(status, answer, cited, nearest);
  const body = {
    query: question,
    k: Number(form.elements.k.value) || 4,
    mode: form.elements.mode.value,
    where: whereOf(form.elements.where.value),
    kb: kbsOf(form),
    stream: true,
  };
  const threshold = form.elements.min_score.value;
  if (threshold !== "") body.min_score = Number(threshold);
  const showNearest = (why) => {
    nearest.replaceChildren(el("h2", {}, why), ...hits.map((h) => chunkCard(h, question)));
  };
  try {
    await postEvents("/v1/ask", body, (event) => {
      if (event.event === "chunks") {
        hits = event.chunks;
        status.textContent = `Answering from ${hits.length} chunks…`;
        cited.replaceChildren(...hits.map((hit) => el("li", {}, citeButton(hit, `[${hit.rank}]`),
          " ", hit.source, " ", el("span", { class: "muted" }, whereIn(hit)))));
      } else if (event.event === "delta") {
        text += event.text;
        renderAnswer(answer, text, hits);
      } else if (event.event === "support") {
        markSupport(answer, event.support);
      } else if (event.event === "done") {
        status.textContent = event.model ? `Answered by ${event.model}.` : "Done.";
        if (event.enough_context === false) {
          const why = threshold !== "" ? `: no chunk reached the minimum similarity of ${threshold}` : "";
          status.textContent = `Not enough information in the knowledge base${why}.`;
          showNearest("The nearest chunks");
        }
      } else if (event.event === "error") {
        status.textContent = "";
        out.prepend(el("p", { class: "error", role: "alert" }, event.message || event.error || "the answer failed"));
        showNearest("What was retrieved");
      }
    });
  } catch (err) {
    status.textContent = "";
    out.prepend(el("p", { class: "error", role: "alert" }, err.message));
    if (hits.length) showNearest("What was retrieved");
  }
}

// -- Search ---------------------------------------------------------------------------------------
async function search(form) {
  const out = $("#search-out");
  const query = form.elements.q.value;
  out.replaceChildren(el("p", { class: "muted" }, "Searching…"));
  try {
    const data = await api("POST", "/v1/search", {
      query,
      k: Number(form.elements.k.value) || 8,
      mode: form.elements.mode.value,
      where: whereOf(form.elements.where.value),
      kb: kbsOf(form),
    });
    const cards = data.chunks.map((h) => chunkCard(h, query));
    out.replaceChildren(cards.length ? el("div", { class: "results" }, cards) : el("p", {}, "Nothing found."));
  } catch (err) {
    out.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
  }
}

// -- Sources --------------------------------------------------------------------------------------
const PAGE = 50;
let sourcesOffset = 0;

function kbParam(select) {
  return select && select.value ? `kb=${encodeURIComponent(select.value)}&` : "";
}

async function listSources() {
  const form = $("#sources-form");
  const out = $("#sources-out");
  const prefix = encodeURIComponent(form.elements.prefix.value);
  try {
    const data = await api("GET", `/v1/sources?${kbParam(form.elements.kb)}prefix=${prefix}&offset=${sourcesOffset}&limit=${PAGE}`);
    const rows = data.sources.map((s) => el("tr", { "data-source": s.source },
      el("td", {}, sourceLink(s.source)),
      el("td", {}, s.kind),
      el("td", { class: "num" }, s.n_chunks),
      el("td", {}, (s.ingested_at || "").slice(0, 19).replace("T", " ")),
      el("td", {}, (s.last_modified || "").slice(0, 19).replace("T", " ")),
      el("td", { class: "meta" }, details(s)),
      el("td", {}, el("button", { type: "button", class: "danger", onclick: () => removeSource(s.source, s.n_chunks) }, "Remove")),
    ));
    const table = el("table", { id: "sources-table" },
      el("caption", {}, `${data.total} sources`),
      el("thead", {}, el("tr", {}, ["Name", "Type", "Chunks", "Ingested", "Modified", "Details", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows));
    const pager = el("p", { class: "pager" },
      el("button", { type: "button", disabled: sourcesOffset ? null : "", onclick: () => { sourcesOffset = Math.max(0, sourcesOffset - PAGE); listSources(); } }, "Previous"),
      ` ${data.total ? sourcesOffset + 1 : 0}–${Math.min(sourcesOffset + PAGE, data.total)} of ${data.total} `,
      el("button", { type: "button", disabled: sourcesOffset + PAGE < data.total ? null : "", onclick: () => { sourcesOffset += PAGE; listSources(); } }, "Next"));
    out.replaceChildren(el("div", { class: "scroll" }, table), pager);
  } catch (err) {
    out.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
  }
}

// A source's title, origin and metadata, in a line.
function details(s) {
  const parts = [];
  if (s.title) parts.push(s.title);
  if (s.source_type && s.source_type !== "file") parts.push(s.source_type);
  if (s.origin) parts.push(`from ${s.origin}`);
  for (const [key, value] of Object.entries(s.metadata || {})) parts.push(`${key}: ${value}`);
  return parts.join(" · ");
}

async function removeSource(name, chunks) {
  if (!window.confirm(`Remove ${name} and its ${chunks} chunks from the knowledge base?`)) return;
  try {
    await api("DELETE", `/v1/sources/${encodeURIComponent(name)}`);
    flash("");
    if (location.hash.startsWith("#source/")) location.hash = "#sources";
    else listSources();
  } catch (err) {
    flash(err.message);
  }
}

async function showSource(name) {
  const out = $("#source-out");
  $("#h-source").textContent = name;
  try {
    const data = await api("GET", `/v1/sources/${encodeURIComponent(name)}`);
    const chunks = data.chunks.map((c) => el("article", { class: "chunk" },
      el("header", {}, el("span", { class: "rank" }, `#${c.chunk_index + 1}`), " ",
        el("span", { class: "muted" }, whereIn({ metadata: c.metadata || c }))),
      el("p", { class: "text" }, c.text || "")));
    out.replaceChildren(
      el("p", {}, `${data.chunks.length} chunks `,
        el("button", { type: "button", class: "danger", onclick: () => removeSource(name, data.chunks.length) }, "Remove")),
      ...chunks);
  } catch (err) {
    out.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
  }
}

// -- Add, and the work it starts ------------------------------------------------------------------
const jobsShown = new Map();

function jobRow(job, label) {
  let row = jobsShown.get(job.id);
  if (!row) {
    row = el("li", { class: "job", "data-job": job.id },
      el("span", { class: "label" }, label || job.kind), " ",
      el("progress", { max: "1", value: "0", "aria-label": `progress of ${label || job.kind}` }), " ",
      el("span", { class: "state" }, job.state), " ",
      el("button", { type: "button", class: "cancel", onclick: () => api("DELETE", `/v1/jobs/${job.id}`).catch((e) => flash(e.message)) }, "Cancel"),
      el("ul", { class: "errors" }));
    jobsShown.set(job.id, row);
    $("#jobs").prepend(row);
  }
  return row;
}

function updateJob(row, job) {
  const bar = $("progress", row);
  if (job.chunks_total) {
    bar.max = job.chunks_total;
    bar.value = job.chunks_done || 0;
  }
  const finished = ["succeeded", "failed", "cancelled"].includes(job.state);
  if (finished) {
    bar.max = 1;
    bar.value = 1;
  }
  let state = job.state;
  if (job.state === "succeeded" && job.report) {
    // The report's counts (what was added, updated, unchanged, skipped...).
    const counts = Object.entries(job.report).filter(([, v]) => typeof v === "number" && v);
    state = `succeeded: ${counts.map(([k, v]) => `${v} ${k.replace(/_/g, " ")}`).join(", ") || "nothing new"}`;
  }
  if (job.error) state = `${job.state}: ${job.error}`;
  $(".state", row).textContent = state;
  row.dataset.state = job.state;
  $(".cancel", row).hidden = finished;
  const errors = $(".errors", row);
  errors.replaceChildren(...(job.errors || []).map((e) => el("li", { class: "error" }, `${e.source}: ${e.reason}`)));
  if (finished) refreshWatches();
}

function follow(job, label) {
  const row = jobRow(job, label);
  updateJob(row, job);
  const events = new EventSource(`/v1/jobs/${job.id}/events`);
  events.onmessage = async (message) => {
    const event = JSON.parse(message.data);
    if (event.event === "progress" && event.chunks_total) {
      const bar = $("progress", row);
      bar.max = event.chunks_total;
      bar.value = event.chunks_done;
    }
    if (event.event === "source_error") {
      $(".errors", row).append(el("li", { class: "error" }, `${event.source}: ${event.reason}`));
    }
    if (event.event === "done" || event.event === "error") {
      events.close();
      updateJob(row, await api("GET", `/v1/jobs/${job.id}`));
    }
  };
  events.onerror = async () => {
    events.close();
    updateJob(row, await api("GET", `/v1/jobs/${job.id}`).catch(() => job));
  };
}

async function upload(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      follow(await api("POST", "/v1/documents", form, true), file.name);
    } catch (err) {
      flash(`${file.name}: ${err.message}`);
    }
  }
}

async function refreshJobs() {
  try {
    const data = await api("GET", "/v1/jobs");
    for (const job of (data.jobs || []).slice().reverse()) {
      if (!jobsShown.has(job.id)) updateJob(jobRow(job), job);
    }
  } catch (err) {
    flash(err.message);
  }
}

async function refreshWatches() {
  try {
    const data = await api("GET", "/v1/watches");
    $("#watches").replaceChildren(...(data.watches || []).map((w) => el("li", {},
      el("code", {}, w.path), " ",
      el("span", { class: "muted" }, `last reconcile ${w.last_reconcile || w.last_synced || "never"}`),
      w.last_error ? el("span", { class: "error" }, ` ${w.last_error}`) : "", " ",
      el("button", { type: "button", class: "danger", onclick: async () => {
        if (!window.confirm(`Stop watching ${w.path}? (Its sources stay.)`)) return;
        await api("DELETE", `/v1/watches?path=${encodeURIComponent(w.path)}`).catch((e) => flash(e.message));
        refreshWatches();
      } }, "Stop watching"))));
  } catch (err) {
    flash(err.message);
  }
}

// -- Status ---------------------------------------------------------------------------------------
const charts = {};

function chart(id, config) {
  if (charts[id]) charts[id].destroy();
  if (window.Chart) charts[id] = new window.Chart($(`#${id}`), config);
}

async function allSources() {
  const out = [];
  for (let offset = 0; ; offset += 1000) {
    const data = await api("GET", `/v1/sources?offset=${offset}&limit=1000`);
    out.push(...data.sources);
    if (out.length >= data.total || !data.sources.length) return out;
  }
}

async function showStatus() {
  try {
    const data = await api("GET", "/v1/status");
    const service = data.service || {};
    const facts = [
      ["Store", data.store],
      ["Mode", data.mode === "server" ? "Chroma server" : "embedded Chroma"],
      ["Knowledge base", data.kb],
      ["Model", `${data.embed_model} (${data.embed_dimension} dimensions)`],
      ["Backend", data.embed_backend],
      ["Vector index", data.index],
      ["Sources", data.sources],
      ["Chunks", data.chunks],
      ["Role", service.role],
      ["Jobs queued", service.queue],
      ["Searches answered", `${service.retrieval_queries} in ${service.retrieval_batches} batches`],
    ];
    $("#status-out").replaceChildren(...facts.filter(([, v]) => v !== undefined && v !== null)
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : v)]));
    const sources = await allSources();
    const kinds = {};
    const days = {};
    for (const s of sources) {
      const k = (kinds[s.kind] ||= { sources: 0, chunks: 0 });
      k.sources += 1;
      k.chunks += s.n_chunks;
      const day = (s.ingested_at || "").slice(0, 10);
      days[day] = (days[day] || 0) + 1;
    }
    const kindNames = Object.keys(kinds).sort();
    chart("chart-types", {
      type: "bar",
      data: { labels: kindNames, datasets: [
        { label: "sources", data: kindNames.map((k) => kinds[k].sources) },
        { label: "chunks", data: kindNames.map((k) => kinds[k].chunks) },
      ] },
      options: { animation: false, responsive: true },
    });
    const dayNames = Object.keys(days).sort();
    chart("chart-ingests", {
      type: "bar",
      data: { labels: dayNames, datasets: [{ label: "sources ingested", data: dayNames.map((d) => days[d]) }] },
      options: { animation: false, responsive: true },
    });
    const latency = service.latency_ms || [];
    chart("chart-latency", {
      type: "line",
      data: { labels: latency.map((_, i) => i + 1), datasets: [{ label: "ms per search", data: latency }] },
      options: { animation: false, responsive: true },
    });
  } catch (err) {
    flash(err.message);
  }
}

// -- knowledge bases ------------------------------------------------------------------------------
async function loadKbs() {
  try {
    const data = await api("GET", "/v1/kbs");
    const names = data.knowledge_bases.map((k) => k.name);
    for (const select of document.querySelectorAll(".kb-select")) {
      select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
      select.closest("label").hidden = names.length < 2;
    }
  } catch (err) {
    for (const select of document.querySelectorAll(".kb-select")) select.closest("label").hidden = true;
  }
}

// -- navigation -----------------------------------------------------------------------------------
function route() {
  const hash = decodeURIComponent(location.hash.slice(1)) || "ask";
  const [view, ...rest] = hash.split("/");
  const name = document.getElementById(`view-${view}`) ? view : "ask";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  flash("");
  if (name === "sources") listSources();
  if (name === "source") showSource(rest.join("/"));
  if (name === "add") { refreshJobs(); refreshWatches(); }
  if (name === "status") showStatus();
  const heading = $(`#view-${name} h1`);
  if (heading) heading.focus({ preventScroll: true });
}

function bind() {
  $("#ask-form").addEventListener("submit", (e) => { e.preventDefault(); ask(e.target); });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search(e.target); });
  $("#sources-form").addEventListener("submit", (e) => { e.preventDefault(); sourcesOffset = 0; listSources(); });
  $("#files").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#files").click(); } });
  $("#text-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      follow(await api("POST", "/v1/ingest", { texts: [{ name: f.elements.name.value, text: f.elements.text.value }] }), f.elements.name.value);
      f.reset();
    } catch (err) { flash(err.message); }
  });
  $("#path-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const path = e.target.elements.path.value;
    try { follow(await api("POST", "/v1/ingest", { paths: [path] }), path); } catch (err) { flash(err.message); }
  });
  $("#watch-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await api("POST", "/v1/watches", { path: e.target.elements.path.value }); e.target.reset(); refreshWatches(); } catch (err) { flash(err.message); }
  });
  const signout = $("#signout-form");
  if (signout) signout.addEventListener("submit", async (e) => {
    e.preventDefault();
    await fetch("/signout", { method: "POST", headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" });
    location.assign("/");
  });
  for (const h of document.querySelectorAll(".view h1")) h.tabIndex = -1;
  window.addEventListener("hashchange", route);
}

bind();
loadKbs();
route();
