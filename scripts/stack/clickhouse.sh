# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's ClickHouse (RUNFEED_CLICKHOUSE), which tag and batch feeds resolve membership in. Service
# hooks clickhouse_start / clickhouse_stop / clickhouse_status at the end. Sourced by scripts/stack.sh.

# Debian 12 ships clickhouse-server 18.16. It runs as root without complaint
# (it only refuses to start while another server holds <path>/status), so it
# runs as the invoking user with a config of its own: 127.0.0.1 only, no
# interserver port, small caches, UTC, data under $STATE/clickhouse, logs in
# $STATE/log. Only the pid in $CH_PID is ever signalled, after checking that it
# is still ours (config path on its command line, or our not-yet-exec'd wrapper);
# start-up checks use the pid and /ping only. Its config.xml and users.xml are rendered from
# scripts/stack/templates/ on every start.

CH_DIR=$STATE/clickhouse
CH_CONF=$CH_DIR/config.xml
CH_PID=$CH_DIR/clickhouse.pid
CH_DDL=$RUNFEED_ROOT/db/clickhouse/compat-18.16/task_runs_v2.sql
CH_TEMPLATES=$RUNFEED_ROOT/scripts/stack/templates

ch_alive() { pid_alive "$CH_PID" "$CH_CONF"; }

# `start` records whether this stack runs ClickHouse; the other commands follow
# that record unless RUNFEED_CLICKHOUSE is set.
CH_MODE_FILE=$STATE/clickhouse.mode
ch_record_mode() { mkdir -p "$STATE"; printf '%s\n' "$1" >"$CH_MODE_FILE"; }
ch_use_recorded_mode() {
    [[ -z ${RUNFEED_CLICKHOUSE:-} && -s $CH_MODE_FILE ]] || return 0
    [[ $(head -n1 "$CH_MODE_FILE") == 1 ]] || CH_ENABLED=0
}

ch_ping() { [[ $(curl -s --max-time 2 "$CH_URL/ping" 2>/dev/null) == Ok.* ]]; }

ch_write_conf() {
    mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$LOG_DIR"
    render_template "$CH_TEMPLATES/clickhouse-config.xml" "$CH_CONF" \
        LOG_DIR="$LOG_DIR" CH_DIR="$CH_DIR" CH_HTTP_PORT="$CH_HTTP_PORT" CH_TCP_PORT="$CH_TCP_PORT"
    render_template "$CH_TEMPLATES/clickhouse-users.xml" "$CH_DIR/users.xml"
}

ch_start() {
    [[ -n $CH_SERVER_BIN ]] || die "clickhouse-server not found (run scripts/deps.sh, or set RUNFEED_CLICKHOUSE=0)"
    [[ -n $CH_CLIENT_BIN ]] || die "clickhouse-client not found (run scripts/deps.sh, or set RUNFEED_CLICKHOUSE=0)"
    mkdir -p "$STATE" "$LOG_DIR"
    if ch_alive && ! { grep -qF "<http_port>$CH_HTTP_PORT</http_port>" "$CH_CONF" \
                       && grep -qF "<tcp_port>$CH_TCP_PORT</tcp_port>" "$CH_CONF"; }; then
        log "clickhouse: ports changed; restarting"
        ch_stop
    fi
    if ch_alive; then
        log "clickhouse: already running (pid $(pid_from "$CH_PID"))"
    else
        rm -f "$CH_PID"
        port_check RUNFEED_CH_HTTP_PORT "$CH_HTTP_PORT"
        port_check RUNFEED_CH_TCP_PORT "$CH_TCP_PORT"
        ch_write_conf
        log "clickhouse: starting on http://127.0.0.1:$CH_HTTP_PORT (native 127.0.0.1:$CH_TCP_PORT)"
        printf '\n=== %s: %s --config-file=%s\n' "$(date -u +%FT%TZ)" "$CH_SERVER_BIN" "$CH_CONF" \
            >>"$LOG_DIR/clickhouse.stdout.log"
        # In the foreground (no --daemon), so the pid is $! and a failed start
        # shows at once. cwd = $CH_DIR: relative paths stay inside it.
        (cd "$CH_DIR" && exec nohup "$CH_SERVER_BIN" --config-file="$CH_CONF" \
            >>"$LOG_DIR/clickhouse.stdout.log" 2>&1 </dev/null) &
        printf '%s\n' "$!" >"$CH_PID"
    fi
    local deadline=$((SECONDS + 60))
    # Liveness by the pid alone: right after the fork the child may not have
    # exec'd clickhouse-server yet, so its command line is still this script's.
    until ch_ping; do
        if ! pid_file_running "$CH_PID"; then
            show_log "$LOG_DIR/clickhouse.stdout.log" 20
            show_log "$LOG_DIR/clickhouse.err.log"
            die "clickhouse-server exited during startup$(port_note "$CH_HTTP_PORT")$(port_note "$CH_TCP_PORT") (logs: $LOG_DIR/clickhouse*.log)"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$LOG_DIR/clickhouse.err.log"
            die "clickhouse is not answering $CH_URL/ping after 60s"
        fi
        sleep 0.2
    done
    log "clickhouse: schema db/clickhouse/compat-18.16/task_runs_v2.sql"
    "$CH_CLIENT_BIN" --host 127.0.0.1 --port "$CH_TCP_PORT" --user default --multiquery \
        <"$CH_DDL" >"$CH_DIR/ddl.log" 2>&1 \
        || { show_log "$CH_DIR/ddl.log"; die "applying $CH_DDL failed"; }
}

# Copy every TaskRun into trigger_dev.task_runs_v2 (production: replication).
ch_sync() {
    log "clickhouse: sync TaskRun → trigger_dev.task_runs_v2"
    DATABASE_URL="$DATABASE_URL" RUNFEED_CLICKHOUSE_URL="$CH_URL" RUNFEED_STATE="$STATE" \
        bash "$RUNFEED_ROOT/scripts/clickhouse-sync.sh" \
        || die "scripts/clickhouse-sync.sh failed"
}

ch_stop() {
    if ch_alive; then
        log "clickhouse: stopping (pid $(pid_from "$CH_PID"))"
        stop_pid "$(pid_from "$CH_PID")" 30
    fi
    rm -f "$CH_PID"
}

# --- service hooks (scripts/stack.sh) -------------------------------------------------------------

# clickhouse_start — records whether this stack runs ClickHouse, then starts it (and copies the seeded runs
# into it with `start --seed`), or stops one left running when it is disabled or not installed.
clickhouse_start() {
    ch_record_mode "$([[ $CH_ENABLED == 1 ]] && echo 1 || echo 0)"
    case "$CH_ENABLED" in
        1)
            ch_start
            if ((STACK_SEED)); then ch_sync; fi
            ;;
        missing)
            warn "clickhouse-server/clickhouse-client not installed: running without ClickHouse (scripts/deps.sh installs them)"
            ch_stop
            ;;
        *)
            log "clickhouse: disabled (RUNFEED_CLICKHOUSE=0); workers resolve membership in PostgreSQL"
            ch_stop
            ;;
    esac
}

clickhouse_stop() { ch_stop; }

clickhouse_status() {
    if ch_alive && ch_ping; then
        echo "clickhouse running   $CH_URL  native=127.0.0.1:$CH_TCP_PORT  pid=$(pid_from "$CH_PID")"
    elif [[ $CH_ENABLED == 1 ]]; then
        echo "clickhouse stopped"; return 1
    else
        echo "clickhouse disabled"
    fi
}
