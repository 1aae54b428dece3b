# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's runfeed FastCGI workers: RUNFEED_WORKERS `runfeed serve` processes, each on a unix socket
# in the run dir and with /metrics and /healthz on 127.0.0.1:(RUNFEED_METRICS_PORT_BASE + N). Service hooks
# workers_start / workers_stop / workers_status at the end. Sourced by scripts/stack.sh.

# The run dir holds worker sockets and pid files. If $STATE/run would make a
# socket path too long, the real dir lives under /tmp and $STATE/run is a symlink.
run_dir() {
    local want=$STATE/run
    # "/worker-64.sock" is 15 bytes.
    if (( ${#want} + 15 <= SUN_PATH_MAX )); then
        printf '%s\n' "$want"
    else
        printf '/tmp/runfeed-run-%s\n' "$(short_hash "$STATE")"
    fi
}

RUN_DIR=''
set_run_dir() {
    RUN_DIR=$(run_dir)
    if [[ $RUN_DIR != "$STATE/run" ]]; then
        mkdir -p "$RUN_DIR"
        if [[ -L $STATE/run || ! -e $STATE/run ]]; then
            ln -sfn "$RUN_DIR" "$STATE/run"
        fi
    else
        mkdir -p "$RUN_DIR"
    fi
}

worker_sock() { printf '%s/worker-%s.sock\n' "$RUN_DIR" "$1"; }
worker_pid() { printf '%s/worker-%s.pid\n' "$RUN_DIR" "$1"; }

worker_stop_one() {
    local n=$1 pidf sock
    pidf=$(worker_pid "$n")
    sock=$(worker_sock "$n")
    if pid_alive "$pidf" "$sock"; then
        log "worker $n: stopping (pid $(pid_from "$pidf"))"
        stop_pid "$(pid_from "$pidf")" 5
    fi
    rm -f "$pidf" "$sock"
}

workers_stop_all() {
    [[ -d $STATE/run ]] || return 0
    set_run_dir
    local f n
    for f in "$RUN_DIR"/worker-*.pid; do
        [[ -e $f ]] || continue
        n=${f##*/worker-}
        n=${n%.pid}
        worker_stop_one "$n"
    done
}

workers_check_bin() {
    [[ -x $RUNFEED_BIN ]] || die "runfeed binary not found or not executable: $RUNFEED_BIN
       build it first (\`make build\` or \`swift build -c release\`), or set RUNFEED_BIN;
       use \`scripts/stack.sh start --no-workers\` to start only PostgreSQL, Redis and nginx"
}

# workers_restart — (re)start RUNFEED_WORKERS workers (`restart-workers`; `start` without --no-workers).
workers_restart() {
    set_run_dir
    mkdir -p "$LOG_DIR"
    workers_check_bin
    # Restart every worker so that a rebuilt binary is always picked up; also stop
    # workers left over from a larger RUNFEED_WORKERS.
    workers_stop_all
    # The status listeners use SO_REUSEPORT: a worker of another stack on the same port would
    # silently share it instead of failing.
    local m
    for ((m = 1; m <= WORKERS; m++)); do
        port_check RUNFEED_METRICS_PORT_BASE "$((METRICS_BASE + m))"
    done

    # Held requests each cost a file descriptor.
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]]; then ulimit -n 65536 2>/dev/null || true
    elif ((hard > 65536)); then ulimit -n 65536 2>/dev/null || true
    else ulimit -n "$hard" 2>/dev/null || true
    fi

    # Tag and batch feeds resolve membership in ClickHouse when the stack runs
    # it, else in PostgreSQL. A ClickHouse URL in the caller's environment is
    # never passed on.
    local ch_env=(-u REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL -u CLICKHOUSE_URL)
    if [[ $CH_ENABLED == 1 ]] && ch_alive; then
        ch_env+=(REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL="$CH_URL")
    elif [[ $CH_ENABLED == 1 ]]; then
        warn "clickhouse is not running: workers start without a ClickHouse URL (PostgreSQL membership)"
    fi

    # The database: through PgBouncer when it runs; the read replica when it runs. Settings in the
    # caller's environment are never passed on.
    local db_env=(DATABASE_URL="$DATABASE_URL")
    ((PGBOUNCER)) && db_env=(DATABASE_URL="$PGBOUNCER_URL")
    ((PG_REPLICA)) && db_env+=(DATABASE_READ_REPLICA_URL="$REPLICA_URL")

    local n sock pidf logf pid
    for ((n = 1; n <= WORKERS; n++)); do
        sock=$(worker_sock "$n")
        pidf=$(worker_pid "$n")
        logf=$LOG_DIR/worker-$n.log
        rm -f "$sock"
        printf '\n=== %s: %s serve --listen %s %s\n' "$(date -u +%FT%TZ)" "$RUNFEED_BIN" "$sock" \
            "${SERVE_ARGS[*]:-}" >>"$logf"
        # setsid: the workers outlive the shell (and process group) that started them.
        nohup setsid env -u DATABASE_READ_REPLICA_URL "${ch_env[@]}" "${db_env[@]}" \
            "${REDIS_ENV[@]}" \
            PGTZ=UTC \
            "$RUNFEED_BIN" serve --workers 0 --listen "$sock" --metrics-listen "127.0.0.1:$((METRICS_BASE + n))" \
            ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} \
            >>"$logf" 2>&1 </dev/null &
        pid=$!
        printf '%s\n' "$pid" >"$pidf"
        log "worker $n: pid $pid, $sock"
    done

    # Ready = the socket exists. A worker that exits first fails at once.
    local deadline=$((SECONDS + 30))
    for ((n = 1; n <= WORKERS; n++)); do
        sock=$(worker_sock "$n")
        pidf=$(worker_pid "$n")
        until [[ -S $sock ]]; do
            if ! pid_file_running "$pidf"; then
                show_log "$LOG_DIR/worker-$n.log"
                die "worker $n exited during startup (log: $LOG_DIR/worker-$n.log)"
            fi
            if ((SECONDS >= deadline)); then
                show_log "$LOG_DIR/worker-$n.log"
                die "worker $n did not create $sock within 30s"
            fi
            sleep 0.1
        done
    done
}

# --- service hooks (scripts/stack.sh) -------------------------------------------------------------

# workers_start — every worker restarted (a rebuilt binary is picked up), unless `start --no-workers`.
workers_start() {
    set_run_dir
    if ((STACK_WITH_WORKERS)); then
        workers_restart
    else
        warn "--no-workers: nginx will answer 503 until workers are started"
    fi
}

workers_stop() { workers_stop_all; }

# workers_status — a line per configured worker; false when one is not running.
workers_status() {
    local ok=0 n pidf sock
    if [[ -d $STATE/run ]]; then
        RUN_DIR=$(run_dir)
        for ((n = 1; n <= WORKERS; n++)); do
            pidf=$(worker_pid "$n")
            sock=$(worker_sock "$n")
            if pid_alive "$pidf" "$sock" && [[ -S $sock ]]; then
                echo "worker-$n  running   $sock  pid=$(pid_from "$pidf")"
            else
                echo "worker-$n  stopped"; ok=1
            fi
        done
    else
        echo "workers   stopped"; ok=1
    fi
    return $ok
}
