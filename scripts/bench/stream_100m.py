"""A file backtest of many ticks in constant memory (docs/PERFORMANCE.md, issue 20
target 2). Offline tooling: generates N ticks (default 100,000,000) of the
vs_nautilus random walk into a CSV, chunk by chunk, then runs `papertrader
backtest` over it under /usr/bin/time and prints events, time and peak RSS.

    python3 scripts/bench/stream_100m.py [N] [BINARY] [WORK_DIR] [MARK_EVERY]

MARK_EVERY sets `report.mark_every` (default "1m"): the report keeps one
equity mark per period with events, so its memory grows with the event-time
span / MARK_EVERY (and with the fills), not with the ticks.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
# The same strategy, application config and random walk as the side-by-side
# benchmark (vs_nautilus.py: EMA 10/20 on 100-tick bars, 100 shares).
from vs_nautilus import APP, SEED, START_MS, STRATEGY  # noqa: E402

CHUNK = 1_000_000


def generate(n, path):
    """n ticks of one symbol: a seeded random walk in cents, written in chunks."""
    rng = np.random.default_rng(SEED)
    cents, ts = 10_000, START_MS
    with open(path, "w") as f:
        f.write("ts,symbol,price,size\n")
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            steps = rng.choice([-2, -1, 0, 1, 2], size=k, p=[0.1, 0.25, 0.3, 0.25, 0.1])
            c = np.maximum(cents + np.cumsum(steps), 100)
            t = ts + np.cumsum(rng.integers(1, 1001, size=k))
            sizes = rng.integers(1, 501, size=k)
            cents, ts = int(c[-1]), int(t[-1])
            f.write("".join(
                f"{a},AAPL,{b // 100}.{b % 100:02d},{s}\n"
                for a, b, s in zip(t.tolist(), c.tolist(), sizes.tolist())
            ))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000_000
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/papertrader"
    work = Path(sys.argv[3] if len(sys.argv) > 3 else "bench-work")
    work.mkdir(parents=True, exist_ok=True)
    ticks = work / f"stream_ticks_{n}.csv"
    if not ticks.exists():
        t0 = time.time()
        generate(n, ticks)
        print(f"generated {n} ticks ({ticks.stat().st_size / 2**30:.1f} GiB) in {time.time() - t0:.0f} s")
    (work / "stream_emacross.toml").write_text(STRATEGY)
    mark_every = sys.argv[4] if len(sys.argv) > 4 else "1m"
    (work / "stream_app.toml").write_text(
        APP.format(strategy=work / "stream_emacross.toml") + f'[report]\nmark_every = "{mark_every}"\n'
    )
    report = work / "stream_report"
    cmd = ["/usr/bin/time", "-f", "%e %M", binary, "--config", str(work / "stream_app.toml"),
           "backtest", "--input", str(ticks), "--report", str(report)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr)
    wall, rss_kib = p.stderr.strip().splitlines()[-1].split()
    fills = json.loads((report / "report.json").read_text())["total"]["fills"]
    m = re.search(r"(\d+) events", p.stdout + p.stderr)
    events = int(m.group(1))
    print(f"mark_every {mark_every}: {events} events, {fills} fills: {float(wall):.1f} s "
          f"({events / float(wall) / 1e6:.2f} M events/s), peak RSS {int(rss_kib) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
