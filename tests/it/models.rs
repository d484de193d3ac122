//! ONNX models: tract against onnxruntime's reference outputs, the Rust
//! feature pipeline against models/train.py's features, shape checks at load,
//! and the `model` and `ensemble` strategies on a stream.
//!
//! Golden values come from Python (models/train.py with onnxruntime); no
//! Python is needed to run these tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use papertrader::config::{EnsembleMember, EnsembleRule, ModelRule, RsiRule, RuleConfig};
use papertrader::csvdata::{merge_by_ts, read_records, Record};
use papertrader::domain::Side;
use papertrader::features::{FeaturePipeline, FeatureSpec};
use papertrader::model::{self, Model, Models};
use papertrader::strategy::{try_build, Decision};
use rust_decimal::prelude::ToPrimitive;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_specs() -> Vec<PathBuf> {
    model::spec_files(&root().join("models")).unwrap()
}

#[test]
fn both_bundled_models_are_present() {
    let names: Vec<String> = model_specs()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["trend", "trend_sentiment"]);
}

#[test]
fn tract_matches_onnxruntime_on_every_model() {
    for spec in model_specs() {
        let m = std::sync::Arc::new(model::load(&spec).unwrap());
        let r = model::read_reference(&model::reference_path(&spec)).unwrap();
        assert!(r.inputs.len() >= 32, "{}", spec.display());
        // The version is the sha256 of the graph file, and the reference was made with it.
        let bytes = std::fs::read(&m.onnx_path).unwrap();
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(m.sha256, sha);
        assert_eq!(
            r.sha256,
            sha,
            "{}: reference made with another graph",
            spec.display()
        );

        // Row by row, through the per-event path.
        let mut max_diff = 0f64;
        for (input, want) in r.inputs.iter().zip(&r.outputs) {
            let x: Vec<f32> = input.iter().map(|&v| v as f32).collect();
            let got = m.run_prepared(&x, 1).unwrap();
            assert_eq!(got.len(), 1);
            max_diff = max_diff.max((got[0] - want[0]).abs());
        }
        assert!(max_diff <= 1e-5, "{}: max diff {max_diff}", spec.display());

        // The per-event scorer (one-row plan, reused state) on the raw features.
        let shared = std::sync::Arc::new(model::load(&spec).unwrap());
        let mut scorer = shared.scorer().unwrap();
        for (raw, want) in r.features.iter().zip(&r.outputs) {
            let got = scorer.score(raw).unwrap();
            assert!((got - want[0]).abs() <= 1e-5, "{got} vs {}", want[0]);
            // The batch plan may sum in another order: f32 rounding apart.
            assert!((got - shared.score(raw).unwrap()).abs() <= 1e-6);
        }
        assert!(scorer.score(&r.features[0][1..]).is_err());

        // The batch path gives the same outputs, and the library's parity agrees.
        let p = model::parity(&m, &r).unwrap();
        assert!(p.ok(), "{}: {p:?}", spec.display());
        assert_eq!(p.rows, r.inputs.len());

        // Raw features through the spec's normalization give the reference inputs.
        let raw: Vec<&[f64]> = r.features.iter().map(Vec::as_slice).collect();
        let batch = m.score_batch(&raw).unwrap();
        for (got, want) in batch.iter().zip(&r.outputs) {
            assert!((got - want[0]).abs() <= 1e-5, "{got} vs {}", want[0]);
        }
        // The outputs are probabilities and not all alike.
        let outs: Vec<f64> = r.outputs.iter().map(|o| o[0]).collect();
        assert!(outs.iter().all(|p| (0.0..=1.0).contains(p)));
        let spread = outs.iter().cloned().fold(f64::MIN, f64::max)
            - outs.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.01, "{}: outputs barely vary", spec.display());
    }
}

/// The first 3000 rows of data/synthetic_ticks.csv and the sentiment up to the
/// last of them, ordered by time (ticks first on ties), as models/train.py reads them.
fn fixture_events() -> Vec<Record> {
    let (ticks, bad) = read_records(root().join("data/synthetic_ticks.csv"), None).unwrap();
    assert!(bad.is_empty());
    let ticks: Vec<Record> = ticks.into_iter().take(3000).collect();
    let last = ticks.last().unwrap().ts();
    let (sent, bad) = read_records(root().join("data/synthetic_sentiment.csv"), None).unwrap();
    assert!(bad.is_empty());
    let sent: Vec<Record> = sent.into_iter().filter(|r| r.ts() <= last).collect();
    assert!(sent.len() > 20);
    merge_by_ts(vec![ticks, sent])
}

fn parse_spec(name: &str) -> FeatureSpec {
    let spec = |s: &str| -> FeatureSpec { toml::from_str(s).unwrap() };
    let num = |s: &str| s.parse::<usize>().unwrap();
    let parts: Vec<&str> = name.split('_').collect();
    match parts.as_slice() {
        ["return", n] => FeatureSpec::ReturnN { n: num(n) },
        ["rsi", p] => FeatureSpec::Rsi { period: num(p) },
        ["macd", "hist", f, s, g] => FeatureSpec::MacdHist {
            fast: num(f),
            slow: num(s),
            signal: num(g),
        },
        ["bb", "percent", "b", p, k] => FeatureSpec::BbPercentB {
            period: num(p),
            k: k.parse().unwrap(),
        },
        ["volume", "zscore", p] => FeatureSpec::VolumeZscore { period: num(p) },
        ["sentiment", "ema", p] => FeatureSpec::SentimentEma { period: num(p) },
        ["time", "of", "day", c] => spec(&format!("kind = \"time_of_day\"\ncomponent = \"{c}\"")),
        _ => panic!("unknown feature column {name}"),
    }
}

#[test]
fn rust_features_equal_train_py_features() {
    let mut rdr =
        csv::Reader::from_path(root().join("tests/fixtures/features_reference.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(&header[..3], ["ts", "symbol", "price"]);
    let specs: Vec<FeatureSpec> = header[3..].iter().map(|n| parse_spec(n)).collect();
    // Every feature kind is covered, and the names round-trip.
    assert_eq!(specs.len(), 11);
    for (s, n) in specs.iter().zip(&header[3..]) {
        assert_eq!(&s.name(), n);
    }
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3000);

    let mut pipes: HashMap<String, (FeaturePipeline, Vec<usize>)> = HashMap::new();
    let mut row = rows.iter();
    let (mut compared, mut max_diff) = (0usize, 0f64);
    let mut warm_rows = 0;
    for ev in fixture_events() {
        let (pipe, slots) = pipes.entry(ev.symbol().to_string()).or_insert_with(|| {
            let mut p = FeaturePipeline::new();
            let slots = p.register_all(&specs);
            (p, slots)
        });
        match ev {
            Record::Sentiment(s) => pipe.on_sentiment(s.score),
            Record::Tick(t) => {
                let price = t.price.to_f64().unwrap();
                pipe.on_tick(t.ts, price, t.size.to_f64().unwrap());
                let want = row.next().expect("a fixture row per tick");
                assert_eq!(want[0].parse::<i64>().unwrap(), t.ts);
                assert_eq!(&want[1], t.symbol.as_str());
                assert_eq!(want[2].parse::<rust_decimal::Decimal>().unwrap(), t.price);
                let mut all_warm = true;
                for (i, &slot) in slots.iter().enumerate() {
                    let cell = &want[3 + i];
                    let got = pipe.value(slot);
                    if cell.is_empty() {
                        assert_eq!(got, None, "ts {} {}: {}", t.ts, t.symbol, header[3 + i]);
                        all_warm = false;
                    } else {
                        let w: f64 = cell.parse().unwrap();
                        let g = got.unwrap_or_else(|| {
                            panic!(
                                "ts {} {}: {} not warm, python has {w}",
                                t.ts,
                                t.symbol,
                                header[3 + i]
                            )
                        });
                        let d = (g - w).abs();
                        assert!(
                            d <= 1e-9,
                            "ts {} {}: {} rust {g} python {w} (diff {d})",
                            t.ts,
                            t.symbol,
                            header[3 + i]
                        );
                        max_diff = max_diff.max(d);
                        compared += 1;
                    }
                }
                warm_rows += all_warm as usize;
            }
        }
    }
    assert!(row.next().is_none());
    assert!(compared > 25_000, "{compared} values compared");
    assert!(warm_rows > 2_000, "{warm_rows} fully warm rows");
    eprintln!("{compared} feature values, max |rust - python| = {max_diff:e}");
}

/// A copy of a bundled model in a temp dir, with its spec edited.
fn edited_model(name: &str, edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let models = root().join("models");
    std::fs::copy(
        models.join(format!("{name}.onnx")),
        dir.path().join(format!("{name}.onnx")),
    )
    .unwrap();
    let spec = std::fs::read_to_string(models.join(format!("{name}.toml"))).unwrap();
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, edit(spec)).unwrap();
    (dir, path)
}

/// Drop the last `[[features]]` table of a spec.
fn drop_last_feature(spec: &str) -> String {
    let cut = spec.rfind("[[features]]").unwrap();
    spec[..cut].to_string()
}

#[test]
fn a_spec_whose_shape_disagrees_with_the_graph_refuses_to_load() {
    // Six features and input.shape ["N", 6] against a graph that takes 7.
    let (_dir, path) = edited_model("trend", |s| {
        drop_last_feature(&s).replace("shape = [\"N\", 7]", "shape = [\"N\", 6]")
    });
    let err = model::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(err.file.ends_with("trend.onnx"), "{msg}");
    assert!(msg.contains("[\"N\", 7]"), "{msg}");
    assert!(msg.contains("[\"N\", 6]"), "{msg}");
    assert!(msg.contains("fix:"), "{msg}");

    // input.shape that disagrees with the spec's own feature list.
    let (_dir, path) = edited_model("trend", |s| {
        s.replace("shape = [\"N\", 7]", "shape = [\"N\", 8]")
    });
    let msg = model::load(&path).unwrap_err().to_string();
    assert!(msg.contains("lists 7 features"), "{msg}");

    // A wrong input name.
    let (_dir, path) = edited_model("trend", |s| {
        s.replacen("name = \"features\"", "name = \"x\"", 1)
    });
    let msg = model::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("named \"features\"") && msg.contains("input.name = \"x\""),
        "{msg}"
    );

    // A wrong output shape.
    let (_dir, path) = edited_model("trend", |s| {
        s.replace("shape = [\"N\", 1]", "shape = [\"N\", 2]")
    });
    assert!(model::load(&path).is_err());

    // The unedited copy loads (the edits, not the copy, caused the errors).
    let (_dir, path) = edited_model("trend", |s| s);
    model::load(&path).unwrap();
}

#[test]
fn a_strategy_file_with_a_broken_model_names_the_model() {
    let (dir, spec) = edited_model("trend", |s| {
        drop_last_feature(&s).replace("shape = [\"N\", 7]", "shape = [\"N\", 6]")
    });
    let text = format!(
        "name = \"m\"\nsymbols = [\"ACME\"]\n[rule]\nkind = \"model\"\nmodel = {:?}\n[sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n",
        spec.display().to_string()
    );
    let err = papertrader::config::parse_strategy(&text, "strategies/m.toml").unwrap_err();
    assert_eq!(err.file, "strategies/m.toml");
    assert_eq!(err.key, "rule.model");
    assert!(err.problem.contains("trend.onnx"), "{err}");
    drop(dir);

    // The bundled example loads.
    papertrader::config::load_strategy(&root().join("strategies/model_trend.toml")).unwrap_or_else(
        |e| {
            // Paths in the example are relative to the repository root.
            panic!("{e}")
        },
    );
}

fn stream() -> Vec<Record> {
    let (ticks, _) = read_records(root().join("data/synthetic_ticks.csv"), None).unwrap();
    let (sent, _) = read_records(root().join("data/synthetic_sentiment.csv"), None).unwrap();
    merge_by_ts(vec![ticks, sent])
        .into_iter()
        .filter(|r| r.symbol() == "ACME")
        .collect()
}

/// Every decision of a strategy over the ACME stream, with its event index.
fn decisions(rule: &RuleConfig) -> Vec<(usize, Decision)> {
    let mut s = try_build(rule, &Models::for_rule(rule).unwrap()).unwrap();
    let mut out = Vec::new();
    for (i, ev) in stream().into_iter().enumerate() {
        let d = match &ev {
            Record::Tick(t) => s.on_tick(t, t.price.to_f64().unwrap()),
            Record::Sentiment(x) => s.on_sentiment(x),
        };
        if let Some(d) = d {
            out.push((i, d));
        }
    }
    out
}

fn model_rule(path: &Path, buy: Option<f64>, sell: Option<f64>) -> RuleConfig {
    RuleConfig::Model(ModelRule {
        model: path.display().to_string(),
        buy_above: buy,
        sell_below: sell,
    })
}

#[test]
fn the_model_strategy_buys_and_sells_on_a_stream() {
    let spec = root().join("models/trend_sentiment.toml");
    let m: std::sync::Arc<Model> = std::sync::Arc::new(model::load(&spec).unwrap());
    let ds = decisions(&model_rule(&spec, None, None));
    // Score as the strategy does: the per-event scorer.
    let mut sc = m.scorer().unwrap();
    let buys = ds.iter().filter(|(_, d)| d.side == Side::Buy).count();
    let sells = ds.iter().filter(|(_, d)| d.side == Side::Sell).count();
    assert!(buys >= 3 && sells >= 3, "{buys} buys, {sells} sells");
    for (_, d) in &ds {
        let p = d.reason["model_output"];
        match d.side {
            Side::Buy => assert!(p > 0.6 && d.strength > 0.0, "{d:?}"),
            Side::Sell => assert!(p < 0.4 && d.strength < 0.0, "{d:?}"),
        }
        assert!((d.strength - (2.0 * p - 1.0)).abs() < 1e-12);
        for f in &m.spec.features {
            assert!(d.reason.contains_key(&f.name()), "{} missing", f.name());
        }
        let info = d.model.as_ref().unwrap();
        assert_eq!(info.name, "trend_sentiment");
        assert_eq!(info.version, m.sha256);
        // The output is the model's score of the features the reason reports.
        let raw: Vec<f64> = m
            .spec
            .features
            .iter()
            .map(|f| d.reason[&f.name()])
            .collect();
        assert_eq!(sc.score(&raw).unwrap(), p);
    }
    // Signals are transitions into a zone: recompute the output of every tick
    // with a separate feature pipeline and find the zone entries.
    let mut pipe = FeaturePipeline::new();
    let slots = pipe.register_all(&m.spec.features);
    let (mut row, mut prev_zone, mut expected) = (Vec::new(), None, Vec::new());
    for (i, ev) in stream().into_iter().enumerate() {
        match ev {
            Record::Sentiment(s) => pipe.on_sentiment(s.score),
            Record::Tick(t) => {
                pipe.on_tick(t.ts, t.price.to_f64().unwrap(), t.size.to_f64().unwrap());
                if !pipe.gather(&slots, &mut row) {
                    continue;
                }
                let p = sc.score(&row).unwrap();
                let zone = if p > 0.6 {
                    1
                } else if p < 0.4 {
                    -1
                } else {
                    0
                };
                if let Some(prev) = prev_zone.replace(zone) {
                    if zone != prev && zone != 0 {
                        expected.push((i, if zone > 0 { Side::Buy } else { Side::Sell }));
                    }
                }
            }
        }
    }
    let got: Vec<(usize, Side)> = ds.iter().map(|(i, d)| (*i, d.side)).collect();
    assert_eq!(got, expected);
    // Wider thresholds signal less often.
    let wide = decisions(&model_rule(&spec, Some(0.75), Some(0.25)));
    assert!(wide.len() < ds.len(), "{} vs {}", wide.len(), ds.len());
}

#[test]
fn an_ensemble_of_one_model_is_the_model_with_matching_thresholds() {
    let spec = root().join("models/trend.toml");
    // One member: the weighted mean is 2p - 1, and 2p - 1 > 0.3 <=> p > 0.65.
    let ens = RuleConfig::Ensemble(EnsembleRule {
        threshold: 0.3,
        members: vec![EnsembleMember {
            weight: 2.0,
            model: Some(spec.display().to_string()),
            rule: None,
        }],
    });
    let a: Vec<(usize, Side)> = decisions(&ens)
        .into_iter()
        .map(|(i, d)| (i, d.side))
        .collect();
    let b: Vec<(usize, Side)> = decisions(&model_rule(&spec, Some(0.65), Some(0.35)))
        .into_iter()
        .map(|(i, d)| (i, d.side))
        .collect();
    assert!(a.len() >= 2, "{a:?}");
    assert_eq!(a, b);
}

#[test]
fn an_ensemble_mixes_models_and_rules() {
    let member = |weight, model: Option<&str>, rule| EnsembleMember {
        weight,
        model: model.map(|m| root().join(m).display().to_string()),
        rule,
    };
    let rsi = RuleConfig::RsiMeanReversion(RsiRule {
        period: 14,
        oversold: 30.0,
        overbought: 70.0,
    });
    let ens = RuleConfig::Ensemble(EnsembleRule {
        threshold: 0.2,
        members: vec![
            member(0.4, Some("models/trend.toml"), None),
            member(0.4, Some("models/trend_sentiment.toml"), None),
            member(0.2, None, Some(Box::new(rsi))),
        ],
    });
    let ds = decisions(&ens);
    assert!(ds.iter().any(|(_, d)| d.side == Side::Buy), "{}", ds.len());
    assert!(ds.iter().any(|(_, d)| d.side == Side::Sell), "{}", ds.len());
    for (_, d) in &ds {
        let parts = 0.4 * d.reason["member_0_trend"]
            + 0.4 * d.reason["member_1_trend_sentiment"]
            + 0.2 * d.reason["member_2_rsi_mean_reversion"];
        assert!((parts - d.reason["ensemble_score"]).abs() < 1e-12);
        match d.side {
            Side::Buy => assert!(d.reason["ensemble_score"] > 0.2),
            Side::Sell => assert!(d.reason["ensemble_score"] < -0.2),
        }
    }
    // The RSI member has voted by the end (its held score is not always 0).
    assert!(ds
        .iter()
        .any(|(_, d)| d.reason["member_2_rsi_mean_reversion"] != 0.0));
}

fn models_check(dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_papertrader"))
        .current_dir(root())
        .args(["models", "check", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn models_check_passes_on_the_bundled_models_and_fails_on_a_mismatch() {
    let (code, out) = models_check(&root().join("models"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 models ok"), "{out}");
    assert_eq!(out.matches("parity:  ok").count(), 2, "{out}");
    assert!(
        out.contains("sha256 ") && out.contains("us per event"),
        "{out}"
    );

    // The same model with one reference output moved by 1e-3.
    let dir = tempfile::tempdir().unwrap();
    for f in ["trend.onnx", "trend.toml"] {
        std::fs::copy(root().join("models").join(f), dir.path().join(f)).unwrap();
    }
    let mut r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("models/trend.reference.json")).unwrap(),
    )
    .unwrap();
    let v = r["outputs"][3][0].as_f64().unwrap();
    r["outputs"][3][0] = serde_json::json!(v + 1e-3);
    std::fs::write(
        dir.path().join("trend.reference.json"),
        serde_json::to_string(&r).unwrap(),
    )
    .unwrap();
    let (code, out) = models_check(dir.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("MISMATCH"), "{out}");
}

#[test]
fn model_and_ensemble_rules_are_checked_with_key_and_fix() {
    let strategy = |rule: &str| {
        format!("name = \"e\"\nsymbols = [\"ACME\"]\n{rule}\n[sizing]\nmode = \"fixed_quantity\"\nquantity = \"1\"\n")
    };
    let parse =
        |rule: &str| papertrader::config::parse_strategy(&strategy(rule), "strategies/e.toml");
    let trend = root().join("models/trend.toml").display().to_string();

    // A valid ensemble of a model and a rule.
    let ok = format!(
        "[rule]\nkind = \"ensemble\"\nthreshold = 0.3\n[[rule.members]]\nweight = 1.0\nmodel = {trend:?}\n[[rule.members]]\nweight = 0.5\nrule = {{ kind = \"rsi_mean_reversion\", period = 14, oversold = 30.0, overbought = 70.0 }}\n"
    );
    let s = parse(&ok).unwrap();
    assert_eq!(s.rule.kind(), "ensemble");

    let cases: Vec<(String, &str, &str)> = vec![
        // (rule text, expected key, a word of the problem)
        (
            ok.replace("threshold = 0.3", "threshold = 1.5"),
            "rule.threshold",
            "(0, 1]",
        ),
        (
            ok.replace("weight = 0.5", "weight = 0.0"),
            "rule.members[1].weight",
            "weight",
        ),
        (
            ok.replace(
                "oversold = 30.0, overbought = 70.0",
                "oversold = 80.0, overbought = 70.0",
            ),
            "rule.members[1].rule.oversold",
            "oversold",
        ),
        (
            ok.replace(
                "model = ",
                "rule = { kind = \"bollinger_breakout\", period = 20, k = 2.0 }\nmodel = ",
            ),
            "rule.members[0]",
            "exactly one",
        ),
        (
            ok.replace(&format!("{trend:?}"), "\"models/nope.toml\""),
            "rule.members[0].model",
            "nope.toml",
        ),
        (
            format!(
                "[rule]\nkind = \"model\"\nmodel = {trend:?}\nbuy_above = 0.3\nsell_below = 0.4\n"
            ),
            "rule.buy_above",
            "sell_below",
        ),
        (
            format!("[rule]\nkind = \"model\"\nmodle = {trend:?}\n"),
            "rule.modle",
            "unknown field",
        ),
    ];
    for (rule, key, word) in cases {
        let e = parse(&rule).unwrap_err();
        assert_eq!(e.file, "strategies/e.toml");
        assert_eq!(e.key, key, "{e}");
        assert!(e.problem.contains(word), "{e}");
        assert!(!e.fix.is_empty());
    }
}

/// Signals of a model strategy name the model and its version (the sha256 of
/// the `.onnx` file), so a downstream system can audit them.
#[test]
fn model_signals_carry_the_model_name_version_and_features() {
    use papertrader::domain::Origin;
    use papertrader::engine::{Engine, Output};
    use papertrader::wire::{self, InputKind};

    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.toml");
    let strat = root().join("strategies/model_trend.toml");
    std::fs::write(
        &app,
        format!("strategies = [{:?}]\n", strat.display().to_string()),
    )
    .unwrap();
    // Strategy files name models relative to the working directory (the crate root here).
    std::env::set_current_dir(root()).unwrap();
    let cfg = papertrader::config::load_with_env(Some(&app), &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = Engine::new(&cfg.engine_spec()).unwrap();
    let mut out = Vec::new();
    for (i, r) in stream().iter().enumerate() {
        let (kind, bytes) = match r {
            Record::Tick(t) => (InputKind::Prices, wire::encode_tick(t)),
            Record::Sentiment(s) => (InputKind::Sentiment, wire::encode_sentiment(s)),
        };
        let origin = Origin {
            topic: "in".into(),
            partition: 0,
            offset: i as i64,
        };
        engine.on_message(kind, &origin, None, &bytes, &mut out);
    }
    let want = format!(
        "{:x}",
        Sha256::digest(std::fs::read(root().join("models/trend_sentiment.onnx")).unwrap())
    );
    let signals: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Signal(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!signals.is_empty(), "the model never signalled");
    for s in &signals {
        let m = s.model.as_ref().expect("a model signal names its model");
        assert_eq!(m.name, "trend_sentiment");
        assert_eq!(m.version, want);
        assert!(s.reason.contains_key("model_output"), "{:?}", s.reason);
        let json: serde_json::Value =
            serde_json::from_slice(&Output::Signal((*s).clone()).to_json()).unwrap();
        assert_eq!(json["model"]["version"], want.as_str());
    }
}
