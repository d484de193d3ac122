//! The instrument of one symbol on the simulated venue: tick and lot size, its
//! fees, and the model of the book synthesized around the last trade when no
//! depth arrives; and the conversions between prices and integer ticks.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::fee::{BpsFee, FeeModel, Liquidity};

/// Per-symbol instrument configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// Smallest price increment; every order price must be a multiple of it.
    pub tick_size: Decimal,
    /// Smallest quantity increment; every order quantity must be a multiple of it.
    pub lot_size: Decimal,
    /// Fee on passive (maker) fills, in basis points of the notional.
    #[serde(default)]
    pub maker_fee_bps: Decimal,
    /// Fee on aggressive (taker) fills, in basis points of the notional.
    #[serde(default)]
    pub taker_fee_bps: Decimal,
    /// Lowest fee charged per fill (applies when `fee_bps * notional` is smaller).
    #[serde(default)]
    pub min_fee: Decimal,
    /// The book synthesized around the last trade when no depth arrives.
    #[serde(default)]
    pub synth: SynthBook,
    /// How orders that take liquidity fill: `synth_book` (the book, observed
    /// or synthesized), `last_price` (at the last trade price) or
    /// `last_trade` (the last trade's price and size, then one tick worse).
    #[serde(default)]
    pub fill: FillModel,
    /// With `fill = "last_price"` or `"last_trade"`: buys fill this far above the last trade,
    /// sells this far below (`"1 tick"`, `"5 bps"`, rounded up to ticks).
    #[serde(default)]
    pub slippage: Option<Spread>,
    /// Own orders take at most this fraction of each trade's size (in
    /// (0, 1]; none: no cap): market orders, marketable and resting limits.
    #[serde(default)]
    pub volume_cap: Option<Decimal>,
    /// What a capped market order does with the rest: `work` (default: it
    /// takes again at the next trades) or `cancel`.
    #[serde(default)]
    pub volume_cap_rest: CapRest,
}

/// What a market order held back by `volume_cap` does with the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapRest {
    #[default]
    Work,
    Cancel,
}

/// How orders that take liquidity fill (`[venue.default] fill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillModel {
    /// Against the book: observed depth, or the book synthesized around the
    /// last trade (`synth`).
    #[default]
    SynthBook,
    /// At the last trade price (plus `slippage`), in any quantity: no spread,
    /// no depth, order-book messages ignored. backtesting.py fills this way.
    LastPrice,
    /// The last trade as a one-level book: its price (plus `slippage`) holds
    /// the trade's size, and what an order takes beyond that fills one tick
    /// worse. The level is rebuilt for every order (own fills do not use it
    /// up) and order-book messages are ignored. NautilusTrader's L1 book from
    /// trade ticks fills this way.
    LastTrade,
}

impl FillModel {
    /// The book is made from the last trade (`last_price`, `last_trade`),
    /// not from depth messages or the synthesized book.
    pub fn from_trades(self) -> bool {
        matches!(self, FillModel::LastPrice | FillModel::LastTrade)
    }
}

impl InstrumentConfig {
    /// A config with the given tick and lot sizes, no fees and the default synthesized book.
    pub fn new(tick_size: Decimal, lot_size: Decimal) -> Self {
        InstrumentConfig {
            tick_size,
            lot_size,
            maker_fee_bps: Decimal::ZERO,
            taker_fee_bps: Decimal::ZERO,
            min_fee: Decimal::ZERO,
            synth: SynthBook::default(),
            fill: FillModel::SynthBook,
            slippage: None,
            volume_cap: None,
            volume_cap_rest: CapRest::Work,
        }
    }

    /// The book's distance from the last trade to each side under
    /// `fill = "last_price"`, in ticks: the slippage, rounded up.
    pub fn slippage_ticks(&self, last: Decimal) -> i64 {
        match self.slippage {
            None => 0,
            Some(Spread::Ticks(t)) => t.max(0),
            Some(Spread::Bps(bps)) => (last * bps / Decimal::from(10_000) / self.tick_size)
                .ceil()
                .to_i64()
                .unwrap_or(i64::MAX / 4)
                .max(0),
        }
    }

    /// Check the values serde cannot: positive tick and lot sizes, fees and
    /// `min_fee` not negative, a synthesized book with `0 < decay <= 1`, a positive
    /// depth and spread.
    ///
    /// # Errors
    /// The first invalid field and why.
    pub fn validate(&self) -> Result<(), String> {
        let z = Decimal::ZERO;
        if self.tick_size <= z {
            return Err(format!("tick_size must be > 0, got {}", self.tick_size));
        }
        if self.lot_size <= z {
            return Err(format!("lot_size must be > 0, got {}", self.lot_size));
        }
        for (name, v) in [
            ("maker_fee_bps", self.maker_fee_bps),
            ("taker_fee_bps", self.taker_fee_bps),
            ("min_fee", self.min_fee),
        ] {
            if v < z {
                return Err(format!("{name} must be >= 0, got {v}"));
            }
        }
        if let Some(c) = self.volume_cap {
            if c <= z || c > Decimal::ONE {
                return Err(format!("volume_cap must be in (0, 1], got {c}"));
            }
        }
        let s = &self.synth;
        if s.decay <= z || s.decay > Decimal::ONE {
            return Err(format!("synth.decay must be in (0, 1], got {}", s.decay));
        }
        if s.depth <= z {
            return Err(format!("synth.depth must be > 0, got {}", s.depth));
        }
        let nonzero = match self.slippage {
            Some(Spread::Ticks(t)) => t != 0,
            Some(Spread::Bps(b)) => !b.is_zero(),
            None => false,
        };
        match (self.fill, self.slippage) {
            (FillModel::SynthBook, Some(_)) if nonzero => {
                return Err(
                    "slippage applies to fill = \"last_price\" or \"last_trade\"; with the synthesized book its spread is the slippage"
                        .to_string(),
                )
            }
            (_, Some(Spread::Ticks(t))) if t < 0 => {
                return Err(format!("slippage ticks must be >= 0, got {t}"))
            }
            (_, Some(Spread::Bps(b))) if b < z => {
                return Err(format!("slippage bps must be >= 0, got {b}"))
            }
            _ => {}
        }
        match s.spread {
            Spread::Ticks(t) if t < 1 => Err(format!("synth.spread ticks must be >= 1, got {t}")),
            Spread::Bps(b) if b <= z => Err(format!("synth.spread bps must be > 0, got {b}")),
            _ => Ok(()),
        }
    }

    /// The instrument's fee model: its maker and taker basis points and minimum fee.
    pub fn fee_model(&self) -> BpsFee {
        BpsFee {
            maker_bps: self.maker_fee_bps,
            taker_bps: self.taker_fee_bps,
            min_fee: self.min_fee,
        }
    }

    /// Fee of one fill under [`InstrumentConfig::fee_model`].
    pub fn fee(&self, qty: Decimal, price: Decimal, liquidity: Liquidity) -> Decimal {
        self.fee_model().fee(qty, price, liquidity)
    }
}

/// Spread of the synthesized book, written `"2 ticks"` or `"3 bps"` (a string,
/// so that a config layer replaces the default's value instead of merging into it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// A fixed number of ticks (at least 1).
    Ticks(i64),
    /// Basis points of the last trade price, rounded up to whole ticks (at least 1).
    Bps(Decimal),
}

impl std::str::FromStr for Spread {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| format!("spread {s:?} has no unit: write \"2 ticks\" or \"3 bps\""))?;
        let (num, unit) = t.split_at(split);
        let num = num.trim();
        match unit {
            "tick" | "ticks" => num
                .parse()
                .map(Spread::Ticks)
                .map_err(|_| format!("spread {s:?}: ticks must be a whole number")),
            "bps" | "bp" => num
                .parse()
                .map(Spread::Bps)
                .map_err(|_| format!("spread {s:?}: bps must be a number")),
            _ => Err(format!(
                "spread {s:?} has unknown unit {unit:?}: write \"2 ticks\" or \"3 bps\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Spread {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The model of a book synthesized around the last trade (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthBook {
    /// Synthesize a book from trades while no depth message has arrived for the symbol.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Distance between best bid and best ask.
    #[serde(default = "default_spread")]
    pub spread: Spread,
    /// Levels on each side.
    #[serde(default = "default_levels")]
    pub levels: u32,
    /// Size of the best level on each side.
    #[serde(default = "default_depth")]
    pub depth: Decimal,
    /// Ratio of each level's size to the previous one's (0 < decay <= 1).
    #[serde(default = "default_decay")]
    pub decay: Decimal,
}

fn default_true() -> bool {
    true
}
fn default_spread() -> Spread {
    Spread::Ticks(2)
}
fn default_levels() -> u32 {
    5
}
fn default_depth() -> Decimal {
    Decimal::from(100)
}
fn default_decay() -> Decimal {
    Decimal::new(8, 1)
}

impl Default for SynthBook {
    fn default() -> Self {
        SynthBook {
            enabled: true,
            spread: default_spread(),
            levels: default_levels(),
            depth: default_depth(),
            decay: default_decay(),
        }
    }
}

/// Which way to snap a price that is off the tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snap {
    Down,
    Up,
}

/// Price -> ticks, or `None` when the price is not a multiple of `tick_size`.
pub fn to_ticks_exact(price: Decimal, tick_size: Decimal) -> Option<i64> {
    let q = price / tick_size;
    if q.fract().is_zero() {
        q.to_i64()
    } else {
        None
    }
}

/// Price -> ticks, snapping off-grid prices down or up.
pub fn to_ticks(price: Decimal, tick_size: Decimal, snap: Snap) -> i64 {
    let q = price / tick_size;
    let q = match snap {
        Snap::Down => q.floor(),
        Snap::Up => q.ceil(),
    };
    q.to_i64().unwrap_or(if q.is_sign_negative() {
        i64::MIN
    } else {
        i64::MAX
    })
}
