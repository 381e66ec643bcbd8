#!/bin/sh
# install_clone.sh: times `workspace-injector install` against `cp -a` of the
# same tree (a code-server-sized one by default), the no-op rerun, and
# `workspace-injector clone` against `git clone` of the same repository.
# Runs side by side in one invocation and prints a Markdown table with ratios.
#
# usage: injector/bench/install_clone.sh [--files N] [--mb M] [--runs R] [--repo-files N]
# Needs: a release build (built here if missing), git, python3 (to generate
# the trees quickly). Uses $TMPDIR (about 3 x M MB of free space).
set -eu

files=20000
mb=600
runs=3
repo_files=5000
while [ $# -gt 0 ]; do
  case "$1" in
    --files) files=$2; shift 2 ;;
    --mb) mb=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --repo-files) repo_files=$2; shift 2 ;;
    *) echo "usage: $0 [--files N] [--mb M] [--runs R] [--repo-files N]" >&2; exit 64 ;;
  esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/workspace-injector
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --release -p workspace-injector)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-injector.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "generating a tree of $files files, about $mb MB ..." >&2
python3 - "$work/src" "$files" "$mb" <<'PY'
import os, sys, random
root, files, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(7)
os.makedirs(os.path.join(root, "editor"))
with open(os.path.join(root, "workspaced"), "wb") as f:
    f.write(os.urandom(8 << 20))
os.chmod(os.path.join(root, "workspaced"), 0o755)
total = mb << 20
# A few large files (like node and its native modules), many small ones.
sizes = [int(random.paretovariate(1.2) * 2000) for _ in range(files)]
scale = total / sum(sizes)
block = os.urandom(1 << 20)
for i, s in enumerate(sizes):
    d = os.path.join(root, "editor", f"lib/d{i % 400:03d}/s{i % 7}")
    os.makedirs(d, exist_ok=True)
    n = max(1, int(s * scale))
    with open(os.path.join(d, f"f{i}.js"), "wb") as f:
        while n > 0:
            k = min(n, len(block))
            f.write(block[:k]); n -= k
os.makedirs(os.path.join(root, "editor/bin"))
os.symlink("../lib/d000/s0/f0.js", os.path.join(root, "editor/bin/link"))
PY
du -sh "$work/src" >&2
# Warm the page cache so both sides read from memory.
tar -cf - -C "$work" src >/dev/null

cp_times=""
inst_times=""
for i in $(seq "$runs"); do
  rm -rf "$work/cp" "$work/inst"; mkdir -p "$work/inst"; sync
  t0=$(now); cp -a "$work/src" "$work/cp"; sync; t1=$(now)
  cp_times="$cp_times $(elapsed "$t0" "$t1")"
  t0=$(now); "$bin" install --from "$work/src" --to "$work/inst/.gl-tools" >/dev/null; sync; t1=$(now)
  inst_times="$inst_times $(elapsed "$t0" "$t1")"
done
t0=$(now); "$bin" install --from "$work/src" --to "$work/inst/.gl-tools" >/dev/null; t1=$(now)
noop=$(elapsed "$t0" "$t1")
cp_med=$(echo "$cp_times" | tr ' ' '\n' | grep . | median)
inst_med=$(echo "$inst_times" | tr ' ' '\n' | grep . | median)

echo "generating a repository of $repo_files files ..." >&2
mkdir -p "$work/repo"
python3 - "$work/repo" "$repo_files" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
random.seed(3)
for i in range(n):
    d = os.path.join(root, f"src/m{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.txt"), "w") as f:
        f.write("".join(random.choice("abcdefghij \n") for _ in range(random.randint(200, 6000))))
PY
(cd "$work/repo" && git init -q -b main && git add . && git -c user.name=b -c user.email=b@x commit -qm init)
git clone -q --bare "$work/repo" "$work/repo.git"
url="file://$work/repo.git"
git_times=""
inj_times=""
for i in $(seq "$runs"); do
  rm -rf "$work/g" "$work/p"; mkdir -p "$work/g" "$work/p"
  t0=$(now); git clone -q "$url" "$work/g/repo"; t1=$(now)
  git_times="$git_times $(elapsed "$t0" "$t1")"
  t0=$(now); "$bin" clone --url "$url" --dest "$work/p/repo" >/dev/null 2>&1; t1=$(now)
  inj_times="$inj_times $(elapsed "$t0" "$t1")"
done
git_med=$(echo "$git_times" | tr ' ' '\n' | grep . | median)
inj_med=$(echo "$inj_times" | tr ' ' '\n' | grep . | median)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| measurement | workspace-injector (s) | peer (s) | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
echo "| install, $files files, $mb MB (median of $runs) | $inst_med | cp -a: $cp_med | $(ratio "$inst_med" "$cp_med") | <= 1.3 |"
echo "| install, no-op rerun | $noop | | | < 1 s |"
echo "| clone, $repo_files files, file:// (median of $runs) | $inj_med | git clone: $git_med | $(ratio "$inj_med" "$git_med") | <= 1.2 |"
