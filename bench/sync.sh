#!/usr/bin/env bash
# File sync benchmark (not a test): on a git checkout of a real source tree,
# GET /api/v1/tree?recursive=true against `git status --porcelain`, the
# latency from a write on disk to the event at a client, and the throughput
# of a 1,000-file apply. Usage: bench/sync.sh [SOURCE_DIR]
# (default: the crate sources cargo unpacked under ~/.cargo/registry/src).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$HOME/.cargo/registry/src}
work=$(mktemp -d /tmp/sync-bench.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null && wait "${pid:-}" 2>/dev/null; rm -rf "$work"' EXIT
python3 -c 'import websockets.sync.client' 2>/dev/null || pip install --quiet websockets

echo "building workspaced (release)" >&2
(cd "$here" && cargo build --quiet --release -p workspaced)
bin=${CARGO_TARGET_DIR:-$here/target}/release/workspaced

echo "making a git checkout of $src" >&2
mkdir -p "$work/repo"
cp -r "$src/." "$work/repo/"
git -C "$work/repo" init -q
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=b -c user.email=b@example.com commit -q -m bench
git -C "$work/repo" status --porcelain >/dev/null # refresh the index's stat data

token=bench-token-0123456789
WORKSPACED_TOKEN=$token RUST_LOG=info "$bin" serve --listen 127.0.0.1:0 \
    --workspace "$work/repo" --state-dir "$work/state" 2>"$work/log" &
pid=$!
for _ in $(seq 300); do
    addr=$(sed -n 's/.*serving listen=\([^ ]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log" >&2; exit 1; }
python3 "$here/bench/sync_bench.py" "$addr" "$token" "$work/repo"
