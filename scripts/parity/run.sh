#!/usr/bin/env bash
# Parity fixtures from the real tools, offline tooling (docs/parity.md). Makes a venv under
# $HOME/.cache/papertrader-parity with the pinned packages from PyPI and writes
# tests/fixtures/parity/. The output is deterministic: run it twice, diff nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${PARITY_VENV:-$HOME/.cache/papertrader-parity}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "backtesting==0.6.6" "nautilus_trader==1.221.0"
"$venv/bin/python" scripts/parity/backtesting_smacross.py tests/fixtures/parity
"$venv/bin/python" scripts/parity/nautilus_emacross.py tests/fixtures/parity
