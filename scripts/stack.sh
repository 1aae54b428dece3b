#!/usr/bin/env bash
# shellcheck disable=SC2034  # STACK_SEED, STACK_WITH_WORKERS are read by scripts/stack/*.sh
# Local runfeed stack: PostgreSQL 15 + Redis + ClickHouse + N runfeed FastCGI
# workers + nginx, all on 127.0.0.1, all state under one directory.
#
#   scripts/stack.sh start [--seed] [--no-workers]
#   scripts/stack.sh stop
#   scripts/stack.sh status
#   scripts/stack.sh restart-workers
#   scripts/stack.sh examples      # curl/psql/publish commands for the demo data, demo page URL
#   scripts/stack.sh simulator {start|stop}   # the demo simulator alone (`runfeed demo`)
#   scripts/stack.sh logs          # tail every log (used by the integration tests on failure)
#   scripts/stack.sh clean         # stop, then delete the state directory
#
# Environment: the RUNFEED_* variables listed, with their defaults, in scripts/stack/config.sh (state dir,
# ports, worker count and binary, read replica, PgBouncer, Redis mode, ClickHouse, nginx knobs, simulator).
#
# This file only dispatches. Each service lives in scripts/stack/<service>.sh and defines <service>_start,
# <service>_stop and <service>_status; STACK_SERVICES below lists them in start order (`stop` goes in
# reverse, `status` in this order). scripts/stack/tls.sh holds the local CA that the TLS listeners share;
# scripts/stack/templates/ the ClickHouse configuration, rendered like nginx/local.conf.template by
# render_template (scripts/lib.sh).
#
# To add a service: write scripts/stack/<name>.sh with those three functions (start reads STACK_SEED and
# STACK_WITH_WORKERS; status prints its line(s) and returns false when the service should run but does not)
# and put <name> in STACK_SERVICES after the services it needs. It may also define hooks that other services
# call through stack_hook: <name>_pg_conf (lines for PostgreSQL's runfeed.conf), <name>_bootstrap (after the
# schema is applied) and <name>_demo_env (lines for demo.env).
#
# Only processes recorded in the state dir's pid files are ever signalled. System
# services (a packaged postgres/redis/nginx on default ports) are never touched.
set -euo pipefail
STACK_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/stack"
# shellcheck source=scripts/lib.sh
source "$STACK_LIB_DIR/../lib.sh"
# shellcheck source=scripts/stack/config.sh
source "$STACK_LIB_DIR/config.sh"
# shellcheck source=scripts/stack/tls.sh
source "$STACK_LIB_DIR/tls.sh"

STACK_SERVICES=(postgres redis clickhouse workers webapp nginx demo)
for _svc in "${STACK_SERVICES[@]}"; do
    # shellcheck source=/dev/null
    source "$STACK_LIB_DIR/$_svc.sh"
done
unset _svc

# stack_hook HOOK — <service>_HOOK of every service in STACK_SERVICES that defines it, in order.
stack_hook() {
    local svc
    for svc in "${STACK_SERVICES[@]}"; do
        if declare -F "${svc}_$1" >/dev/null; then "${svc}_$1"; fi
    done
}

# What `start` asks of the services (0 for every other command).
STACK_SEED=0
STACK_WITH_WORKERS=1

cmd_start() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            --seed) STACK_SEED=1 ;;
            --no-workers) STACK_WITH_WORKERS=0 ;;
            *) die "start: unknown option '$arg'" ;;
        esac
    done
    if ((STACK_WITH_WORKERS)); then workers_check_bin; fi
    check_port_plan

    mkdir -p "$STATE" "$LOG_DIR"
    log "state dir: $STATE"
    tls_ensure   # PostgreSQL, nginx (and Redis with RUNFEED_REDIS_MODE=tls) serve the local CA's leaf
    local svc
    for svc in "${STACK_SERVICES[@]}"; do
        "${svc}_start"
    done
    log "stack is up: https://127.0.0.1:$HTTPS_PORT (TLS)  http://127.0.0.1:$HTTP_PORT  demo page: http://127.0.0.1:$HTTP_PORT/demo/" \
        " webapp stand-in: http://127.0.0.1:$WEBAPP_PORT"
}

cmd_stop() {
    if [[ ! -d $STATE ]]; then
        log "nothing to stop ($STATE does not exist)"
        return 0
    fi
    local i
    for ((i = ${#STACK_SERVICES[@]} - 1; i >= 0; i--)); do
        "${STACK_SERVICES[i]}_stop"
    done
    log "stack stopped ($STATE)"
}

# cmd_status — a line per process; false when one that should run does not.
cmd_status() {
    local ok=0 svc
    for svc in "${STACK_SERVICES[@]}"; do
        "${svc}_status" || ok=1
    done
    return $ok
}

cmd_logs() {
    local f
    for f in "$LOG_DIR"/*.log "$CH_DIR/ddl.log"; do
        [[ -e $f ]] || continue
        show_log "$f" "${LOG_LINES:-60}" 2>&1
    done
}

cmd_clean() {
    cmd_stop
    local pgb=''
    [[ -s $STATE/pg.location ]] && pgb=$(head -n1 "$STATE/pg.location")
    local rund=''
    [[ -L $STATE/run ]] && rund=$(readlink "$STATE/run")
    rm -rf "$STATE"
    [[ $pgb == /tmp/runfeed-pg-* ]] && rm -rf "$pgb"
    [[ $rund == /tmp/runfeed-run-* ]] && rm -rf "$rund"
    log "removed $STATE"
}

main() {
    local cmd=${1:-}
    shift || true
    [[ $cmd == start ]] || ch_use_recorded_mode
    case "$cmd" in
        start) cmd_start "$@" ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        restart-workers)
            check_port_plan
            set_pg_paths
            mkdir -p "$STATE"
            workers_restart
            ;;
        logs) cmd_logs ;;
        clean) cmd_clean ;;
        examples) demo_examples ;;
        simulator) demo_simulator "$@" ;;
        *)
            echo "usage: $0 {start [--seed] [--no-workers]|stop|status|restart-workers|logs|examples|simulator {start|stop}|clean}" >&2
            echo "       (scripts/clickhouse-sync.sh [--env ENV_ID] copies TaskRun rows into ClickHouse)" >&2
            exit 2
            ;;
    esac
}

main "$@"
