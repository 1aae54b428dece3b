#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/targets/ for N seconds each (default 10), after building them.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Each target starts from its committed seed corpus fuzz/corpus/<target>/ (read-only: new inputs go to a temp
# dir, so the committed corpus does not churn). Targets run FUZZ_PARALLEL at a time (default: number of CPUs).
# Exits non-zero if any target crashes, hangs (>5 s per input), runs out of memory or leaks; the crashing input
# is kept under .build-fuzz/crashes/<target>/ and its path printed. Reproduce with
#   .build-fuzz/<target> <crash-file>
# Logs: .build-fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"; shift || true
bash fuzz/build.sh "$@"

if [ $# -gt 0 ]; then names=("$@"); else
    names=(); for f in fuzz/targets/*.swift; do names+=("$(basename "$f" .swift)"); done
fi
OUT="${FUZZ_BUILD_DIR:-.build-fuzz}"
par="${FUZZ_PARALLEL:-$(nproc 2>/dev/null || echo 1)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/runfeed-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT/logs"

run_one() {
    local n=$1 crashes="$OUT/crashes/$1"
    mkdir -p "$work/$n" "$crashes"
    # -detect_leaks=0: Swift's runtime metadata caches look like leaks to LSan; ASan still catches memory errors.
    # SWIFT_BACKTRACE=enable=no: let a Swift trap reach libFuzzer's crash handler (which saves the input).
    SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" \
    "$OUT/$n" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$work/$n" "fuzz/corpus/$n" >"$OUT/logs/$n.log" 2>&1
}

pids=(); status=0
for n in "${names[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n || true; done
    run_one "$n" & pids+=("$!")
done
for i in "${!names[@]}"; do
    n=${names[$i]}
    rc=0; wait "${pids[$i]}" || rc=$?
    log="$OUT/logs/$n.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz %-13s ok    %8s execs  %6s exec/s  %s\n' "$n" "${execs:-?}" "${eps:-?}" "$cov"
    else
        status=1
        printf 'fuzz %-13s FAIL (exit %s)\n' "$n" "$rc" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY)|Fatal error|runtime failure|^Base64:' "$log" | head -10 >&2 || true
        grep -E '^ *#[0-9]+ .* (/[^ ]*/)?(Sources|fuzz)/[^ ]*\.swift:' "$log" | head -4 >&2 || true
        grep -o 'Test unit written to .*' "$log" | sed "s/^Test unit written to /  crashing input: /" >&2 || true
        echo "  log: $log" >&2
    fi
done
exit $status
