"""papertrader and NautilusTrader side by side on the same generated trade
ticks (issue 20, target 7; docs/PERFORMANCE.md): NautilusTrader's bundled
EMACross (EMA 10/20 on 100-tick bars, 100 shares) and papertrader's
configuration that reproduces it fill for fill (docs/parity.md), in one run,
each in a process of its own. Prints both times, both peak RSS and the ratios.

Offline tooling: `bash scripts/bench/vs_nautilus.sh [TICKS]` makes the venv
(nautilus_trader==1.221.0) and runs this with the release binary.

  python vs_nautilus.py TICKS PAPERTRADER_BINARY WORKDIR
  python vs_nautilus.py --nautilus TICKS_CSV      (the child that runs Nautilus)
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

SEED = 20261204
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

STRATEGY = """name = "emacross"
symbols = ["AAPL"]
[rule]
kind = "ma_crossover"
fast = 10
slow = 20
average = "ema"
seed = "first"
signal = "state"
[bars]
kind = "ticks"
size = 100
[account]
starting_cash = "1000000"
allow_short = true
[sizing]
mode = "fixed_quantity"
quantity = "100"
[orders]
reverse = "close_then_open"
[exits]
close_at_end = true
"""

APP = """strategies = ["{strategy}"]
[venue]
latency = "0ms"
[venue.default]
tick_size = "0.01"
fill = "last_trade"
"""


def generate(n, path):
    """The parity fixture's random walk (scripts/parity/nautilus_emacross.py), n ticks."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    steps = rng.choice([-2, -1, 0, 1, 2], size=n, p=[0.1, 0.25, 0.3, 0.25, 0.1])
    cents = np.maximum(10_000 + np.cumsum(steps), 100)
    ts = START_MS + np.cumsum(rng.integers(1, 1001, size=n))
    sizes = rng.integers(1, 501, size=n)
    with open(path, "w") as f:
        f.write("ts,symbol,price,size\n")
        for t, c, s in zip(ts.tolist(), cents.tolist(), sizes.tolist()):
            f.write(f"{t},AAPL,{c // 100}.{c % 100:02d},{s}\n")


def run_nautilus(csv_path):
    """The child: load the ticks, run EMACross, print its engine time and fills."""
    from decimal import Decimal

    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import BarType, TradeTick
    from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType
    from nautilus_trader.model.identifiers import TradeId, TraderId, Venue
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BACKTESTER-001"), logging=LoggingConfig(bypass_logging=True)
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
    ticks = []
    with open(csv_path) as f:
        next(f)
        for k, line in enumerate(f):
            t, _, p, s = line.rstrip("\n").split(",")
            ns = int(t) * 1_000_000
            ticks.append(
                TradeTick(
                    instrument_id=aapl.id,
                    price=Price.from_str(p),
                    size=Quantity.from_int(int(s)),
                    aggressor_side=AggressorSide.BUYER if k % 2 == 0 else AggressorSide.SELLER,
                    trade_id=TradeId(str(k)),
                    ts_event=ns,
                    ts_init=ns,
                )
            )
    engine.add_data(ticks)
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
    started = time.perf_counter()
    engine.run()
    run_s = time.perf_counter() - started
    fills = len(engine.trader.generate_fills_report())
    print(json.dumps({"engine_s": run_s, "fills": fills}))


def child(cmd):
    """Run `cmd`: its wall time, stdout and stderr; exit on failure."""
    started = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    wall = time.perf_counter() - started
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{err}")
    return wall, out, err


def timed(cmd):
    """`cmd` under /usr/bin/time (GNU time's %M: the child's peak RSS): wall
    seconds, peak RSS in MiB, stdout, stderr."""
    wall, out, err = child(["/usr/bin/time", "-f", "PT_RSS_KB %M"] + cmd)
    rss = int(re.search(r"PT_RSS_KB (\d+)", err).group(1)) / 1024
    return wall, rss, out, err


def main():
    if sys.argv[1] == "--nautilus":
        run_nautilus(sys.argv[2])
        return
    n, binary, work = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    ticks = work / f"ticks_{n}.csv"
    if not ticks.exists():
        generate(n, ticks)
    (work / "emacross.toml").write_text(STRATEGY)
    (work / "app.toml").write_text(APP.format(strategy=work / "emacross.toml"))

    pt_wall, pt_rss, pt_out, pt_err = timed(
        [binary, "--config", str(work / "app.toml"), "backtest", "--input", str(ticks),
         "--report", str(work / "report")]
    )
    m = re.search(r"(\d+) events: ([0-9.]+) s in the engine", pt_out + pt_err)
    pt_engine = float(m.group(2))
    pt_fills = json.loads((work / "report" / "report.json").read_text())["total"]["fills"]

    nt_wall, nt_rss, nt_out, _ = timed([sys.executable, __file__, "--nautilus", str(ticks)])
    nt = json.loads(nt_out.strip().splitlines()[-1])

    rows = [
        ("engine (s)", pt_engine, nt["engine_s"]),
        ("process (s)", pt_wall, nt_wall),
        ("peak RSS (MiB)", pt_rss, nt_rss),
        ("fills", pt_fills, nt["fills"]),
    ]
    print(f"{n} ticks, EMACross 10/20 on 100-tick bars (papertrader {binary})")
    print(f"{'':16}{'papertrader':>14}{'NautilusTrader':>16}{'Nautilus / papertrader':>26}")
    for name, a, b in rows:
        ratio = f"{b / a:.2f}x" if a else "-"
        print(f"{name:16}{a:>14.3f}{b:>16.3f}{ratio:>26}")
    print(f"papertrader: {n / pt_wall:,.0f} ticks/s for the whole process")


if __name__ == "__main__":
    main()
