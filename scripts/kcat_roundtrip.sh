#!/usr/bin/env bash
# kcat, a Kafka client that is not papertrader, produces ticks in the documented
# wire format into a papertrader broker; papertrader trades them in paper mode;
# kcat reads the fills back and prints them (key TAB JSON), one per line.
#
# Usage: scripts/kcat_roundtrip.sh PAPERTRADER_BIN PORT WORKDIR
# Run by tests/it/kcat_client.rs, which checks the fills.
#
# Any kcat works, Debian bookworm's 1.7.1 on its system librdkafka 2.0.2 included:
# papertrader's broker answers ApiVersions without default-valued tagged fields,
# which librdkafka before 2.1 cannot skip (docs/broker.md, crates/tansu-service).
set -euo pipefail
bin=$1
port=$2
work=$3
bs="127.0.0.1:$port"
command -v kcat >/dev/null || { echo "kcat is not installed (apt-get install kcat)" >&2; exit 3; }

"$bin" broker --listen "$bs" --create-topics >"$work/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    grep -q "listening" "$work/broker.log" && break
    kill -0 $broker 2>/dev/null || { cat "$work/broker.log" >&2; exit 4; }
    sleep 0.1
done
grep -q "listening" "$work/broker.log" || { echo "broker did not start" >&2; exit 4; }

# Six AAA ticks: epoch milliseconds and RFC 3339, prices as strings and numbers.
kcat -b "$bs" -P -t live_prices -K '|' <<'TICKS'
AAA|{"symbol":"AAA","ts":1700000000000,"price":"3","size":"1"}
AAA|{"symbol":"AAA","ts":"2023-11-14T22:13:21Z","price":2,"size":1}
AAA|{"symbol":"AAA","ts":1700000002000,"price":"1","size":"1"}
AAA|{"symbol":"AAA","ts":"2023-11-14T22:13:23.000Z","price":"5","size":"1","bid":"4.99","ask":"5.01"}
AAA|{"symbol":"AAA","ts":1700000004000,"price":6,"size":"1"}
AAA|{"symbol":"AAA","ts":1700000005000,"price":"1","size":"1"}
TICKS

cat >"$work/cross.toml" <<'TOML'
name = "cross"
symbols = ["AAA"]
[rule]
kind = "ma_crossover"
fast = 2
slow = 3
[account]
starting_cash = "100000"
[sizing]
mode = "fixed_quantity"
quantity = "10"
TOML
cat >"$work/app.toml" <<TOML
strategies = ["$work/cross.toml"]
[kafka]
brokers = "$bs"
group_id = "kcat-roundtrip"
[state]
path = "$work/state.ckpt"
# No dashboard: the run must not take a port (8080) another program may hold.
[http]
enabled = false
# No latency; a book synthesized one tick either side of each trade, deep.
[venue]
latency = "0ms"
[venue.default]
taker_fee_bps = "10"
[venue.default.synth]
spread = "2 ticks"
depth = "1000000"
TOML

"$bin" --config "$work/app.toml" paper --max-events 6 --summary "$work/summary.json" >"$work/paper.out" 2>"$work/paper.log"

kcat -b "$bs" -C -t fills -o beginning -e -q -f '%k\t%s\n'
