#!/usr/bin/env bash
# Ports and proxy benchmark (not a test): the same nginx upstream and the
# same wrk load, direct, through nginx as a reverse proxy, and through
# workspaced; then tunnel throughput for 1 GiB, port detection latency and
# the daemon's idle CPU. Prints a Markdown table for docs/benchmarks.md.
# Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
# The daemon's runtime has 2 worker threads (daemon/src/main.rs); the nginx
# reverse proxy gets as many worker processes, so both have the same cores.
WORKERS=${WORKERS:-2}
# VISIBILITY=private HEADER="Authorization: Bearer bench-token-0123456789"
# measures the credential check of a private port (HEADER goes with every
# request, to nginx too).
VISIBILITY=${VISIBILITY:-public}
# BIN=path/to/workspaced measures another build (say, main's) as it is.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p workspaced
  BIN=${CARGO_TARGET_DIR:-target}/release/workspaced
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NG=$(free_port); WD=$(free_port)

mkdir -p "$work/www" "$work/ws"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
truncate -s 1G "$work/www/1g.bin"
chmod 755 "$work"; chmod -R a+rX "$work/www"  # nginx workers run as www-data
# Two nginx instances: the upstream (one worker), and the reverse proxy
# under test (WORKERS workers, keep-alive to the upstream, no buffering).
mkdir -p "$work/up" "$work/rp"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/up/nginx.pid;
error_log $work/up/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$UP; root $work/www; }
}
CONF
cat > "$work/rp/nginx.conf" <<CONF
worker_processes $WORKERS;
daemon off;
pid $work/rp/nginx.pid;
error_log $work/rp/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering off;
    }
  }
}
CONF
nginx -c "$work/up/nginx.conf" -p "$work/up" & pids+=($!)
nginx -c "$work/rp/nginx.conf" -p "$work/rp" & pids+=($!)

TOKEN=bench-token-0123456789
WORKSPACED_TOKEN=$TOKEN RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$WD" \
  --workspace "$work/ws" --state-dir "$work/state" --default-visibility "$VISIBILITY" \
  2> "$work/workspaced.log" & WPID=$!; pids+=($WPID)

wait_for() { for _ in $(seq 200); do curl -fs ${HEADER:+-H "$HEADER"} -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; cat "$work"/*.log "$work"/*/*.log >&2; exit 1; }
wait_for "http://127.0.0.1:$UP/1k.bin"
wait_for "http://127.0.0.1:$NG/1k.bin"
wait_for "http://127.0.0.1:$WD/proxy/$UP/1k.bin"

# wrk's latency in microseconds.
us() { python3 -c "import re,sys; v,u=re.fullmatch(r'([0-9.]+)(us|ms|s)', sys.argv[1]).groups(); print(float(v)*{'us':1,'ms':1e3,'s':1e6}[u])" "$1"; }
run_wrk() { # name url; leaves RPS and P99 (us) for the ratios
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${HEADER:+-H "$HEADER"} "$2")
  local p50 p99
  RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  P99=$(us "$p99")
  echo "| $1 | $RPS | $p50 | $p99 |"
}

echo "### Ports and proxy: $(date -u +%Y-%m-%d), $(nproc) cores, wrk -t$THREADS -c$CONNS -d$DURATION, GET of 1 KiB, nginx proxy with $WORKERS workers"
echo
if [ -z "${SKIP_WRK:-}" ]; then
echo "| path | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
run_wrk "direct to nginx" "http://127.0.0.1:$UP/1k.bin"
# Alternated, so a neighbour's load falls on both; ratios per round.
ratios=()
for round in $(seq "${ROUNDS:-3}"); do
  run_wrk "nginx reverse proxy ($round)" "http://127.0.0.1:$NG/1k.bin"
  n_rps=$RPS; n_p99=$P99
  run_wrk "workspaced, path form ($round)" "http://127.0.0.1:$WD/proxy/$UP/1k.bin"
  ratios+=("$(python3 -c "print(f'round $round: requests/s {$RPS/$n_rps:.2f}x nginx, p99 {$P99/$n_p99:.2f}x nginx')")")
done
echo
printf '%s.\n' "${ratios[@]}"
echo
fi
[ -n "${PROXY_ONLY:-}" ] && exit 0

# Tunnel: 1 GiB from nginx through `workspaced forward` and the tunnel.
FW=$(free_port)
WORKSPACED_TOKEN=$TOKEN "$BIN" forward --url "http://127.0.0.1:$WD" "$FW:$UP" 2> "$work/forward.log" & pids+=($!)
wait_for "http://127.0.0.1:$FW/1k.bin"
# The file is sparse: its first read fills the page cache (1 GiB of zeroed
# pages, charged to whichever download comes first), so it is read once
# before the three are measured.
cat "$work/www/1g.bin" > /dev/null
direct=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$UP/1g.bin")
proxied=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$WD/proxy/$UP/1g.bin")
speed=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$FW/1g.bin")
mb() { python3 -c "print(f'{$1/1e6:.0f}')"; }
echo "| 1 GiB download | MB/s |"
echo "| --- | ---: |"
echo "| direct from nginx | $(mb "$direct") |"
echo "| through the workspaced proxy | $(mb "$proxied") |"
echo "| through \`workspaced forward\` and the tunnel | $(mb "$speed") |"
echo
[ -n "${TUNNEL_ONLY:-}" ] && exit 0

# Detection latency: bind, then poll the API until the port is listed.
python3 - "$WD" "$TOKEN" <<'PY'
import json, random, socket, statistics, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
def listed(p):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/ports",
                                 headers={"Authorization": f"Bearer {token}"})
    return any(e["port"] == p for e in json.load(urllib.request.urlopen(req)))
lat = []
for _ in range(20):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    p = s.getsockname()[1]; t0 = time.monotonic()
    while not listed(p):
        if time.monotonic() - t0 > 5: raise SystemExit("not detected in 5 s")
        time.sleep(0.005)
    lat.append((time.monotonic() - t0) * 1000)
    s.close()
    # A random pause, so listens fall anywhere between two of the daemon's reads.
    time.sleep(0.3 + random.random() * 0.25)
lat.sort()
print(f"Detection latency over 20 listens: p50 {statistics.median(lat):.0f} ms, max {lat[-1]:.0f} ms.")
PY

# Idle CPU: the daemon's time on a CPU over 30 s with nothing to do, from
# the scheduler's own count (schedstat, in ns, all threads); the tick
# counts of /proc/PID/stat charge a whole tick to a thread that happens to
# run when it falls, which overstates short periodic work.
# First while the workspace counts as in use (the API calls above are
# activity; ports are read every 300 ms), then once it is quiet (no
# activity for 60 s; read every 750 ms).
oncpu() { cat /proc/"$WPID"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
sleep 2; a=$(oncpu); sleep 30; b=$(oncpu)
python3 -c "print(f'Idle CPU over 30 s, in use: {($b-$a)/1e9/30*100:.2f}% of one core.')"
sleep 30; a=$(oncpu); sleep 30; b=$(oncpu)
python3 -c "print(f'Idle CPU over 30 s, quiet: {($b-$a)/1e9/30*100:.2f}% of one core.')"
