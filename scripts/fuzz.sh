#!/usr/bin/env bash
# Runs every cargo-fuzz target for a given time each, one at a time, then
# minimizes each corpus (fuzz/corpus/<target>/, committed and replayed on
# stable by daemon/tests/fuzz_corpus.rs and injector/tests/fuzz_corpus.rs).
#
#   scripts/fuzz.sh [seconds per target, default 180] [target...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# A crash stops that target: its input is left in fuzz/artifacts/<target>/;
# copy it to fuzz/regressions/<target>/ with the fix. Prints one line per
# target: executions, seconds, corpus size, crash or not.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

SECS=${1:-180}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -O >/dev/null || exit 1
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$SECS" -jobs=1 -workers=1 -max_len=65536 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$LOGS/$t.log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$t.log" | grep -o '[0-9]*$' | tail -1)
    cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1
    files=$(find "corpus/$t" -type f | wc -l)
    size=$(du -sk "corpus/$t" | cut -f1)
    if [ $rc -eq 0 ]; then verdict=ok; else verdict="CRASH (rc $rc, see fuzz/artifacts/$t/)"; fi
    printf '%-12s %10s execs %5ss  corpus %5s files %6s KB  %s\n' \
        "$t" "${execs:-?}" "$SECS" "$files" "$size" "$verdict"
    [ $rc -eq 0 ] || tail -40 "$LOGS/$t.log" >&2
done
