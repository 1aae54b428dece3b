#!/usr/bin/env bash
# The integration tests' throwaway stack: the one place that says how it is configured (the TEST_* variables
# below and their defaults) and how tests/integration runs against it. `make test`, `make clean`,
# scripts/test-sanitizers.sh and scripts/test-redis-modes.sh use it.
#
#   scripts/test-integration.sh run [PYTEST_TARGET...]   # stack.sh clean, start --seed, pytest against it
#                                                        # (tests/integration when no target is given); on a
#                                                        # failure the stack's logs are printed; the stack is
#                                                        # always stopped, its state dir and logs stay
#   scripts/test-integration.sh stack COMMAND [ARG...]   # scripts/stack.sh COMMAND on the test stack
#                                                        # (start, stop, status, logs, examples, …)
#   scripts/test-integration.sh clean                    # stop the test stack and delete its state dir
#   scripts/test-integration.sh env                      # the stack's RUNFEED_* settings, one per line
#
# Environment (defaults in brackets). Every port lies below the kernel's ephemeral range (32768-60999) and
# differs from those of `make run` and `make bench`, so the test stack runs next to them:
#   TEST_STATE                state dir                                  [<repo>/.runfeed/test]
#   TEST_PG_PORT              PostgreSQL                                 [25433]
#   TEST_PG_REPLICA           1 = a streaming read replica that lags on purpose, so every test goes through
#                             the replica gate (tests/integration/test_replica.py changes the delay live)  [1]
#   TEST_PG_REPLICA_PORT      its port                                   [27433]
#   TEST_PG_REPLICA_DELAY_MS  its recovery_min_apply_delay               [50]
#   TEST_REDIS_PORT           Redis (a cluster: this port … +11)         [26380]
#   TEST_REDIS_MODE           plain | tls | cluster                      [$RUNFEED_REDIS_MODE, else plain]
#   TEST_HTTPS_PORT           nginx TLS                                  [8444]
#   TEST_HTTP_PORT            nginx plain HTTP                           [8081]
#   TEST_WEBAPP_PORT          the webapp stand-in                        [23031]
#   TEST_CLICKHOUSE           1 = ClickHouse, 0 = none (membership from PostgreSQL); unset: when installed
#                                                                        [$RUNFEED_CLICKHOUSE]
#   TEST_CH_HTTP_PORT         ClickHouse HTTP                            [18124]
#   TEST_CH_TCP_PORT          ClickHouse native TCP                      [19001]
#   TEST_METRICS_BASE         worker N's /metrics on TEST_METRICS_BASE + N   [19200]
#   TEST_WORKERS              workers                                    [2]
#   TEST_SERVE_ARGS           `runfeed serve` arguments (test_disconnect.py reads the debug log)
#                                                                        [--hold-ms 4000 --log-level debug]
#   TEST_BIN                  the runfeed binary                         [<repo>/.build/debug/runfeed]
#   TEST_LOG_LINES            lines of each log printed on a failure     [80]
#   PYTEST_ARGS               pytest arguments before the targets, split as the shell splits words (quotes
#                             group: PYTEST_ARGS='-q -k "live and not list"')   [-q]
# The demo simulator never runs on the test stack (the tests need stable data). Any other RUNFEED_* variable
# in the environment (e.g. RUNFEED_PGBOUNCER, RUNFEED_NGINX_WORKERS) reaches scripts/stack.sh unchanged.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEST_STATE=${TEST_STATE:-$RUNFEED_ROOT/.runfeed/test}
TEST_PG_PORT=${TEST_PG_PORT:-25433}
TEST_PG_REPLICA=${TEST_PG_REPLICA:-1}
TEST_PG_REPLICA_PORT=${TEST_PG_REPLICA_PORT:-27433}
TEST_PG_REPLICA_DELAY_MS=${TEST_PG_REPLICA_DELAY_MS:-50}
TEST_REDIS_PORT=${TEST_REDIS_PORT:-26380}
TEST_REDIS_MODE=${TEST_REDIS_MODE:-${RUNFEED_REDIS_MODE:-plain}}
TEST_HTTPS_PORT=${TEST_HTTPS_PORT:-8444}
TEST_HTTP_PORT=${TEST_HTTP_PORT:-8081}
TEST_WEBAPP_PORT=${TEST_WEBAPP_PORT:-23031}
TEST_CLICKHOUSE=${TEST_CLICKHOUSE:-${RUNFEED_CLICKHOUSE:-}}
TEST_CH_HTTP_PORT=${TEST_CH_HTTP_PORT:-18124}
TEST_CH_TCP_PORT=${TEST_CH_TCP_PORT:-19001}
TEST_METRICS_BASE=${TEST_METRICS_BASE:-19200}
TEST_WORKERS=${TEST_WORKERS:-2}
TEST_SERVE_ARGS=${TEST_SERVE_ARGS:---hold-ms 4000 --log-level debug}
TEST_BIN=${TEST_BIN:-$RUNFEED_ROOT/.build/debug/runfeed}
TEST_LOG_LINES=${TEST_LOG_LINES:-80}
PYTEST_ARGS=${PYTEST_ARGS:--q}
# Relative paths are relative to the caller's cwd; everything below runs from the repository root.
TEST_STATE=$(abs_path "$TEST_STATE")
TEST_BIN=$(abs_path "$TEST_BIN")
cd "$RUNFEED_ROOT"

# The test stack's settings, as scripts/stack.sh reads them.
stack_env() {
    printf '%s\n' \
        "RUNFEED_STATE=$TEST_STATE" \
        "RUNFEED_PG_PORT=$TEST_PG_PORT" \
        "RUNFEED_PG_REPLICA=$TEST_PG_REPLICA" \
        "RUNFEED_PG_REPLICA_PORT=$TEST_PG_REPLICA_PORT" \
        "RUNFEED_PG_REPLICA_DELAY_MS=$TEST_PG_REPLICA_DELAY_MS" \
        "RUNFEED_REDIS_PORT=$TEST_REDIS_PORT" \
        "RUNFEED_REDIS_MODE=$TEST_REDIS_MODE" \
        "RUNFEED_HTTPS_PORT=$TEST_HTTPS_PORT" \
        "RUNFEED_HTTP_PORT=$TEST_HTTP_PORT" \
        "RUNFEED_WEBAPP_PORT=$TEST_WEBAPP_PORT" \
        "RUNFEED_CH_HTTP_PORT=$TEST_CH_HTTP_PORT" \
        "RUNFEED_CH_TCP_PORT=$TEST_CH_TCP_PORT" \
        "RUNFEED_METRICS_PORT_BASE=$TEST_METRICS_BASE" \
        "RUNFEED_WORKERS=$TEST_WORKERS" \
        "RUNFEED_BIN=$TEST_BIN" \
        "RUNFEED_SERVE_ARGS=$TEST_SERVE_ARGS" \
        "RUNFEED_DEMO_SIMULATOR=0"
    # Unset, scripts/stack.sh decides (and its stop/status follow what `start` recorded).
    [[ -z $TEST_CLICKHOUSE ]] || printf '%s\n' "RUNFEED_CLICKHOUSE=$TEST_CLICKHOUSE"
}

export_stack_env() {
    local line
    unset RUNFEED_CLICKHOUSE
    while IFS= read -r line; do
        export "${line?}"
    done < <(stack_env)
}

stack() { bash "$RUNFEED_ROOT/scripts/stack.sh" "$@"; }

# pytest_on_stack ARG... — pytest with the stack's demo.env (URLs, keys, seeded ids) in its environment.
pytest_on_stack() {
    set -a
    # shellcheck disable=SC1091
    . "$RUNFEED_STATE/demo.env" || return
    set +a
    python3 -m pytest "$@"
}

# cmd_run [TARGET...] — a fresh stack, pytest, the logs on a failure; the stack is stopped whatever happens.
cmd_run() {
    local targets=("$@") pytest_args=() rc=0
    ((${#targets[@]})) || targets=(tests/integration)
    eval "pytest_args=($PYTEST_ARGS)"
    export_stack_env
    trap 'stack stop || warn "scripts/stack.sh stop failed for $RUNFEED_STATE"' EXIT
    trap 'exit 130' INT TERM
    {
        stack clean \
        && stack start --seed \
        && (pytest_on_stack "${pytest_args[@]}" "${targets[@]}")
    } || rc=$?
    if ((rc != 0)); then
        echo "integration tests failed (exit $rc); stack logs follow" >&2
        LOG_LINES=$TEST_LOG_LINES stack logs || true
    fi
    return "$rc"
}

main() {
    local cmd=${1:-}
    shift || true
    case "$cmd" in
        run) cmd_run "$@" ;;
        stack)
            (($#)) || die "usage: $0 stack COMMAND [ARG...] (a scripts/stack.sh command)"
            export_stack_env
            stack "$@"
            ;;
        clean)
            export_stack_env
            stack clean
            ;;
        env) stack_env ;;
        *)
            echo "usage: $0 {run [PYTEST_TARGET...]|stack COMMAND [ARG...]|clean|env}" >&2
            exit 2
            ;;
    esac
}

main "$@"
