//! A backtest's report directory: `report.json`, `trades.csv`, `equity.csv`
//! ([`crate::report`]'s metrics and series) and `report.html`
//! ([`crate::report_html`]). Money is written exactly, rounded to 8 decimals.

use std::path::Path;

use anyhow::Context;
use rust_decimal::Decimal;

use crate::report::{drawdowns, Backtest, Report};
use crate::wire::format_ts;

/// Write `report.json`, `trades.csv`, `equity.csv` and `report.html` into `dir`
/// (created if needed).
pub fn write(dir: &Path, bt: &Backtest) -> anyhow::Result<Report> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = Report::new(bt);
    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    let p = dir.join("report.json");
    std::fs::write(&p, json).with_context(|| format!("writing {}", p.display()))?;

    let p = dir.join("trades.csv");
    let mut w = csv::Writer::from_path(&p).with_context(|| format!("creating {}", p.display()))?;
    w.write_record([
        "ts",
        "strategy",
        "symbol",
        "side",
        "qty",
        "price",
        "fee",
        "realized_pnl",
        "fill_id",
    ])?;
    for t in &bt.collector.trades {
        let f = &t.fill;
        w.write_record([
            format_ts(f.ts),
            f.strategy.clone(),
            f.symbol.clone(),
            f.side.to_string(),
            money(f.qty),
            money(f.price),
            money(f.fee),
            money(t.realized),
            f.fill_id.clone(),
        ])?;
    }
    w.flush()?;

    let p = dir.join("equity.csv");
    let mut w = csv::Writer::from_path(&p).with_context(|| format!("creating {}", p.display()))?;
    w.write_record(["ts", "strategy", "equity", "drawdown"])?;
    let (start, end) = (bt.start.unwrap_or(0), bt.end.unwrap_or(0));
    for s in &bt.summary.strategies {
        let series = bt.collector.series(&s.name, start, end, s.equity);
        for ((ts, e), dd) in series.iter().zip(drawdowns(&series)) {
            w.write_record([format_ts(*ts), s.name.clone(), money(*e), money(dd)])?;
        }
    }
    w.flush()?;

    let p = dir.join("report.html");
    std::fs::write(&p, crate::report_html::render(&report, bt))
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(report)
}

fn money(d: Decimal) -> String {
    d.round_dp(8).normalize().to_string()
}
