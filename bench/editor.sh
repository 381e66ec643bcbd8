#!/usr/bin/env bash
# Time from `init_tools.sh` to a usable workbench (the explorer lists the
# project), with the editor install cached and the release binaries: the
# editor browser test's first case, run RUNS times, each from an empty
# directory (assemble.sh, install, init_tools.sh, Chromium through the proxy).
#
#   bash bench/editor.sh [RUNS]      (default 3)
#
# Prints one line per run and the median, for docs/benchmarks.md ("Editor").
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
cargo build --release --quiet -p workspaced -p workspace-injector --bins
sh scripts/editor-dist.sh >/dev/null
(cd tests/browser && npm ci --no-audit --no-fund --silent)
timing=test-artifacts/editor-timing.json
ready=() usable=()
for i in $(seq 1 "$RUNS"); do
  rm -f "$timing"
  WORKSPACED_BUILD_PROFILE=release node --test --test-name-pattern="starts from init_tools" \
    tests/browser/editor.test.mjs >/dev/null
  r=$(sed -n 's/.*"readyz_ms": \([0-9]*\).*/\1/p' "$timing")
  u=$(sed -n 's/.*"workbench_ms": \([0-9]*\).*/\1/p' "$timing")
  echo "run $i: /readyz 200 after $r ms, usable workbench after $u ms"
  ready+=("$r") usable+=("$u")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: /readyz 200 after $(median "${ready[@]}") ms, usable workbench after $(median "${usable[@]}") ms (load $(cut -d' ' -f1-3 /proc/loadavg))"
