#!/usr/bin/env bash
# papertrader and NautilusTrader's EMACross on the same generated ticks, side by
# side in one run (offline tooling; docs/PERFORMANCE.md). Usage:
#   bash scripts/bench/vs_nautilus.sh [TICKS]        (default 1,000,000)
# Makes the venv $HOME/.cache/papertrader-parity (nautilus_trader 1.221.0, as
# scripts/parity/run.sh) and builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/../.."
ticks="${1:-1000000}"
venv="${PARITY_VENV:-$HOME/.cache/papertrader-parity}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "nautilus_trader==1.221.0" numpy
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/papertrader-target}"
cargo build --release -q
work="${BENCH_DIR:-$HOME/.cache/papertrader-bench}"
"$venv/bin/python" scripts/bench/vs_nautilus.py "$ticks" "$CARGO_TARGET_DIR/release/papertrader" "$work"
