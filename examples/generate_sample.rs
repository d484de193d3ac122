//! Writes the bundled SYNTHETIC sample files: `data/synthetic_ticks.csv` and
//! `data/synthetic_sentiment.csv`, from `SampleSpec::default()` (seed 42).
//!
//! ```text
//! cargo run --example generate_sample            # into data/
//! cargo run --example generate_sample -- outdir  # into outdir/
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use papertrader::csvdata::{write_sentiment_csv, write_ticks_csv};
use papertrader::sample::{generate, SampleSpec};

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "data".into()));
    std::fs::create_dir_all(&dir)?;
    let spec = SampleSpec::default();
    let (ticks, news) = generate(&spec);
    let ticks_path = dir.join("synthetic_ticks.csv");
    let news_path = dir.join("synthetic_sentiment.csv");
    write_ticks_csv(BufWriter::new(File::create(&ticks_path)?), &ticks)?;
    write_sentiment_csv(BufWriter::new(File::create(&news_path)?), &news)?;
    println!(
        "{}: {} synthetic ticks\n{}: {} synthetic sentiment readings\n(seed {})",
        ticks_path.display(),
        ticks.len(),
        news_path.display(),
        news.len(),
        spec.seed
    );
    Ok(())
}
