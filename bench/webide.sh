#!/usr/bin/env bash
# The Web IDE's benchmark (issue 15): page load to the explorer showing the
# root of a 30,000-file checkout (beside a one-file workspace), and save
# latency from the save key to the new content on disk, p50/p99, with the
# bytes each save sends (beside a whole-file PUT of the same change). Real
# Chromium, the real VS Code web build, the release daemon.
#
#   bash bench/webide.sh          (LOADS=5 SAVES=30 by default)
#
# Figures go to docs/benchmarks.md ("Web IDE (issue 15)").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p workspaced --bin workspaced
(cd editor-assets/web-ide && npm ci --no-audit --no-fund --silent)
sh scripts/webide-dist.sh >/dev/null
(cd tests/browser && npm ci --no-audit --no-fund --silent)
WORKSPACED_BUILD_PROFILE=release node bench/webide.mjs
# The 30,000-file checkout's page load again, in a browser no automation is
# attached to (bench/webide_plain.mjs says why).
CHECKOUT=1 WORKSPACED_BUILD_PROFILE=release node bench/webide_plain.mjs "${LOADS:-5}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
