//! report.html opened in a real browser: Debian's headless Chromium renders it
//! (screenshot and DOM), with the network cut off, and must log no console
//! message. Chromium is required: the test fails, never skips, without it
//! (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHROMIUM: &str = "chromium";
const TIMEOUT: Duration = Duration::from_secs(120);

/// A strategy whose name needs escaping (it has no whitespace, so the config
/// accepts it).
const ODD: &str = r#"
name = "odd<script>alert('x')</script>&co"
symbols = ["ACME", "GLOBEX"]
[rule]
kind = "ma_crossover"
fast = 5
slow = 40
[account]
starting_cash = "50000"
[sizing]
mode = "fixed_quantity"
quantity = "10"
"#;

fn backtest(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let odd = dir.join("odd.toml");
    std::fs::write(&odd, ODD).unwrap();
    let mut files: Vec<String> = [
        "ma_crossover",
        "rsi_mean_reversion",
        "bollinger_breakout",
        "sentiment_momentum",
    ]
    .iter()
    .map(|s| format!("{ROOT}/strategies/{s}.toml"))
    .collect();
    files.push(odd.display().to_string());
    let app = dir.join("app.toml");
    // An analytics stream: the SMA lies among the prices (drawn over the
    // candles), the RSI does not (a pane below them).
    std::fs::write(
        &app,
        format!(
            "strategies = {files:?}\n[[analytics]]\nname = \"ta\"\n[analytics.values]\n\
             sma20 = \"sma(close, 20)\"\nrsi14 = \"rsi(close, 14)\"\n"
        ),
    )
    .unwrap();
    let report = dir.join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(ROOT)
        .arg("--config")
        .arg(&app)
        .args([
            "backtest",
            "--input",
            "data/synthetic_ticks.csv",
            "--input",
            "data/synthetic_sentiment.csv",
            "--input",
            "data/aapl_msft_daily_2011_2013.csv",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backtest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    report.join("report.html")
}

/// Run chromium headless with a fresh profile, killing it after [`TIMEOUT`].
fn chromium(profile: &Path, args: &[String]) -> Output {
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // Any attempt to reach the network fails (and is logged as a console
            // error): the page must not need it.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run `{CHROMIUM}` ({e}): this test needs Debian's chromium; \
             install it with `apt-get install chromium` (.ci/run does)"
        ),
    };
    // Drain the pipes on threads so a chatty chromium cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).map(|_| v)
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).map(|_| v)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().unwrap().unwrap(),
        stderr: t_err.join().unwrap().unwrap(),
    }
}

/// Chromium's console lines (`INFO:CONSOLE...] "message", source: ...`).
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect()
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// The console capture works with this chromium: a page that throws is caught.
#[test]
fn chromium_reports_script_errors_on_its_console() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("throws.html");
    std::fs::write(
        &page,
        "<html><body><p>x</p><script>throw new Error('deliberate')</script></body></html>",
    )
    .unwrap();
    let out = chromium(
        &dir.path().join("profile"),
        &["--dump-dom".into(), file_url(&page)],
    );
    assert!(out.status.success(), "chromium failed: {out:?}");
    let lines = console_lines(&out.stderr);
    assert!(
        lines.iter().any(|l| l.contains("deliberate")),
        "the script error was not seen on the console: {lines:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html_path = backtest(dir.path());
    let html = std::fs::read_to_string(&html_path).unwrap();

    // Self-contained: no script, no external resource of any kind.
    for bad in [
        "<script", "<link", "<img", "<iframe", "@import", "url(", "src=",
    ] {
        assert!(!html.contains(bad), "report.html contains {bad:?}");
    }
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !without_ns.contains("http://") && !without_ns.contains("https://"),
        "report.html refers to the network"
    );
    // The odd name is escaped, never markup.
    assert!(html.contains("odd&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;co"));
    assert!(!html.contains("<script>alert"));
    // Byte-identical for the same inputs.
    let again = backtest(&dir.path().join("again"));
    assert!(
        std::fs::read(&again).unwrap() == html.as_bytes(),
        "report.html differs between two runs"
    );

    let shot = dir.path().join("screenshot.png");
    let out = chromium(
        &dir.path().join("profile"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,5600".into(),
            "--hide-scrollbars".into(),
            "--dump-dom".into(),
            file_url(&html_path),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = console_lines(&out.stderr);
    assert!(
        console.is_empty(),
        "the page logged to the console: {console:#?}"
    );

    // The DOM as Chromium parsed it: one equity and one drawdown chart per
    // strategy (5), each with a path of many points, and fill markers.
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<table class=\"metrics\" id=\"strategies\">"),
        "{dom}"
    );
    // The statistics, one row each, a column per strategy.
    let stats = dom
        .split("id=\"statistics\"")
        .nth(1)
        .expect("a statistics table")
        .split("</table>")
        .next()
        .unwrap();
    for label in [
        "CAGR",
        "Sharpe (backtesting.py)",
        "Sortino (quantstats)",
        "Calmar",
        "average drawdown",
        "exposure",
        "profit factor",
        "expectancy",
        "SQN",
        "Kelly criterion",
        "buy &amp; hold return",
    ] {
        let row = stats
            .split(&format!("<th>{label}</th>"))
            .nth(1)
            .unwrap_or_else(|| panic!("no row {label}"));
        let row = row.split("</tr>").next().unwrap();
        assert_eq!(row.matches("<td class=\"n\">").count(), 5, "{label}: {row}");
    }
    // Monthly returns: the demo's bar data runs from January 2011 to 1 March
    // 2013, so ma_cross (which trades AAPL and MSFT) has rows 2011 and 2012
    // with 12 months and the year, and 2013 with three months and the year.
    let monthly = dom
        .split("id=\"monthly\"")
        .nth(1)
        .expect("a monthly-returns table")
        .split("</table>")
        .next()
        .unwrap();
    for (y, cells) in [("2011", 13), ("2012", 13), ("2013", 4)] {
        let row = monthly
            .split(&format!("<td>ma_cross</td><td>{y}</td>"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {y} row: {monthly}"));
        let row = row.split("</tr>").next().unwrap();
        assert_eq!(row.matches('%').count(), cells, "{y}: {row}");
        assert_eq!(row.matches("<td").count(), 13, "{y}: {row}");
    }
    assert_eq!(dom.matches("<svg class=\"equity-chart\"").count(), 5);
    assert_eq!(dom.matches("<svg class=\"drawdown-chart\"").count(), 5);
    let paths = |class: &str| -> Vec<String> {
        dom.split(&format!("<path class=\"{class}\""))
            .skip(1)
            .map(|rest| {
                let d = rest.split(" d=\"").nth(1).expect("a d attribute");
                d[..d.find('"').unwrap()].to_string()
            })
            .collect()
    };
    let equity = paths("equity");
    assert_eq!(equity.len(), 5);
    for d in &equity {
        assert!(d.starts_with('M'), "{d}");
        assert!(d.matches(" L").count() >= 10, "too few points: {d}");
    }
    let under = paths("underwater");
    assert_eq!(under.len(), 5);
    assert!(under.iter().all(|d| d.ends_with('Z')));
    let buys: usize = paths("buy").iter().map(|d| d.matches('M').count()).sum();
    let sells: usize = paths("sell").iter().map(|d| d.matches('M').count()).sum();
    assert!(
        buys > 10 && sells > 10,
        "markers: {buys} buys, {sells} sells"
    );
    assert!(
        !dom.contains("<script"),
        "a script element got into the DOM"
    );
    price_charts_hold_candles_fills_and_lines(&dom, html_path.parent().unwrap());

    // The screenshot: a real page, not a blank or single-colour image.
    let bytes = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", shot.display()));
    assert!(
        bytes.len() > 20_000,
        "screenshot only {} bytes",
        bytes.len()
    );
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report_html_screenshot.png");
    std::fs::write(&keep, &bytes).unwrap();
    eprintln!("screenshot: {}", keep.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 5600));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let mut counts = std::collections::HashMap::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        *counts.entry((px[0], px[1], px[2])).or_insert(0usize) += 1;
    }
    let total = (info.width * info.height) as usize;
    let commonest = counts.values().max().copied().unwrap_or(0);
    assert!(counts.len() > 100, "only {} colours", counts.len());
    assert!(
        commonest < total * 95 / 100,
        "one colour covers {commonest} of {total} pixels"
    );
    // The chart colours are on screen: the equity line (#0969da) and the
    // underwater fill (#f8d0d0), within anti-aliasing tolerance.
    let near = |c: (u8, u8, u8)| {
        counts
            .iter()
            .filter(|(k, _)| {
                (k.0 as i32 - c.0 as i32).abs() <= 12
                    && (k.1 as i32 - c.1 as i32).abs() <= 12
                    && (k.2 as i32 - c.2 as i32).abs() <= 12
            })
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert!(near((0x09, 0x69, 0xda)) > 200, "no equity line drawn");
    // The candles in their colours.
    assert!(near((0x26, 0xa6, 0x9a)) > 500, "no rising candles drawn");
    assert!(near((0xef, 0x53, 0x50)) > 500, "no falling candles drawn");
    assert!(near((0xf8, 0xd0, 0xd0)) > 2000, "no underwater area drawn");
}

/// Rows of a report CSV, as maps of column to value.
fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            head.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// The price chart of each symbol: as many candle bodies as it says, at most
/// 300; a marker per fill of the symbol in trades.csv; the SMA over the
/// candles and the RSI in the pane below; buy and hold beside each equity
/// curve; each strategy's round trips as round_trips.csv has them.
fn price_charts_hold_candles_fills_and_lines(dom: &str, report: &Path) {
    let trades = csv_rows(&report.join("trades.csv"));
    let charts: Vec<&str> = dom.split("<svg class=\"price-chart\"").skip(1).collect();
    assert_eq!(charts.len(), 4, "ACME, GLOBEX, AAPL, MSFT");
    for chart in charts {
        let chart = chart.split("</svg>").next().unwrap();
        let attr = |name: &str| {
            let v = chart.split(&format!("{name}=\"")).nth(1).unwrap();
            v[..v.find('"').unwrap()].to_string()
        };
        let sym = attr("data-symbol");
        let candles: usize = attr("data-candles").parse().unwrap();
        assert!((50..=300).contains(&candles), "{sym}: {candles} candles");
        if let Some(want) = expected_candles(&sym) {
            assert_eq!(candles, want, "{sym}: candles worked out from the CSV");
        }
        assert_eq!(
            chart.matches("<rect class=\"candle ").count(),
            candles,
            "{sym}"
        );
        assert!(chart.contains("<rect class=\"candle up\""), "{sym}");
        assert!(chart.contains("<rect class=\"candle down\""), "{sym}");
        let fills = trades.iter().filter(|t| t["symbol"] == sym).count();
        let marked = chart.matches("class=\"buy-marker\"").count()
            + chart.matches("class=\"sell-marker\"").count();
        assert!(fills > 0, "{sym} has fills");
        assert_eq!(marked, fills.min(2000), "{sym}: a marker per fill");
        assert!(
            chart.contains("data-line=\"ta.sma20\""),
            "{sym}: the SMA over the candles"
        );
        assert!(
            !chart.contains("data-line=\"ta.rsi14\""),
            "{sym}: the RSI is not over the prices"
        );
    }
    assert_eq!(dom.matches("<svg class=\"indicator-pane\"").count(), 4);
    assert_eq!(dom.matches("data-line=\"ta.rsi14\"").count(), 4);
    assert_eq!(dom.matches("<path class=\"buy-hold\"").count(), 5);
    let trips = csv_rows(&report.join("round_trips.csv"));
    let table = dom
        .split("<table class=\"trips\" data-strategy=\"ma_cross\">")
        .nth(1)
        .expect("ma_cross's round trips")
        .split("</table>")
        .next()
        .unwrap();
    let mine = trips.iter().filter(|t| t["strategy"] == "ma_cross").count();
    assert!(mine > 0);
    assert_eq!(
        table.matches("<tr>").count() - 1,
        mine.min(200),
        "one row per round trip"
    );
}

/// The candles of a tick symbol worked out from data/synthetic_ticks.csv: the
/// shortest interval of 1 s, 2 s, 10 s, 30 s, 1 m, 5 m, ... (each divides the
/// next) that puts its trades into at most 300 time bars; `None` for the
/// symbols of the bar file.
fn expected_candles(sym: &str) -> Option<usize> {
    let rows = csv_rows(&Path::new(ROOT).join("data/synthetic_ticks.csv"));
    let secs: Vec<i64> = rows
        .iter()
        .filter(|r| r["symbol"] == sym)
        .map(|r| r["ts"].parse::<i64>().unwrap().div_euclid(1000))
        .collect();
    if secs.is_empty() {
        return None;
    }
    [1i64, 2, 10, 30, 60, 300, 900, 1800, 3600]
        .iter()
        .map(|step| {
            secs.iter()
                .map(|s| s.div_euclid(*step))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .find(|n| *n <= 300)
}
