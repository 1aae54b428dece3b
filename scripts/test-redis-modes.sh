#!/usr/bin/env bash
# The Redis topology matrix: the Redis-heavy integration tests on a throwaway stack per RUNFEED_REDIS_MODE
# (`make test-redis-modes`). `make test` runs the whole suite on plain Redis, plus tests/integration's own TLS
# and cluster cases (test_redis_tls.py, test_redis_cluster.py) on servers they start themselves; this runs
# the feeds end to end with the stack's Redis itself over TLS, and as a cluster with sharded pub/sub.
#
#   REDIS_MODES   modes to run                         [tls cluster]
#   MODE_TESTS    test files (relative to tests/integration)
#   PYTEST_ARGS   passed to pytest                      [-q]
#
# Each mode has its own state dir (.runfeed/redis-<mode>) and ports (below the ephemeral range, distinct
# from `make run`, `make test`, `make bench` and the sanitizer stacks); ClickHouse is off (membership from
# PostgreSQL). The stack is always stopped afterwards, by `stack.sh stop` (PIDs it recorded).
set -uo pipefail
cd "$(dirname "$0")/.."

MODES=${REDIS_MODES:-tls cluster}
TESTS=${MODE_TESTS:-test_snapshot.py test_auth.py test_live.py test_catchup.py test_fanout.py test_list_live.py test_list_fanout.py test_lost_updates.py}
rc=0
i=0
for mode in $MODES; do
    i=$((i + 1))
    export RUNFEED_STATE="$PWD/.runfeed/redis-$mode" \
           RUNFEED_REDIS_MODE="$mode" \
           RUNFEED_PG_PORT=$((25480 + i)) \
           RUNFEED_REDIS_PORT=$((26480 + 10 * i)) \
           RUNFEED_HTTPS_PORT=$((8490 + 2 * i)) \
           RUNFEED_HTTP_PORT=$((8491 + 2 * i)) \
           RUNFEED_WEBAPP_PORT=$((23050 + i)) \
           RUNFEED_METRICS_PORT_BASE=$((19500 + 100 * i)) \
           RUNFEED_CLICKHOUSE=0 \
           RUNFEED_WORKERS=2 \
           RUNFEED_BIN="${RUNFEED_BIN:-$PWD/.build/debug/runfeed}" \
           RUNFEED_SERVE_ARGS="--hold-ms 4000 --log-level debug" \
           RUNFEED_DEMO_SIMULATOR=0
    echo "=== redis mode: $mode ($RUNFEED_STATE)"
    files=()
    for t in $TESTS; do files+=("tests/integration/$t"); done
    (
        trap 'bash scripts/stack.sh stop >/dev/null' EXIT
        bash scripts/stack.sh clean >/dev/null \
            && bash scripts/stack.sh start --seed \
            && set -a && . "$RUNFEED_STATE/demo.env" && set +a \
            && python3 -m pytest ${PYTEST_ARGS:--q} "${files[@]}"
    )
    r=$?
    if [[ $r -ne 0 ]]; then
        echo "redis mode $mode: integration tests failed (exit $r); stack logs follow" >&2
        LOG_LINES=60 bash scripts/stack.sh logs || true
        rc=$r
    fi
done
exit $rc
