// papertrader dashboard: the state arrives inlined (window.PT_INITIAL) or from
// /api/state, then the batches pushed on /events keep it live. Charts are
// TradingView Lightweight Charts (vendored, /vendor/lightweight-charts.js).
// Each chart container carries what it drew as data attributes (candles,
// markers, points), which the browser tests read.
"use strict";
const LWC = window.LightweightCharts;
const MAX_ROWS = 200;
const UP = "#26a69a", DOWN = "#ef5350", EQUITY = "#1f5fbf", DRAWDOWN = "#b3261e";
const OVERLAY_COLORS = ["#ff9800", "#7e57c2", "#00897b", "#c2185b", "#5d4037", "#1e88e5"];

const S = {
  meta: { strategies: {}, symbols: {} },
  candleSeconds: 1,
  candles: new Map(),    // symbol -> [{t,o,h,l,c,v}], oldest first
  curves: new Map(),     // "strategy/symbol" -> [{ts, equity, drawdown, pnl}]
  positions: new Map(),  // "strategy/symbol" -> latest pnl snapshot
  accounts: new Map(),   // strategy -> {cash, equity, drawdown, max_drawdown}
  indicators: new Map(), // "analytics/symbol" -> [{ts, values}]
  status: new Map(),     // strategy -> {paused, halted}
  fillsDay: new Map(),   // strategy -> [day, count]
  fillMarks: new Map(),  // symbol -> fills for the markers, oldest first
  tables: { signals: [], orders: [], fills: [], alerts: [], controls: [] },
};
const charts = { prices: new Map(), equity: new Map(), pnl: null };

// ---- formatting ------------------------------------------------------------
const nf = (min, max) => new Intl.NumberFormat("en-US", { minimumFractionDigits: min, maximumFractionDigits: max });
const money2 = nf(2, 2);
// Series price formats (the axis and labels of each scale use its series').
const MONEY = { type: "custom", minMove: 0.01, formatter: (v) => money2.format(v) };
const PCT = { type: "custom", minMove: 0.01, formatter: (v) => v.toFixed(2) + " %" };
const SIG4 = { type: "custom", minMove: 0.0001, formatter: (v) => v.toLocaleString("en-US", { maximumSignificantDigits: 4 }) };
function money(v) { const n = Number(v); return Number.isFinite(n) ? money2.format(n) : ""; }
function pct(v) { const n = Number(v); return Number.isFinite(n) ? (n * 100).toFixed(2) + " %" : ""; }
function symMeta(sym) { return S.meta.symbols[sym] || { lot_decimals: 4, price_decimals: 2 }; }
function qty(v, sym) { const n = Number(v); const d = symMeta(sym).lot_decimals; return Number.isFinite(n) ? nf(d, d).format(n) : ""; }
function price(v, sym) { const n = Number(v); const d = Math.max(2, symMeta(sym).price_decimals); return Number.isFinite(n) ? nf(d, d).format(n) : ""; }
function time(ts) { return ts ? String(ts).replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1Z") : ""; }
// Event time (RFC 3339) to the chart's time: whole seconds since the epoch.
function secs(ts) { return Math.floor(Date.parse(String(ts).slice(0, 19) + "Z") / 1000); }
function signCls(v) { const n = Number(v); return n > 0 ? "pos" : n < 0 ? "neg" : ""; }

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Two charts side by side on a wide window, one on a narrow one.
function chartWidth() {
  const w = document.documentElement.clientWidth || 1280;
  return Math.max(420, Math.min(900, Math.floor((w - 70) / (w >= 1100 ? 2 : 1))));
}

function chartOptions(width, height, extra) {
  width = width === 620 ? chartWidth() : width;
  return Object.assign({
    width, height,
    layout: { background: { color: "#ffffff" }, textColor: "#333", fontSize: 11 },
    grid: { vertLines: { color: "#f0f1f4" }, horzLines: { color: "#f0f1f4" } },
    timeScale: { timeVisible: true, secondsVisible: true, borderColor: "#ccd" },
    rightPriceScale: { borderColor: "#ccd" },
    crosshair: { mode: 0 },
  }, extra || {});
}

// ---- prices: candles, volume, indicators, fills ----------------------------
function intervals() {
  const base = S.candleSeconds;
  const out = [base];
  for (const s of [5, 15, 60, 300, 900, 3600, 14400, 86400]) {
    if (s > base && s % base === 0) out.push(s);
  }
  return out;
}
function intervalName(s) { return s % 86400 === 0 ? s / 86400 + "d" : s % 3600 === 0 ? s / 3600 + "h" : s % 60 === 0 ? s / 60 + "m" : s + "s"; }
// "auto": the shortest interval that draws at most 400 candles of the symbol.
function selectedInterval(sym) {
  const v = document.getElementById("interval").value;
  if (v !== "auto") return Number(v) || S.candleSeconds;
  const c = S.candles.get(sym) || [];
  const span = c.length ? c[c.length - 1].t - c[0].t : 0;
  return intervals().find((s) => span / s < 400) || intervals()[intervals().length - 1];
}

// The base candles grouped into candles of `step` seconds.
function group(candles, step) {
  if (step <= S.candleSeconds) return candles.slice();
  const out = [];
  for (const c of candles) {
    const t = Math.floor(c.t / step) * step;
    const last = out[out.length - 1];
    if (last && last.t === t) {
      last.h = Math.max(last.h, c.h); last.l = Math.min(last.l, c.l); last.c = c.c; last.v += c.v;
    } else out.push({ t, o: c.o, h: c.h, l: c.l, c: c.c, v: c.v });
  }
  return out;
}

function priceChart(sym) {
  let p = charts.prices.get(sym);
  if (p) return p;
  const box = el("div", { class: "chart price-chart", "data-symbol": sym });
  const title = el("h3", {}, sym);
  const sub = el("span", { class: "sub" });
  title.appendChild(sub);
  box.appendChild(title);
  const legend = el("div", { class: "legend" });
  box.appendChild(legend);
  const holder = el("div", {});
  box.appendChild(holder);
  const paneHolder = el("div", {});
  box.appendChild(paneHolder);
  const tip = el("div", { class: "tip" });
  box.appendChild(tip);
  document.getElementById("prices").appendChild(box);
  const chart = LWC.createChart(holder, chartOptions(620, 300));
  const pd = Math.max(2, symMeta(sym).price_decimals);
  const candles = chart.addCandlestickSeries({ priceFormat: { type: "custom", minMove: Math.pow(10, -pd), formatter: (v) => price(v, sym) }, upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
  const volume = chart.addHistogramSeries({ priceScaleId: "vol", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false });
  chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  p = { box, sub, legend, chart, candles, volume, paneHolder, pane: null, lines: new Map(), tip, fillsAt: new Map() };
  chart.subscribeCrosshairMove((param) => hover(p, sym, param));
  charts.prices.set(sym, p);
  return p;
}

function candles_format(p) { return p.candles.options().priceFormat; }

// Hovering a candle shows its fills: side, quantity, price, strategy.
function hover(p, sym, param) {
  const fills = param && param.time !== undefined ? p.fillsAt.get(param.time) : null;
  if (!fills || !param.point) { p.tip.style.display = "none"; return; }
  p.tip.textContent = fills.map((f) => `${f.side} ${qty(f.qty, sym)} @ ${price(f.price, sym)}  ${f.strategy}`).join("\n");
  p.tip.style.left = Math.min(param.point.x + 12, 460) + "px";
  p.tip.style.top = param.point.y + 30 + "px";
  p.tip.style.display = "block";
}

// The indicator streams of a symbol: name -> [{time, value}], one value per
// candle (the candle's last), warm values only.
function indicatorLines(sym, step) {
  const lines = new Map();
  for (const [key, pts] of S.indicators) {
    const [name, s] = [key.slice(0, key.lastIndexOf("/")), key.slice(key.lastIndexOf("/") + 1)];
    if (s !== sym) continue;
    for (const pt of pts) {
      const t = Math.floor(secs(pt.ts) / step) * step;
      for (const [v, x] of Object.entries(pt.values || {})) {
        if (x == null || !Number.isFinite(Number(x))) continue;
        const id = name + "." + v;
        if (!lines.has(id)) lines.set(id, []);
        const l = lines.get(id);
        if (l.length && l[l.length - 1].time === t) l[l.length - 1].value = Number(x);
        else if (!l.length || l[l.length - 1].time < t) l.push({ time: t, value: Number(x) });
      }
    }
  }
  return lines;
}

function drawPrice(sym) {
  const p = priceChart(sym);
  const step = selectedInterval(sym);
  const bars = group(S.candles.get(sym) || [], step);
  p.candles.setData(bars.map((c) => ({ time: c.t, open: c.o, high: c.h, low: c.l, close: c.c })));
  p.volume.setData(bars.map((c) => ({ time: c.t, value: c.v, color: c.c >= c.o ? "rgba(38,166,154,0.45)" : "rgba(239,83,80,0.45)" })));
  const last = bars[bars.length - 1];
  p.sub.textContent = last ? `last ${price(last.c, sym)} · ${bars.length} candles of ${intervalName(step)}` : "no trades yet";
  // Indicators: on the price scale when their values lie near the prices,
  // otherwise in a pane below, on its own scale.
  const lo = minMax(bars.map((c) => c.l))[0], hi = minMax(bars.map((c) => c.h))[1];
  const lines = indicatorLines(sym, step);
  p.legend.textContent = "";
  let i = 0, paneLines = 0;
  for (const [id, data] of lines) {
    const [vlo, vhi] = minMax(data.map((d) => d.value));
    const overlay = bars.length > 0 && vlo >= lo - (hi - lo) && vhi <= hi + (hi - lo) && vlo > 0.5 * lo;
    const color = OVERLAY_COLORS[i++ % OVERLAY_COLORS.length];
    let line = p.lines.get(id);
    if (!line || line.overlay !== overlay) {
      if (line) (line.overlay ? p.chart : p.pane).removeSeries(line.series);
      let target = p.chart;
      if (!overlay) {
        if (!p.pane) {
          p.pane = LWC.createChart(p.paneHolder, chartOptions(620, 110));
          p.chart.timeScale().subscribeVisibleTimeRangeChange((r) => {
            try { if (r && p.pane) p.pane.timeScale().setVisibleRange(r); } catch (e) { /* an empty pane has no range */ }
          });
        }
        target = p.pane;
      }
      const fmt = overlay ? { priceFormat: candles_format(p) } : { priceFormat: SIG4 };
      line = { overlay, series: target.addLineSeries(Object.assign({ color, lineWidth: 2, priceLineVisible: false, lastValueVisible: false }, fmt)) };
      p.lines.set(id, line);
    }
    line.series.setData(data);
    if (!overlay) paneLines++;
    const item = el("span", { class: "legend-item", "data-line": id, "data-overlay": String(overlay), "data-points": String(data.length) });
    const sw = el("i", {});
    sw.style.background = color;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(id + (overlay ? "" : " (pane)")));
    p.legend.appendChild(item);
  }
  p.paneHolder.style.display = paneLines ? "" : "none";
  // One marker per fill, at its candle (the hover lists them).
  const fills = S.fillMarks.get(sym) || [];
  p.fillsAt = new Map();
  const markers = fills.map((f) => {
    const t = Math.floor(secs(f.ts) / step) * step;
    if (!p.fillsAt.has(t)) p.fillsAt.set(t, []);
    p.fillsAt.get(t).push(f);
    const buy = f.side === "buy";
    return { time: t, position: buy ? "belowBar" : "aboveBar", color: buy ? "#1565c0" : "#8e24aa", shape: buy ? "arrowUp" : "arrowDown" };
  }).sort((a, b) => a.time - b.time);
  p.candles.setMarkers(markers);
  p.box.setAttribute("data-candles", String(bars.length));
  p.box.setAttribute("data-markers", String(markers.length));
  p.box.setAttribute("data-interval", String(step));
}

// ---- equity and drawdown per strategy; P&L per symbol ----------------------
// A strategy's equity points from all its symbols' snapshots, by time (the
// account is the strategy's; each snapshot carries it).
function strategyCurve(strategy) {
  const pts = [];
  for (const [key, c] of S.curves) if (key.slice(0, key.lastIndexOf("/")) === strategy) pts.push(...c);
  pts.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
  const out = [];
  for (const p of pts) {
    const t = secs(p.ts);
    if (out.length && out[out.length - 1].time === t) { out[out.length - 1] = { time: t, equity: p.equity, drawdown: p.drawdown }; }
    else out.push({ time: t, equity: p.equity, drawdown: p.drawdown });
  }
  return out;
}

function drawEquity(strategy) {
  let e = charts.equity.get(strategy);
  if (!e) {
    const box = el("div", { class: "chart equity-chart", "data-strategy": strategy });
    box.appendChild(el("h3", {}, strategy));
    const holder = el("div", {});
    box.appendChild(holder);
    document.getElementById("equity").appendChild(box);
    const chart = LWC.createChart(holder, chartOptions(620, 240, { leftPriceScale: { visible: true, borderColor: "#ccd" } }));
    const equity = chart.addLineSeries({ color: EQUITY, lineWidth: 2, title: "equity", priceFormat: MONEY });
    equity.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.35 } });
    const dd = chart.addBaselineSeries({ priceScaleId: "left", baseValue: { type: "price", price: 0 }, topLineColor: DRAWDOWN, topFillColor1: "rgba(0,0,0,0)", topFillColor2: "rgba(0,0,0,0)", bottomLineColor: DRAWDOWN, bottomFillColor1: "rgba(179,38,30,0.1)", bottomFillColor2: "rgba(179,38,30,0.4)", lineWidth: 1, title: "drawdown", priceFormat: PCT });
    chart.priceScale("left").applyOptions({ scaleMargins: { top: 0.7, bottom: 0.02 } });
    e = { box, chart, equity, dd };
    charts.equity.set(strategy, e);
  }
  const c = strategyCurve(strategy);
  e.equity.setData(c.map((p) => ({ time: p.time, value: p.equity })));
  e.dd.setData(c.map((p) => ({ time: p.time, value: -100 * p.drawdown })));
  e.box.setAttribute("data-points", String(c.length));
}

function drawPnl() {
  if (!charts.pnl) {
    const box = el("div", { class: "chart pnl-chart" });
    box.appendChild(el("h3", {}, "realized + open P&L"));
    const legend = el("div", { class: "legend" });
    box.appendChild(legend);
    const holder = el("div", {});
    box.appendChild(holder);
    document.getElementById("pnl").appendChild(box);
    charts.pnl = { box, legend, chart: LWC.createChart(holder, chartOptions(620, 200)), lines: new Map() };
  }
  const P = charts.pnl;
  P.legend.textContent = "";
  let i = 0;
  for (const [key, pts] of S.curves) {
    let s = P.lines.get(key);
    const color = OVERLAY_COLORS[i++ % OVERLAY_COLORS.length];
    if (!s) { s = P.chart.addLineSeries({ color, lineWidth: 2, priceLineVisible: false, priceFormat: MONEY }); P.lines.set(key, s); }
    const data = [];
    for (const p of pts) {
      const t = secs(p.ts);
      if (data.length && data[data.length - 1].time === t) data[data.length - 1].value = p.pnl;
      else data.push({ time: t, value: p.pnl });
    }
    s.setData(data);
    const item = el("span", {});
    const sw = el("i", {});
    sw.style.background = color;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(key));
    P.legend.appendChild(item);
  }
}

// ---- cards and controls ----------------------------------------------------
function strategies() {
  const names = new Set([...Object.keys(S.meta.strategies || {}), ...S.accounts.keys()]);
  return [...names].sort();
}

function newestDay() {
  let best = "";
  for (const c of S.curves.values()) if (c.length && c[c.length - 1].ts > best) best = c[c.length - 1].ts;
  return best.slice(0, 10);
}

function drawCards() {
  const box = document.getElementById("cards");
  box.textContent = "";
  const today = newestDay();
  for (const s of strategies()) {
    const a = S.accounts.get(s);
    const start = Number((S.meta.strategies[s] || {}).starting_cash);
    const st = S.status.get(s) || {};
    const card = el("div", { class: "card", "data-strategy": s });
    const h = el("h3", {}, s);
    const badge = el("span", { class: "badge" + (st.halted ? " halted" : st.paused ? " paused" : "") }, st.halted ? "halted" : st.paused ? "paused" : "trading");
    h.appendChild(badge);
    card.appendChild(h);
    let open = 0;
    for (const p of S.positions.values()) if (p.strategy === s && Number(p.position) !== 0) open += marked(p).open;
    const fd = S.fillsDay.get(s);
    const equity = a ? Number(a.equity) : start;
    const rows = [
      ["equity", "equity", money(equity), ""],
      ["return", "return", Number.isFinite(start) && start > 0 ? pct(equity / start - 1) : "", signCls(equity - start)],
      ["drawdown", "drawdown", a ? pct(a.drawdown) : pct(0), ""],
      ["max drawdown", "max-drawdown", a ? pct(a.max_drawdown) : pct(0), ""],
      ["open P&L", "open-pnl", money(open), signCls(open)],
      ["cash", "cash", a ? money(a.cash) : money(start), ""],
      ["fills today", "fills-today", String(fd && fd[0] === today ? fd[1] : 0), ""],
    ];
    const dl = el("dl", {});
    for (const [label, cls, v, sign] of rows) {
      dl.appendChild(el("dt", {}, label));
      dl.appendChild(el("dd", { class: cls + " " + sign }, v));
    }
    card.appendChild(dl);
    const pause = el("button", {}, st.paused ? "Resume" : "Pause");
    pause.onclick = () => act(st.paused ? "resume" : "pause", s);
    const flat = el("button", {}, "Flatten");
    flat.onclick = () => { if (confirm(`Flatten every position of ${s}?`)) act("flatten", s); };
    const kill = el("button", { class: "danger" }, "Kill switch");
    kill.onclick = () => { if (confirm(`Cancel everything, flatten and halt ${s}? This cannot be resumed.`)) act("kill", s); };
    if (st.halted) { pause.disabled = true; flat.disabled = true; kill.disabled = true; }
    card.append(pause, " ", flat, " ", kill);
    box.appendChild(card);
  }
}

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { sessionStorage.setItem("pt-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  let t = sessionStorage.getItem("pt-token");
  if (!t) { t = prompt("Controls token (printed by papertrader at start, or http.token):"); if (t) sessionStorage.setItem("pt-token", t); }
  return t;
}

async function act(action, strategy, symbol) {
  const t = token();
  if (!t) return;
  const r = await fetch("/api/control", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + t },
    body: JSON.stringify({ action, strategy, symbol: symbol || null, by: "dashboard" }),
  });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) { sessionStorage.removeItem("pt-token"); alert("The token was refused."); return; }
  if (!r.ok) alert(`${action} ${strategy}: ${body.error || r.status}`);
}

// ---- tables ----------------------------------------------------------------
const columns = {
  orders: [["ts", "l", time], ["strategy", "l"], ["symbol", "l"], ["side", "l"], ["status", "l"], ["qty", "", qty], ["filled_qty", "", qty], ["reason", "l"]],
  fills: [["ts", "l", time], ["strategy", "l"], ["symbol", "l"], ["side", "l"], ["qty", "", qty], ["price", "", price], ["fee", "", money]],
  signals: [["ts", "l", time], ["strategy", "l"], ["symbol", "l"], ["side", "l"], ["strength", "", (v) => Number(v).toFixed(3)]],
  alerts: [["ts", "l", time], ["rule", "l"], ["kind", "l"], ["subject", "l"], ["message", "l alert"]],
  controls: [["at", "l", time], ["action", "l"], ["strategy", "l"], ["symbol", "l"], ["by", "l"], ["orders", ""], ["fills", ""]],
};

function fillTable(id, rows, cells) {
  const body = document.querySelector("#" + id + " tbody");
  body.textContent = "";
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of cells(r)) tr.appendChild(c instanceof Node ? c : el("td", { class: c.cls || "" }, c.text == null ? "" : String(c.text)));
    body.appendChild(tr);
  }
}

// A position's last price and open P&L: the snapshot's, or, when the
// symbol has traded since, at the latest candle's close.
function marked(p) {
  const c = S.candles.get(p.symbol);
  const last = c && c.length ? c[c.length - 1] : null;
  if (!last || last.t < secs(p.ts)) return { last: Number(p.last_price), open: Number(p.unrealized) };
  return { last: last.c, open: Number(p.position) * (last.c - Number(p.avg_cost)) };
}

function drawTables() {
  const fs = document.getElementById("f-strategy").value, fy = document.getElementById("f-symbol").value;
  const pos = [...S.positions.values()].filter((p) => Number(p.position) !== 0 && (!fs || p.strategy === fs) && (!fy || p.symbol === fy));
  fillTable("positions", pos, (p) => {
    const td = el("td", {});
    const b = el("button", {}, "Flatten");
    b.onclick = () => { if (confirm(`Flatten ${p.symbol} of ${p.strategy}?`)) act("flatten", p.strategy, p.symbol); };
    td.appendChild(b);
    return [
      { text: p.strategy, cls: "l" }, { text: p.symbol, cls: "l" }, { text: qty(p.position, p.symbol) },
      { text: price(p.avg_cost, p.symbol) }, { text: price(marked(p).last, p.symbol) },
      { text: money(marked(p).open), cls: signCls(marked(p).open) }, { text: money(p.realized), cls: signCls(p.realized) }, { text: money(p.fees) }, td];
  });
  for (const t of Object.keys(columns)) {
    const rows = S.tables[t].filter((r) => (!fs || (r.strategy !== undefined ? r.strategy === fs : r.subject === fs || r.subject === undefined))
      && (!fy || (r.symbol !== undefined ? r.symbol === fy : true))).slice(0, MAX_ROWS);
    fillTable(t, rows, (r) => columns[t].map(([c, cls, f]) => ({
      text: r[c] == null ? "" : f ? f(r[c], r.symbol) : r[c],
      cls: cls + (c === "side" ? " " + r[c] : ""),
    })));
  }
}

function refreshFilters() {
  const add = (id, values) => {
    const sel = document.getElementById(id);
    const have = new Set([...sel.options].map((o) => o.value));
    for (const v of values) if (!have.has(v)) sel.appendChild(el("option", { value: v }, v));
  };
  add("f-strategy", strategies());
  add("f-symbol", [...new Set([...S.candles.keys(), ...Object.keys(S.meta.symbols || {})])].sort());
}

// ---- status line -----------------------------------------------------------
async function pollStatus() {
  try {
    drawStatus(await (await fetch("/api/status")).json());
  } catch (e) {
    document.getElementById("status").textContent = "status unavailable: " + e;
  }
}

function drawStatus(s) {
  {
    const box = document.getElementById("status");
    box.textContent = "";
    box.appendChild(el("span", { class: s.broker_connected ? "ok" : "bad" }, s.broker_connected ? "● broker connected" : "● broker unreachable"));
    const lag = Object.entries(s.consumer_lag || {}).map(([t, n]) => `${t} ${n}`).join(", ");
    box.appendChild(el("span", {}, "lag: " + (lag || "0")));
    box.appendChild(el("span", {}, `${nf(0, 1).format(s.events_per_second || 0)} events/s`));
    const ages = Object.entries(s.feed_age_seconds || {}).map(([t, a]) => `${t} ${a < 100 ? a.toFixed(1) : Math.round(a)} s`).join(", ");
    box.appendChild(el("span", {}, "feed age: " + (ages || "no input yet")));
  }
}

// ---- state -----------------------------------------------------------------
function apply(st) {
  S.meta = st.meta || S.meta;
  S.candleSeconds = st.candle_seconds || 1;
  for (const c of st.candles || []) S.candles.set(c.symbol, c.candles);
  for (const c of st.equity) S.curves.set(c.strategy + "/" + c.symbol, c.points);
  for (const p of st.positions) S.positions.set(p.strategy + "/" + p.symbol, p);
  for (const [s, a] of Object.entries(st.accounts)) S.accounts.set(s, a);
  for (const c of st.indicators || []) S.indicators.set(c.analytics + "/" + c.symbol, c.points);
  for (const s of st.status || []) S.status.set(s.strategy, s);
  for (const [s, d] of Object.entries(st.fills_day || {})) S.fillsDay.set(s, d);
  for (const [s, f] of Object.entries(st.fill_marks || {})) S.fillMarks.set(s, f);
}

function onPnl(p) {
  const key = p.strategy + "/" + p.symbol;
  if (!S.curves.has(key)) S.curves.set(key, []);
  const c = S.curves.get(key);
  c.push({ ts: p.ts, equity: Number(p.account_equity), drawdown: Number(p.account_drawdown), pnl: Number(p.realized) + Number(p.unrealized) });
  if (c.length > 5000) c.splice(0, c.length - 5000);
  S.positions.set(key, p);
  S.accounts.set(p.strategy, { cash: p.account_cash, equity: p.account_equity, drawdown: p.account_drawdown, max_drawdown: p.account_max_drawdown });
}

function onCandle(sym, c) {
  if (!S.candles.has(sym)) S.candles.set(sym, []);
  const list = S.candles.get(sym);
  let i = list.length - 1;
  while (i >= 0 && list[i].t > c.t) i--;
  if (i >= 0 && list[i].t === c.t) list[i] = c; else list.splice(i + 1, 0, c);
  // As many as the server keeps.
  const kept = S.meta.candles_kept || 5000;
  if (list.length > kept) list.splice(0, list.length - kept);
}

function minMax(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

function onBatch(d) {
  for (const p of d.pnl || []) onPnl(p);
  for (const c of d.candles || []) onCandle(c.symbol, c.candle);
  for (const i of d.indicators || []) {
    const key = i.analytics + "/" + i.symbol;
    if (!S.indicators.has(key)) S.indicators.set(key, []);
    // The last values per candle, as many as candles kept (as the server does).
    const pts = S.indicators.get(key), step = S.candleSeconds;
    const last = pts[pts.length - 1];
    if (last && Math.floor(secs(last.ts) / step) === Math.floor(secs(i.ts) / step)) pts[pts.length - 1] = { ts: i.ts, values: i.values };
    else pts.push({ ts: i.ts, values: i.values });
    const kept = S.meta.candles_kept || 5000;
    if (pts.length > kept) pts.splice(0, pts.length - kept);
  }
  for (const s of d.status || []) S.status.set(s.strategy, s);
  for (const f of d.fills || []) {
    if (!S.fillMarks.has(f.symbol)) S.fillMarks.set(f.symbol, []);
    const marks = S.fillMarks.get(f.symbol);
    marks.push(f);
    if (marks.length > (S.meta.candles_kept || 5000)) marks.shift();
    const day = String(f.ts).slice(0, 10), e = S.fillsDay.get(f.strategy);
    if (e && e[0] === day) e[1] += 1; else if (!e || e[0] < day) S.fillsDay.set(f.strategy, [day, 1]);
  }
  for (const t of Object.keys(S.tables)) {
    for (const r of d[t] || []) S.tables[t].unshift(r);
    S.tables[t].length = Math.min(S.tables[t].length, 500);
  }
}

function redraw() {
  refreshFilters();
  drawCards();
  const syms = [...S.candles.keys()].sort();
  if (!syms.length && !charts.prices.size) {
    const box = document.getElementById("prices");
    if (!box.querySelector(".none")) box.appendChild(el("p", { class: "none" }, "No trades yet."));
  } else {
    const none = document.querySelector("#prices .none");
    if (none) none.remove();
  }
  for (const s of syms) drawPrice(s);
  for (const s of strategies()) drawEquity(s);
  drawPnl();
  drawTables();
}

let pending = false;
function scheduleRedraw() {
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; redraw(); }, 250);
}

async function load() {
  const init = window.PT_INITIAL;
  if (init) {
    apply(init.state);
    if (init.status) drawStatus(init.status);
    for (const t of Object.keys(S.tables)) S.tables[t] = init[t] || [];
  } else {
    apply(await (await fetch("/api/state")).json());
    for (const t of Object.keys(S.tables)) S.tables[t] = await (await fetch("/api/" + t)).json();
  }
  const sel = document.getElementById("interval");
  sel.appendChild(el("option", { value: "auto" }, "auto"));
  for (const s of intervals()) sel.appendChild(el("option", { value: String(s) }, intervalName(s)));
  sel.onchange = redraw;
  document.getElementById("f-strategy").onchange = drawTables;
  document.getElementById("f-symbol").onchange = drawTables;
  redraw();
}

function live() {
  const es = new EventSource("/events");
  es.addEventListener("batch", (e) => { onBatch(JSON.parse(e.data)); scheduleRedraw(); });
  setInterval(pollStatus, 1000);
}

// Rendered synchronously when the state is inlined, before the load event.
load().then(live).catch((e) => { document.getElementById("status").textContent = "error: " + e; });
