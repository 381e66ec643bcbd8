#!/usr/bin/env bash
# The Web IDE of this checkout against the one of another commit, side by
# side on one daemon (bench/webide_ab.mjs): page load to the explorer and to
# the first terminal prompt, cold, warm and hot. The other commit's host
# page, extension and VS Code build (its own scripts/webide-dist.sh, cached
# under its own name) are laid out in a temporary directory.
#
#   bash bench/webide-ab.sh REF [RUNS]      (RUNS default 5; NET=<Mbit/s>,<ms> throttles)
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:?usage: bash bench/webide-ab.sh REF [RUNS]}
RUNS=${2:-5}
cargo build --release --quiet -p workspaced --bin workspaced
(cd editor-assets/web-ide && npm ci --no-audit --no-fund --silent)
(cd tests/browser && npm ci --no-audit --no-fund --silent)
B_VSCODE=$(sh scripts/webide-dist.sh)
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
git archive "$REF" editor-assets/web-ide scripts | tar -x -C "$base"
# The same locked dependencies (esbuild, TypeScript) as this checkout's.
ln -s "$PWD/editor-assets/web-ide/node_modules" "$base/editor-assets/web-ide/node_modules"
(cd "$base/editor-assets/web-ide" && node build.mjs >/dev/null)
A_VSCODE=$(sh "$base/scripts/webide-dist.sh")
A_HOST="$base/editor-assets/web-ide" A_VSCODE="$A_VSCODE" B_VSCODE="$B_VSCODE" \
  WORKSPACED_BUILD_PROFILE=release node bench/webide_ab.mjs "$RUNS"
