//! Crash safety through a real broker: paper mode killed with SIGKILL at
//! random points and restarted leaves on its output topics exactly the orders
//! and fills of a run that never stopped: none missing, none doubled. The
//! topics are read raw, with no deduplication. (A broker outage under a
//! running paper mode: `tests/it/broker_restart.rs`.)

use std::time::Duration;

use crate::common::stream::{
    app_config, compare, create_outputs, feed, reference, spawn, wait_for_change, wait_for_line,
    RunOptions,
};
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_doubles_nothing() {
    let broker = crate::common::broker(3).await;
    let bs = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = feed(&bs).await;
    reference(dir.path(), &bs, inputs).await;

    create_outputs(&bs, "crash").await;
    let config = app_config(dir.path(), &bs, "crash", &RunOptions::default());
    let ckpt = dir.path().join("crash.ckpt");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(11),
    );
    let mut kills = Vec::new();
    let mut logs = Vec::new();
    for k in 0..6 {
        // A killed member stays in the group until its session times out
        // (6 s here); the broker evicts it when the next member joins after that.
        if k > 0 {
            std::thread::sleep(Duration::from_millis(6500));
        }
        let log = dir.path().join(format!("run{k}.log"));
        let mut child = spawn(&config, &log, 30, &[]);
        assert!(
            wait_for_line(&log, "input partitions assigned", Duration::from_secs(60)),
            "run {k} never got its partitions:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Let it write one or two checkpoints, then kill it somewhere between two.
        let writes = rng.gen_range(1..=2);
        for _ in 0..writes {
            assert!(
                wait_for_change(&ckpt, Duration::from_secs(60)),
                "run {k} wrote no checkpoint:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let delay = Duration::from_millis(rng.gen_range(0..300));
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        assert!(
            !finished,
            "run {k} finished before its kill; feed more input"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let size = std::fs::metadata(&ckpt).map(|m| m.len()).unwrap_or(0);
        kills.push((delay, size));
        logs.push(log);
    }
    eprintln!("killed after (delay, checkpoint bytes): {kills:?}");

    // The last run goes to the end of the input.
    std::thread::sleep(Duration::from_millis(6500));
    let log = dir.path().join("final.log");
    let mut child = spawn(&config, &log, 4, &[]);
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the final run failed:\n{text}");
    logs.push(log);

    let restored = logs
        .iter()
        .filter(|l| {
            std::fs::read_to_string(l)
                .unwrap()
                .contains("continuing from the checkpoint")
        })
        .count();
    if restored < 5 {
        for l in &logs {
            eprintln!(
                "==== {}\n{}",
                l.display(),
                std::fs::read_to_string(l).unwrap()
            );
        }
    }
    assert!(
        restored >= 5,
        "only {restored} runs continued from a checkpoint"
    );
    // Runs that found outputs of the killed run past their checkpoint.
    let skipped = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .filter(|t| {
            t.split("already_published=")
                .skip(1)
                .any(|rest| !rest.starts_with('0'))
        })
        .count();
    eprintln!(
        "{restored} runs continued from a checkpoint; {skipped} skipped outputs already published"
    );
    assert!(
        skipped >= 1,
        "no restart had outputs to skip: the kills all fell on checkpoints"
    );
    compare(&bs, "crash");
}
