#!/usr/bin/env bash
# Soak (not a test, not in CI): 30 minutes (SOAK_SECS) of terminals, file
# writes through the API, sync clients and proxied requests against a
# release workspaced on loopback, sampling its RSS, open file descriptors
# and threads every SAMPLE_SECS; exits 1 when one of them still grows at
# the end. bench/soak.py does the driving.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import websockets' 2>/dev/null || pip install -q websockets
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p workspaced
  BIN=${CARGO_TARGET_DIR:-target}/release/workspaced
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); WD=$(free_port)
mkdir -p "$work/ws" "$work/www" "$work/state"
echo hello > "$work/www/index.html"
python3 -m http.server "$UP" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
pids+=($!)
TOKEN=soak-token
WORKSPACED_TOKEN=$TOKEN RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$WD" \
  --workspace "$work/ws" --state-dir "$work/state" >"$work/daemon.log" 2>&1 &
WD_PID=$!
pids+=($WD_PID)
# Up, and the upstream detected.
for _ in $(seq 100); do
  curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$WD/api/v1/ports" 2>/dev/null \
    | grep -q "\"port\":$UP" && break
  sleep 0.2
done
WD_PORT=$WD UP_PORT=$UP WD_PID=$WD_PID TOKEN=$TOKEN \
  SOAK_SECS=${SOAK_SECS:-1800} SAMPLE_SECS=${SAMPLE_SECS:-30} python3 bench/soak.py
