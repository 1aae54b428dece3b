# shellcheck shell=bash
# Change capture for the local stack (issue 16): `runfeed capture` streams the "TaskRun" changes of a logical
# replication slot (pgoutput) and publishes a change record for each. Service hooks capture_start /
# capture_stop / capture_status, and capture_pg_conf / capture_bootstrap / capture_demo_env for the other
# services (stack_hook). Sourced by scripts/stack.sh.
#
#   RUNFEED_CAPTURE               1 = run `runfeed capture` with the stack, 0 = don't
#                                 [1; scripts/test-integration.sh and scripts/bench.sh say 0: the capture
#                                 tests and bench/capture.py start their own]
#   RUNFEED_CAPTURE_METRICS_PORT  its /metrics and /healthz on 127.0.0.1   [RUNFEED_METRICS_PORT_BASE + 400]
#   RUNFEED_CAPTURE_SLOT / RUNFEED_CAPTURE_PUBLICATION   [runfeed_capture / runfeed_capture]
#
# PostgreSQL always runs with wal_level=logical (capture_pg_conf), and the app role may replicate
# (capture_bootstrap), so a capturer can be started by hand or by the tests on any stack.

CAPTURE_PID=$STATE/capture.pid
CAPTURE_LOG=$LOG_DIR/capture.log
CAPTURE_METRICS_PORT=${RUNFEED_CAPTURE_METRICS_PORT:-$((METRICS_BASE + 400))}
case "${RUNFEED_CAPTURE:-1}" in
    0|no|false|off) CAPTURE=0 ;;
    1|yes|true|on) CAPTURE=1 ;;
    *) die "RUNFEED_CAPTURE must be 0 or 1 (got '$RUNFEED_CAPTURE')" ;;
esac

# Lines for PostgreSQL's runfeed.conf (pg_write_conf).
capture_pg_conf() {
    cat <<CONF
# Change capture (scripts/stack/capture.sh): logical decoding for the pgoutput slot, and a cap on the WAL
# a stalled slot may hold (past it the slot is invalidated instead of filling the disk).
wal_level = logical
max_slot_wal_keep_size = 1GB
CONF
}

# The app role may open replication connections (the capturer connects as it; it owns "TaskRun", so it may
# create the publication too).
capture_bootstrap() {
    psql_super -q -c "ALTER ROLE \"$DB_USER\" REPLICATION" >/dev/null
}

capture_alive() { pid_alive "$CAPTURE_PID" " capture"; }

capture_stop() {
    if capture_alive; then
        log "capture: stopping (pid $(pid_from "$CAPTURE_PID"))"
        stop_pid "$(pid_from "$CAPTURE_PID")" 5
    fi
    rm -f "$CAPTURE_PID"
}

capture_run() {
    local pid
    capture_stop
    ((CAPTURE)) || { log "capture: off (RUNFEED_CAPTURE=0)"; return 0; }
    workers_check_bin
    mkdir -p "$LOG_DIR"
    port_check RUNFEED_CAPTURE_METRICS_PORT "$CAPTURE_METRICS_PORT"
    printf '\n=== %s: %s capture\n' "$(date -u +%FT%TZ)" "$RUNFEED_BIN" >>"$CAPTURE_LOG"
    nohup setsid env \
        DATABASE_URL="$DATABASE_URL" \
        "${REDIS_ENV[@]}" \
        RUNFEED_CAPTURE_METRICS_PORT="$CAPTURE_METRICS_PORT" \
        ${RUNFEED_CAPTURE_SLOT:+RUNFEED_CAPTURE_SLOT="$RUNFEED_CAPTURE_SLOT"} \
        ${RUNFEED_CAPTURE_PUBLICATION:+RUNFEED_CAPTURE_PUBLICATION="$RUNFEED_CAPTURE_PUBLICATION"} \
        "$RUNFEED_BIN" capture \
        >>"$CAPTURE_LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$CAPTURE_PID"
    sleep 0.3
    if ! pid_running "$pid"; then
        show_log "$CAPTURE_LOG" 10
        warn "capture exited at once (log: $CAPTURE_LOG)"
        rm -f "$CAPTURE_PID"
        return 0
    fi
    log "capture: pid $pid, metrics http://127.0.0.1:$CAPTURE_METRICS_PORT/metrics (log: $CAPTURE_LOG; RUNFEED_CAPTURE=0 to skip)"
}

# --- service hooks (scripts/stack.sh) -------------------------------------------------------------

# After the workers (it runs their binary) and the demo: a capturer unless RUNFEED_CAPTURE=0 or --no-workers.
capture_start() {
    if ((STACK_WITH_WORKERS)); then capture_run; else capture_stop; fi
}

# capture_status — its line; false when it should run (RUNFEED_CAPTURE=1) but does not.
capture_status() {
    if capture_alive; then
        echo "capture   running   runfeed capture  metrics=http://127.0.0.1:$CAPTURE_METRICS_PORT/metrics  pid=$(pid_from "$CAPTURE_PID")  log=$CAPTURE_LOG"
    elif ((CAPTURE)); then
        echo "capture   stopped   (RUNFEED_CAPTURE=1)"
        return 1
    else
        echo "capture   off       (RUNFEED_CAPTURE=0)"
    fi
}

# For demo.env: whether the stack runs a capturer, and its metrics port (a test-started capturer uses it too).
capture_demo_env() {
    echo "RUNFEED_CAPTURE=$CAPTURE"
    echo "RUNFEED_CAPTURE_METRICS_PORT=$CAPTURE_METRICS_PORT"
}
