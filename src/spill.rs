//! A list that keeps its last few thousand items in memory and the rest in
//! an unnamed temporary file: a long backtest's fills and round trips, which
//! grow with the run, are held this way so that its memory does not
//! (docs/PERFORMANCE.md, target 2). Items go in in order and are read back
//! in order, as many times as the report needs, each read a pass over the
//! file.
//!
//! The file is written in a compact binary form of exact values
//! ([`Record`]): decimals as their 16 bytes (`Decimal::serialize`), strings
//! with their length. It is unlinked when made (`tempfile::tempfile`), so it
//! disappears with the process. If the file cannot be made or written, the
//! items stay in memory and a warning says why.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

use rust_decimal::Decimal;

use crate::domain::{FillMsg, Liquidity, Side, Ts};

/// Items held in memory before a batch is written to the file.
const BATCH: usize = 4096;

/// Values that a [`Spill`] can write and read back exactly.
pub trait Record: Sized {
    fn put(&self, out: &mut Vec<u8>);
    /// The value [`Record::put`] wrote at the start of `b`, advancing `b`.
    fn get(b: &mut &[u8]) -> Option<Self>;
}

/// An append-only list whose older items live in a temporary file.
pub struct Spill<T> {
    mem: Vec<T>,
    file: Option<File>,
    /// Items and bytes in the file.
    on_disk: usize,
    disk_bytes: u64,
    /// The file failed once: everything stays in memory from then on.
    broken: bool,
    buf: Vec<u8>,
}

impl<T> Default for Spill<T> {
    fn default() -> Self {
        Spill {
            mem: Vec::new(),
            file: None,
            on_disk: 0,
            disk_bytes: 0,
            broken: false,
            buf: Vec::new(),
        }
    }
}

impl<T: Record + Clone> Spill<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, t: T) {
        self.mem.push(t);
        if self.mem.len() >= BATCH && !self.broken {
            if let Err(e) = self.write_batch() {
                tracing::warn!(
                    error = %e,
                    "the report's temporary file failed: its rows stay in memory"
                );
                self.broken = true;
            }
        }
    }

    fn write_batch(&mut self) -> io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile()?),
        };
        self.buf.clear();
        for t in &self.mem {
            let at = self.buf.len();
            self.buf.extend_from_slice(&[0; 4]);
            t.put(&mut self.buf);
            let n = (self.buf.len() - at - 4) as u32;
            self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
        file.write_all(&self.buf)?;
        self.disk_bytes += self.buf.len() as u64;
        self.on_disk += self.mem.len();
        self.mem.clear();
        self.buf = Vec::new();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.on_disk + self.mem.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every item in the order pushed: the file's, then memory's.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        let mut r = self.file.as_ref().map(|f| {
            BufReader::with_capacity(
                1 << 16,
                At {
                    file: f,
                    pos: 0,
                    end: self.disk_bytes,
                },
            )
        });
        let mut rec = Vec::new();
        (0..self.on_disk)
            .map(move |_| {
                let r = r.as_mut().expect("items on disk have a file");
                read_record(r, &mut rec).unwrap_or_else(|e| {
                    panic!("reading the report's temporary file back failed: {e}")
                })
            })
            .chain(self.mem.iter().cloned())
    }
}

impl<T: Record + Clone + std::fmt::Debug> std::fmt::Debug for Spill<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn read_record<T: Record>(r: &mut impl Read, rec: &mut Vec<u8>) -> io::Result<T> {
    let mut n = [0; 4];
    r.read_exact(&mut n)?;
    rec.resize(u32::from_le_bytes(n) as usize, 0);
    r.read_exact(rec)?;
    let mut b = &rec[..];
    T::get(&mut b).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a bad record"))
}

/// Reads a file from `pos` by offset, so that several passes can be open
/// at once over one file.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn put_dec(out: &mut Vec<u8>, d: &Decimal) {
    out.extend_from_slice(&d.serialize());
}

pub fn put_ts(out: &mut Vec<u8>, t: Ts) {
    out.extend_from_slice(&t.to_le_bytes());
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    (b.len() >= n).then(|| {
        let (x, rest) = b.split_at(n);
        *b = rest;
        x
    })
}

pub fn get_str(b: &mut &[u8]) -> Option<String> {
    let n = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
    String::from_utf8(take(b, n)?.to_vec()).ok()
}

pub fn get_dec(b: &mut &[u8]) -> Option<Decimal> {
    Some(Decimal::deserialize(take(b, 16)?.try_into().ok()?))
}

pub fn get_ts(b: &mut &[u8]) -> Option<Ts> {
    Some(Ts::from_le_bytes(take(b, 8)?.try_into().ok()?))
}

pub fn get_u8(b: &mut &[u8]) -> Option<u8> {
    Some(take(b, 1)?[0])
}

impl Record for FillMsg {
    fn put(&self, out: &mut Vec<u8>) {
        for s in [&self.fill_id, &self.order_id, &self.strategy, &self.symbol] {
            put_str(out, s);
        }
        put_ts(out, self.ts);
        out.push(match self.side {
            Side::Buy => 0,
            Side::Sell => 1,
        });
        for d in [&self.qty, &self.price, &self.fee] {
            put_dec(out, d);
        }
        out.push(match self.liquidity {
            Liquidity::Maker => 0,
            Liquidity::Taker => 1,
        });
        match &self.slippage {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                put_dec(out, d);
            }
        }
    }

    fn get(b: &mut &[u8]) -> Option<Self> {
        Some(FillMsg {
            fill_id: get_str(b)?,
            order_id: get_str(b)?,
            strategy: get_str(b)?,
            symbol: get_str(b)?,
            ts: get_ts(b)?,
            side: match get_u8(b)? {
                0 => Side::Buy,
                1 => Side::Sell,
                _ => return None,
            },
            qty: get_dec(b)?,
            price: get_dec(b)?,
            fee: get_dec(b)?,
            liquidity: match get_u8(b)? {
                0 => Liquidity::Maker,
                1 => Liquidity::Taker,
                _ => return None,
            },
            slippage: match get_u8(b)? {
                0 => None,
                1 => Some(get_dec(b)?),
                _ => return None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn fill() -> impl Strategy<Value = FillMsg> {
        (
            ("[a-z0-9-]{0,12}", "\\PC{0,8}", any::<i64>(), any::<bool>()),
            (
                dec(),
                dec(),
                dec(),
                any::<bool>(),
                proptest::option::of(dec()),
            ),
        )
            .prop_map(
                |((id, sym, ts, buy), (qty, price, fee, maker, slippage))| FillMsg {
                    fill_id: id.clone(),
                    order_id: format!("o-{id}"),
                    strategy: "s".repeat(id.len() % 3),
                    symbol: sym,
                    ts,
                    side: if buy { Side::Buy } else { Side::Sell },
                    qty,
                    price,
                    fee,
                    liquidity: if maker {
                        Liquidity::Maker
                    } else {
                        Liquidity::Taker
                    },
                    slippage,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever is pushed comes back equal and in order, across the
        /// batches in the file and the tail in memory, on every pass.
        #[test]
        fn items_come_back_equal_and_in_order(
            fills in proptest::collection::vec(fill(), 0..40),
            copies in 1usize..300,
        ) {
            let mut s = Spill::new();
            let mut want = Vec::new();
            for i in 0..copies {
                for f in &fills {
                    let mut f = f.clone();
                    f.ts = f.ts.wrapping_add(i as i64);
                    s.push(f.clone());
                    want.push(f);
                }
            }
            prop_assert_eq!(s.len(), want.len());
            prop_assert_eq!(s.on_disk, want.len() / BATCH * BATCH);
            for _ in 0..2 {
                prop_assert_eq!(s.iter().collect::<Vec<_>>(), want.clone());
            }
        }
    }

    /// A round trip and a trade come back from the file exactly, extreme
    /// decimals and empty strings included.
    #[test]
    fn round_trips_and_trades_are_read_back_exactly() {
        use crate::report::{RoundTrip, Trade};
        let d = |m: i64, s: u32| Decimal::new(m, s);
        let trips = [
            RoundTrip {
                strategy: "ema".into(),
                symbol: "BTC-USD".into(),
                entry_ts: -1,
                exit_ts: i64::MAX,
                size: d(-3, 0),
                entry_price: d(12_345_678_901, 8),
                exit_price: Decimal::MAX,
                commission: d(1, 28),
                pnl: Decimal::MIN,
                return_pct: d(-123, 5),
            },
            RoundTrip {
                strategy: String::new(),
                symbol: "\u{c4}".into(),
                entry_ts: 0,
                exit_ts: 0,
                size: Decimal::ZERO,
                entry_price: Decimal::ONE,
                exit_price: d(5, 1),
                commission: Decimal::ZERO,
                pnl: d(7, 2),
                return_pct: d(1, 0),
            },
        ];
        let mut s = Spill::new();
        for _ in 0..5000 {
            for t in &trips {
                s.push(t.clone());
            }
        }
        assert_eq!((s.len(), s.on_disk), (10_000, 2 * BATCH));
        assert!(s.iter().zip(trips.iter().cycle()).all(|(a, b)| &a == b));
        let t = Trade {
            fill: FillMsg {
                fill_id: "f-1".into(),
                order_id: "o-1".into(),
                strategy: "ema".into(),
                symbol: "AAPL".into(),
                ts: 7,
                side: Side::Sell,
                qty: d(100, 0),
                price: d(10_001, 2),
                fee: d(5, 3),
                liquidity: Liquidity::Maker,
                slippage: Some(d(-1, 2)),
            },
            realized: d(-4_250, 2),
        };
        let mut buf = Vec::new();
        t.put(&mut buf);
        let mut b = &buf[..];
        assert_eq!(Trade::get(&mut b), Some(t));
        assert!(b.is_empty());
    }

    #[test]
    fn two_passes_can_read_at_once() {
        let mut s = Spill::new();
        for i in 0..(2 * BATCH as i64 + 7) {
            s.push(FillMsg {
                fill_id: format!("f{i}"),
                order_id: String::new(),
                strategy: "a".into(),
                symbol: "X".into(),
                ts: i,
                side: Side::Buy,
                qty: Decimal::new(i, 3),
                price: Decimal::ONE,
                fee: Decimal::ZERO,
                liquidity: Liquidity::Taker,
                slippage: None,
            });
        }
        assert_eq!(s.on_disk, 2 * BATCH);
        let pairs: Vec<(Ts, Ts)> = s
            .iter()
            .zip(s.iter().skip(1))
            .map(|(a, b)| (a.ts, b.ts))
            .collect();
        assert_eq!(pairs.len(), 2 * BATCH + 6);
        assert!(pairs.iter().all(|(a, b)| b - a == 1));
    }
}
