#!/usr/bin/env bash
# Paper mode's input-to-order latency on the embedded broker: the default
# configuration, then the settings before issue 20 (fetch wait 500 ms, order
# hold 100 ms, output linger 5 ms), in one run (docs/PERFORMANCE.md, "Latency").
# Usage: bash scripts/bench/latency.sh [RATE_PER_SYMBOL] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rate="${1:-100}"
seconds="${2:-20}"
venv="${PARITY_VENV:-$HOME/.cache/papertrader-parity}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q confluent-kafka
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/papertrader-target}"
cargo build --release -q
bin="$CARGO_TARGET_DIR/release/papertrader"
"$venv/bin/python" scripts/bench/latency.py "$bin" "$rate" "$seconds"
"$venv/bin/python" scripts/bench/latency.py "$bin" "$rate" "$seconds" \
    'kafka:fetch_wait="500ms"' 'engine:order_hold="100ms"' 'kafka.properties:"linger.ms"="5"'
