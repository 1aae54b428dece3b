# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's nginx: TLS and plain HTTP in front of the workers and the webapp stand-in, with the demo
# page, its nginx.conf rendered from nginx/local.conf.template on every start. Service hooks nginx_start /
# nginx_stop / nginx_status. Sourced by scripts/stack.sh.

NGINX_DIR=$STATE/nginx
NGINX_CONF=$NGINX_DIR/nginx.conf
NGINX_PID=$NGINX_DIR/nginx.pid
NGINX_ERR=$NGINX_DIR/error.log
# The demo page: static files from the repo (its defaults, demo-config.js, are generated into the state dir).
DEMO_DIR=$RUNFEED_ROOT/demo
# Benchmark stack (RUNFEED_NGINX_BENCH=1): nchan, from Debian's libnginx-mod-nchan, and the
# directory served at /bench/static/.
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
BENCH_STATIC_DIR=$STATE/bench-static

# nginx_render — $NGINX_CONF from nginx/local.conf.template (render_template, scripts/lib.sh).
nginx_render() {
    mkdir -p "$NGINX_DIR/tmp" "$LOG_DIR"
    local upstreams='' n
    for ((n = 1; n <= WORKERS; n++)); do
        upstreams+="        server unix:$(worker_sock "$n") max_fails=0;"$'\n'
    done
    upstreams=${upstreams%$'\n'}
    # nginx can only raise its fd limit up to the hard limit it inherits.
    local hard rlimit=65535
    hard=$(ulimit -Hn)
    if [[ $hard =~ ^[0-9]+$ ]] && ((hard < 65535)); then
        rlimit=$hard
    fi
    # worker_connections: 16384 as always; the benchmark stack takes what the fd limit allows,
    # less a reserve for files and logs. It must not exceed worker_rlimit_nofile.
    local connections=$NGINX_CONNECTIONS reserve
    if [[ -z $connections ]]; then
        connections=16384
        if ((NGINX_BENCH)); then
            reserve=$((rlimit / 10 < 1000 ? rlimit / 10 : 1000))
            connections=$((rlimit - reserve))
        fi
    elif ((connections > rlimit)); then
        die "RUNFEED_NGINX_CONNECTIONS=$connections exceeds worker_rlimit_nofile $rlimit (ulimit -Hn $hard)"
    fi
    local listen_opts='' multi=0
    if ((NGINX_WORKERS > 1)); then
        multi=1
        listen_opts+=' reuseport'
    fi
    # A burst of new connections queues here; the kernel caps it at net.core.somaxconn.
    ((NGINX_BENCH)) && listen_opts+=' backlog=4096'
    if ((NGINX_BENCH)); then
        [[ -f $NCHAN_MODULE ]] \
            || die "RUNFEED_NGINX_BENCH=1 needs nchan ($NCHAN_MODULE): run \`scripts/deps.sh --bench\`"
        mkdir -p "$BENCH_STATIC_DIR"
    fi
    local keepalive keep_conn=on
    if ((FASTCGI_KEEPALIVE > 0)); then
        keepalive="keepalive $FASTCGI_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout  60s;"
    else
        keepalive="# RUNFEED_FASTCGI_KEEPALIVE=0: a new connection per request"
        keep_conn=off
    fi
    local rlimit_note=''
    ((rlimit < 65535)) && rlimit_note='  # capped by ulimit -Hn'
    render_template "$RUNFEED_ROOT/nginx/local.conf.template" "$NGINX_CONF" \
        IF_BENCH="$NGINX_BENCH" IF_MULTI="$multi" \
        STATE="$STATE" HTTPS_PORT="$HTTPS_PORT" HTTP_PORT="$HTTP_PORT" WEBAPP_PORT="$WEBAPP_PORT" \
        HTTP_LISTEN_OPTS="$listen_opts" UPSTREAMS="$upstreams" UPSTREAM_KEEPALIVE="$keepalive" \
        FASTCGI_KEEP_CONN="$keep_conn" DEMO_DIR="$DEMO_DIR" NGINX_WORKERS="$NGINX_WORKERS" \
        NGINX_CONNECTIONS="$connections" NCHAN_MODULE="$NCHAN_MODULE" \
        WORKER_RLIMIT_NOFILE="$rlimit" WORKER_RLIMIT_NOTE="$rlimit_note"
    ln -sfn "$NGINX_ERR" "$LOG_DIR/nginx-error.log"
    ln -sfn "$NGINX_DIR/access.log" "$LOG_DIR/nginx-access.log"
}

nginx_cmd() { nginx -e "$NGINX_ERR" -c "$NGINX_CONF" "$@"; }

nginx_answers() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$HTTP_PORT/") || true
    [[ -n $code && $code != 000 ]]
}

nginx_start() {
    set_run_dir
    nginx_render
    nginx_cmd -t -q 2>"$NGINX_DIR/configtest.log" \
        || { show_log "$NGINX_DIR/configtest.log"; die "nginx rejected $NGINX_CONF"; }
    if pid_alive "$NGINX_PID" nginx; then
        log "nginx: already running (pid $(pid_from "$NGINX_PID")); reloading config"
        nginx_cmd -s reload
    else
        rm -f "$NGINX_PID"
        port_check RUNFEED_HTTPS_PORT "$HTTPS_PORT"
        port_check RUNFEED_HTTP_PORT "$HTTP_PORT"
        log "nginx: starting on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT"
        nginx_cmd || { show_log "$NGINX_ERR"; die "nginx failed to start$(port_note "$HTTPS_PORT")$(port_note "$HTTP_PORT")"; }
    fi
    wait_for 20 "nginx on port $HTTP_PORT" nginx_answers \
        || { show_log "$NGINX_ERR"; die "nginx is not answering$(port_note "$HTTP_PORT")"; }
}

nginx_stop() {
    if pid_alive "$NGINX_PID" nginx; then
        local pid
        pid=$(pid_from "$NGINX_PID")
        log "nginx: stopping"
        if [[ -f $NGINX_CONF ]]; then
            nginx_cmd -s stop 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
        wait_for 10 "nginx to exit" bash -c "! kill -0 $pid" || stop_pid "$pid" 1
    fi
    rm -f "$NGINX_PID"
}

nginx_status() {
    if pid_alive "$NGINX_PID" nginx && nginx_answers; then
        echo "nginx     running   https://127.0.0.1:$HTTPS_PORT  http://127.0.0.1:$HTTP_PORT  pid=$(pid_from "$NGINX_PID")"
    else
        echo "nginx     stopped"; return 1
    fi
}
