#!/usr/bin/env python3
"""Reference values for the streaming indicators (crates/papertrader-core/src/indicators/).

Writes tests/fixtures/indicators_reference.csv: one row per bar of
data/aapl_msft_daily_2011_2013.csv (same order), one column per indicator
output, empty where the reference has no value (not warm, or undefined).

Every value comes from an implementation independent of the Rust code:

- TA-Lib (the C library, through its official Python wrapper `TA-Lib`, whose
  PyPI wheels bundle the library): SMA, EMA, RSI, MACD, BBANDS (matype=0,
  nbdevup = nbdevdn = k), ATR. TA-Lib's own warm-up (NaN) defines the
  expected warm-up.
- pandas: time-window SMA (`rolling("50D")`, whose time windows are
  (t - 50D, t] by default) and windowed VWAP (rolling sums); cumulative VWAP
  (cumsum). pandas has no notion of "spans the full window", so the warm-up
  rule is applied here: a value only where first_ts <= t - window.
- numpy brute force: rolling z-score (population std of each explicit
  window) and the irregular EMA, computed from its closed form
      e_n = exp(-(t_n - t_0)/W) x_0
            + sum_{i>=1} (1 - exp(-(t_i - t_{i-1})/W)) exp(-(t_n - t_i)/W) x_i
  rather than the recursion the Rust code uses.

Bars are timestamped at 00:00 UTC of their date. Bollinger %b and bandwidth
are derived from TA-Lib's bands: (close - lower)/(upper - lower) and
(upper - lower)/middle. VWAP uses the typical price (high + low + close)/3.

Usage: pip install -r scripts/requirements-reference.txt
       python scripts/reference_indicators.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import talib

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "aapl_msft_daily_2011_2013.csv"
OUT = ROOT / "tests" / "fixtures" / "indicators_reference.csv"

DAY_NS = 86_400 * 10**9

SMA_PERIODS = [5, 20, 50]
EMA_PERIODS = [10, 30]
RSI_PERIODS = [5, 14]
MACD_PARAMS = [(12, 26, 9), (5, 35, 5)]
BB_PARAMS = [(20, 2.0), (10, 1.5)]
ATR_PERIODS = [5, 14]
ZSCORE_PERIODS = [20]
TIME_SMA_DAYS = [7, 50]
TIME_EMA_DAYS = [20]
VWAP_WINDOW_DAYS = [20]


def time_warm(ts: np.ndarray, window_ns: int) -> np.ndarray:
    return ts[0] <= ts - window_ns


def zscore(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):
        w = x[i - n + 1 : i + 1]
        sd = w.std()  # ddof=0: population
        if sd > 0:
            out[i] = (x[i] - w.mean()) / sd
    return out


def time_ema_closed_form(ts: np.ndarray, x: np.ndarray, window_ns: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    t = ts.astype(np.float64)  # day-aligned ns: exactly representable
    w = float(window_ns)
    for n in range(len(x)):
        total = math.exp(-(t[n] - t[0]) / w) * x[0]
        for i in range(1, n + 1):
            alpha = 1.0 - math.exp(-(t[i] - t[i - 1]) / w)
            total += alpha * math.exp(-(t[n] - t[i]) / w) * x[i]
        out[n] = total
    out[~time_warm(ts, window_ns)] = np.nan
    return out


def one_ticker(df: pd.DataFrame) -> pd.DataFrame:
    high = df["High"].to_numpy(np.float64)
    low = df["Low"].to_numpy(np.float64)
    close = df["Close"].to_numpy(np.float64)
    volume = df["Volume"].to_numpy(np.float64)
    dates = pd.to_datetime(df["Date"], utc=True)
    ts = np.array([d.value for d in dates], dtype=np.int64)  # ns since epoch
    out = pd.DataFrame({"ticker": df["Ticker"].to_numpy(), "date": df["Date"].to_numpy(), "ts_ns": ts})

    for n in SMA_PERIODS:
        out[f"sma_{n}"] = talib.SMA(close, timeperiod=n)
    for n in EMA_PERIODS:
        out[f"ema_{n}"] = talib.EMA(close, timeperiod=n)
    for n in RSI_PERIODS:
        out[f"rsi_{n}"] = talib.RSI(close, timeperiod=n)
    for f, s, g in MACD_PARAMS:
        macd, signal, hist = talib.MACD(close, fastperiod=f, slowperiod=s, signalperiod=g)
        out[f"macd_{f}_{s}_{g}_macd"] = macd
        out[f"macd_{f}_{s}_{g}_signal"] = signal
        out[f"macd_{f}_{s}_{g}_hist"] = hist
    for n, k in BB_PARAMS:
        upper, middle, lower = talib.BBANDS(close, timeperiod=n, nbdevup=k, nbdevdn=k, matype=0)
        name = f"bb_{n}_{k:g}"
        out[f"{name}_middle"] = middle
        out[f"{name}_upper"] = upper
        out[f"{name}_lower"] = lower
        width = upper - lower
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{name}_percent_b"] = np.where(width > 0, (close - lower) / width, 0.5)
            out[f"{name}_bandwidth"] = np.where(width > 0, width / middle, 0.0)
        out.loc[np.isnan(middle), [f"{name}_percent_b", f"{name}_bandwidth"]] = np.nan
    for n in ATR_PERIODS:
        out[f"atr_{n}"] = talib.ATR(high, low, close, timeperiod=n)
    for n in ZSCORE_PERIODS:
        out[f"zscore_{n}"] = zscore(close, n)

    s_close = pd.Series(close, index=pd.DatetimeIndex(dates))
    for d in TIME_SMA_DAYS:
        m = s_close.rolling(f"{d}D").mean().to_numpy().copy()  # window (t - d days, t]
        m[~time_warm(ts, d * DAY_NS)] = np.nan
        out[f"time_sma_{d}d"] = m
    for d in TIME_EMA_DAYS:
        out[f"time_ema_{d}d"] = time_ema_closed_form(ts, close, d * DAY_NS)

    typical = (high + low + close) / 3.0
    pv = typical * volume
    cum_v = np.cumsum(volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["vwap_cum"] = np.where(cum_v > 0, np.cumsum(pv) / cum_v, np.nan)
    s_pv = pd.Series(pv, index=pd.DatetimeIndex(dates))
    s_v = pd.Series(volume, index=pd.DatetimeIndex(dates))
    for d in VWAP_WINDOW_DAYS:
        num = s_pv.rolling(f"{d}D").sum().to_numpy()
        den = s_v.rolling(f"{d}D").sum().to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            vw = np.where(den > 0, num / den, np.nan)
        vw[~time_warm(ts, d * DAY_NS)] = np.nan
        out[f"vwap_{d}d"] = vw
    return out


def main() -> None:
    raw = pd.read_csv(DATA, dtype={"Ticker": str, "Date": str})
    frames = [one_ticker(g.reset_index(drop=True)) for _, g in raw.groupby("Ticker", sort=False)]
    out = pd.concat(frames, ignore_index=True)
    assert len(out) == len(raw)
    assert (out["ticker"].to_numpy() == raw["Ticker"].to_numpy()).all()
    assert (out["date"].to_numpy() == raw["Date"].to_numpy()).all()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # %.17g round-trips every f64 exactly; NaN (no value) is written empty.
    out.to_csv(OUT, index=False, float_format="%.17g", na_rep="")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(out)} rows, {len(out.columns)} columns")


if __name__ == "__main__":
    main()
