//! The one step from an input message to its outputs, in every mode: paper
//! mode (`paper::Session::process`), backtests, sweeps and `backtest --publish`
//! (`backtest::drive`) all call [`step`]. Only the clock and the source differ.
//!
//! An input is decoded (unless the caller has decoded it already, as the
//! event-time merge does), goes through the [`Engine`] (admission, strategies,
//! the venue, P&L), and then, when the engine admitted it, through the alert
//! rules ([`Alerts`]); a P&L snapshot the engine emitted feeds the drawdown
//! rules. Alerts are outputs like the others ([`Output::Alert`]), after the
//! engine's outputs of the same input.

use std::time::Duration;

use crate::alerts::Alerts;
use crate::domain::{AlertMsg, MarketEvent, Origin, Output};
use crate::engine::Engine;
use crate::wire::{self, InputKind, Rejection};

/// One input message.
pub struct Input<'a> {
    pub kind: InputKind,
    pub origin: &'a Origin,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The payload decoded already, when the caller did (saves decoding twice).
    pub decoded: Option<Result<MarketEvent, Rejection>>,
}

/// Turn `input` into its outputs, appended to `out`. `alerts`: the run's alert
/// rules (none when it has none); `now`: wall time since a fixed instant, seen
/// only by `stale_feed` rules (a backtest passes the event time).
pub fn step(
    engine: &mut Engine,
    alerts: Option<&mut Alerts>,
    input: Input<'_>,
    now: Duration,
    out: &mut Vec<Output>,
) {
    let Input {
        kind,
        origin,
        key,
        payload,
        decoded,
    } = input;
    let decoded = decoded.unwrap_or_else(|| wire::decode(kind, payload));
    let alerts = alerts.filter(|a| !a.is_empty());
    match (decoded, alerts) {
        (Ok(ev), Some(alerts)) => {
            let before = out.len();
            let copy = ev.clone();
            engine.on_event(kind, origin, key, payload, ev, out);
            let mut fired: Vec<AlertMsg> = Vec::new();
            let refused = out[before..]
                .iter()
                .any(|o| matches!(o, Output::DeadLetter(_)));
            if !refused {
                alerts.on_event(&copy, origin, now, &mut fired);
            }
            for o in &out[before..] {
                if let Output::Pnl(p) = o {
                    alerts.on_pnl(p, &mut fired);
                }
            }
            out.extend(fired.into_iter().map(Output::Alert));
        }
        (Ok(ev), None) => engine.on_event(kind, origin, key, payload, ev, out),
        (Err(_), _) => engine.on_message(kind, origin, key, payload, out),
    }
}
