#!/usr/bin/env bash
# Time from page load to the first terminal prompt in the Web IDE (issue 15,
# target under 2 s), with the web console on the same daemon as the peer:
# a new terminal after a cold page load, and a live terminal's screen after
# a reload. Release daemon, the extension built, the VS Code build cached.
#
#   bash bench/webide-terminal.sh [RUNS]      (default 5)
#
# Prints one line per run and the medians with the Web IDE / console ratios,
# for docs/benchmarks.md ("Web IDE: terminals (issue 15)"). Then the same
# page load in a browser no automation is attached to (bench/webide_plain.mjs:
# cold, warm and hot, as a developer's browser sees it; Playwright's DevTools
# session makes V8 parse the main script again, 0.5 to 1 s of every load
# above that no developer pays).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
cargo build --release --quiet -p workspaced --bin workspaced
(cd editor-assets/web-ide && npm ci --no-audit --no-fund --silent)
sh scripts/webide-dist.sh >/dev/null
(cd tests/browser && npm ci --no-audit --no-fund --silent)
WORKSPACED_BUILD_PROFILE=release node bench/webide_terminal.mjs "$RUNS"
WORKSPACED_BUILD_PROFILE=release node bench/webide_plain.mjs "$RUNS"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
