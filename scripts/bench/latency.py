"""Paper mode's input-to-order latency on the embedded broker, measured with a
real Kafka client (issue 20, target 5; docs/PERFORMANCE.md).

Starts `papertrader paper` on the default configuration (embedded broker,
event-time order) with the embedded broker on a known port and no demo feed,
then a confluent-kafka producer sends RATE ticks/s on each of two symbols for
SECONDS seconds, and every order is joined to the tick that caused it (its id
carries the tick's `live_prices-PARTITION-OFFSET`). Latency: the order
message's CreateTime (set by papertrader's producer when it publishes) minus
the tick's CreateTime (set by this producer). Also prints the in-process
tick-to-decision histogram of /metrics (`papertrader_engine_step_seconds`).

    python scripts/bench/latency.py BINARY [RATE] [SECONDS] [SECTION:KEY=VALUE ...]

SECTION:KEY=VALUE lines are added to the application config (for example
`engine:order_hold="100ms"` or `kafka.properties:"linger.ms"="5"`) to measure
another setting side by side.
Offline tooling: needs `pip install confluent-kafka` (scripts/bench/latency.sh).
"""

import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

STRATEGY = """name = "lat"
symbols = ["LATA", "LATB"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[account]
starting_cash = "1000000000"
[sizing]
mode = "fixed_quantity"
quantity = "1"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_config(work, kafka_port, http_port, extra):
    sections = {"kafka": [f'embedded_listen = "127.0.0.1:{kafka_port}"'],
                "demo": ["feed = false"],
                "http": [f'bind = "127.0.0.1:{http_port}"'],
                "state": [f'path = "{work / "state.ckpt"}"']}
    for kv in extra:
        section, line = kv.split(":", 1)
        sections.setdefault(section, []).append(line)
    text = f'strategies = ["{work / "lat.toml"}"]\n'
    for section, lines in sections.items():
        text += f"[{section}]\n" + "\n".join(lines) + "\n"
    return text


def wait_for_topics(bootstrap, names, seconds=60):
    p = Producer({"bootstrap.servers": bootstrap})
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            md = p.list_topics(timeout=2)
            if all(n in md.topics for n in names):
                return
        except Exception:  # noqa: BLE001 - the broker is not up yet
            pass
        time.sleep(0.5)
    sys.exit(f"the embedded broker at {bootstrap} did not come up with {names}")


def send(bootstrap, rate, seconds):
    """RATE ticks/s per symbol; returns {(partition, offset): CreateTime ms}."""
    sent = {}

    def delivered(err, msg):
        if err is None:
            sent[(msg.partition(), msg.offset())] = msg.timestamp()[1]

    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    start = time.time()
    for i in range(rate * seconds):
        # A price that turns every few ticks: the 2/3 crossover trades often.
        for k, sym in enumerate(["LATA", "LATB"]):
            price = 100 + math.sin(i / 2.0 + k) + (i % 5) * 0.01
            msg = {"symbol": sym, "ts": int(time.time() * 1000), "price": f"{price:.2f}", "size": "1"}
            prod.produce("live_prices", key=sym, value=json.dumps(msg), on_delivery=delivered)
        prod.poll(0)
        sleep = start + (i + 1) / rate - time.time()
        if sleep > 0:
            time.sleep(sleep)
    prod.flush(30)
    return sent


def order_times(bootstrap, idle=3.0):
    """The first order message of each order: {origin: CreateTime ms}."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "latency-bench",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    md = c.list_topics("orders", timeout=10)
    c.assign([TopicPartition("orders", p, 0) for p in md.topics["orders"].partitions])
    first = {}
    last = time.time()
    while time.time() - last < idle:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        last = time.time()
        order = json.loads(m.value())
        origin = order["order_id"].split(":")[-2]
        first.setdefault(origin, m.timestamp()[1])
    c.close()
    return first


def step_histogram(http_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("papertrader_engine_step_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    return buckets


def quantile_bound(buckets, q):
    """The upper bound of the bucket holding the q-quantile."""
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    binary = sys.argv[1]
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    extra = sys.argv[4:]
    work = Path(tempfile.mkdtemp(prefix="papertrader-latency-"))
    kafka_port, http_port = free_port(), free_port()
    (work / "lat.toml").write_text(STRATEGY)
    (work / "app.toml").write_text(app_config(work, kafka_port, http_port, extra))
    bootstrap = f"127.0.0.1:{kafka_port}"
    log = open(work / "paper.log", "w")
    paper = subprocess.Popen([binary, "--config", str(work / "app.toml"), "paper"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_topics(bootstrap, ["live_prices", "orders"])
        time.sleep(2)  # the consumer group settles
        sent = send(bootstrap, rate, seconds)
        time.sleep(2)
        orders = order_times(bootstrap)
        buckets = step_histogram(http_port)
    finally:
        paper.terminate()
        paper.wait(60)
    lat = []
    for origin, t in orders.items():
        _, p, o = origin.rsplit("-", 2)
        if (int(p), int(o)) in sent:
            lat.append(t - sent[(int(p), int(o))])
    if not lat:
        sys.exit(f"no orders joined to ticks; see {work / 'paper.log'}")
    print(f"settings: {' '.join(extra) or 'defaults'}")
    print(f"{len(sent)} ticks at {2 * rate}/s, {len(lat)} orders: input-to-order latency "
          f"p50 {pct(lat, 0.5)} ms, p90 {pct(lat, 0.9)} ms, p99 {pct(lat, 0.99)} ms, max {max(lat)} ms")
    print(f"tick-to-decision (papertrader_engine_step_seconds, bucket bounds): "
          f"p50 <= {quantile_bound(buckets, 0.5) * 1e6:.0f} us, p99 <= {quantile_bound(buckets, 0.99) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
