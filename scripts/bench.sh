#!/usr/bin/env bash
# make bench: start a dedicated benchmark stack, run bench/run.py, stop the stack.
#
# The stack has its own state directory and ports (so `make run` and `make test` stacks
# can stay up) and is started fresh each time: a clean database, 2 runfeed workers, and
# nginx with 4 worker processes, reuseport, worker_connections and worker_rlimit_nofile
# sized from `ulimit -Hn`, the nchan module and a static location (scripts/stack.sh,
# RUNFEED_NGINX_BENCH=1). Arguments go to bench/run.py (e.g. --quick, --only fanout).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export RUNFEED_STATE=${RUNFEED_BENCH_STATE:-$RUNFEED_ROOT/.runfeed/bench}
export RUNFEED_PG_PORT=25434 RUNFEED_REDIS_PORT=26381 RUNFEED_HTTPS_PORT=8445 RUNFEED_HTTP_PORT=8082
export RUNFEED_CH_HTTP_PORT=18125 RUNFEED_CH_TCP_PORT=19002 RUNFEED_METRICS_PORT_BASE=19300 RUNFEED_WEBAPP_PORT=23032
export RUNFEED_DEMO_SIMULATOR=0 RUNFEED_NGINX_BENCH=1
# No change capture: the benchmarks measure the app publishing directly (a capturer would double the records).
export RUNFEED_CAPTURE=${RUNFEED_CAPTURE:-0}
export RUNFEED_NGINX_WORKERS=${RUNFEED_BENCH_NGINX_WORKERS:-4}
export RUNFEED_WORKERS=${RUNFEED_BENCH_WORKERS:-2}

stack() { bash "$RUNFEED_ROOT/scripts/stack.sh" "$@"; }

stack clean >/dev/null 2>&1 || true
trap 'stack stop >/dev/null 2>&1 || true' EXIT
stack start --seed
set -a
# shellcheck disable=SC1091
. "$RUNFEED_STATE/demo.env"
set +a
ulimit -n "$(ulimit -Hn)"
python3 "$RUNFEED_ROOT/bench/run.py" --command "make bench${BENCH_ARGS:+ BENCH_ARGS=\"$BENCH_ARGS\"}" "$@"
