#!/usr/bin/env bash
# Integration tests against workers built with a sanitizer.
#
#   scripts/test-sanitizers.sh [address] [thread]     # default: both, address first
#
# For each sanitizer S: `swift build --sanitize=S --scratch-path .build-S`, then a fresh throwaway stack
# in .runfeed/san-S on its own ports (run_one; distinct from `make run` and `make test`) running
# .build-S/debug/runfeed with the sanitizer's options in the workers' environment (stack.sh passes its
# environment through, and so do the tests' own throwaway workers and pools), then tests/integration.
# Sanitizer reports go to $STATE/log/{asan,tsan}.<pid>; any such file fails the run (and is printed),
# as does a failing test. The stack is always stopped; its state dir and logs stay for inspection.
#
# Environment:
#   SAN_PYTEST_ARGS   pytest arguments before tests/integration   [-q]   (split on spaces, no quoting; e.g.
#                     "-q -x --deselect tests/integration/test_pool.py")
#   SAN_SKIP_BUILD=1  reuse the existing .build-S binaries
#
# Workers run like `make test`'s: --hold-ms 4000 --log-level debug (test_disconnect.py reads the debug log).
# TSAN suppressions: scripts/tsan.supp (each entry explained there).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$RUNFEED_ROOT"

SANITIZERS=("$@")
((${#SANITIZERS[@]})) || SANITIZERS=(address thread)
read -r -a PYTEST_ARGS <<<"${SAN_PYTEST_ARGS:--q}" || true

# Fixed ports per sanitizer: index 1 = address, 2 = thread.
san_index() {
    case "$1" in
        address) echo 1 ;;
        thread) echo 2 ;;
        *) die "unknown sanitizer '$1' (address or thread)" ;;
    esac
}

STACK_ENV_STATE=''
stop_stack() {
    [[ -n $STACK_ENV_STATE ]] || return 0
    bash scripts/stack.sh stop || warn "stack.sh stop failed for $RUNFEED_STATE"
    STACK_ENV_STATE=''
}
trap stop_stack EXIT
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
    # Every port below the kernel's ephemeral range (32768-60999): the suite opens thousands of outgoing
    # connections, and one of them held 56472 when Redis tried to bind it.
    export RUNFEED_STATE="$state" \
           RUNFEED_PG_PORT=$((25470 + i)) \
           RUNFEED_REDIS_PORT=$((26470 + i)) \
           RUNFEED_HTTPS_PORT=$((8470 + i)) \
           RUNFEED_HTTP_PORT=$((8480 + i)) \
           RUNFEED_WEBAPP_PORT=$((23040 + i)) \
           RUNFEED_CH_HTTP_PORT=$((18170 + i)) \
           RUNFEED_CH_TCP_PORT=$((19170 + i)) \
           RUNFEED_METRICS_PORT_BASE=$((19700 + 100 * i)) \
           RUNFEED_WORKERS=2 \
           RUNFEED_BIN="$RUNFEED_ROOT/.build-$san/debug/runfeed" \
           RUNFEED_SERVE_ARGS="--hold-ms 4000 --log-level debug" \
           RUNFEED_DEMO_SIMULATOR=0 \
           RUNFEED_PG_REPLICA=1 \
           RUNFEED_PG_REPLICA_PORT=$((27470 + i)) \
           RUNFEED_PG_REPLICA_DELAY_MS=50 \
           SWIFT_BACKTRACE=enable=no
    unset ASAN_OPTIONS TSAN_OPTIONS
    case "$san" in
        address) export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:log_path=$state/log/asan" ;;
        thread) export TSAN_OPTIONS="log_path=$state/log/tsan:halt_on_error=0:second_deadlock_stack=1:suppressions=$RUNFEED_ROOT/scripts/tsan.supp" ;;
    esac

    local t1=$SECONDS
    STACK_ENV_STATE=$state
    {
        bash scripts/stack.sh clean \
        && bash scripts/stack.sh start --seed \
        && (set -a && . "$state/demo.env" && set +a \
            && python3 -m pytest "${PYTEST_ARGS[@]}" tests/integration)
    } || rc=$?
    if ((rc != 0)); then
        warn "[$san] integration tests failed (exit $rc); stack logs follow"
        LOG_LINES=60 bash scripts/stack.sh logs || true
    fi
    stop_stack   # workers exit here: TSAN/ASAN write any report still pending at exit
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
