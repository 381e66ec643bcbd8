#!/usr/bin/env bash
# Heavy clients against the daemon's memory (not a test): RSS fresh, after
# three terminal floods of 90 MB, after closing them, after listing a tree
# of 30,000 files; then GET and PUT of a 1 GiB file: the daemon's peak RSS
# and MB/s, beside `sha1sum` of the same file (the peer: one read and one
# hash, what a GET costs at least).
#
#   bash bench/memory.sh     (WORKSPACED_BIN=path skips the build;
#                             NO_TRANSFERS=1 stops after the first table)
#
# Prints Markdown tables for docs/benchmarks.md ("Memory under heavy clients").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WORKSPACED_BIN:-}" ]; then
  cargo build --release --quiet -p workspaced --bin workspaced
fi
BIN=${WORKSPACED_BIN:-${CARGO_TARGET_DIR:-target}/release/workspaced}
TOKEN=bench-token-0123456789
AUTH="Authorization: Bearer $TOKEN"

dir=$(mktemp -d)
ws="$dir/ws" state="$dir/state"
mkdir -p "$ws" "$state"
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# start: a fresh daemon on a fresh workspace ($pid, $base).
start() {
  rm -rf "$ws" "$state"
  mkdir -p "$ws" "$state"
  WORKSPACED_TOKEN=$TOKEN RUST_LOG=info "$BIN" serve --listen 127.0.0.1:0 \
    --workspace "$ws" --state-dir "$state" --idle-timeout 30m \
    --max-body-bytes $((2 << 30)) 2>"$state/log" &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*serving listen=127.0.0.1:\([0-9]*\).*/\1/p' "$state/log" | head -1)
    [ -n "${port:-}" ] && break
    sleep 0.1
  done
  [ -n "${port:-}" ] || { echo "daemon did not listen"; cat "$state/log"; exit 1; }
  base="http://127.0.0.1:$port"
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
start

kib() { awk -v f="^$2:" '$0 ~ f {print $2}' /proc/"$pid"/status; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A terminal running SCRIPT; waits until it printed BYTES.
flood() {
  local id
  id=$(curl -fsS -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"command\":[\"bash\",\"-c\",\"$1; exec sleep 600\"]}" "$base/api/v1/terminals" | json '["id"]')
  until [ "$(curl -fsS -H "$AUTH" "$base/api/v1/terminals/$id" | json '["output_offset"]')" -ge "$2" ]; do
    sleep 0.2
  done
  echo "$id"
}
close() { curl -fsS -o /dev/null -X DELETE -H "$AUTH" "$base/api/v1/terminals/$1"; }
settle() { sleep 2; } # the trim runs 0.5 s after the last free

# Fresh: after one small terminal came and went.
close "$(flood 'echo ready' 6)"
settle
fresh=$(kib "$pid" VmRSS)
ids=()
for _ in 1 2 3; do
  ids+=("$(flood 'head -c 90000000 /dev/urandom | base64 -w 200 | head -c 90000000' 90000000)")
done
flooded=$(kib "$pid" VmRSS)
for id in "${ids[@]}"; do close "$id"; done
settle
closed=$(kib "$pid" VmRSS)
python3 - "$ws/tree" <<'EOF'
import os, sys
for d in range(300):
    p = os.path.join(sys.argv[1], f"d{d:03}")
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f"f{f:03}.txt"), "w") as fh:
            fh.write(f"file {d} {f}\n")
EOF
# The watcher first reports the 30,300 paths (an event each): measured once
# it has, so that the figure is what stays, not the burst in flight.
python3 - "$port" "$TOKEN" <<'PY'
import json, sys, time
from websockets.sync.client import connect
for _ in range(1200):
    with connect(f"ws://127.0.0.1:{sys.argv[1]}/api/v1/sync",
                 additional_headers={"Authorization": f"Bearer {sys.argv[2]}"}) as ws:
        if json.loads(ws.recv())["seq"] >= 30301:
            break
    time.sleep(0.5)
else:
    sys.exit("the watcher did not report the 30,300 paths in 10 minutes")
PY
entries=$(curl -fsS -H "$AUTH" "$base/api/v1/tree?recursive=true" | json '["entries"].__len__()')
settle
tree=$(kib "$pid" VmRSS)
stop

echo "| daemon | RSS | vs fresh |"
echo "| --- | --- | --- |"
for row in "fresh:$fresh" "3 terminals after 90 MB each:$flooded" "after closing them:$closed" "after a tree of $entries entries:$tree"; do
  awk -v n="${row%%:*}" -v k="${row##*:}" -v f="$fresh" \
    'BEGIN { printf "| %s | %.1f MiB | %.2fx |\n", n, k / 1024, k / f }'
done
echo

# GET and PUT of 1 GiB, on a fresh daemon (its peak is theirs).
[ -n "${NO_TRANSFERS:-}" ] && exit 0
start
size=$((1 << 30))
head -c $size /dev/urandom >"$ws/big.bin"
src="$dir/src.bin"
head -c $size /dev/urandom >"$src"
sync
cat "$ws/big.bin" >/dev/null # both from the page cache, like the peer
t0=$(date +%s.%N)
sha1sum <"$ws/big.bin" >/dev/null
t1=$(date +%s.%N)
before=$(kib "$pid" VmHWM)
etag=$(curl -fsS -D - -o /dev/null -H "$AUTH" "$base/api/v1/files/big.bin" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
t2=$(date +%s.%N)
curl -fsS -o /dev/null -H "$AUTH" "$base/api/v1/files/big.bin"
t3=$(date +%s.%N)
cat "$src" >/dev/null
curl -fsS -o /dev/null -X PUT -T "$src" -H "$AUTH" -H "If-Match: $etag" "$base/api/v1/files/big.bin"
t4=$(date +%s.%N)
peak=$(kib "$pid" VmHWM)
cmp -s "$src" "$ws/big.bin" || { echo "PUT: the file differs from the body"; exit 1; }
echo "| 1 GiB | MB/s | vs sha1sum | daemon peak RSS |"
echo "| --- | --- | --- | --- |"
awk -v s=$size -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v p="$peak" -v q="$before" 'BEGIN {
  peer = s / (b - a) / 1e6; get = s / (d - c) / 1e6; put = s / (e - d) / 1e6
  printf "| sha1sum (peer) | %.0f | 1.00x | |\n", peer
  printf "| GET | %.0f | %.2fx | %.1f MiB (before: %.1f MiB) |\n", get, get / peer, p / 1024, q / 1024
  printf "| PUT (If-Match, fsync) | %.0f | %.2fx | %.1f MiB |\n", put, put / peer, p / 1024
}'
