#!/usr/bin/env bash
# Integration tests against workers built with a sanitizer.
#
#   scripts/test-sanitizers.sh [address] [thread]     # default: both, address first
#
# For each sanitizer S: `swift build --sanitize=S --scratch-path .build-S`, then tests/integration on a fresh
# throwaway stack (scripts/test-integration.sh run) in .runfeed/san-S on its own ports (run_one; distinct from
# `make run` and `make test`) running .build-S/debug/runfeed with the sanitizer's options in the workers'
# environment (stack.sh passes its environment through, and so do the tests' own throwaway workers and pools).
# Sanitizer reports go to $STATE/log/{asan,tsan}.<pid>; any such file fails the run (and is printed),
# as does a failing test. The stack is always stopped; its state dir and logs stay for inspection.
#
# Environment:
#   SAN_PYTEST_ARGS   pytest arguments before tests/integration   [-q]   (PYTEST_ARGS of
#                     scripts/test-integration.sh; e.g. "-q -x --deselect tests/integration/test_pool.py")
#   SAN_SKIP_BUILD=1  reuse the existing .build-S binaries
#
# Workers run like `make test`'s (TEST_SERVE_ARGS of scripts/test-integration.sh).
# TSAN suppressions: scripts/tsan.supp (each entry explained there).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$RUNFEED_ROOT"

SANITIZERS=("$@")
((${#SANITIZERS[@]})) || SANITIZERS=(address thread)

# Fixed ports per sanitizer: index 1 = address, 2 = thread.
san_index() {
    case "$1" in
        address) echo 1 ;;
        thread) echo 2 ;;
        *) die "unknown sanitizer '$1' (address or thread)" ;;
    esac
}

trap 'exit 130' INT TERM

run_one() {
    local san=$1 i state rc=0 t0 reports=()
    i=$(san_index "$san")
    t0=$SECONDS
    if [[ ${SAN_SKIP_BUILD:-0} != 1 ]]; then
        log "[$san] swift build --sanitize=$san --scratch-path .build-$san"
        swift build --sanitize="$san" --scratch-path ".build-$san" || { warn "[$san] build failed"; return 1; }
    fi
    log "[$san] build: $((SECONDS - t0)) s"

    state=$RUNFEED_ROOT/.runfeed/san-$san
    unset ASAN_OPTIONS TSAN_OPTIONS
    case "$san" in
        # quarantine_size_mb=16 (default 256): freed memory waits there before it is reused, so with the default
        # a worker's RSS grows by up to 256 MB of freed memory whatever it holds, and test_faults' check that
        # 2,000 departed clients leave RSS near its baseline measures the quarantine, not the worker. The last
        # 16 MB of frees are still checked for use after free.
        address) export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:quarantine_size_mb=16:log_path=$state/log/asan" ;;
        thread) export TSAN_OPTIONS="log_path=$state/log/tsan:halt_on_error=0:second_deadlock_stack=1:suppressions=$RUNFEED_ROOT/scripts/tsan.supp" ;;
    esac

    local t1=$SECONDS
    # Every port below the kernel's ephemeral range (32768-60999): the suite opens thousands of outgoing
    # connections, and one of them held 56472 when Redis tried to bind it. The stack is stopped when the run
    # ends: workers exit there, and TSAN/ASAN write any report still pending at exit.
    TEST_STATE="$state" \
    TEST_PG_PORT=$((25470 + i)) \
    TEST_PG_REPLICA=1 \
    TEST_PG_REPLICA_PORT=$((27470 + i)) \
    TEST_REDIS_PORT=$((26470 + i)) \
    TEST_HTTPS_PORT=$((8470 + i)) \
    TEST_HTTP_PORT=$((8480 + i)) \
    TEST_WEBAPP_PORT=$((23040 + i)) \
    TEST_CH_HTTP_PORT=$((18170 + i)) \
    TEST_CH_TCP_PORT=$((19170 + i)) \
    TEST_METRICS_BASE=$((19700 + 100 * i)) \
    TEST_BIN="$RUNFEED_ROOT/.build-$san/debug/runfeed" \
    TEST_LOG_LINES=60 \
    PYTEST_ARGS="${SAN_PYTEST_ARGS:--q}" \
    SWIFT_BACKTRACE=enable=no \
        bash scripts/test-integration.sh run || rc=$?
    ((rc == 0)) || warn "[$san] integration tests failed (exit $rc)"
    log "[$san] stack + tests: $((SECONDS - t1)) s"

    shopt -s nullglob
    case "$san" in
        address) reports=("$state"/log/asan.*) ;;
        thread) reports=("$state"/log/tsan.*) ;;
    esac
    shopt -u nullglob
    if ((${#reports[@]})); then
        local f
        for f in "${reports[@]}"; do
            printf '\n===== %s =====\n' "$f" >&2
            cat "$f" >&2
        done
        warn "[$san] ${#reports[@]} sanitizer report file(s) in $state/log"
        ((rc != 0)) || rc=1
    else
        log "[$san] sanitizer reports: 0"
    fi
    RESULTS+=("$san: tests exit $rc, report files ${#reports[@]}, $((SECONDS - t0)) s")
    return "$rc"
}

RESULTS=()
overall=0
for san in "${SANITIZERS[@]}"; do
    run_one "$san" || overall=1
done
printf '%s\n' "${RESULTS[@]}" >&2
exit "$overall"
