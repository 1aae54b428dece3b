#!/usr/bin/env bash
# The Redis topology matrix: the Redis-heavy integration tests on a throwaway stack per RUNFEED_REDIS_MODE
# (`make test-redis-modes`). `make test` runs the whole suite on plain Redis, plus tests/integration's own TLS
# and cluster cases (test_redis_tls.py, test_redis_cluster.py) on servers they start themselves; this runs
# the feeds end to end with the stack's Redis itself over TLS, and as a cluster with sharded pub/sub.
#
#   REDIS_MODES   modes to run                         [tls cluster]
#   MODE_TESTS    test files (relative to tests/integration)
#   PYTEST_ARGS   passed to pytest                      [-q]   (scripts/test-integration.sh)
#
# Each mode runs through scripts/test-integration.sh run, with its own state dir (.runfeed/redis-<mode>) and ports
# (below the ephemeral range, distinct from `make run`, `make test`, `make bench` and the sanitizer stacks);
# ClickHouse and the read replica are off (membership from PostgreSQL). The stack is always stopped afterwards,
# by `stack.sh stop` (PIDs it recorded).
set -uo pipefail
cd "$(dirname "$0")/.." || exit

MODES=${REDIS_MODES:-tls cluster}
TESTS=${MODE_TESTS:-test_snapshot.py test_auth.py test_live.py test_catchup.py test_fanout.py test_list_live.py test_list_fanout.py test_lost_updates.py}
# A binary named the stack's way (RUNFEED_BIN) is still honoured.
if [[ -n ${RUNFEED_BIN:-} && -z ${TEST_BIN:-} ]]; then export TEST_BIN=$RUNFEED_BIN; fi
rc=0
i=0
for mode in $MODES; do
    i=$((i + 1))
    state="$PWD/.runfeed/redis-$mode"
    echo "=== redis mode: $mode ($state)"
    files=()
    for t in $TESTS; do files+=("tests/integration/$t"); done
    TEST_STATE="$state" \
    TEST_REDIS_MODE="$mode" \
    TEST_PG_PORT=$((25480 + i)) \
    TEST_PG_REPLICA=0 \
    TEST_REDIS_PORT=$((26480 + 10 * i)) \
    TEST_HTTPS_PORT=$((8490 + 2 * i)) \
    TEST_HTTP_PORT=$((8491 + 2 * i)) \
    TEST_WEBAPP_PORT=$((23050 + i)) \
    TEST_METRICS_BASE=$((19500 + 100 * i)) \
    TEST_CLICKHOUSE=0 \
    TEST_LOG_LINES=60 \
        bash scripts/test-integration.sh run "${files[@]}"
    r=$?
    if [[ $r -ne 0 ]]; then
        echo "redis mode $mode: integration tests failed (exit $r)" >&2
        rc=$r
    fi
done
exit $rc
