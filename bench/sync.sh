#!/usr/bin/env bash
# File sync benchmark (not a test): on a git checkout of a real source tree
# padded to 30,000 files, GET /api/v1/tree?recursive=true against
# `git status --porcelain` (alternating, median of 7), the latency from a
# write on disk to the event at a client, and the throughput of a 1,000-file
# apply. Usage: bench/sync.sh [SOURCE_DIR]
# (default: the crate sources cargo unpacked under ~/.cargo/registry/src).
# BEFORE_BIN=path adds a second daemon (another build) on the same checkout
# to the alternation, for a before/after figure from one run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$HOME/.cargo/registry/src}
files=${FILES:-30000}
work=$(mktemp -d /tmp/sync-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
python3 -c 'import websockets.sync.client' 2>/dev/null || pip install --quiet websockets

if [ -z "${WORKSPACED_BIN:-}" ]; then
    echo "building workspaced (release)" >&2
    (cd "$here" && cargo build --quiet --release -p workspaced)
fi
bin=${WORKSPACED_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/workspaced}

echo "making a git checkout of $src with $files files" >&2
mkdir -p "$work/repo"
cp -r "$src/." "$work/repo/"
have=$(find "$work/repo" -type f | wc -l)
if [ "$have" -gt "$files" ]; then
    echo "$src has $have files, more than $files; pass a smaller tree" >&2
    exit 64
fi
python3 - "$work/repo/pad" $((files - have)) <<'PY'
import os, sys
top, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(top, f"d{i // 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 100:02}.txt"), "w") as f:
        f.write(f"pad {i}\n")
PY
git -C "$work/repo" init -q
git -C "$work/repo" add -A -f
git -C "$work/repo" -c user.name=b -c user.email=b@example.com commit -q -m bench
git -C "$work/repo" status --porcelain >/dev/null # refresh the index's stat data

token=bench-token-0123456789
# serve BIN NAME: a daemon on the checkout; prints its address.
serve() {
    WORKSPACED_TOKEN=$token RUST_LOG=info "$1" serve --listen 127.0.0.1:0 \
        --workspace "$work/repo" --state-dir "$work/state-$2" 2>"$work/log-$2" &
    pids+=($!)
    for _ in $(seq 300); do
        addr=$(sed -n 's/.*serving listen=\([^ ]*\).*/\1/p' "$work/log-$2" | head -1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$work/log-$2" >&2; exit 1; }
}
serve "$bin" now
now=$addr
before=
if [ -n "${BEFORE_BIN:-}" ]; then
    serve "$BEFORE_BIN" before
    before=$addr
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$here/bench/sync_bench.py" "$now" "$token" "$work/repo" "$before"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
