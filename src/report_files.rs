//! A backtest's report directory: `report.json`, `trades.csv`,
//! `round_trips.csv`, `equity.csv`,
//! `alerts.csv` ([`crate::report`]'s metrics and series) and `report.html`
//! ([`crate::report_html`]). Money is written exactly, rounded to 8 decimals.
//! With `backtest --parquet`, [`write_parquet`] adds the tables as Parquet.

use std::path::Path;

use anyhow::Context;
use rust_decimal::Decimal;

use crate::report::{with_drawdowns, Backtest, Report};
use crate::wire::format_ts;

/// Write `report.json`, `trades.csv`, `round_trips.csv`, `equity.csv`, `alerts.csv` (when the
/// run has alert rules) and `report.html` into `dir`
/// (created if needed).
pub fn write(dir: &Path, bt: &Backtest) -> anyhow::Result<Report> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = Report::new(bt);
    // report.html is drawn on a second core while the tables are written
    // (both only read `bt`; its temporary files are read with `read_at`).
    let html = std::thread::scope(|s| {
        let html = s.spawn(|| crate::report_html::render(&report, bt));
        write_tables(dir, bt, &report)?;
        anyhow::Ok(
            html.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    })?;
    let p = dir.join("report.html");
    std::fs::write(&p, html).with_context(|| format!("writing {}", p.display()))?;
    Ok(report)
}

/// `report.json` and the CSV tables of [`write`].
fn write_tables(dir: &Path, bt: &Backtest, report: &Report) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    let p = dir.join("report.json");
    std::fs::write(&p, json).with_context(|| format!("writing {}", p.display()))?;

    let trades = bt.collector.trades.iter().map(|t| {
        let f = &t.fill;
        vec![
            format_ts(f.ts),
            f.strategy.clone(),
            f.symbol.clone(),
            f.side.to_string(),
            money(f.qty),
            money(f.price),
            money(f.fee),
            money(t.realized),
            f.fill_id.clone(),
        ]
    });
    write_csv(
        &dir.join("trades.csv"),
        "ts,strategy,symbol,side,qty,price,fee,realized_pnl,fill_id",
        trades,
    )?;

    let trips = bt.collector.round_trips.iter().map(|t| {
        vec![
            t.strategy.clone(),
            t.symbol.clone(),
            format_ts(t.entry_ts),
            format_ts(t.exit_ts),
            money(t.size),
            money(t.entry_price),
            money(t.exit_price),
            money(t.commission),
            money(t.pnl),
            t.return_pct.round_dp(10).normalize().to_string(),
        ]
    });
    write_csv(
        &dir.join("round_trips.csv"),
        "strategy,symbol,entry_ts,exit_ts,size,entry_price,exit_price,commission,pnl,return",
        trips,
    )?;

    let (start, end) = (bt.start.unwrap_or(0), bt.end.unwrap_or(0));
    // Row by row, one strategy's series at a time: a long run's curve is
    // never held as text (issue 20: memory independent of the events).
    let equity = bt.summary.strategies.iter().flat_map(|s| {
        let series = bt.collector.series_iter(&s.name, start, end, s.equity);
        with_drawdowns(series)
            .map(|(ts, e, dd)| vec![format_ts(ts), s.name.clone(), money(e), money(dd)])
    });
    write_csv(
        &dir.join("equity.csv"),
        "ts,strategy,equity,drawdown",
        equity,
    )?;

    if bt.collector.has_alert_rules {
        // The alerts topic's fields, in its order.
        let p = dir.join("alerts.csv");
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_path(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        w.write_record(
            "alert_id,rule,kind,subject,ts,direction,value,threshold,message".split(','),
        )?;
        for a in &bt.collector.alerts {
            w.serialize(a)?;
        }
        w.flush()
            .with_context(|| format!("writing {}", p.display()))?;
    }

    Ok(())
}

/// Write the tables of the report directory `dir` (written by [`write`]) as
/// Parquet beside their CSV files: `trades.parquet`, `round_trips.parquet`,
/// `equity.parquet` and, when the run has alert rules, `alerts.parquet`
/// ([`crate::export`]: the CSV's values, typed).
///
/// # Errors
/// A file cannot be read or written.
pub fn write_parquet(dir: &Path) -> anyhow::Result<Vec<crate::export::Written>> {
    crate::export::report_tables(dir, dir, &[])
}

/// A CSV file of `header` (its column names joined by commas) and `rows`.
fn write_csv(
    p: &Path,
    header: &str,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(p).with_context(|| format!("creating {}", p.display()))?;
    w.write_record(header.split(','))?;
    for r in rows {
        w.write_record(&r)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

fn money(d: Decimal) -> String {
    d.round_dp(8).normalize().to_string()
}
