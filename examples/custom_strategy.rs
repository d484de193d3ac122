//! A strategy written in Rust, run through papertrader's own command line.
//!
//! `Donchian` buys when the price rises above the highest of the previous `n`
//! prices and sells when it falls below their lowest. `main` registers it as
//! the strategy kind `donchian` and hands over to papertrader's CLI, so every
//! command works with it: paper mode, backtests, sweeps (over its params).
//!
//! ```sh
//! cargo run --release --example custom_strategy -- --config APP.toml backtest --input data/synthetic_ticks.csv
//! ```
//! with a strategy file whose rule is
//! ```toml
//! [rule]
//! kind = "custom"
//! name = "donchian"
//! [rule.params]
//! n = 50
//! ```

use std::collections::VecDeque;

use papertrader::domain::{Side, Tick};
use papertrader::strategy::{self, Decision, StateValue, Strategy};

struct Donchian {
    n: usize,
    /// The last `n` prices, oldest first.
    window: VecDeque<f64>,
}

impl Donchian {
    /// The factory papertrader calls with `[rule.params]`, once per symbol.
    fn from_params(params: &toml::Table) -> Result<Box<dyn Strategy>, String> {
        let n = match params.get("n") {
            Some(toml::Value::Integer(n)) if *n >= 2 => *n as usize,
            Some(v) => return Err(format!("n must be a whole number of at least 2, not {v}")),
            None => {
                return Err("missing n: the number of prices in the channel, e.g. n = 50".into())
            }
        };
        if let Some(k) = params.keys().find(|k| *k != "n") {
            return Err(format!("unknown parameter {k}: donchian takes only n"));
        }
        Ok(Box::new(Donchian {
            n,
            window: VecDeque::with_capacity(n + 1),
        }))
    }
}

impl Strategy for Donchian {
    fn on_tick(&mut self, _tick: &Tick, price: f64) -> Option<Decision> {
        let full = self.window.len() == self.n;
        let (hi, lo) = self
            .window
            .iter()
            .fold((f64::MIN, f64::MAX), |(h, l), &x| (h.max(x), l.min(x)));
        self.window.push_back(price);
        if self.window.len() > self.n {
            self.window.pop_front();
        }
        if !full {
            return None;
        }
        let reason = [("upper", hi), ("lower", lo), ("price", price)];
        if price > hi {
            Some(Decision::new(Side::Buy, 1.0, &reason))
        } else if price < lo {
            Some(Decision::new(Side::Sell, -1.0, &reason))
        } else {
            None
        }
    }

    fn save(&self) -> StateValue {
        StateValue::serialized(&self.window).expect("prices serialize")
    }

    fn restore(&mut self, state: StateValue) -> Result<(), String> {
        self.window = state.deserialized().map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn main() {
    strategy::register("donchian", Donchian::from_params);
    papertrader::cli::main();
}
