#!/usr/bin/env bash
# Limits benchmark (not a test): slow, hostile and heavy clients.
# 1. 1 GiB downloads from nginx: direct, through an nginx reverse proxy and
#    through the workspaced proxy, alternated for ROUNDS rounds.
# 2. SLOW (2000) slowloris connections (half a request head each): the p99
#    of a normal request and the daemon's RSS before, during and after
#    (once header_timeout, HEADER_TIMEOUT here, has closed them).
# BASE=path/to/workspaced adds another build's proxy to the download table,
# in the same rounds. Everything runs on loopback and stops by itself;
# prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

ROUNDS=${ROUNDS:-3}
SLOW=${SLOW:-2000}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10}
WORKERS=${WORKERS:-2}
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

mkdir -p "$work/www" "$work/ws" "$work/up" "$work/rp"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
truncate -s 1G "$work/www/1g.bin"
chmod 755 "$work"; chmod -R a+rX "$work/www"  # nginx workers run as www-data
# As bench/proxy.sh: the upstream (one worker, sendfile) and the reverse
# proxy under test (WORKERS workers, keep-alive upstream, no buffering).
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
      proxy_buffering off;
    }
  }
}
CONF
nginx -c "$work/up/nginx.conf" -p "$work/up" & pids+=($!)
nginx -c "$work/rp/nginx.conf" -p "$work/rp" & NGPID=$!; pids+=($NGPID)

TOKEN=bench-token-0123456789
WORKSPACED_TOKEN=$TOKEN RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$WD" \
  --workspace "$work/ws" --state-dir "$work/state" --default-visibility public \
  --header-timeout "${HEADER_TIMEOUT}s" \
  2> "$work/workspaced.log" & WPID=$!; pids+=($WPID)

if [ -n "${BASE:-}" ]; then
  WB=$(free_port)
  WORKSPACED_TOKEN=$TOKEN RUST_LOG=warn "$BASE" serve --listen "127.0.0.1:$WB" \
    --workspace "$work/ws" --state-dir "$work/state-base" --default-visibility public \
    2> "$work/base.log" & BPID=$!; pids+=($BPID)
fi

wait_for() { for _ in $(seq 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; cat "$work"/*.log "$work"/*/*.log >&2; exit 1; }
wait_for "http://127.0.0.1:$UP/1k.bin"
wait_for "http://127.0.0.1:$NG/1k.bin"
wait_for "http://127.0.0.1:$WD/proxy/$UP/1k.bin"
[ -n "${BASE:-}" ] && wait_for "http://127.0.0.1:$WB/proxy/$UP/1k.bin"

echo "### Limits: $(date -u +%Y-%m-%d), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg) at the start"
echo
# The file is sparse: its first read fills the page cache, so it is read
# once before anything is measured.
cat "$work/www/1g.bin" > /dev/null
# MB/s, and the proxy's CPU seconds for the GiB (schedstat, all threads of
# the given processes): on a shared machine the rate follows the load, the
# CPU time much less.
speed() { curl -s -o /dev/null -w '%{speed_download}' "$1"; }
oncpu() { local s=0 p; for p in "$@"; do s=$((s + $(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'))); done; echo $s; }
measure() { # url pids...; sets MBS and CPUS
  local url=$1; shift; local a b; a=$(oncpu "$@")
  MBS=$(speed "$url"); b=$(oncpu "$@")
  CPUS=$(python3 -c "print(f'{($b-$a)/1e9:.2f}')")
}
mb() { python3 -c "print(f'{$1/1e6:.0f}')"; }
if [ -n "${BASE:-}" ]; then
  echo "| 1 GiB download: MB/s (proxy CPU s) | direct | nginx proxy | workspaced proxy | workspaced / nginx | BASE proxy | BASE / nginx |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
else
  echo "| 1 GiB download: MB/s (proxy CPU s) | direct | nginx proxy | workspaced proxy | workspaced / nginx |"
  echo "| --- | ---: | ---: | ---: | ---: |"
fi
NGW=$(pgrep -P "$NGPID" | tr '\n' ' ')
for round in $(seq "$ROUNDS"); do
  d=$(speed "http://127.0.0.1:$UP/1g.bin")
  # shellcheck disable=SC2086
  measure "http://127.0.0.1:$NG/1g.bin" $NGW; n=$MBS; nc=$CPUS
  measure "http://127.0.0.1:$WD/proxy/$UP/1g.bin" "$WPID"; w=$MBS; wc=$CPUS
  row="| round $round | $(mb "$d") | $(mb "$n") ($nc) | $(mb "$w") ($wc) | $(python3 -c "print(f'{$w/$n:.2f}x')") |"
  if [ -n "${BASE:-}" ]; then
    measure "http://127.0.0.1:$WB/proxy/$UP/1g.bin" "$BPID"; b=$MBS; bc=$CPUS
    row="$row $(mb "$b") ($bc) | $(python3 -c "print(f'{$b/$n:.2f}x')") |"
  fi
  echo "$row"
done
echo

# Slowloris: SLOW connections each holding half a head, opened by one
# Python process; p99 of 200 sequential GETs of /healthz before and while
# they are open; RSS before, while, and after header_timeout closed them.
python3 - "$WD" "$WPID" "$SLOW" "$HEADER_TIMEOUT" <<'PY'
import http.client, socket, sys, time
port, pid, slow, header_timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def p99():
    lat = []
    for _ in range(200):
        c = http.client.HTTPConnection("127.0.0.1", port)
        t0 = time.perf_counter()
        c.request("GET", "/healthz"); r = c.getresponse(); r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        c.close()
    lat.sort()
    return lat[len(lat) * 99 // 100 - 1], lat[len(lat) // 2]
before_rss = rss(); before = p99()
socks = []
t0 = time.monotonic()
for _ in range(slow):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    socks.append(s)
opened = time.monotonic() - t0
time.sleep(0.5)
during_rss = rss(); during = p99()
open_now = 0
# All closed by the daemon: each read ends (EOF or reset).
deadline = t0 + header_timeout + 30
closed = 0
for s in socks:
    s.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while s.recv(4096):
            pass
        closed += 1
    except (ConnectionResetError, socket.timeout, OSError) as e:
        if not isinstance(e, socket.timeout):
            closed += 1
    s.close()
after_all = time.monotonic() - t0
time.sleep(1)
after_rss = rss()
print(f"| {slow} slowloris connections (header_timeout {header_timeout:.0f} s) | p50 | p99 | daemon RSS |")
print("| --- | ---: | ---: | ---: |")
print(f"| before | {before[1]:.2f} ms | {before[0]:.2f} ms | {before_rss:.1f} MiB |")
print(f"| while open | {during[1]:.2f} ms | {during[0]:.2f} ms | {during_rss:.1f} MiB |")
print(f"| after they were closed | | | {after_rss:.1f} MiB |")
print()
print(f"{slow} opened in {opened:.1f} s; {closed} of {slow} closed by the daemon, the last {after_all:.1f} s after the first was opened.")
PY
