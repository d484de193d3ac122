//! report.html's price charts and trade list: per symbol, the candles of its
//! trades ([`crate::price_bars`]) with volume, the `[[analytics]]` lines that
//! lie among the prices drawn over them (the others in a pane below), and a
//! marker per fill (up below the candle for a buy, down above it for a sell,
//! its side, quantity, price and strategy on hover); per strategy, its round
//! trips. SVG and HTML only, like the rest of the page.

use std::fmt::Write;

use crate::domain::{Side, Ts, NANOS_PER_SEC};
use crate::price_bars::SymbolBars;
use crate::report::{Collector, RoundTrip};
use crate::report_html::{
    axes, decimals_for, esc, line_path, money, nice_ticks, pct, TimeAxis, ValueAxis, WIDTH,
};
use crate::spill::Spill;

const PRICE_HEIGHT: f64 = 380.0;
const PANE_HEIGHT: f64 = 150.0;
/// Fills marked per symbol; a backtest with more says how many are not.
pub const MAX_MARKERS: usize = 2000;
/// Round trips listed per strategy (all of them are in round_trips.csv).
pub const MAX_TRIPS: usize = 200;
const UP: &str = "#26a69a";
const DOWN: &str = "#ef5350";
const LINES: [&str; 6] = [
    "#ff9800", "#7e57c2", "#00897b", "#c2185b", "#5d4037", "#1e88e5",
];

/// Every symbol's price chart, in symbol order.
pub fn price_charts(h: &mut String, c: &Collector) {
    if c.prices.symbols.is_empty() {
        return;
    }
    h.push_str("<h2>Prices</h2>\n");
    for (sym, bars) in &c.prices.symbols {
        let (mut fills, mut total) = (Vec::new(), 0usize);
        for t in c.trades.iter().filter(|t| &t.fill.symbol == sym) {
            total += 1;
            if fills.len() < MAX_MARKERS {
                fills.push(t.fill);
            }
        }
        price_chart(h, sym, bars, &fills, total);
    }
}

fn interval_name(s: i64) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One symbol: candles, volume, overlays and fill markers; a pane of the
/// other indicator lines below.
/// `fills`: the first [`MAX_MARKERS`] of the symbol's `total`.
fn price_chart(
    h: &mut String,
    sym: &str,
    b: &SymbolBars,
    fills: &[crate::domain::FillMsg],
    total: usize,
) {
    let step = b.interval();
    let (Some(first), Some(last)) = (b.bars.first(), b.bars.last()) else {
        return;
    };
    let ta = TimeAxis {
        t0: first.t * NANOS_PER_SEC,
        t1: (last.t + step) * NANOS_PER_SEC,
    };
    let lo = b.bars.iter().map(|x| x.l).fold(f64::INFINITY, f64::min);
    let hi = b.bars.iter().map(|x| x.h).fold(f64::NEG_INFINITY, f64::max);
    let overlay = |vals: &[(i64, f64)]| {
        let (a, z) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, z), v| {
                (a.min(v.1), z.max(v.1))
            });
        a >= lo - (hi - lo) && z <= hi + (hi - lo) && a > 0.5 * lo
    };
    let (over, pane): (Vec<_>, Vec<_>) = b.lines.iter().partition(|(_, v)| overlay(v));
    let olo = over
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(lo, f64::min);
    let ohi = over
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(hi, f64::max);
    let pad = ((ohi - olo) * 0.05).max(ohi.abs() * 1e-4).max(1e-6);
    // The lowest fifth of the plot holds the volume; candles above it.
    let plot = PRICE_HEIGHT - crate::report_html::TOP - crate::report_html::BOTTOM;
    let va = ValueAxis {
        lo: olo - pad - (ohi - olo + 2.0 * pad) * 0.25,
        hi: ohi + pad,
        height: PRICE_HEIGHT,
    };
    let _ = writeln!(
        h,
        "<section class=\"prices\">\n<h3>{} <span class=\"kind\">{} candles of {}</span></h3>",
        esc(sym),
        b.bars.len(),
        interval_name(step)
    );
    let _ = writeln!(
        h,
        "<svg class=\"price-chart\" data-symbol=\"{}\" data-candles=\"{}\" data-interval=\"{step}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{PRICE_HEIGHT}\" viewBox=\"0 0 {WIDTH} {PRICE_HEIGHT}\" role=\"img\">\n<title>prices of {}</title>",
        esc(sym),
        b.bars.len(),
        esc(sym)
    );
    let yt = nice_ticks(olo - pad, ohi + pad, 6);
    let dp = decimals_for(&yt).max(2);
    axes(h, &ta, &va, &yt, "price", |v| format!("{v:.dp$}"));
    // Candle geometry: 70 % of a bar's width, at least one unit.
    let bar_w = TimeAxis::plot_width() / b.bars.len().max(1) as f64;
    let body_w = (bar_w * 0.7).max(1.0);
    let vmax = b.bars.iter().map(|x| x.v).fold(0.0, f64::max).max(1e-12);
    let vol_base = crate::report_html::TOP + plot;
    let vol_h = plot * 0.18;
    h.push_str("<g class=\"candles\">\n");
    for x in &b.bars {
        let cx = ta.x((x.t * NANOS_PER_SEC) + step * NANOS_PER_SEC / 2);
        let up = x.c >= x.o;
        let (cls, color) = if up { ("up", UP) } else { ("down", DOWN) };
        let (top, bot) = (va.y(x.o.max(x.c)), va.y(x.o.min(x.c)));
        let vh = x.v / vmax * vol_h;
        let _ = writeln!(
            h,
            "<rect class=\"volume\" x=\"{:.1}\" y=\"{:.1}\" width=\"{body_w:.1}\" height=\"{vh:.1}\" fill=\"{color}\" fill-opacity=\"0.35\"/><line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"{color}\"/><rect class=\"candle {cls}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{body_w:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
            cx - body_w / 2.0,
            vol_base - vh,
            va.y(x.h),
            va.y(x.l),
            cx - body_w / 2.0,
            (bot - top).max(1.0),
        );
    }
    h.push_str("</g>\n");
    let mut legend = String::new();
    for (k, (name, vals)) in over.iter().enumerate() {
        let color = LINES[k % LINES.len()];
        let pts: Vec<(Ts, f64)> = vals
            .iter()
            .map(|&(t, v)| ((t * NANOS_PER_SEC) + step * NANOS_PER_SEC / 2, v))
            .collect();
        let _ = writeln!(
            h,
            "<path class=\"indicator\" data-line=\"{}\" data-points=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
            esc(name),
            pts.len(),
            line_path(&pts, &ta, &va)
        );
        let _ = write!(
            legend,
            "<span style=\"color:{color}\">&#9473; {}</span>",
            esc(name)
        );
    }
    let more = total - markers(h, b, &ta, &va, fills);
    h.push_str("</svg>\n");
    let _ = writeln!(
        h,
        "<p class=\"legend\"><span style=\"color:{UP}\">&#9608; up</span><span style=\"color:{DOWN}\">&#9608; down</span><span style=\"color:#1565c0\">&#9650; buy</span><span style=\"color:#8e24aa\">&#9660; sell</span>{legend}{}</p>",
        if more > 0 {
            format!("<span>{more} later fills not marked (trades.csv has them)</span>")
        } else {
            String::new()
        }
    );
    if !pane.is_empty() {
        indicator_pane(h, sym, &ta, step, &pane);
    }
    h.push_str("</section>\n");
}

/// A marker per fill (the first [`MAX_MARKERS`]); returns how many.
fn markers(
    h: &mut String,
    b: &SymbolBars,
    ta: &TimeAxis,
    va: &ValueAxis,
    fills: &[crate::domain::FillMsg],
) -> usize {
    let step = b.interval();
    let mut n = 0;
    h.push_str("<g class=\"fills\">\n");
    for f in fills.iter().take(MAX_MARKERS) {
        let t = crate::price_bars::bar_start(f.ts.div_euclid(NANOS_PER_SEC), step);
        // Its bar, or the nearest one (a fill on the symbol's first trade
        // of a late-arriving interval).
        let i = match b.bars.binary_search_by_key(&t, |x| x.t) {
            Ok(i) => i,
            Err(0) => 0,
            Err(i) if i >= b.bars.len() => b.bars.len() - 1,
            Err(i) if t - b.bars[i - 1].t <= b.bars[i].t - t => i - 1,
            Err(i) => i,
        };
        let bar = &b.bars[i];
        let t = bar.t;
        let x = ta.x(t * NANOS_PER_SEC + step * NANOS_PER_SEC / 2);
        let (cls, d) = match f.side {
            Side::Buy => (
                "buy-marker",
                format!("M{x:.1},{:.1} l5,8 h-10 z", va.y(bar.l) + 3.0),
            ),
            Side::Sell => (
                "sell-marker",
                format!("M{x:.1},{:.1} l5,-8 h-10 z", va.y(bar.h) - 3.0),
            ),
        };
        let _ = writeln!(
            h,
            "<path class=\"{cls}\" d=\"{d}\"><title>{} {} {} @ {} ({}, {})</title></path>",
            if f.side == Side::Buy { "buy" } else { "sell" },
            f.qty,
            esc(&f.symbol),
            f.price,
            esc(&f.strategy),
            crate::wire::format_ts(f.ts)
        );
        n += 1;
    }
    h.push_str("</g>\n");
    n
}

/// Indicator lines whose values lie away from the prices, on their own scale.
fn indicator_pane(
    h: &mut String,
    sym: &str,
    ta: &TimeAxis,
    step: i64,
    lines: &[(&String, &Vec<(i64, f64)>)],
) {
    let all = lines.iter().flat_map(|(_, v)| v.iter().map(|p| p.1));
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, z), v| {
        (a.min(v), z.max(v))
    });
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 1e-4).max(1e-6);
    let va = ValueAxis {
        lo: lo - pad,
        hi: hi + pad,
        height: PANE_HEIGHT,
    };
    let _ = writeln!(
        h,
        "<svg class=\"indicator-pane\" data-symbol=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{PANE_HEIGHT}\" viewBox=\"0 0 {WIDTH} {PANE_HEIGHT}\" role=\"img\">\n<title>indicators of {}</title>",
        esc(sym),
        esc(sym)
    );
    let yt = nice_ticks(lo - pad, hi + pad, 3);
    let dp = decimals_for(&yt);
    axes(h, ta, &va, &yt, "value", |v| format!("{v:.dp$}"));
    let mut legend = String::new();
    for (k, (name, vals)) in lines.iter().enumerate() {
        let color = LINES[(k + 3) % LINES.len()];
        let pts: Vec<(Ts, f64)> = vals
            .iter()
            .map(|&(t, v)| (t * NANOS_PER_SEC + step * NANOS_PER_SEC / 2, v))
            .collect();
        let _ = writeln!(
            h,
            "<path class=\"indicator\" data-line=\"{}\" data-points=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
            esc(name),
            pts.len(),
            line_path(&pts, ta, &va)
        );
        let _ = write!(
            legend,
            "<span style=\"color:{color}\">&#9473; {}</span>",
            esc(name)
        );
    }
    h.push_str("</svg>\n");
    let _ = writeln!(h, "<p class=\"legend\">{legend}</p>");
}

/// A strategy's round trips, newest last, the first [`MAX_TRIPS`].
pub fn trips_table(h: &mut String, strategy: &str, trips: &Spill<RoundTrip>) {
    let (mut mine, mut closed) = (Vec::new(), 0usize);
    for t in trips.iter().filter(|t| t.strategy == strategy) {
        closed += 1;
        if mine.len() < MAX_TRIPS {
            mine.push(t);
        }
    }
    let _ = writeln!(
        h,
        "<h3>Round trips <span class=\"kind\">{closed} closed{}</span></h3>",
        if closed > MAX_TRIPS {
            format!(", the first {MAX_TRIPS} listed (round_trips.csv has all)")
        } else {
            String::new()
        }
    );
    if mine.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<div class=\"wrap\"><table class=\"trips\" data-strategy=\"{}\"><tr><th>entry (UTC)</th><th>exit (UTC)</th><th>symbol</th><th>side</th><th>size</th><th>entry price</th><th>exit price</th><th>commission</th><th>P&amp;L</th><th>return</th></tr>",
        esc(strategy)
    );
    for t in &mine {
        let side = if t.size.is_sign_negative() {
            "short"
        } else {
            "long"
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{side}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            crate::wire::format_ts(t.entry_ts),
            crate::wire::format_ts(t.exit_ts),
            esc(&t.symbol),
            t.size.abs(),
            t.entry_price,
            t.exit_price,
            money(t.commission),
            money(t.pnl),
            pct(t.return_pct)
        );
    }
    h.push_str("</table></div>\n");
}
