//! Operator actions on a running strategy: pause, resume, flatten and the
//! kill switch (paper mode's controls: the dashboard's buttons and its JSON
//! API, docs/dashboard.md).
//!
//! An action applies at the engine's event time (the latest admitted event).
//! Its orders have the ids `{strategy}:ctl{n}-{at}:{symbol}`, `n` being the
//! engine's count of actions so far and `at` the wall-clock milliseconds of
//! the request (an operator's action is not a function of the input: the two
//! keep ids unique also when a run without a checkpoint counts from 0 again),
//! and their outputs the origin `control-0-{n}`. What an action leaves
//! (paused, halted, the count) is in the engine's state, so a checkpoint keeps
//! it across a restart.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{halt, inst_counts, report, settle, Engine, LiveOrder, Slot};
use crate::domain::{Origin, Output, Side, Ts};
use crate::sim::{Order, SimEvent};

/// What an operator can do to a strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Signals are still published; no order follows them. Exits of open
    /// positions (stops, targets, time stops) keep working.
    Pause,
    /// Orders follow signals again.
    Resume,
    /// Cancel the open orders and close the position of one symbol, or of
    /// every symbol, with market orders. The strategy keeps trading.
    Flatten,
    /// The kill switch: cancel everything, close every position and halt the
    /// strategy for good (its later orders are rejected).
    Kill,
}

impl ControlAction {
    pub fn name(self) -> &'static str {
        match self {
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::Flatten => "flatten",
            ControlAction::Kill => "kill",
        }
    }
}

/// An action the engine cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no strategy {0:?}")]
    NoStrategy(String),
    #[error("strategy {strategy:?} does not trade {symbol:?}")]
    NoSymbol { strategy: String, symbol: String },
    #[error("strategy {0:?} is halted by the kill switch; a halt is not resumed")]
    Halted(String),
    #[error("only flatten takes a symbol")]
    SymbolNotAllowed,
}

/// A strategy's state as the controls leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrategyStatus {
    pub strategy: String,
    pub paused: bool,
    /// The kill switch fired (drawdown limit or operator).
    pub halted: bool,
}

impl Engine {
    /// Every strategy's pause and halt state, in configuration order.
    pub fn status(&self) -> Vec<StrategyStatus> {
        self.slots
            .iter()
            .map(|s| StrategyStatus {
                strategy: s.cfg.name.clone(),
                paused: s.paused,
                halted: s.killed,
            })
            .collect()
    }

    /// Check that `action` can be applied to `strategy` (and `symbol`).
    ///
    /// # Errors
    /// No such strategy or symbol, a resume of a halted strategy, or a symbol
    /// given to an action other than flatten.
    pub fn check_control(
        &self,
        action: ControlAction,
        strategy: &str,
        symbol: Option<&str>,
    ) -> Result<(), ControlError> {
        let slot = self
            .slots
            .iter()
            .find(|s| s.cfg.name == strategy)
            .ok_or_else(|| ControlError::NoStrategy(strategy.to_string()))?;
        match (action, symbol) {
            (ControlAction::Flatten, Some(sym)) if !slot.instances.contains_key(sym) => {
                Err(ControlError::NoSymbol {
                    strategy: strategy.to_string(),
                    symbol: sym.to_string(),
                })
            }
            (ControlAction::Flatten, _) => Ok(()),
            (_, Some(_)) => Err(ControlError::SymbolNotAllowed),
            (ControlAction::Resume, None) if slot.killed => {
                Err(ControlError::Halted(strategy.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Apply an operator's action to `strategy` at the engine's event time,
    /// appending the orders, fills and P&L it causes to `out`. `at` is the
    /// request's wall-clock time in ms (part of the ids). Returns the action's
    /// sequence number (`n` in its ids).
    ///
    /// # Errors
    /// See [`Engine::check_control`]; nothing is changed then.
    pub fn control(
        &mut self,
        action: ControlAction,
        strategy: &str,
        symbol: Option<&str>,
        at: i64,
        out: &mut Vec<Output>,
    ) -> Result<u64, ControlError> {
        self.check_control(action, strategy, symbol)?;
        let n = self.controls;
        self.controls += 1;
        let origin = Origin {
            topic: "control".into(),
            partition: 0,
            offset: n as i64,
        };
        let ts = self.last_ts;
        let latency = self.venue_latency;
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.cfg.name == strategy)
            .expect("checked");
        let prefix = format!("{strategy}:ctl{n}-{at}");
        let mut evs = Vec::new();
        let mut filled = BTreeSet::new();
        match action {
            ControlAction::Pause => slot.paused = true,
            ControlAction::Resume => slot.paused = false,
            ControlAction::Kill => {
                if !slot.killed {
                    tracing::warn!(strategy, "kill switch tripped by an operator");
                }
                halt(slot, ts, &prefix, &origin, &mut evs, &mut filled, out);
                slot.sim.advance(ts.saturating_add(latency), &mut evs);
                report(slot, &mut evs, &origin, &mut filled, out);
                settle(slot, &mut filled, ts, &origin, &mut evs, out);
            }
            ControlAction::Flatten => {
                flatten(slot, symbol, ts, latency, &prefix, &origin, &mut evs, out);
            }
        }
        Ok(n)
    }
}

/// Cancel the open orders of `symbol` (or of every symbol) and close what is
/// held with reduce-only market orders `{prefix}:{symbol}`; the venue runs
/// until they have arrived.
#[allow(clippy::too_many_arguments)]
fn flatten(
    slot: &mut Slot,
    symbol: Option<&str>,
    ts: Ts,
    latency: Ts,
    prefix: &str,
    origin: &Origin,
    evs: &mut Vec<SimEvent>,
    out: &mut Vec<Output>,
) {
    let mut filled = BTreeSet::new();
    slot.sim.cancel_all(ts, symbol, evs);
    report(slot, evs, origin, &mut filled, out);
    let open: Vec<(String, Decimal)> = slot
        .instances
        .keys()
        .filter(|s| symbol.is_none_or(|want| want == s.as_str()))
        .map(|s| (s.clone(), slot.sim.account().position(s)))
        .filter(|(_, q)| !q.is_zero())
        .collect();
    slot.working
        .retain(|s, _| symbol.is_some_and(|want| want != s.as_str()));
    for (sym, qty) in open {
        let side = if qty > Decimal::ZERO {
            Side::Sell
        } else {
            Side::Buy
        };
        let id = format!("{prefix}:{sym}");
        let order = Order {
            reduce_only: true,
            ..Order::market(&id, &sym, side, qty.abs())
        };
        slot.live.insert(id, LiveOrder::of(&order, String::new()));
        inst_counts(slot, &sym).orders += 1;
        slot.sim.submit(ts, order, evs);
    }
    slot.sim.advance(ts.saturating_add(latency), evs);
    report(slot, evs, origin, &mut filled, out);
    settle(slot, &mut filled, ts, origin, evs, out);
}
