//! The end-of-run summary: per strategy and symbol, and per account.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::account::Account;
use crate::config::StrategyConfig;

/// Counts per strategy and symbol.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SymbolCounts {
    pub ticks: u64,
    pub sentiment: u64,
    pub signals: u64,
    pub orders: u64,
    pub fills: u64,
    pub rejected: u64,
}

/// Counts of what the engine consumed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputCounts {
    /// Valid messages processed, by input kind.
    pub processed: BTreeMap<String, u64>,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// CSV rows a backtest over files could not read (each logged and skipped;
    /// not messages, so neither processed nor dead-lettered). Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl InputCounts {
    pub fn total_processed(&self) -> u64 {
        self.processed.values().sum()
    }
    pub fn total_dead(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub inputs: InputCounts,
    pub strategies: Vec<StrategySummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategySummary {
    pub name: String,
    pub kind: String,
    pub starting_cash: Decimal,
    pub cash: Decimal,
    pub equity: Decimal,
    pub realized: Decimal,
    pub unrealized: Decimal,
    pub fees: Decimal,
    /// (equity - starting cash) / starting cash.
    pub total_return: Decimal,
    pub max_drawdown: Decimal,
    pub symbols: BTreeMap<String, SymbolSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolSummary {
    #[serde(flatten)]
    pub counts: SymbolCounts,
    pub position: Decimal,
    pub avg_cost: Decimal,
    pub last_price: Decimal,
    pub realized: Decimal,
    pub unrealized: Decimal,
    pub fees: Decimal,
}

impl Summary {
    /// The summary of a run with one engine per input partition
    /// (`engine.shards = "partition"`): inputs summed, each shard's strategies
    /// listed as `NAME@pP` with the symbols that shard traded.
    pub fn of_shards(parts: Vec<(i32, Summary)>) -> Summary {
        let mut inputs = InputCounts::default();
        let mut strategies = Vec::new();
        for (p, s) in parts {
            for (k, v) in s.inputs.processed {
                *inputs.processed.entry(k).or_default() += v;
            }
            for (k, v) in s.inputs.dead_letters {
                *inputs.dead_letters.entry(k).or_default() += v;
            }
            for mut st in s.strategies {
                st.name = format!("{}@p{p}", st.name);
                st.symbols
                    .retain(|_, c| c.counts.ticks > 0 || c.counts.sentiment > 0);
                strategies.push(st);
            }
        }
        Summary { inputs, strategies }
    }

    pub fn new<'a, I, S>(strategies: I, inputs: &InputCounts) -> Self
    where
        I: IntoIterator<Item = (&'a StrategyConfig, &'a Account, S)>,
        S: IntoIterator<Item = (&'a String, &'a SymbolCounts)>,
    {
        let strategies = strategies
            .into_iter()
            .map(|(cfg, a, symbols)| StrategySummary {
                name: cfg.name.clone(),
                kind: cfg.rule.kind().to_string(),
                starting_cash: a.starting_cash,
                cash: a.cash.round_dp(8),
                equity: a.equity().round_dp(8),
                realized: a.realized().round_dp(8),
                unrealized: a.unrealized().round_dp(8),
                fees: a.fees().round_dp(8),
                total_return: ((a.equity() - a.starting_cash) / a.starting_cash).round_dp(8),
                max_drawdown: a.max_drawdown.round_dp(8),
                symbols: symbols
                    .into_iter()
                    .map(|(sym, c)| {
                        let p = a.positions.get(sym).cloned().unwrap_or_default();
                        (
                            sym.clone(),
                            SymbolSummary {
                                counts: c.clone(),
                                position: p.qty,
                                avg_cost: p.avg_cost.round_dp(8),
                                last_price: p.last_price,
                                realized: p.realized.round_dp(8),
                                unrealized: p.unrealized().round_dp(8),
                                fees: p.fees.round_dp(8),
                            },
                        )
                    })
                    .collect(),
            })
            .collect();
        Summary {
            inputs: inputs.clone(),
            strategies,
        }
    }

    pub fn total_fills(&self) -> u64 {
        self.strategies
            .iter()
            .flat_map(|s| s.symbols.values())
            .map(|s| s.counts.fills)
            .sum()
    }

    /// A readable table for the terminal.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = write!(
            s,
            "inputs: {} processed {:?}, {} dead-lettered {:?}",
            self.inputs.total_processed(),
            self.inputs.processed,
            self.inputs.total_dead(),
            self.inputs.dead_letters
        );
        if self.inputs.rows_skipped > 0 {
            let _ = write!(
                s,
                ", {} CSV rows skipped (unreadable)",
                self.inputs.rows_skipped
            );
        }
        s.push('\n');
        for st in &self.strategies {
            let _ = writeln!(
                s,
                "\n{} ({}): equity {} (return {}%), realized {}, unrealized {}, fees {}, max drawdown (marked every tick) {}%",
                st.name,
                st.kind,
                st.equity.round_dp(2),
                (st.total_return * Decimal::ONE_HUNDRED).round_dp(2),
                st.realized.round_dp(2),
                st.unrealized.round_dp(2),
                st.fees.round_dp(2),
                (st.max_drawdown * Decimal::ONE_HUNDRED).round_dp(2),
            );
            let _ = writeln!(
                s,
                "  {:<8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>10} {:>12} {:>12} {:>10}",
                "symbol",
                "ticks",
                "news",
                "signals",
                "orders",
                "fills",
                "position",
                "realized",
                "unrealized",
                "fees"
            );
            for (sym, x) in &st.symbols {
                let _ = writeln!(
                    s,
                    "  {:<8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>10} {:>12} {:>12} {:>10}",
                    sym,
                    x.counts.ticks,
                    x.counts.sentiment,
                    x.counts.signals,
                    x.counts.orders,
                    x.counts.fills,
                    x.position.normalize(),
                    x.realized.round_dp(2),
                    x.unrealized.round_dp(2),
                    x.fees.round_dp(2)
                );
            }
        }
        s
    }
}
