#!/usr/bin/env bash
# Local runfeed stack: PostgreSQL 15 + Redis + N runfeed FastCGI workers + nginx,
# all on 127.0.0.1, all state under one directory.
#
#   scripts/stack.sh start [--seed] [--no-workers]
#   scripts/stack.sh stop
#   scripts/stack.sh status
#   scripts/stack.sh restart-workers
#   scripts/stack.sh examples      # curl/psql/publish commands for the demo data
#   scripts/stack.sh logs          # tail every log (used by `make test` on failure)
#   scripts/stack.sh clean         # stop, then delete the state directory
#
# Environment (defaults in brackets; relative paths are relative to the caller's cwd):
#   RUNFEED_STATE       state dir                     [<repo>/.runfeed]
#   RUNFEED_PG_PORT     PostgreSQL TCP port           [55432]
#   RUNFEED_REDIS_PORT  Redis TCP port                [56379]
#   RUNFEED_HTTPS_PORT  nginx TLS port                [8443]
#   RUNFEED_HTTP_PORT   nginx plain HTTP port         [8080]
#   RUNFEED_WORKERS     number of workers             [2]
#   RUNFEED_BIN         runfeed binary                [<repo>/.build/release/runfeed]
#   RUNFEED_SERVE_ARGS  extra `runfeed serve` args    []   e.g. "--hold-ms 3000"
#
# Only processes recorded in the state dir's pid files are ever signalled. System
# services (a packaged postgres/redis/nginx on default ports) are never touched.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- configuration --------------------------------------------------------------

STATE=$(abs_path "${RUNFEED_STATE:-$RUNFEED_ROOT/.runfeed}")
STATE=${STATE%/}
PG_PORT=${RUNFEED_PG_PORT:-55432}
REDIS_PORT=${RUNFEED_REDIS_PORT:-56379}
HTTPS_PORT=${RUNFEED_HTTPS_PORT:-8443}
HTTP_PORT=${RUNFEED_HTTP_PORT:-8080}
WORKERS=${RUNFEED_WORKERS:-2}
RUNFEED_BIN=$(abs_path "${RUNFEED_BIN:-$RUNFEED_ROOT/.build/release/runfeed}")
SERVE_ARGS=()
read -r -a SERVE_ARGS <<<"${RUNFEED_SERVE_ARGS:-}" || true

require_port RUNFEED_PG_PORT "$PG_PORT"
require_port RUNFEED_REDIS_PORT "$REDIS_PORT"
require_port RUNFEED_HTTPS_PORT "$HTTPS_PORT"
require_port RUNFEED_HTTP_PORT "$HTTP_PORT"
[[ $WORKERS =~ ^[0-9]+$ ]] && ((WORKERS >= 1 && WORKERS <= 64)) \
    || die "RUNFEED_WORKERS must be 1..64 (got '$WORKERS')"
case "$STATE" in
    *[[:space:]]*) die "RUNFEED_STATE must not contain whitespace: '$STATE'" ;;
esac

LOG_DIR=$STATE/log
TLS_DIR=$STATE/tls
REDIS_DIR=$STATE/redis
NGINX_DIR=$STATE/nginx
NGINX_CONF=$NGINX_DIR/nginx.conf
NGINX_PID=$NGINX_DIR/nginx.pid
NGINX_ERR=$NGINX_DIR/error.log
REDIS_PID=$REDIS_DIR/redis.pid
DEMO_ENV=$STATE/demo.env

# AF_UNIX paths are limited to 107 bytes.
SUN_PATH_MAX=107

DB_NAME=runfeed
DB_USER=runfeed
DB_PASSWORD=runfeed
DATABASE_URL="postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"

# Seed ids (db/postgres/seed-demo.sql); the values written to demo.env are read
# back from the database, these only select the rows.
SEED_DEV_ENV=cmdemoenv0000000000000001
SEED_PROD_ENV=cmdemoenv0000000000000002
SEED_PREVIEW_ENV=cmdemoenv0000000000000003
SEED_RUN=run_demo0001
SEED_BATCH=batch_demo0001

# --- directory placement -----------------------------------------------------------

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

# PostgreSQL runs as the `postgres` user (it refuses root), so its directory must
# be reachable by that user. $STATE/pg when possible, else /tmp/runfeed-pg-<hash>
# (with $STATE/pg as a symlink). The choice is remembered in $STATE/pg.location.
pg_base_choose() {
    local want=$STATE/pg
    # "/run/.s.PGSQL.65535" is 19 bytes.
    if (( ${#want} + 19 > SUN_PATH_MAX )); then
        log "state path too long for a PostgreSQL socket; using /tmp for the PostgreSQL dir" >&2
        printf '/tmp/runfeed-pg-%s\n' "$(short_hash "$STATE")"
        return
    fi
    if is_root && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
        log "user postgres cannot traverse $STATE; using /tmp for the PostgreSQL dir" >&2
        printf '/tmp/runfeed-pg-%s\n' "$(short_hash "$STATE")"
        return
    fi
    printf '%s\n' "$want"
}

# pg_base [choose] — the recorded location; only `start` (choose) decides anew.
pg_base() {
    if [[ -s $STATE/pg.location ]]; then
        head -n1 "$STATE/pg.location"
    elif [[ ${1:-} == choose ]]; then
        pg_base_choose
    else
        printf '%s\n' "$STATE/pg"
    fi
}

# Run a command as the PostgreSQL owner.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

set_pg_paths() {
    PG_BASE=$(pg_base "${1:-}")
    PG_DATA=$PG_BASE/data
    PG_SOCK=$PG_BASE/run
    PG_LOG=$PG_BASE/postgres.log
}

# psql as the superuser over the unix socket (local connections use trust).
psql_super() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d "${PSQL_DB:-postgres}" "$@"
}
# psql as the application role.
psql_app() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" "$@"
}

# --- PostgreSQL ---------------------------------------------------------------------

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_prepare_dirs() {
    mkdir -p "$STATE" "$LOG_DIR"
    if [[ $PG_BASE != "$STATE/pg" ]]; then
        mkdir -p "$PG_BASE"
        # A symlink for discoverability; never replace a real directory.
        if [[ -L $STATE/pg || ! -e $STATE/pg ]]; then
            ln -sfn "$PG_BASE" "$STATE/pg"
        fi
    else
        mkdir -p "$PG_BASE"
    fi
    mkdir -p "$PG_SOCK"
    if is_root; then
        chown postgres:postgres "$PG_BASE" "$PG_SOCK"
        chmod 0750 "$PG_BASE"
        runuser -u postgres -- test -w "$PG_BASE" \
            || die "user postgres cannot write $PG_BASE (check the permissions of its parent directories)"
    fi
    printf '%s\n' "$PG_BASE" >"$STATE/pg.location"
    ln -sfn "$PG_LOG" "$LOG_DIR/postgres.log"
}

pg_init() {
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        return 0
    fi
    if [[ -d $PG_DATA ]]; then
        warn "removing incomplete PostgreSQL data dir $PG_DATA"
        rm -rf "$PG_DATA"
    fi
    log "initdb $PG_DATA"
    # Local (unix socket) connections: trust. TCP from loopback: password (SCRAM),
    # so DATABASE_URL's credentials are really exercised.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_BASE/initdb.log" 2>&1 \
        || { show_log "$PG_BASE/initdb.log"; die "initdb failed"; }
    printf "\n# runfeed: per-start settings (rewritten by scripts/stack.sh)\ninclude_if_exists = 'runfeed.conf'\n" \
        | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

pg_write_conf() {
    as_pg tee "$PG_DATA/runfeed.conf" >/dev/null <<EOF
# Written by scripts/stack.sh on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
timezone = 'UTC'
log_timezone = 'UTC'
max_connections = 200
# Local development data only: trade durability for speed.
synchronous_commit = off
EOF
}

pg_start() {
    set_pg_paths choose
    if pg_running; then
        log "postgres: already running ($PG_DATA)"
    else
        pg_prepare_dirs
        pg_init
        pg_write_conf
        if port_busy "$PG_PORT"; then
            die "port $PG_PORT is already in use by another process (set RUNFEED_PG_PORT)"
        fi
        log "postgres: starting on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
            || { show_log "$PG_LOG"; die "postgres failed to start"; }
    fi
    wait_for 30 "postgres on port $PG_PORT" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        || { show_log "$PG_LOG"; die "postgres is not accepting connections"; }
}

pg_bootstrap() {
    log "postgres: role/database $DB_NAME, schema"
    psql_super <<SQL
SET client_min_messages = warning;
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE "$DB_USER" LOGIN PASSWORD '$DB_PASSWORD';
    ELSE
        ALTER ROLE "$DB_USER" LOGIN PASSWORD '$DB_PASSWORD';
    END IF;
END
\$\$;
SQL
    if [[ -z $(psql_super -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") ]]; then
        psql_super -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\" ENCODING 'UTF8' TEMPLATE template0"
    fi
    psql_app -f "$RUNFEED_ROOT/db/postgres/schema.sql" >/dev/null
}

pg_seed() {
    log "postgres: demo seed"
    psql_app -f "$RUNFEED_ROOT/db/postgres/seed-demo.sql" >/dev/null
}

pg_stop() {
    set_pg_paths
    if pg_running; then
        log "postgres: stopping"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null \
            || warn "pg_ctl stop failed (see $PG_LOG)"
    fi
}

# --- Redis ----------------------------------------------------------------------------

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_start() {
    mkdir -p "$REDIS_DIR" "$LOG_DIR"
    if pid_alive "$REDIS_PID" redis-server; then
        log "redis: already running (pid $(pid_from "$REDIS_PID"))"
    else
        rm -f "$REDIS_PID"
        port_busy "$REDIS_PORT" && die "port $REDIS_PORT is already in use by another process (set RUNFEED_REDIS_PORT)"
        log "redis: starting on 127.0.0.1:$REDIS_PORT"
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
            --pidfile "$REDIS_PID" --dir "$REDIS_DIR" --save '' --appendonly no \
            --logfile "$LOG_DIR/redis.log" \
            || { show_log "$LOG_DIR/redis.log"; die "redis-server failed to start"; }
    fi
    wait_for 20 "redis on port $REDIS_PORT" redis_ping \
        || { show_log "$LOG_DIR/redis.log"; die "redis is not answering PING"; }
    wait_for 5 "redis pid file" pid_alive "$REDIS_PID" redis-server \
        || die "redis answers but its pid file $REDIS_PID is missing"
}

redis_stop() {
    if pid_alive "$REDIS_PID" redis-server; then
        log "redis: stopping"
        stop_pid "$(pid_from "$REDIS_PID")" 10
    fi
    rm -f "$REDIS_PID"
}

# --- TLS --------------------------------------------------------------------------------

tls_ensure() {
    mkdir -p "$TLS_DIR"
    if [[ -s $TLS_DIR/cert.pem && -s $TLS_DIR/key.pem ]]; then
        return 0
    fi
    log "tls: self-signed certificate for localhost/127.0.0.1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" \
        -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
        || die "openssl failed to create a certificate"
    chmod 0600 "$TLS_DIR/key.pem"
}

# --- workers ------------------------------------------------------------------------------

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

workers_start() {
    set_run_dir
    mkdir -p "$LOG_DIR"
    workers_check_bin
    # Restart every worker so that a rebuilt binary is always picked up; also stop
    # workers left over from a larger RUNFEED_WORKERS.
    workers_stop_all

    # Held requests each cost a file descriptor.
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]]; then ulimit -n 65536 2>/dev/null || true
    elif ((hard > 65536)); then ulimit -n 65536 2>/dev/null || true
    else ulimit -n "$hard" 2>/dev/null || true
    fi

    local n sock pidf logf pid
    for ((n = 1; n <= WORKERS; n++)); do
        sock=$(worker_sock "$n")
        pidf=$(worker_pid "$n")
        logf=$LOG_DIR/worker-$n.log
        rm -f "$sock"
        printf '\n=== %s: %s serve --listen %s %s\n' "$(date -u +%FT%TZ)" "$RUNFEED_BIN" "$sock" \
            "${SERVE_ARGS[*]:-}" >>"$logf"
        nohup env \
            DATABASE_URL="$DATABASE_URL" \
            REDIS_HOST=127.0.0.1 \
            REDIS_PORT="$REDIS_PORT" \
            PGTZ=UTC \
            "$RUNFEED_BIN" serve --listen "$sock" ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} \
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
            if ! pid_alive "$pidf"; then
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

# --- nginx ------------------------------------------------------------------------------------

nginx_render() {
    mkdir -p "$NGINX_DIR/tmp" "$LOG_DIR"
    local tpl upstreams='' n
    tpl=$(<"$RUNFEED_ROOT/nginx/local.conf.template")
    for ((n = 1; n <= WORKERS; n++)); do
        upstreams+="        server unix:$(worker_sock "$n") max_fails=0;"$'\n'
    done
    upstreams=${upstreams%$'\n'}
    # Literal replacement (no `&` expansion in bash >= 5.2).
    shopt -u patsub_replacement 2>/dev/null || true
    tpl=${tpl//@STATE@/"$STATE"}
    tpl=${tpl//@HTTPS_PORT@/"$HTTPS_PORT"}
    tpl=${tpl//@HTTP_PORT@/"$HTTP_PORT"}
    tpl=${tpl//@UPSTREAMS@/"$upstreams"}
    # nginx can only raise its fd limit up to the hard limit it inherits.
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard =~ ^[0-9]+$ ]] && ((hard < 65535)); then
        tpl=${tpl//"worker_rlimit_nofile 65535;"/"worker_rlimit_nofile $hard;  # capped by ulimit -Hn"}
    fi
    printf '%s\n' "$tpl" >"$NGINX_CONF.new"
    mv -f "$NGINX_CONF.new" "$NGINX_CONF"
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
        port_busy "$HTTPS_PORT" && die "port $HTTPS_PORT is already in use by another process (set RUNFEED_HTTPS_PORT)"
        port_busy "$HTTP_PORT" && die "port $HTTP_PORT is already in use by another process (set RUNFEED_HTTP_PORT)"
        log "nginx: starting on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT"
        nginx_cmd || { show_log "$NGINX_ERR"; die "nginx failed to start"; }
    fi
    wait_for 20 "nginx on port $HTTP_PORT" nginx_answers \
        || { show_log "$NGINX_ERR"; die "nginx is not answering"; }
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

# --- demo.env -----------------------------------------------------------------------------------

write_demo_env() {
    local q api_key env_id other_key run_id run_env preview_key batch
    q() { psql_app -tA -c "$1" 2>/dev/null | head -n1; }
    api_key=$(q "SELECT \"apiKey\" FROM \"RuntimeEnvironment\" WHERE id = '$SEED_DEV_ENV'")
    env_id=$(q "SELECT id FROM \"RuntimeEnvironment\" WHERE id = '$SEED_DEV_ENV'")
    other_key=$(q "SELECT \"apiKey\" FROM \"RuntimeEnvironment\" WHERE id = '$SEED_PROD_ENV'")
    preview_key=$(q "SELECT \"apiKey\" FROM \"RuntimeEnvironment\" WHERE id = '$SEED_PREVIEW_ENV'")
    run_id=$(q "SELECT id FROM \"TaskRun\" WHERE \"friendlyId\" = '$SEED_RUN'")
    run_env=$(q "SELECT \"runtimeEnvironmentId\" FROM \"TaskRun\" WHERE \"friendlyId\" = '$SEED_RUN'")
    batch=$(q "SELECT \"friendlyId\" FROM \"BatchTaskRun\" WHERE \"friendlyId\" = '$SEED_BATCH'")
    [[ -n $run_id && $run_env != "$env_id" ]] && warn "demo run $SEED_RUN is not in env $env_id"

    {
        echo "# Written by scripts/stack.sh start — source it: set -a; . $DEMO_ENV; set +a"
        [[ -n $api_key ]] || echo "# (no demo data: start with --seed)"
        echo "RUNFEED_STATE=$STATE"
        echo "RUNFEED_RUN_DIR=$RUN_DIR"
        echo "RUNFEED_URL=https://127.0.0.1:$HTTPS_PORT"
        echo "RUNFEED_HTTP_URL=http://127.0.0.1:$HTTP_PORT"
        echo "RUNFEED_CA_CERT=$TLS_DIR/cert.pem"
        echo "RUNFEED_WORKERS=$WORKERS"
        echo "RUNFEED_API_KEY=$api_key"
        echo "RUNFEED_ENV_ID=$env_id"
        echo "RUNFEED_DEMO_RUN=$([[ -n $run_id ]] && echo "$SEED_RUN")"
        echo "RUNFEED_DEMO_RUN_ID=$run_id"
        echo "RUNFEED_DEMO_BATCH=$batch"
        echo "RUNFEED_OTHER_API_KEY=$other_key"
        echo "RUNFEED_OTHER_ENV_ID=$([[ -n $other_key ]] && echo "$SEED_PROD_ENV")"
        echo "RUNFEED_PREVIEW_API_KEY=$preview_key"
        echo "RUNFEED_PG_SOCKET_DIR=$PG_SOCK"
        echo "RUNFEED_PG_PORT=$PG_PORT"
        echo "RUNFEED_REDIS_PORT=$REDIS_PORT"
        echo "RUNFEED_HTTPS_PORT=$HTTPS_PORT"
        echo "RUNFEED_HTTP_PORT=$HTTP_PORT"
        echo "DATABASE_URL=$DATABASE_URL"
        echo "REDIS_HOST=127.0.0.1"
        echo "REDIS_PORT=$REDIS_PORT"
    } >"$DEMO_ENV.new"
    mv -f "$DEMO_ENV.new" "$DEMO_ENV"
    log "wrote $DEMO_ENV"
}

# --- commands --------------------------------------------------------------------------------------

cmd_start() {
    local seed=0 with_workers=1 arg
    for arg in "$@"; do
        case "$arg" in
            --seed) seed=1 ;;
            --no-workers) with_workers=0 ;;
            *) die "start: unknown option '$arg'" ;;
        esac
    done
    ((with_workers)) && workers_check_bin

    mkdir -p "$STATE" "$LOG_DIR"
    log "state dir: $STATE"
    pg_start
    pg_bootstrap
    ((seed)) && pg_seed
    redis_start
    tls_ensure
    set_run_dir
    if ((with_workers)); then
        workers_start
    else
        warn "--no-workers: nginx will answer 503 until workers are started"
    fi
    nginx_start
    write_demo_env
    log "stack is up: https://127.0.0.1:$HTTPS_PORT (TLS)  http://127.0.0.1:$HTTP_PORT"
}

cmd_stop() {
    if [[ ! -d $STATE ]]; then
        log "nothing to stop ($STATE does not exist)"
        return 0
    fi
    nginx_stop
    workers_stop_all
    redis_stop
    pg_stop
    log "stack stopped ($STATE)"
}

cmd_status() {
    local ok=0 n pidf sock
    set_pg_paths
    if pg_running && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
        echo "postgres  running   127.0.0.1:$PG_PORT  data=$PG_DATA"
    else
        echo "postgres  stopped"; ok=1
    fi
    if pid_alive "$REDIS_PID" redis-server && redis_ping; then
        echo "redis     running   127.0.0.1:$REDIS_PORT  pid=$(pid_from "$REDIS_PID")"
    else
        echo "redis     stopped"; ok=1
    fi
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
    if pid_alive "$NGINX_PID" nginx && nginx_answers; then
        echo "nginx     running   https://127.0.0.1:$HTTPS_PORT  http://127.0.0.1:$HTTP_PORT  pid=$(pid_from "$NGINX_PID")"
    else
        echo "nginx     stopped"; ok=1
    fi
    return $ok
}

cmd_logs() {
    local f
    for f in "$LOG_DIR"/*.log; do
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

cmd_examples() {
    [[ -s $DEMO_ENV ]] || die "$DEMO_ENV not found: run \`scripts/stack.sh start --seed\` first"
    # shellcheck disable=SC1090
    set -a; . "$DEMO_ENV"; set +a
    [[ -n ${RUNFEED_API_KEY:-} ]] || die "no demo data in the database: run \`scripts/stack.sh start --seed\`"
    local bin=${RUNFEED_BIN#"$RUNFEED_ROOT"/}
    cat <<EOF

runfeed is up. Demo environment: $RUNFEED_ENV_ID (key $RUNFEED_API_KEY)
(Variables are in $DEMO_ENV — \`set -a; . $DEMO_ENV; set +a\` to load them.)

1) Snapshot of the demo run (shows the electric-handle / electric-offset headers):

   curl -sk "$RUNFEED_URL/realtime/v1/runs/$RUNFEED_DEMO_RUN" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY" \\
     -H "x-trigger-electric-version: 1.0.0-beta.1" -D -

2) Live long-poll: reuse the handle (run-$RUNFEED_DEMO_RUN_ID) and the offset from
   the electric-offset header of step 1 (e.g. 1760000000123_1). It is held for
   ~20 s unless the run changes:

   curl -sk "$RUNFEED_URL/realtime/v1/runs/$RUNFEED_DEMO_RUN?live=true&handle=run-$RUNFEED_DEMO_RUN_ID&offset=<offset>" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY" \\
     -H "x-trigger-electric-version: 1.0.0-beta.1" -D -

3) While it is held, change the run in another terminal...

   $PG_BIN/psql "$DATABASE_URL" -c "UPDATE \"TaskRun\" SET status='EXECUTING', \"updatedAt\"=now() at time zone 'utc' WHERE id='$RUNFEED_DEMO_RUN_ID'"

   ...and publish the change record; the held poll returns with the new row:

   REDIS_HOST=$REDIS_HOST REDIS_PORT=$REDIS_PORT $bin publish --env $RUNFEED_ENV_ID --run $RUNFEED_DEMO_RUN_ID --tags demo,user:42

   (or with redis-cli:)
   redis-cli -p $REDIS_PORT PUBLISH 'realtime:env:{$RUNFEED_ENV_ID}' '{"v":1,"runId":"$RUNFEED_DEMO_RUN_ID","envId":"$RUNFEED_ENV_ID","tags":["demo","user:42"],"batchId":null}'

4) Tag feed and batch feed:

   curl -sk "$RUNFEED_URL/realtime/v1/runs?tags=user:42" -H "Authorization: Bearer $RUNFEED_API_KEY" -H "x-trigger-electric-version: 1.0.0-beta.1"
   curl -sk "$RUNFEED_URL/realtime/v1/batches/$RUNFEED_DEMO_BATCH" -H "Authorization: Bearer $RUNFEED_API_KEY" -H "x-trigger-electric-version: 1.0.0-beta.1"

   The production key $RUNFEED_OTHER_API_KEY sees none of these runs (404 / empty).

Stop everything with: make stop
EOF
}

main() {
    local cmd=${1:-}
    shift || true
    case "$cmd" in
        start) cmd_start "$@" ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        restart-workers)
            set_pg_paths
            mkdir -p "$STATE"
            workers_start
            ;;
        logs) cmd_logs ;;
        clean) cmd_clean ;;
        examples) cmd_examples ;;
        *)
            echo "usage: $0 {start [--seed] [--no-workers]|stop|status|restart-workers|logs|examples|clean}" >&2
            exit 2
            ;;
    esac
}

main "$@"
