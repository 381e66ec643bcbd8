#!/bin/sh
# assemble.sh: lays out the init container image's file tree in a directory,
# without Docker, so the injector can run from it exactly as in the image:
#
#   OUT/usr/local/bin/workspace-injector   the init container's program
#   OUT/opt/gl-tools/workspaced            what `install` copies ...
#   OUT/opt/gl-tools/editor/               ... the editor distribution
#   OUT/opt/gl-tools/versions.json         versions recorded in manifest.json
#
# `install` defaults `--from` to opt/gl-tools under the root its own binary
# sits in (usr/local/bin), so `OUT/usr/local/bin/workspace-injector install
# --to DIR` behaves as the image's init container does.
#
# usage: assemble.sh --bin-dir DIR --editor DIR [--editor-version V] OUT
set -eu

usage() {
  echo "usage: assemble.sh --bin-dir DIR --editor DIR [--editor-version V] OUT" >&2
  exit 64
}

bin_dir=""
editor=""
editor_version=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
    --editor) [ $# -ge 2 ] || usage; editor=$2; shift 2 ;;
    --editor-version) [ $# -ge 2 ] || usage; editor_version=$2; shift 2 ;;
    -*) usage ;;
    *) [ -z "$out" ] || usage; out=$1; shift ;;
  esac
done
[ -n "$bin_dir" ] && [ -n "$editor" ] && [ -n "$out" ] || usage
for f in "$bin_dir/workspace-injector" "$bin_dir/workspaced"; do
  [ -x "$f" ] || { echo "assemble.sh: $f is missing or not executable; build it first" >&2; exit 1; }
done
[ -d "$editor" ] || { echo "assemble.sh: the editor distribution $editor is not a directory" >&2; exit 1; }

mkdir -p "$out/usr/local/bin" "$out/opt/gl-tools"
cp "$bin_dir/workspace-injector" "$out/usr/local/bin/workspace-injector"
cp "$bin_dir/workspaced" "$out/opt/gl-tools/workspaced"
chmod 0755 "$out/usr/local/bin/workspace-injector" "$out/opt/gl-tools/workspaced"
rm -rf "$out/opt/gl-tools/editor"
cp -a "$editor" "$out/opt/gl-tools/editor"

if [ -z "$editor_version" ] && [ -f "$editor/package.json" ]; then
  editor_version=$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$editor/package.json" | head -n 1)
fi
daemon_version=$("$bin_dir/workspaced" --version 2>/dev/null | awk '{print $NF}' || true)
printf '{"editor": "%s", "workspaced": "%s"}\n' "${editor_version:-unknown}" "${daemon_version:-unknown}" \
  >"$out/opt/gl-tools/versions.json"

# Pods run as an arbitrary UID in group 0: the group reads everything and
# traverses every directory; nothing is group- or world-writable.
chmod -R g+rX,go-w "$out/usr" "$out/opt"
echo "assembled the init container tree in $out"
