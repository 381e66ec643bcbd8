#!/usr/bin/env bash
# Relay benchmark (not a test): a terminal of another container through the
# first daemon's relay, against a terminal of the first daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import websockets' 2>/dev/null || pip install -q websockets
cargo build --release -p workspaced
cd bench && python3 relay.py
