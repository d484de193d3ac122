"""Broker replay against a plain librdkafka consumer (issue 20, target 4;
docs/PERFORMANCE.md): in one run, on the same topic of the same broker
(`papertrader broker`, tansu), how long a confluent-kafka consumer takes to
read the whole topic, and how long `papertrader backtest --brokers` takes to
read it and run the backtest; prints both and the ratio.

    python scripts/bench/broker_replay.py BINARY TICKS_CSV [WORK_DIR]

TICKS_CSV: a tick file (scripts/bench/vs_nautilus.sh makes one of 1,000,000).
The strategy is vs_nautilus.py's EMACross. Offline tooling: needs
confluent-kafka in the Python that runs it (scripts/bench/latency.sh's venv).
"""

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).parent))
from vs_nautilus import APP, STRATEGY  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_all(bootstrap, topic, expected):
    """A plain consumer, partitions assigned, read to the end: seconds, count."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-plain",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    start = time.perf_counter()
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    n, eof = 0, set()
    while n < expected or len(eof) < len(parts):
        for m in c.consume(10000, 1.0):
            if m.error():
                eof.add(m.partition())
            else:
                n += 1
    took = time.perf_counter() - start
    c.close()
    return took, n


def main():
    binary, ticks = sys.argv[1], Path(sys.argv[2])
    work = Path(sys.argv[3] if len(sys.argv) > 3 else "bench-work")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    (work / "replay_emacross.toml").write_text(STRATEGY)
    (work / "replay_app.toml").write_text(
        APP.format(strategy=work / "replay_emacross.toml")
        + f'[kafka]\nbrokers = "{bootstrap}"\npartitions = 1\n'
    )
    cfg = ["--config", str(work / "replay_app.toml")]
    broker = subprocess.Popen([binary, "broker", "--listen", bootstrap],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        subprocess.run([binary, *cfg, "replay", "--input", str(ticks), "--topic", "live_prices"],
                       check=True, capture_output=True)
        expected = sum(1 for _ in open(ticks)) - 1
        plain, n = read_all(bootstrap, "live_prices", expected)
        start = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", binary, *cfg, "backtest", "--brokers", bootstrap,
                            "--report", str(work / "replay_report")],
                           capture_output=True, text=True)
        pt = time.perf_counter() - start
        if p.returncode != 0:
            sys.exit(p.stderr)
        events = int(re.search(r"(\d+) events", p.stdout + p.stderr).group(1))
        rss_mib = int(p.stderr.strip().splitlines()[-1]) / 1024
    finally:
        broker.terminate()
        broker.wait(30)
    print(f"plain librdkafka consumer (confluent-kafka): {n} messages in {plain:.2f} s")
    print(f"papertrader backtest --brokers: {events} events in {pt:.2f} s, peak RSS {rss_mib:.0f} MiB")
    print(f"papertrader reaches {plain / pt * 100:.0f} % of the plain consumer's rate")


if __name__ == "__main__":
    main()
