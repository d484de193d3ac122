// papertrader dashboard: loads /api/state and the tables, then applies the
// batches pushed on /events. No dependencies.
"use strict";
const MAX_ROWS = 50;
const curves = new Map();   // "strategy/symbol" -> [{ts, equity, drawdown}]
const positions = new Map(); // "strategy/symbol" -> pnl snapshot
const accounts = new Map();  // strategy -> account
const indicators = new Map(); // "analytics/symbol" -> [{ts, values}] ([[analytics]])
const MAX_POINTS = 500;
const tables = { signals: [], orders: [], fills: [], alerts: [] };
const columns = {
  fills: ["ts", "strategy", "symbol", "side", "qty", "price", "fee"],
  orders: ["ts", "strategy", "symbol", "side", "status", "qty", "filled_qty", "reason"],
  signals: ["ts", "strategy", "symbol", "side", "strength"],
  alerts: ["ts", "rule", "kind", "subject", "message"],
};
const LEFT = new Set(["ts", "strategy", "symbol", "side", "status", "reason", "rule", "kind", "subject", "message"]);

function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs)) if (k !== "svg") e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function onPnl(p) {
  const key = p.strategy + "/" + p.symbol;
  if (!curves.has(key)) curves.set(key, []);
  curves.get(key).push({ ts: p.ts, equity: Number(p.account_equity), drawdown: Number(p.account_drawdown) });
  positions.set(key, p);
  accounts.set(p.strategy, { cash: p.account_cash, equity: p.account_equity, drawdown: p.account_drawdown, max_drawdown: p.account_max_drawdown });
}

function onIndicator(i) {
  const key = i.analytics + "/" + i.symbol;
  if (!indicators.has(key)) indicators.set(key, []);
  const pts = indicators.get(key);
  pts.push({ ts: i.ts, values: i.values });
  if (pts.length > MAX_POINTS) pts.splice(0, pts.length - MAX_POINTS);
}

// A number for a label: 4 significant digits, thousands separated.
function fmt(v) {
  return v.toLocaleString("en-US", { maximumSignificantDigits: 4 });
}

function path(values, w, h, lo, hi) {
  const span = hi - lo || 1;
  return values.map((v, i) => {
    const x = values.length > 1 ? (i * w) / (values.length - 1) : w / 2;
    const y = h - ((v - lo) / span) * h;
    return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
  }).join(" ");
}

function drawCharts() {
  const box = document.getElementById("charts");
  box.textContent = "";
  const W = 320, H = 110, D = 40;
  for (const [key, pts] of curves) {
    const div = el("div", { class: "chart" });
    const eq = pts.map((p) => p.equity), dd = pts.map((p) => -p.drawdown);
    const last = pts[pts.length - 1];
    div.appendChild(el("h3", {}, key + "  equity " + last.equity.toFixed(2) + "  dd " + (last.drawdown * 100).toFixed(2) + "%"));
    const svg = el("svg", { width: W, height: H + D + 6, class: "equity-chart", "data-points": pts.length });
    svg.appendChild(el("path", { svg: 1, class: "equity-line", d: path(eq, W, H, Math.min(...eq), Math.max(...eq)), fill: "none", stroke: "#1f5fbf", "stroke-width": "1.5" }));
    const g = el("g", { svg: 1, transform: "translate(0," + (H + 6) + ")" });
    g.appendChild(el("path", { svg: 1, class: "drawdown-line", d: path(dd, W, D, Math.min(...dd, -1e-9), 0), fill: "none", stroke: "#b3261e", "stroke-width": "1" }));
    svg.appendChild(g);
    div.appendChild(svg);
    box.appendChild(div);
  }
}

// One panel per value of each analytics stream and symbol: the line over its
// warm values, the range on the left axis, the first and last time below.
function drawIndicators() {
  const box = document.getElementById("indicators");
  box.textContent = "";
  if (!indicators.size) {
    box.appendChild(el("p", { class: "none" }, "No [[analytics]] configured."));
    return;
  }
  const W = 300, H = 90, L = 52, B = 16;
  for (const [key, pts] of indicators) {
    const names = Object.keys(pts[pts.length - 1].values);
    for (const n of names) {
      const warm = pts.filter((p) => p.values[n] != null);
      const vals = warm.map((p) => p.values[n]);
      const div = el("div", { class: "chart" });
      const last = vals.length ? fmt(vals[vals.length - 1]) : "warming up";
      div.appendChild(el("h3", {}, key + "  " + n + "  " + last));
      const svg = el("svg", { width: L + W, height: H + B, class: "indicator-chart", "data-series": key, "data-name": n, "data-points": vals.length });
      if (vals.length) {
        const lo = Math.min(...vals), hi = Math.max(...vals);
        const g = el("g", { svg: 1, transform: "translate(" + L + ",0)" });
        g.appendChild(el("path", { svg: 1, class: "indicator-line", d: path(vals, W, H, lo, hi), fill: "none", stroke: "#6a3fb5", "stroke-width": "1.5" }));
        svg.appendChild(g);
        svg.appendChild(el("line", { svg: 1, x1: L - 2, y1: 0, x2: L - 2, y2: H, stroke: "#999" }));
        svg.appendChild(el("text", { svg: 1, x: L - 5, y: 10, "text-anchor": "end", class: "axis" }, fmt(hi)));
        svg.appendChild(el("text", { svg: 1, x: L - 5, y: H, "text-anchor": "end", class: "axis" }, fmt(lo)));
        svg.appendChild(el("text", { svg: 1, x: L, y: H + B - 3, class: "axis" }, warm[0].ts.slice(11, 19)));
        svg.appendChild(el("text", { svg: 1, x: L + W, y: H + B - 3, "text-anchor": "end", class: "axis" }, warm[warm.length - 1].ts.slice(11, 19)));
      }
      div.appendChild(svg);
      box.appendChild(div);
    }
  }
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.textContent = "";
  for (const r of rows) {
    const tr = el("tr", {});
    for (const c of r) {
      const td = el("td", { class: c.cls || "" }, c.text == null ? "" : String(c.text));
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function drawTables() {
  fill("accounts", [...accounts].map(([s, a]) => [
    { text: s, cls: "l" }, { text: a.cash }, { text: a.equity }, { text: a.drawdown }, { text: a.max_drawdown }]));
  fill("positions", [...positions.values()].map((p) => [
    { text: p.strategy, cls: "l" }, { text: p.symbol, cls: "l" }, { text: p.position }, { text: p.avg_cost },
    { text: p.last_price }, { text: p.realized }, { text: p.unrealized }, { text: p.fees }]));
  for (const t of Object.keys(columns)) {
    fill(t, tables[t].slice(0, MAX_ROWS).map((r) => columns[t].map((c) => ({
      text: r[c], cls: (LEFT.has(c) ? "l " : "") + (c === "side" ? r[c] : "") + (t === "alerts" && c === "message" ? " alert" : ""),
    }))));
  }
}

function redraw() { drawCharts(); drawIndicators(); drawTables(); }

function apply(st) {
  for (const c of st.equity) {
    curves.set(c.strategy + "/" + c.symbol, c.points.map((p) => ({ ts: p.ts, equity: p.equity, drawdown: p.drawdown })));
  }
  for (const p of st.positions) positions.set(p.strategy + "/" + p.symbol, p);
  for (const [s, a] of Object.entries(st.accounts)) accounts.set(s, a);
  for (const c of st.indicators || []) indicators.set(c.analytics + "/" + c.symbol, c.points);
}

// The page arrives with the state inlined (window.PT_INITIAL); the API is the fallback.
async function load() {
  const init = window.PT_INITIAL;
  if (init) {
    apply(init.state);
    for (const t of Object.keys(tables)) tables[t] = init[t] || [];
  } else {
    apply(await (await fetch("/api/state")).json());
    for (const t of Object.keys(tables)) tables[t] = await (await fetch("/api/" + t)).json();
  }
  redraw();
}

function live() {
  const es = new EventSource("/events");
  es.addEventListener("open", () => { document.getElementById("status").textContent = "live"; });
  es.addEventListener("error", () => { document.getElementById("status").textContent = "disconnected; retrying"; });
  es.addEventListener("batch", (e) => {
    const d = JSON.parse(e.data);
    for (const p of d.pnl || []) onPnl(p);
    for (const i of d.indicators || []) onIndicator(i);
    for (const t of Object.keys(tables)) {
      for (const r of d[t] || []) tables[t].unshift(r);
      tables[t].length = Math.min(tables[t].length, 500);
    }
    redraw();
  });
}

// Rendered synchronously when the state is inlined, before the load event.
load().then(() => {
  document.getElementById("status").textContent = "loaded";
  live();
}).catch((e) => { document.getElementById("status").textContent = "error: " + e; });
