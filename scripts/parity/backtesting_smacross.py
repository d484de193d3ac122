"""Run backtesting.py's README example (SmaCross 10/20 on its bundled GOOG
daily data, commission 0.2 %, exclusive orders) and write what it reports as
parity fixtures for papertrader (issue: results users can trust).

Offline tooling: `bash scripts/parity/run.sh` makes a venv with
backtesting==0.6.6 and runs this. The Rust tests never run Python; they read
the files written here:

  tests/fixtures/parity/goog_daily.csv             the input bars (ts in ms, OHLCV)
  tests/fixtures/parity/backtesting_smacross_trades.csv   backtesting.py's trades table
  tests/fixtures/parity/backtesting_smacross_stats.json   its statistics
  tests/fixtures/parity/backtesting_smacross_on_close_*   the same with trade_on_close=True
"""

import json
import math
import sys
from pathlib import Path

import backtesting
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import GOOG, SMA

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity")


class SmaCross(Strategy):
    def init(self):
        price = self.data.Close
        self.ma1 = self.I(SMA, price, 10)
        self.ma2 = self.I(SMA, price, 20)

    def next(self):
        if crossover(self.ma1, self.ma2):
            self.buy()
        elif crossover(self.ma2, self.ma1):
            self.sell()


def ms(ts):
    return int(ts.value // 1_000_000)


def plain(v):
    """A statistic as JSON: numbers as floats (NaN as null), times as text."""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return None if math.isnan(f) else f


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    bars = GOOG.copy()
    with open(OUT / "goog_daily.csv", "w") as f:
        f.write("ts,symbol,open,high,low,close,volume\n")
        for ts, r in bars.iterrows():
            f.write(f"{ms(ts)},GOOG,{r.Open},{r.High},{r.Low},{r.Close},{int(r.Volume)}\n")
    for name, toc in (("backtesting_smacross", False), ("backtesting_smacross_on_close", True)):
        run(bars, name, toc)


def run(bars, name, trade_on_close):
    """One run, written as NAME_trades.csv and NAME_stats.json."""
    bt = Backtest(
        bars, SmaCross, commission=0.002, exclusive_orders=True, trade_on_close=trade_on_close
    )
    stats = bt.run()
    trades = stats["_trades"]
    with open(OUT / f"{name}_trades.csv", "w") as f:
        f.write("entry_ms,exit_ms,size,entry_price,exit_price,pnl,return_pct\n")
        for _, t in trades.iterrows():
            f.write(
                f"{ms(t.EntryTime)},{ms(t.ExitTime)},{int(t.Size)},{t.EntryPrice!r},"
                f"{t.ExitPrice!r},{t.PnL!r},{t.ReturnPct!r}\n"
            )
    keep = {k: plain(v) for k, v in stats.items() if not k.startswith("_")}
    keep["_backtesting_version"] = backtesting.__version__
    keep["_config"] = {
        "strategy": "SmaCross(10, 20) on Close",
        "commission": 0.002,
        "exclusive_orders": True,
        "trade_on_close": trade_on_close,
        "cash": 10000,
        "data": "backtesting.test.GOOG",
    }
    with open(OUT / f"{name}_stats.json", "w") as f:
        json.dump(keep, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{name}: {len(trades)} trades, return {keep['Return [%]']:.2f} %, written to {OUT}")


if __name__ == "__main__":
    main()
