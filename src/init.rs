//! `papertrader init DIR`: a starter project that runs as it is: an
//! application config, a strategy file and a day of synthetic sample data
//! (the generator of `papertrader generate`). Existing files are never
//! overwritten.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The application config `init` writes, `DIR/papertrader.toml`.
pub const APP_CONFIG: &str = r#"# papertrader: a starter application config, written by `papertrader init`.
# Keys not set here keep their defaults (papertrader's config/default.toml
# documents every key). Run from this directory:
#   papertrader paper --config papertrader.toml --until-idle 10
#   papertrader backtest --config papertrader.toml --input data/ticks.csv --input data/sentiment.csv --report report

strategies = ["strategies/starter.toml"]

[kafka]
# "embedded": a Kafka-compatible broker in-process, nothing to install.
# Your cluster instead: its bootstrap.servers, e.g. "localhost:9092".
brokers = "embedded"

[demo]
# With the embedded broker, paper mode first publishes these files into the
# input topics, so that there is something to trade.
feed = true
prices = ["data/ticks.csv"]
sentiment = ["data/sentiment.csv"]

# The simulated venue of every symbol (docs/execution.md).
[venue.default]
tick_size = "0.01"
lot_size = "1"
maker_fee_bps = "0"
taker_fee_bps = "1"

# Backtest reports: equity marked every minute of event time (docs/metrics.md).
[report]
mark_every = "1m"
"#;

/// The strategy file `init` writes, `DIR/strategies/starter.toml`.
pub const STRATEGY: &str = r#"# A starter strategy (docs/strategies.md): an EMA crossover on one-minute
# bars, a fifth of the equity per entry, with a stop loss and a take profit
# placed at the simulated venue.
name = "starter"
symbols = ["ACME", "GLOBEX"]

[rule]
kind = "ma_crossover"
fast = 5
slow = 20
average = "ema"

[bars]
kind = "time"
size = "1m"

[account]
starting_cash = "100000"
allow_short = false

[sizing]
mode = "fraction_of_equity"
fraction = "0.2"

[exits]
stop_loss = "1%"
take_profit = "2%"
"#;

/// Write the starter project into `dir`; what was written and the commands
/// that run it.
///
/// # Errors
/// A file that already exists (nothing is written then), or one that cannot
/// be written.
pub fn write(dir: &Path) -> anyhow::Result<String> {
    let files: [(PathBuf, Option<&str>); 4] = [
        (dir.join("papertrader.toml"), Some(APP_CONFIG)),
        (dir.join("strategies/starter.toml"), Some(STRATEGY)),
        (dir.join("data/ticks.csv"), None),
        (dir.join("data/sentiment.csv"), None),
    ];
    if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
        anyhow::bail!(
            "{} exists; init writes into a new or empty directory (nothing was written)",
            p.display()
        );
    }
    for sub in ["strategies", "data"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    for (p, text) in &files {
        if let Some(text) = text {
            std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    let (ticks, sentiment) = crate::sample::generate(&crate::sample::SampleSpec::default());
    let create = |p: &Path| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", p.display()))
    };
    crate::csvdata::write_ticks_csv(create(&files[2].0)?, &ticks)?;
    crate::csvdata::write_sentiment_csv(create(&files[3].0)?, &sentiment)?;
    Ok(format!(
        "wrote {dir}/papertrader.toml, {dir}/strategies/starter.toml and sample data \
         ({} ticks, {} sentiment readings) in {dir}/data\n\
         next:\n  cd {dir}\n  papertrader paper --config papertrader.toml --until-idle 10\n  \
         papertrader backtest --config papertrader.toml --input data/ticks.csv \
         --input data/sentiment.csv --report report",
        ticks.len(),
        sentiment.len(),
        dir = dir.display()
    ))
}
