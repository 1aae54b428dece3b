# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's Redis (RUNFEED_REDIS_MODE): one redis-server (plain, or TLS-only with the local CA's
# leaf), or a cluster of 3 masters + 3 replicas run by scripts/redis-cluster.sh. Service hooks redis_start /
# redis_stop / redis_status. Sourced by scripts/stack.sh.

# The Redis settings of every runfeed process of this stack (workers, demo simulator, publish examples).
redis_env() {
    case $REDIS_MODE in
        plain) printf '%s\n' REDIS_HOST=127.0.0.1 "REDIS_PORT=$REDIS_PORT" REDIS_TLS_DISABLED=true ;;
        tls) printf '%s\n' REDIS_HOST=127.0.0.1 "REDIS_PORT=$REDIS_PORT" REDIS_TLS_DISABLED=false \
                 "RUNFEED_REDIS_TLS_CA_FILE=$TLS_DIR/ca.pem" ;;
        cluster) printf '%s\n' REDIS_HOST=127.0.0.1 "REDIS_PORT=$REDIS_PORT" REDIS_TLS_DISABLED=true \
                     REDIS_CLUSTER_MODE_ENABLED=1 ;;
    esac
}
mapfile -t REDIS_ENV < <(redis_env)
REDIS_DIR=$STATE/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_CLUSTER_DIR=$REDIS_DIR/cluster
REDIS_CLUSTER_SCRIPT=$RUNFEED_ROOT/scripts/redis-cluster.sh

redis_cli() {
    case $REDIS_MODE in
        tls) redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --tls --cacert "$TLS_DIR/ca.pem" "$@" ;;
        *) redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@" ;;
    esac
}
redis_ping() { [[ $(redis_cli ping 2>/dev/null) == PONG ]]; }

redis_start() {
    mkdir -p "$REDIS_DIR" "$LOG_DIR"
    local running_mode
    running_mode=$(cat "$REDIS_DIR/mode" 2>/dev/null || echo "$REDIS_MODE")
    if [[ $running_mode != "$REDIS_MODE" ]]; then
        log "redis: switching from $running_mode to $REDIS_MODE"
        redis_stop
    fi
    echo "$REDIS_MODE" >"$REDIS_DIR/mode"
    if [[ $REDIS_MODE == cluster ]]; then
        local i
        for i in 0 1 2 3 4 5; do
            [[ -s $REDIS_CLUSTER_DIR/$((REDIS_PORT + i))/redis.pid ]] && continue
            port_check "RUNFEED_REDIS_PORT+$i" "$((REDIS_PORT + i))"
            port_check "RUNFEED_REDIS_PORT+$((i + 6)) (cluster bus)" "$((REDIS_PORT + i + 6))"
        done
        log "redis: cluster of 3 masters + 3 replicas on 127.0.0.1:$REDIS_PORT-$((REDIS_PORT + 5))"
        bash "$REDIS_CLUSTER_SCRIPT" start "$REDIS_CLUSTER_DIR" "$REDIS_PORT" >>"$LOG_DIR/redis.log" 2>&1 \
            || { show_log "$LOG_DIR/redis.log"; die "the redis cluster failed to start (logs in $REDIS_CLUSTER_DIR/*/redis.log)"; }
        return 0
    fi
    local listen=(--port "$REDIS_PORT")
    if [[ $REDIS_MODE == tls ]]; then
        tls_ensure
        listen=(--port 0 --tls-port "$REDIS_PORT" --tls-cert-file "$TLS_DIR/cert.pem" --tls-key-file "$TLS_DIR/key.pem"
                --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients no)
    fi
    if pid_alive "$REDIS_PID" redis-server; then
        log "redis: already running (pid $(pid_from "$REDIS_PID"))"
    else
        rm -f "$REDIS_PID"
        port_check RUNFEED_REDIS_PORT "$REDIS_PORT"
        log "redis: starting on 127.0.0.1:$REDIS_PORT$([[ $REDIS_MODE == tls ]] && echo " (TLS only)")"
        redis-server "${listen[@]}" --bind 127.0.0.1 --daemonize yes \
            --pidfile "$REDIS_PID" --dir "$REDIS_DIR" --save '' --appendonly no \
            --logfile "$LOG_DIR/redis.log" \
            || { show_log "$LOG_DIR/redis.log"; die "redis-server failed to start$(port_note "$REDIS_PORT")"; }
    fi
    wait_for 20 "redis on port $REDIS_PORT" redis_ping \
        || { show_log "$LOG_DIR/redis.log"; die "redis is not answering PING$(port_note "$REDIS_PORT")"; }
    wait_for 5 "redis pid file" pid_file_running "$REDIS_PID" \
        || die "redis answers but its pid file $REDIS_PID is missing"
}

redis_stop() {
    if pid_alive "$REDIS_PID" redis-server; then
        log "redis: stopping"
        stop_pid "$(pid_from "$REDIS_PID")" 10
    fi
    rm -f "$REDIS_PID"
    if compgen -G "$REDIS_CLUSTER_DIR/*/redis.pid" >/dev/null; then
        log "redis: stopping the cluster"
        bash "$REDIS_CLUSTER_SCRIPT" stop "$REDIS_CLUSTER_DIR"
    fi
}

# redis_status — one line (a line per node for a cluster); false when one is not running.
redis_status() {
    local ok=0
    if [[ $REDIS_MODE == cluster ]]; then
        local line
        while IFS= read -r line; do
            echo "$line"
            [[ $line == *stopped* ]] && ok=1
        done < <(bash "$REDIS_CLUSTER_SCRIPT" status "$REDIS_CLUSTER_DIR")
    elif pid_alive "$REDIS_PID" redis-server && redis_ping; then
        echo "redis     running   127.0.0.1:$REDIS_PORT$([[ $REDIS_MODE == tls ]] && echo " (TLS)")  pid=$(pid_from "$REDIS_PID")"
    else
        echo "redis     stopped"; ok=1
    fi
    return $ok
}
