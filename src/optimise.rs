//! Search beyond grids: random search and the tree-structured Parzen
//! estimator (TPE) over the values of a sweep's axes, with a run budget, a
//! seed and early stopping.
//!
//! The space is the grid itself (`--grid` axes, docs/sweeps.md): a point is
//! one value index per axis, numbered as [`crate::sweep::expand`] numbers sets
//! (the first axis varies slowest), so a searched set has the same number and
//! the same row in `sweep.csv` as in the full grid. No point is proposed twice.
//!
//! # TPE (Bergstra, Bardenet, Bengio, Kégl: "Algorithms for Hyper-Parameter
//! Optimization", NIPS 2011)
//!
//! After `startup` random points, each proposal:
//! 1. sorts the observations best first and splits them at the `gamma`
//!    quantile: the best `ceil(gamma * n)` (at most [`MAX_GOOD`]) are "good",
//!    the rest "bad";
//! 2. builds, per axis, two Parzen estimators over that axis's values: `l(x)`
//!    from the good observations and `g(x)` from the bad ones. On an axis of
//!    numbers each observation adds a Gaussian kernel over the value indices
//!    (bandwidth shrinking with the number of observations, at least one
//!    step); on an axis of words (`sma,ema`) each adds weight to its own value
//!    only. Both add a uniform prior of weight one, so no value has density 0;
//! 3. draws [`CANDIDATES`] points from `l` (axes independently) and keeps the
//!    unseen one with the largest `l(x) / g(x)` (the sum over axes of
//!    `ln l - ln g`), which maximises the expected improvement under TPE's
//!    model. When every candidate was seen, an unseen point is drawn at random.
//!
//! Proposals come in batches (`--batch`): a batch is proposed from the
//! observations of the batches before it, all of them evaluated, and its
//! results are taken in proposal order. So the same seed and batch size give
//! the same runs, locally or over any number of workers.
//!
//! No Rust crate was used: the TPE crates on crates.io (`tpe` 0.2, `parzen`,
//! `optimizer`, `hyperopt` 0.0.x) are young or unmaintained, work per
//! parameter with ask/tell, and cannot exclude points already run; over a
//! finite grid the estimator is a few dozen lines.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backtest::Event;
use crate::config::Loaded;
use crate::sweep::{Metric, Outcome, ParamSet, Row, Sweep};

/// The search `sweep --search` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchKind {
    /// Every set of the grid.
    Grid,
    /// Sets drawn uniformly at random, without repeats.
    Random,
    /// Tree-structured Parzen estimator (model-based).
    Tpe,
}

/// The fraction of the observations TPE calls good.
pub const GAMMA: f64 = 0.25;
/// The most observations TPE calls good.
pub const MAX_GOOD: usize = 25;
/// Points drawn from `l(x)` per TPE proposal.
pub const CANDIDATES: usize = 24;
/// Random points before TPE models (fewer when the budget is small).
pub const STARTUP: usize = 10;

/// The grid as a space: the number of values of each axis and whether they
/// are ordered (numbers) or categories.
#[derive(Debug, Clone)]
pub struct Space {
    pub sizes: Vec<usize>,
    pub ordered: Vec<bool>,
}

impl Space {
    /// The space of `axes`: an axis whose values are all numbers is ordered.
    pub fn of(axes: &[crate::sweep::Axis]) -> Space {
        Space {
            sizes: axes.iter().map(|a| a.values.len()).collect(),
            ordered: axes
                .iter()
                .map(|a| {
                    a.values
                        .iter()
                        .all(|v| matches!(v.toml, toml::Value::Integer(_) | toml::Value::Float(_)))
                })
                .collect(),
        }
    }

    /// How many points (sets) the space has.
    pub fn len(&self) -> usize {
        self.sizes.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set number of a point (the first axis varies slowest).
    pub fn index(&self, point: &[usize]) -> usize {
        point
            .iter()
            .zip(&self.sizes)
            .fold(0, |acc, (&i, &n)| acc * n + i)
    }

    /// The point of a set number.
    pub fn point(&self, mut index: usize) -> Vec<usize> {
        let mut p = vec![0; self.sizes.len()];
        for (slot, &n) in p.iter_mut().zip(&self.sizes).rev() {
            *slot = index % n.max(1);
            index /= n.max(1);
        }
        p
    }
}

/// The options of a search.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions {
    pub kind: SearchKind,
    /// Most sets run (refused sets do not count); default: the whole grid.
    pub budget: Option<usize>,
    pub seed: u64,
    /// Stop after this many results in a row without a better one.
    pub patience: Option<usize>,
    /// Sets proposed at once.
    pub batch: usize,
}

/// A search in progress: proposes batches of set numbers and takes their
/// scores (higher is better; `None` for a set that failed or whose metric is
/// undefined).
pub struct Search {
    opts: SearchOptions,
    space: Space,
    rng: ChaCha8Rng,
    /// Every set proposed (run or refused).
    seen: BTreeSet<usize>,
    /// (point, score) of every set that ran, in the order taken.
    observed: Vec<(Vec<usize>, f64)>,
    /// Sets that count against the budget.
    runs: usize,
    best: Option<f64>,
    since_best: usize,
    stopped: Option<String>,
}

impl Search {
    pub fn new(space: Space, opts: SearchOptions) -> Search {
        Search {
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            opts,
            space,
            seen: BTreeSet::new(),
            observed: Vec::new(),
            runs: 0,
            best: None,
            since_best: 0,
            stopped: None,
        }
    }

    /// The most sets this search runs.
    pub fn budget(&self) -> usize {
        self.opts.budget.unwrap_or(usize::MAX).min(self.space.len())
    }

    /// Why the search stopped before its budget (early stopping), if it did.
    pub fn stopped_early(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// The next batch of set numbers; empty when the search is over (budget
    /// spent, early stop, or no unseen set left).
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.stopped.is_some() {
            return Vec::new();
        }
        let room = self.budget().saturating_sub(self.runs);
        let n = self.opts.batch.max(1).min(room);
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(i) = self.propose() else { break };
            self.seen.insert(i);
            batch.push(i);
        }
        self.runs += batch.len();
        batch
    }

    /// A proposed set that was refused before running (the strategy checks):
    /// it does not count against the budget and is not proposed again.
    pub fn refused(&mut self, _index: usize) {
        self.runs = self.runs.saturating_sub(1);
    }

    /// The score of a proposed set that ran; take a batch's results in the
    /// order the batch proposed them.
    pub fn observe(&mut self, index: usize, score: Option<f64>) {
        let s = score.unwrap_or(f64::NEG_INFINITY);
        self.observed.push((self.space.point(index), s));
        if score.is_some() && self.best.is_none_or(|b| s > b) {
            self.best = Some(s);
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        if let Some(k) = self.opts.patience {
            if self.since_best >= k && self.stopped.is_none() {
                self.stopped = Some(format!("{k} runs in a row without a better result"));
            }
        }
    }

    fn propose(&mut self) -> Option<usize> {
        if self.seen.len() >= self.space.len() {
            return None;
        }
        let startup = STARTUP.min(self.budget() / 3).max(1);
        if self.opts.kind == SearchKind::Tpe && self.observed.len() >= startup {
            if let Some(i) = self.tpe() {
                return Some(i);
            }
        }
        Some(self.random_unseen())
    }

    /// A uniformly drawn set not proposed before.
    fn random_unseen(&mut self) -> usize {
        let total = self.space.len();
        for _ in 0..64 {
            let i = self.rng.gen_range(0..total);
            if !self.seen.contains(&i) {
                return i;
            }
        }
        // A crowded space: draw among the unseen ones.
        let left = total - self.seen.len();
        let k = self.rng.gen_range(0..left);
        (0..total)
            .filter(|i| !self.seen.contains(i))
            .nth(k)
            .expect("an unseen set is left")
    }

    /// The unseen candidate drawn from `l` with the largest `l / g`.
    fn tpe(&mut self) -> Option<usize> {
        let mut ranked: Vec<&(Vec<usize>, f64)> = self.observed.iter().collect();
        // Best first; ties keep the order taken (a stable sort).
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let n_good = ((GAMMA * ranked.len() as f64).ceil() as usize).clamp(1, MAX_GOOD);
        let (good, bad) = ranked.split_at(n_good.min(ranked.len()));
        let l: Vec<Vec<f64>> = (0..self.space.sizes.len())
            .map(|d| self.parzen(d, good.iter().map(|o| o.0[d])))
            .collect();
        let g: Vec<Vec<f64>> = (0..self.space.sizes.len())
            .map(|d| self.parzen(d, bad.iter().map(|o| o.0[d])))
            .collect();
        let mut best: Option<(f64, usize)> = None;
        for _ in 0..CANDIDATES {
            let point: Vec<usize> = l.iter().map(|p| draw(&mut self.rng, p)).collect();
            let i = self.space.index(&point);
            if self.seen.contains(&i) {
                continue;
            }
            let score: f64 = point
                .iter()
                .enumerate()
                .map(|(d, &k)| l[d][k].ln() - g[d][k].ln())
                .sum();
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The Parzen estimator of axis `d` from the value indices `xs`: a
    /// probability per value (see the module docs).
    fn parzen(&self, d: usize, xs: impl Iterator<Item = usize>) -> Vec<f64> {
        let k = self.space.sizes[d];
        let xs: Vec<usize> = xs.collect();
        let mut w = vec![1.0 / k as f64; k];
        if self.space.ordered[d] && k > 1 {
            let n = xs.len().max(1) as f64;
            let bw = (k as f64 * n.powf(-0.2) / 4.0).max(1.0);
            for &x in &xs {
                let kernel: Vec<f64> = (0..k)
                    .map(|j| (-0.5 * ((j as f64 - x as f64) / bw).powi(2)).exp())
                    .collect();
                let sum: f64 = kernel.iter().sum();
                for (wj, kj) in w.iter_mut().zip(kernel) {
                    *wj += kj / sum;
                }
            }
        } else {
            for &x in &xs {
                w[x] += 1.0;
            }
        }
        let total: f64 = w.iter().sum();
        w.iter().map(|v| v / total).collect()
    }
}

/// The next batch of `search` to run, each set with its configuration;
/// proposed sets the strategy checks refuse go to `skipped` and are replaced.
/// `None` when the search is over.
pub fn next_work(
    search: &mut Search,
    sweep: &Sweep,
    skipped: &mut Vec<(ParamSet, String)>,
) -> Option<Vec<(ParamSet, Loaded)>> {
    loop {
        let batch = search.next_batch();
        if batch.is_empty() {
            return None;
        }
        let mut work = Vec::new();
        for i in batch {
            let set = ParamSet::at(&sweep.axes, i).expect("a search stays inside its grid");
            match sweep.config(&set) {
                Ok(cfg) => work.push((set, cfg)),
                Err(why) => {
                    search.refused(i);
                    skipped.push((set, why));
                }
            }
        }
        if !work.is_empty() {
            return Some(work);
        }
    }
}

/// Give `search` the results of a batch, in the batch's order.
pub fn observe(search: &mut Search, metric: Metric, done: &[Result<Row, (ParamSet, String)>]) {
    for r in done {
        match r {
            Ok(row) => search.observe(row.set.index, metric.score(row)),
            Err((set, _)) => search.observe(set.index, None),
        }
    }
}

/// A random or TPE search over `events` on `jobs` threads: the ranked rows of
/// the sets it ran (set numbers as in the full grid), and why it stopped
/// early, if it did.
pub fn run_local(
    sweep: &Sweep,
    events: &[Event],
    metric: Metric,
    jobs: usize,
    opts: SearchOptions,
) -> (Outcome, Option<String>) {
    let mut search = Search::new(Space::of(&sweep.axes), opts);
    let bar = crate::backtest::sets_bar(search.budget());
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    while let Some(work) = next_work(&mut search, sweep, &mut skipped) {
        let done = crate::sweep::run_sets(&work, events, jobs, &bar);
        observe(&mut search, metric, &done);
        rows.extend(done);
    }
    bar.finish_and_clear();
    let stopped = search.stopped_early().map(String::from);
    (crate::sweep::outcome(sweep, metric, rows, skipped), stopped)
}

/// A value index drawn with probabilities `p`.
fn draw(rng: &mut ChaCha8Rng, p: &[f64]) -> usize {
    let u: f64 = rng.gen();
    let mut acc = 0.0;
    for (i, pi) in p.iter().enumerate() {
        acc += pi;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space {
            sizes: vec![15, 10, 2],
            ordered: vec![true, true, false],
        }
    }

    /// A smooth objective with its peak at (11, 3, 1).
    fn f(p: &[usize]) -> f64 {
        -((p[0] as f64 - 11.0).powi(2) + (p[1] as f64 - 3.0).powi(2)) + p[2] as f64
    }

    fn run(kind: SearchKind, seed: u64) -> Vec<usize> {
        let sp = space();
        let mut s = Search::new(
            sp.clone(),
            SearchOptions {
                kind,
                budget: Some(30),
                seed,
                patience: None,
                batch: 4,
            },
        );
        let mut all = Vec::new();
        loop {
            let b = s.next_batch();
            if b.is_empty() {
                break;
            }
            for &i in &b {
                s.observe(i, Some(f(&sp.point(i))));
            }
            all.extend(b);
        }
        all
    }

    #[test]
    fn points_and_indices_follow_the_grid_order() {
        let sp = space();
        assert_eq!(sp.len(), 300);
        assert_eq!(sp.point(0), [0, 0, 0]);
        assert_eq!(sp.point(1), [0, 0, 1]);
        assert_eq!(sp.point(2), [0, 1, 0]);
        for i in [0, 7, 123, 299] {
            assert_eq!(sp.index(&sp.point(i)), i);
        }
    }

    #[test]
    fn searches_stay_in_budget_repeat_nothing_and_are_reproducible() {
        for kind in [SearchKind::Random, SearchKind::Tpe] {
            let a = run(kind, 7);
            assert_eq!(a.len(), 30);
            assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 30, "{kind:?}");
            assert_eq!(a, run(kind, 7), "{kind:?}: same seed, same runs");
            assert_ne!(a, run(kind, 8), "{kind:?}: another seed, other runs");
        }
    }

    #[test]
    fn tpe_beats_random_on_a_smooth_objective() {
        let best = |v: &[usize]| {
            v.iter()
                .map(|&i| f(&space().point(i)))
                .fold(f64::MIN, f64::max)
        };
        let (mut tpe, mut rnd) = (0.0, 0.0);
        for seed in 0..10 {
            tpe += best(&run(SearchKind::Tpe, seed));
            rnd += best(&run(SearchKind::Random, seed));
        }
        assert!(tpe > rnd, "tpe {tpe} random {rnd}");
    }

    #[test]
    fn patience_stops_early_and_refused_sets_do_not_count() {
        let mut s = Search::new(
            space(),
            SearchOptions {
                kind: SearchKind::Random,
                budget: Some(20),
                seed: 1,
                patience: Some(3),
                batch: 2,
            },
        );
        let b = s.next_batch();
        s.refused(b[0]);
        s.observe(b[1], Some(1.0));
        let mut runs = 1;
        loop {
            let b = s.next_batch();
            if b.is_empty() {
                break;
            }
            for i in b {
                s.observe(i, Some(0.0));
                runs += 1;
            }
        }
        assert_eq!(
            runs, 5,
            "one best, then three without improvement (batches of 2)"
        );
        assert!(s.stopped_early().is_some());
    }
}
