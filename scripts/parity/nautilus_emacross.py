"""Run NautilusTrader's bundled EMACross (EMA 10/20 on 100-tick bars, 100
shares) on trade ticks generated with a fixed seed, and write what it did as
parity fixtures for papertrader (docs/parity.md).

Offline tooling: `bash scripts/parity/run.sh` makes a venv with
nautilus_trader==1.221.0 and runs this. The Rust tests never run Python; they
read the files written here:

  tests/fixtures/parity/nautilus_ticks.csv           the generated trade ticks
  tests/fixtures/parity/nautilus_emacross_fills.csv  Nautilus's fills
  tests/fixtures/parity/nautilus_emacross_stats.json its positions and P&L
"""

import json
import sys
from decimal import Decimal
from pathlib import Path

import nautilus_trader
import numpy as np
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import BarType, TradeTick
from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType
from nautilus_trader.model.identifiers import TradeId, TraderId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity")
SEED = 20261204
TICKS = 100_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def generate():
    """A random walk in cents, one trade every 1-1000 ms, sizes 1-500."""
    rng = np.random.default_rng(SEED)
    steps = rng.choice([-2, -1, 0, 1, 2], size=TICKS, p=[0.1, 0.25, 0.3, 0.25, 0.1])
    cents = 10_000 + np.cumsum(steps)
    cents = np.maximum(cents, 100)
    gaps = rng.integers(1, 1001, size=TICKS)
    ts = START_MS + np.cumsum(gaps)
    sizes = rng.integers(1, 501, size=TICKS)
    return [(int(t), int(c), int(s)) for t, c, s in zip(ts, cents, sizes)]


def price(cents):
    return f"{cents // 100}.{cents % 100:02d}"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ticks = generate()
    with open(OUT / "nautilus_ticks.csv", "w") as f:
        f.write("ts,symbol,price,size\n")
        for t, c, s in ticks:
            f.write(f"{t},AAPL,{price(c)},{s}\n")

    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BACKTESTER-001"),
            logging=LoggingConfig(bypass_logging=True),
        )
    )
    venue = Venue("XNAS")
    engine.add_venue(
        venue=venue,
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000, USD)],
    )
    aapl = TestInstrumentProvider.equity(symbol="AAPL", venue="XNAS")
    engine.add_instrument(aapl)
    engine.add_data(
        [
            TradeTick(
                instrument_id=aapl.id,
                price=Price.from_str(price(c)),
                size=Quantity.from_int(s),
                aggressor_side=AggressorSide.BUYER if k % 2 == 0 else AggressorSide.SELLER,
                trade_id=TradeId(str(k)),
                ts_event=t * 1_000_000,
                ts_init=t * 1_000_000,
            )
            for k, (t, c, s) in enumerate(ticks)
        ]
    )
    engine.add_strategy(
        EMACross(
            EMACrossConfig(
                instrument_id=aapl.id,
                bar_type=BarType.from_str("AAPL.XNAS-100-TICK-LAST-INTERNAL"),
                trade_size=Decimal(100),
                request_bars=False,
            )
        )
    )
    engine.run()
    fills = engine.trader.generate_fills_report()
    with open(OUT / "nautilus_emacross_fills.csv", "w") as f:
        f.write("ts,order,side,qty,price,commission\n")
        for order_id, r in fills.iterrows():
            ts = int(r["ts_event"].value)
            f.write(
                f"{ts},{order_id},{r['order_side']},{r['last_qty']},{r['last_px']},"
                f"{str(r['commission']).split()[0]}\n"
            )
    positions = engine.trader.generate_positions_report()
    realized = sum(float(str(p).split()[0]) for p in positions["realized_pnl"])
    account = engine.trader.generate_account_report(venue)
    stats = {
        "_nautilus_trader_version": nautilus_trader.__version__,
        "_config": {
            "strategy": "EMACross(fast 10, slow 20) on AAPL.XNAS-100-TICK-LAST-INTERNAL",
            "trade_size": 100,
            "ticks": TICKS,
            "seed": SEED,
            "venue": "XNAS, NETTING, MARGIN, 1,000,000 USD",
            "instrument": "TestInstrumentProvider.equity(AAPL, XNAS)",
        },
        "fills": len(fills),
        "orders": int(fills.index.nunique()),
        "positions": len(positions),
        "realized_pnl": round(realized, 2),
        "final_balance": float(str(account["total"].iloc[-1]).split()[0]),
    }
    with open(OUT / "nautilus_emacross_stats.json", "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
