// autointerp latent browser: the index table (sort, filter, text and semantic search) and sortable tables.
// Plain JavaScript, no dependencies. The index data is window.AUTOINTERP_INDEX (from rows.js).
"use strict";

(function () {
  const PAGE = 500; // rows put into the DOM at a time

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Math.abs(v) < 1e-12) return "0";
    return v.toFixed(digits === undefined ? 3 : digits);
  }

  function pct(d) {
    if (d === null || d === undefined) return "–";
    const p = d * 100;
    return (p >= 1 ? p.toFixed(2) : p >= 0.01 ? p.toFixed(3) : p.toExponential(1)) + " %";
  }

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  // ---- generic sortable tables (latent pages, comparison pages) ----
  function sortTable(table, col, th) {
    const body = table.tBodies[0];
    const asc = th.dataset.dir !== "asc";
    table.querySelectorAll("th").forEach((h) => delete h.dataset.dir);
    th.dataset.dir = asc ? "asc" : "desc";
    const key = (tr) => {
      const c = tr.cells[col];
      const t = c ? (c.dataset.value !== undefined ? c.dataset.value : c.textContent.trim()) : "";
      const n = parseFloat(t.replace(/[+,%]/g, ""));
      return Number.isNaN(n) ? t.toLowerCase() : n;
    };
    const rows = Array.from(body.rows).map((tr) => [key(tr), tr]);
    rows.sort((a, b) => {
      const x = a[0], y = b[0];
      if (typeof x === "number" && typeof y === "number") return asc ? x - y : y - x;
      if (typeof x === "number") return -1;
      if (typeof y === "number") return 1;
      return asc ? (x < y ? -1 : x > y ? 1 : 0) : (x < y ? 1 : x > y ? -1 : 0);
    });
    rows.forEach((r) => body.appendChild(r[1]));
  }

  function makeSortable(table) {
    if (table.id === "latents") return;
    const ths = table.tHead ? table.tHead.rows[0].cells : [];
    Array.from(ths).forEach((th, i) => th.addEventListener("click", () => sortTable(table, i, th)));
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);

  // ---- the index ----
  const data = window.AUTOINTERP_INDEX;
  if (!data) return;
  const C = {};
  data.columns.forEach((c, i) => (C[c] = i));
  const rows = data.rows;
  const root = data.root || "";
  const multi = !data.partition;
  const $ = (id) => document.getElementById(id);
  const state = { sort: null, dir: -1, shown: [], rendered: 0, sim: null };

  // columns: [label, sort key fn, cell html fn, css class]
  const cols = [
    ["latent", (r) => r[C.latent], (r) => {
      const n = r[C.latent];
      return r[C.page] ? `<a href="${root}${esc(r[C.layer])}/${r[C.range]}/latents/${n}.html">${n}</a>` : String(n);
    }, "num"],
  ];
  if (multi) cols.unshift(["layer", (r) => r[C.layer], (r) => esc(r[C.layer]), ""]);
  const status = (r) => r[C.status] + (r[C.selection] === "not_selected" ? " · not selected" : "");
  cols.push(["status", status, (r) => esc(status(r)).replace(" · ", "<br><small>") + (r[C.selection] === "not_selected" ? "</small>" : ""), ""]);
  cols.push(["density", (r) => r[C.density], (r) => pct(r[C.density]), "num"]);
  cols.push(["max act.", (r) => r[C.max], (r) => fmt(r[C.max], 2), "num"]);
  cols.push(["flags", (r) => r[C.flags].join(","), (r) => r[C.flags].map((f) => `<span class="flag">${esc(f.replace("_", " "))}</span>`).join(" "), ""]);
  cols.push(["explainer", (r) => r[C.explainer] || "", (r) => r[C.explainer] ? esc(r[C.explainer]) + (r[C.active] ? " <small>active</small>" : "") : "", ""]);
  cols.push(["explanation", (r) => (r[C.explanation] || "").toLowerCase(), (r) => `<span title="${esc(r[C.explanation])}">${esc(r[C.explanation])}</span>`, "text"]);
  data.scorers.forEach((s) => cols.push([s, (r) => r[C.scores][s], (r) => {
    const v = r[C.scores][s], c = r[C.controls][s];
    if (v === undefined) return "";
    return `<span class="v">${fmt(v)}</span>` + (c !== undefined ? `<small class="ctl" title="random-explanation control">ctl ${fmt(c)}</small>` : "");
  }, "num score"]));
  const simCol = ["similarity", (r) => (state.sim ? state.sim.get(r[C.layer] + "|" + r[C.latent] + "|" + r[C.explainer_fp]) : undefined), (r) => fmt(state.sim && state.sim.get(r[C.layer] + "|" + r[C.latent] + "|" + r[C.explainer_fp])), "num"];

  function activeCols() { return state.sim ? cols.concat([simCol]) : cols; }

  function header() {
    const ac = activeCols();
    $("latents").tHead.innerHTML = "<tr>" + ac.map((c, i) => {
      const dir = state.sort === i ? (state.dir > 0 ? " ▲" : " ▼") : "";
      return `<th data-col="${i}" class="${c[3]}" data-name="${esc(c[0])}">${esc(c[0])}${dir}</th>`;
    }).join("") + "</tr>";
    $("latents").tHead.querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
      const i = +th.dataset.col;
      state.dir = state.sort === i ? -state.dir : (ac[i][3].includes("num") ? -1 : 1);
      state.sort = i;
      refresh();
    }));
  }

  function fill(sel, values, label) {
    values.forEach((v) => { const o = document.createElement("option"); o.value = v; o.textContent = label ? label(v) : v; sel.appendChild(o); });
  }
  const parts = [...new Set(rows.map((r) => r[C.layer] + " " + r[C.range]))];
  if (multi && parts.length > 1) fill($("partition"), parts); else $("partition").style.display = "none";
  const expl = new Map();
  rows.forEach((r) => { if (r[C.explainer_fp]) expl.set(r[C.explainer_fp], r[C.explainer]); });
  fill($("explainer"), [...expl.keys()], (fp) => expl.get(fp) + " (" + fp.slice(0, 18) + ")");
  fill($("scorer"), data.scorers);
  if (!data.scorers.length) $("scorer").parentElement.style.display = "none";

  function matches(r) {
    const q = $("q").value.trim().toLowerCase();
    if (q && !state.sim) {
      if (/^\d+$/.test(q)) { if (String(r[C.latent]) !== q) return false; }
      else if (!(r[C.explanation] || "").toLowerCase().includes(q)) return false;
    }
    if (state.sim && !state.sim.has(r[C.layer] + "|" + r[C.latent] + "|" + r[C.explainer_fp])) return false;
    const p = $("partition").value;
    if (p && r[C.layer] + " " + r[C.range] !== p) return false;
    const e = $("explainer").value;
    if (e && r[C.explainer_fp] !== e) return false;
    const st = $("status").value;
    if (st === "explained" ? !r[C.explainer_fp] : st === "not_selected" ? r[C.selection] !== st : st && r[C.status] !== st) return false;
    const fl = $("flags").value;
    if (fl === "none" ? r[C.flags].length : fl && !r[C.flags].includes(fl)) return false;
    const s = $("scorer").value, lo = parseFloat($("smin").value), hi = parseFloat($("smax").value);
    if (s && (!Number.isNaN(lo) || !Number.isNaN(hi))) {
      const v = r[C.scores][s];
      if (v === undefined || v === null) return false;
      if (!Number.isNaN(lo) && v < lo) return false;
      if (!Number.isNaN(hi) && v > hi) return false;
    }
    return true;
  }

  function rowHtml(r) {
    return "<tr>" + activeCols().map((c) => `<td class="${c[3]}">${c[2](r)}</td>`).join("") + "</tr>";
  }

  // Only the first PAGE rows of the current order go into the DOM; more are appended as the reader scrolls
  // to the bottom (or asks for all): a 4,608-latent index opens, sorts and filters without laying out every row.
  function appendRows(n) {
    const body = $("latents").tBodies[0];
    const from = state.rendered, to = Math.min(state.shown.length, from + n);
    if (to > from) body.insertAdjacentHTML("beforeend", state.shown.slice(from, to).map(rowHtml).join(""));
    state.rendered = to;
    const left = state.shown.length - to;
    $("more").innerHTML = left > 0 ? `showing ${to.toLocaleString()} of ${state.shown.length.toLocaleString()} rows ` +
      `(more as you scroll) <button id="show-more">show ${Math.min(PAGE, left).toLocaleString()} more</button> ` +
      `<button id="show-all">show all</button>` : "";
    if (left > 0) {
      $("show-more").onclick = () => appendRows(PAGE);
      $("show-all").onclick = () => appendRows(left);
    }
  }

  function refresh() {
    header();
    let shown = rows.filter(matches);
    const ac = activeCols();
    if (state.sort !== null && ac[state.sort]) {
      const key = ac[state.sort][1], dir = state.dir;
      shown = shown.map((r) => [key(r), r]);
      shown.sort((a, b) => {
        const x = a[0], y = b[0];
        const xm = x === undefined || x === null, ym = y === undefined || y === null;
        if (xm || ym) return xm && ym ? 0 : xm ? 1 : -1; // missing values last, either direction
        return x < y ? -dir : x > y ? dir : 0;
      });
      shown = shown.map((p) => p[1]);
    }
    state.shown = shown;
    state.rendered = 0;
    const n = new Set(rows.map((r) => r[C.layer] + "|" + r[C.latent])).size;
    $("count").textContent = `${shown.length.toLocaleString()} of ${rows.length.toLocaleString()} rows (${n.toLocaleString()} latents)`;
    $("latents").tBodies[0].innerHTML = "";
    window.__autointerpComplete = undefined;
    appendRows(PAGE);
    void document.body.offsetHeight; // style and layout of the new rows happen here, inside the measured time
    window.__autointerpReady = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => { window.__autointerpComplete = performance.now(); }));
  }

  if ("IntersectionObserver" in window) {
    new IntersectionObserver((es) => {
      if (es.some((e) => e.isIntersecting) && state.rendered < state.shown.length) appendRows(PAGE);
    }, { rootMargin: "600px" }).observe($("more"));
  }

  let timer = null;
  function later() { clearTimeout(timer); timer = setTimeout(run, 150); }

  function run() {
    const q = $("q").value.trim();
    if (!$("semantic").checked || !q) { state.sim = null; $("search-note").textContent = ""; refresh(); return; }
    if (!location.protocol.startsWith("http")) {
      state.sim = null;
      $("search-note").textContent = "Semantic search needs the pages served by `autointerp browse` (it embeds the query); text search is used instead.";
      refresh();
      return;
    }
    fetch(`/api/search?k=100&q=${encodeURIComponent(q)}`).then((r) => r.json()).then((res) => {
      if (res.error) throw new Error(res.error);
      state.sim = new Map(res.results.map((x) => [x.layer + "|" + x.latent + "|" + x.explainer_fp, x.similarity]));
      state.sort = activeCols().length - 1; state.dir = -1;
      $("search-note").textContent = `semantic search: ${res.results.length} nearest explanations to “${q}” (${res.model})`;
      refresh();
    }).catch((e) => { state.sim = null; $("search-note").textContent = "semantic search failed: " + e.message; refresh(); });
  }

  ["q"].forEach((id) => $(id).addEventListener("input", later));
  ["semantic", "partition", "explainer", "status", "flags", "scorer", "smin", "smax"].forEach((id) => $(id).addEventListener("change", run));
  ["smin", "smax"].forEach((id) => $(id).addEventListener("input", later));
  const params = new URLSearchParams(location.search);
  if (params.get("q")) $("q").value = params.get("q");
  if (params.get("semantic")) $("semantic").checked = true;
  // default order: the first scorer's value, best first (unexplained latents last)
  const first = activeCols().findIndex((c) => c[0] === data.scorers[0]);
  if (first >= 0) { state.sort = first; state.dir = -1; }
  run();
})();
