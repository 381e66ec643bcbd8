#!/usr/bin/env bash
# The daemon's own cost while nothing happens: CPU over a quiet window, RSS,
# and wake-ups per second (voluntary + involuntary context switches of all
# its threads), with 0 terminals and with 10 idle terminals side by side.
#
#   bash bench/idle.sh [SECONDS]     (default 60; WORKSPACED_BIN=path skips the build)
#
# Prints a Markdown table for docs/benchmarks.md ("Idle cost").
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${1:-60}
TERMINALS=10

if [ -z "${WORKSPACED_BIN:-}" ]; then
  cargo build --release --quiet -p workspaced --bin workspaced
fi
BIN=${WORKSPACED_BIN:-${CARGO_TARGET_DIR:-target}/release/workspaced}
TICKS=$(getconf CLK_TCK)
TOKEN=bench-token-0123456789

# Sum of a field of /proc/PID/task/*/status over all threads.
ctxt() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {s += $2} END {print s + 0}'
}
# utime + stime of the whole process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
rss_kib() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }

# run N [COMPONENT_PORT]: starts a daemon with N idle terminals (and, with a
# port, one supervised component listening there, which the daemon probes),
# measures, prints a table row.
run() {
  local n=$1 cport=${2:-} ws state port pid label=$1
  ws=$(mktemp -d) state=$(mktemp -d)
  : >"$state/config.toml"
  if [ -n "$cport" ]; then
    label="$n + 1 component"
    printf '[[components]]\nname = "editor"\ncommand = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "%s"]\nport = %s\n' \
      "$cport" "$cport" >"$state/config.toml"
  fi
  WORKSPACED_TOKEN=$TOKEN RUST_LOG=info "$BIN" serve --listen 127.0.0.1:0 \
    --workspace "$ws" --state-dir "$state" --idle-timeout 30m --config "$state/config.toml" \
    2>"$state/log" &
  pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/.*serving listen=127.0.0.1:\([0-9]*\).*/\1/p' "$state/log" | head -1)
    [ -n "${port:-}" ] && break
    sleep 0.1
  done
  [ -n "${port:-}" ] || { echo "daemon did not listen"; cat "$state/log"; kill "$pid"; exit 1; }
  for _ in $(seq "$n"); do
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -X POST \
      -d '{"command":["bash","--norc","--noprofile","-i"]}' "http://127.0.0.1:$port/api/v1/terminals"
  done
  sleep 10 # let start-up settle (shells print their prompts)
  local c0 t0 c1 t1 rss
  c0=$(ctxt "$pid") t0=$(cpu_ticks "$pid")
  sleep "$WINDOW"
  c1=$(ctxt "$pid") t1=$(cpu_ticks "$pid")
  rss=$(rss_kib "$pid")
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$ws" "$state"
  awk -v n="$label" -v w="$WINDOW" -v dt=$((t1 - t0)) -v hz="$TICKS" -v dc=$((c1 - c0)) -v rss="$rss" \
    'BEGIN { printf "| %s | %.3f%% | %.1f MiB | %.2f |\n", n, 100 * dt / hz / w, rss / 1024, dc / w }'
}

echo "| terminals | CPU (of one core, ${WINDOW} s) | RSS | wake-ups/s |"
echo "| --- | --- | --- | --- |"
run 0
run "$TERMINALS"
run "$TERMINALS" "$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
