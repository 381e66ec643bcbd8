#!/usr/bin/env bash
# Hostile clients (issue 16, not a test): a 600 MiB file that a listing, a
# patch and a delete touch (the daemon's peak RSS), 2,000 half-sent heads
# (RSS open and after), and a proxied WebSocket client that never reads
# (how long it is kept), against the release build and, side by side, a
# second build given as BASE=path. BIN=path measures another build as it is.
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p workspaced
  BIN=${CARGO_TARGET_DIR:-target}/release/workspaced
fi
echo "| build | measure | figures | time |"
echo "| --- | --- | --- | --- |"
python3 bench/robust.py "$BIN" "this build"
if [ -n "${BASE:-}" ]; then
  python3 bench/robust.py "$BASE" "base"
fi
