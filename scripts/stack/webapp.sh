# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's stand-in for the trigger.dev webapp (scripts/webapp_standin.py). Service hooks
# webapp_start / webapp_stop / webapp_status. Sourced by scripts/stack.sh.

# nginx sends every path but runfeed's routes to the trigger.dev webapp (nginx/runfeed.conf); the
# local stack runs scripts/webapp_standin.py in its place, on 127.0.0.1:$WEBAPP_PORT. It serves what
# an SDK subscriber needs from the webapp: GET/PUT /api/v1/packets/<file> (credentials checked in
# PostgreSQL) and the presigned object URLs it hands out; a JSON 404 for anything else. Only the pid
# in $WEBAPP_PID, checked against its command line, is ever signalled.

# Pid file, log, and the object store it serves presigned URLs from (the demo seed's offloaded payload is
# written there by `start --seed`).
WEBAPP_SCRIPT=$RUNFEED_ROOT/scripts/webapp_standin.py
WEBAPP_DIR=$STATE/webapp
WEBAPP_OBJECTS=$WEBAPP_DIR/objects
WEBAPP_PID=$WEBAPP_DIR/webapp.pid
WEBAPP_LOG=$LOG_DIR/webapp.log

webapp_alive() { pid_alive "$WEBAPP_PID" "$WEBAPP_SCRIPT"; }

webapp_ping() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$WEBAPP_PORT/healthcheck" \
        2>/dev/null) == 200 ]]
}

webapp_stop() {
    if webapp_alive; then
        log "webapp stand-in: stopping (pid $(pid_from "$WEBAPP_PID"))"
        stop_pid "$(pid_from "$WEBAPP_PID")" 5
    fi
    rm -f "$WEBAPP_PID"
}

# webapp_seed — the objects the demo seed refers to (run_demo0010's offloaded payload).
webapp_seed() {
    log "webapp stand-in: demo objects in $WEBAPP_OBJECTS"
    python3 "$WEBAPP_SCRIPT" seed-objects --objects "$WEBAPP_OBJECTS" >/dev/null \
        || die "scripts/webapp_standin.py seed-objects failed"
}

# webapp_start — (re)start the stand-in, so that a changed port or script is picked up; with `start --seed`
# the demo objects are written first.
webapp_start() {
    if ((STACK_SEED)); then webapp_seed; fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found (scripts/deps.sh installs it)"
    webapp_stop
    mkdir -p "$WEBAPP_OBJECTS" "$LOG_DIR"
    port_check RUNFEED_WEBAPP_PORT "$WEBAPP_PORT"
    printf '\n=== %s: %s serve --listen 127.0.0.1:%s\n' "$(date -u +%FT%TZ)" "$WEBAPP_SCRIPT" "$WEBAPP_PORT" \
        >>"$WEBAPP_LOG"
    nohup setsid python3 "$WEBAPP_SCRIPT" serve --listen "127.0.0.1:$WEBAPP_PORT" \
        --objects "$WEBAPP_OBJECTS" --database-url "$DATABASE_URL" --psql "$PG_BIN/psql" \
        >>"$WEBAPP_LOG" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$WEBAPP_PID"
    local deadline=$((SECONDS + 20))
    until webapp_ping; do
        if ! pid_file_running "$WEBAPP_PID"; then
            show_log "$WEBAPP_LOG" 20
            rm -f "$WEBAPP_PID"
            die "the webapp stand-in exited during startup$(port_note "$WEBAPP_PORT") (log: $WEBAPP_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$WEBAPP_LOG" 20
            die "the webapp stand-in is not answering http://127.0.0.1:$WEBAPP_PORT/healthcheck after 20s"
        fi
        sleep 0.2
    done
    log "webapp stand-in: pid $(pid_from "$WEBAPP_PID"), http://127.0.0.1:$WEBAPP_PORT (log: $WEBAPP_LOG)"
}

webapp_status() {
    if webapp_alive && webapp_ping; then
        echo "webapp    running   http://127.0.0.1:$WEBAPP_PORT  (stand-in: /api/v1/packets/…)  pid=$(pid_from "$WEBAPP_PID")"
    else
        echo "webapp    stopped"; return 1
    fi
}
