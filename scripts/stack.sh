#!/usr/bin/env bash
# Local runfeed stack: PostgreSQL 15 + Redis + ClickHouse + N runfeed FastCGI
# workers + nginx, all on 127.0.0.1, all state under one directory.
#
#   scripts/stack.sh start [--seed] [--no-workers]
#   scripts/stack.sh stop
#   scripts/stack.sh status
#   scripts/stack.sh restart-workers
#   scripts/stack.sh examples      # curl/psql/publish commands for the demo data, demo page URL
#   scripts/stack.sh simulator {start|stop}   # the demo simulator alone (`runfeed demo`)
#   scripts/stack.sh logs          # tail every log (used by `make test` on failure)
#   scripts/stack.sh clean         # stop, then delete the state directory
#
# Environment (defaults in brackets; relative paths are relative to the caller's cwd):
#   RUNFEED_STATE       state dir                     [<repo>/.runfeed]
#   RUNFEED_PG_PORT     PostgreSQL TCP port           [25432]
#   RUNFEED_REDIS_PORT  Redis TCP port                [26379]
#   RUNFEED_PG_REPLICA  1 = also a streaming read replica of the stack's PostgreSQL (pg_basebackup -R,
#                       its own data dir and port); workers get DATABASE_READ_REPLICA_URL   [0]
#   RUNFEED_PG_REPLICA_PORT  its TCP port             [RUNFEED_PG_PORT + 2000]
#   RUNFEED_PG_REPLICA_DELAY_MS  its recovery_min_apply_delay: commits become visible there this
#                       long after the primary's (simulated lag; ALTER SYSTEM on the replica
#                       changes it live)             [0]
#   RUNFEED_PGBOUNCER   1 = PgBouncer (Debian's pgbouncer) in transaction mode in front of the
#                       primary; the workers' DATABASE_URL goes through it   [0]
#   RUNFEED_PGBOUNCER_PORT  its TCP port              [RUNFEED_PG_PORT + 3000]
#   RUNFEED_REDIS_MODE  plain = one redis-server; tls = one redis-server on a TLS-only port with a
#                       certificate from the stack's local CA; cluster = 3 masters + 3 replicas on
#                       RUNFEED_REDIS_PORT … +5, cluster bus +6 … +11 (scripts/redis-cluster.sh;
#                       workers use sharded pub/sub)  [plain]
#   RUNFEED_HTTPS_PORT  nginx TLS port                [8443]
#   RUNFEED_HTTP_PORT   nginx plain HTTP port         [8080]
#   RUNFEED_WEBAPP_PORT the trigger.dev webapp stand-in (scripts/webapp_standin.py), which nginx
#                       sends every path but runfeed's to, as nginx/runfeed.conf does with the
#                       real webapp: GET/PUT /api/v1/packets/<file> (offloaded payloads)  [23030]
#   RUNFEED_CLICKHOUSE  1 = run ClickHouse, 0 = don't: workers then resolve tag
#                       and batch membership in PostgreSQL   [1 when installed]
#   RUNFEED_CH_HTTP_PORT ClickHouse HTTP port        [18123]
#   RUNFEED_CH_TCP_PORT  ClickHouse native TCP port  [19000]
#   RUNFEED_WORKERS     number of workers             [2]
#   RUNFEED_BIN         runfeed binary                [<repo>/.build/release/runfeed]
#   RUNFEED_SERVE_ARGS  extra `runfeed serve` args    []   e.g. "--hold-ms 3000"
#   RUNFEED_METRICS_PORT_BASE  worker N's /metrics and /healthz on 127.0.0.1:(base+N) [19100]
#   RUNFEED_DEMO_SIMULATOR  1 = run `runfeed demo` (moves the demo-set runs, for the demo page at
#                       /demo/) with the stack, 0 = don't   [1; 0 when RUNFEED_STATE ends in /test]
#   RUNFEED_NGINX_WORKERS  nginx worker_processes, 1..64  [1]. Above 1 the plain-HTTP listen
#                       gets `reuseport` (one socket per worker: the kernel spreads connections
#                       evenly) and `accept_mutex off`. Each worker has at most `ulimit -Hn` fds
#                       (worker_rlimit_nofile is capped there) and a held proxied long-poll costs
#                       two, so with a hard limit of 20000, 20,000 held polls need 3, better 4.
#   RUNFEED_NGINX_BENCH 1 = benchmark stack: nginx also loads nchan (`scripts/deps.sh --bench`
#                       installs it) and serves, on both ports, nchan long-poll pub/sub at
#                       /bench/nchan/sub/<channel> (GET, held up to 20 s),
#                       /bench/nchan/pub/<channel> (POST, loopback only) and
#                       /bench/nchan/status (loopback only), and the static files of
#                       $RUNFEED_STATE/bench-static/ as application/json at /bench/static/;
#                       its HTTP listen gets backlog=4096  [0]
#   RUNFEED_FASTCGI_KEEPALIVE  idle upstream connections to the workers each nginx worker keeps
#                       (`keepalive` + `fastcgi_keep_conn on`); 0: a connection per request  [4096]
#   RUNFEED_NGINX_CONNECTIONS  nginx worker_connections, at most worker_rlimit_nofile
#                       [16384; with RUNFEED_NGINX_BENCH=1 worker_rlimit_nofile - 1000 (19000
#                       under a hard limit of 20000), leaving fds for files and logs]
# The nginx knobs apply on every `start` (the config is rendered anew): pass them each time.
#
# Ports: every default lies below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by
# default), which outgoing connections draw from; `start` warns about a configured port inside it.
# A port that cannot be bound stops `start` with the process that listens there, or the
# connections that hold it as their local port (from `ss`, or /proc without it).
#
# Only processes recorded in the state dir's pid files are ever signalled. System
# services (a packaged postgres/redis/nginx on default ports) are never touched.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- configuration --------------------------------------------------------------

STATE=$(abs_path "${RUNFEED_STATE:-$RUNFEED_ROOT/.runfeed}")
STATE=${STATE%/}
PG_PORT=${RUNFEED_PG_PORT:-25432}
case "${RUNFEED_PG_REPLICA:-0}" in
    0|no|false|off) PG_REPLICA=0 ;;
    1|yes|true|on) PG_REPLICA=1 ;;
    *) die "RUNFEED_PG_REPLICA must be 0 or 1 (got '$RUNFEED_PG_REPLICA')" ;;
esac
REPLICA_PORT=${RUNFEED_PG_REPLICA_PORT:-$((PG_PORT + 2000))}
REPLICA_DELAY_MS=${RUNFEED_PG_REPLICA_DELAY_MS:-0}
[[ $REPLICA_DELAY_MS =~ ^[0-9]+$ ]] || die "RUNFEED_PG_REPLICA_DELAY_MS must be a number of milliseconds (got '$REPLICA_DELAY_MS')"
case "${RUNFEED_PGBOUNCER:-0}" in
    0|no|false|off) PGBOUNCER=0 ;;
    1|yes|true|on) PGBOUNCER=1 ;;
    *) die "RUNFEED_PGBOUNCER must be 0 or 1 (got '$RUNFEED_PGBOUNCER')" ;;
esac
PGBOUNCER_PORT=${RUNFEED_PGBOUNCER_PORT:-$((PG_PORT + 3000))}
REDIS_PORT=${RUNFEED_REDIS_PORT:-26379}
REDIS_MODE=${RUNFEED_REDIS_MODE:-plain}
case $REDIS_MODE in plain|tls|cluster) ;; *) die "RUNFEED_REDIS_MODE must be plain, tls or cluster (got '$REDIS_MODE')" ;; esac
HTTPS_PORT=${RUNFEED_HTTPS_PORT:-8443}
HTTP_PORT=${RUNFEED_HTTP_PORT:-8080}
WEBAPP_PORT=${RUNFEED_WEBAPP_PORT:-23030}
WORKERS=${RUNFEED_WORKERS:-2}
# Below the kernel's ephemeral range (32768+): clickhouse-server 18.16 cannot bind a port that an
# outgoing connection still holds in TIME-WAIT.
CH_HTTP_PORT=${RUNFEED_CH_HTTP_PORT:-18123}
CH_TCP_PORT=${RUNFEED_CH_TCP_PORT:-19000}
RUNFEED_BIN=$(abs_path "${RUNFEED_BIN:-$RUNFEED_ROOT/.build/release/runfeed}")
# Worker N serves /metrics and /healthz on 127.0.0.1:(METRICS_BASE + N).
METRICS_BASE=${RUNFEED_METRICS_PORT_BASE:-19100}
NGINX_WORKERS=${RUNFEED_NGINX_WORKERS:-1}
case "${RUNFEED_NGINX_BENCH:-0}" in
    0|no|false|off) NGINX_BENCH=0 ;;
    1|yes|true|on) NGINX_BENCH=1 ;;
    *) die "RUNFEED_NGINX_BENCH must be 0 or 1 (got '$RUNFEED_NGINX_BENCH')" ;;
esac
NGINX_CONNECTIONS=${RUNFEED_NGINX_CONNECTIONS:-}
FASTCGI_KEEPALIVE=${RUNFEED_FASTCGI_KEEPALIVE:-4096}
SERVE_ARGS=()
read -r -a SERVE_ARGS <<<"${RUNFEED_SERVE_ARGS:-}" || true

require_port RUNFEED_PG_PORT "$PG_PORT"
require_port RUNFEED_PG_REPLICA_PORT "$REPLICA_PORT"
require_port RUNFEED_PGBOUNCER_PORT "$PGBOUNCER_PORT"
require_port RUNFEED_REDIS_PORT "$REDIS_PORT"
require_port RUNFEED_HTTPS_PORT "$HTTPS_PORT"
require_port RUNFEED_HTTP_PORT "$HTTP_PORT"
require_port RUNFEED_WEBAPP_PORT "$WEBAPP_PORT"
require_port RUNFEED_CH_HTTP_PORT "$CH_HTTP_PORT"
require_port RUNFEED_CH_TCP_PORT "$CH_TCP_PORT"
[[ $CH_HTTP_PORT != "$CH_TCP_PORT" ]] || die "RUNFEED_CH_HTTP_PORT and RUNFEED_CH_TCP_PORT must differ"
[[ $WORKERS =~ ^[0-9]+$ ]] && ((WORKERS >= 1 && WORKERS <= 64)) \
    || die "RUNFEED_WORKERS must be 1..64 (got '$WORKERS')"
[[ $METRICS_BASE =~ ^[0-9]+$ ]] && ((METRICS_BASE >= 1 && METRICS_BASE + WORKERS < 65536)) \
    || die "RUNFEED_METRICS_PORT_BASE + RUNFEED_WORKERS must be a TCP port number (got '$METRICS_BASE' + $WORKERS)"
[[ $NGINX_WORKERS =~ ^[0-9]+$ ]] && ((NGINX_WORKERS >= 1 && NGINX_WORKERS <= 64)) \
    || die "RUNFEED_NGINX_WORKERS must be 1..64 (got '$NGINX_WORKERS')"
[[ $FASTCGI_KEEPALIVE =~ ^[0-9]+$ ]] \
    || die "RUNFEED_FASTCGI_KEEPALIVE must be a number of connections, 0 for none (got '$FASTCGI_KEEPALIVE')"
[[ -z $NGINX_CONNECTIONS || $NGINX_CONNECTIONS =~ ^[1-9][0-9]*$ ]] \
    || die "RUNFEED_NGINX_CONNECTIONS must be a positive number (got '$NGINX_CONNECTIONS')"
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
# Benchmark stack (RUNFEED_NGINX_BENCH=1): nchan, from Debian's libnginx-mod-nchan, and the
# directory served at /bench/static/.
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
BENCH_STATIC_DIR=$STATE/bench-static
REDIS_PID=$REDIS_DIR/redis.pid
CH_DIR=$STATE/clickhouse
CH_CONF=$CH_DIR/config.xml
CH_PID=$CH_DIR/clickhouse.pid
CH_URL="http://127.0.0.1:$CH_HTTP_PORT"
CH_DDL=$RUNFEED_ROOT/db/clickhouse/compat-18.16/task_runs_v2.sql
DEMO_ENV=$STATE/demo.env
# The demo page: static files from the repo, defaults (token, run, tag) generated into the state dir.
DEMO_DIR=$RUNFEED_ROOT/demo
DEMO_CONFIG=$STATE/demo-config.js
# The webapp stand-in (scripts/webapp_standin.py): pid file, log, and the object store it serves
# presigned URLs from (the demo seed's offloaded payload is written there by `start --seed`).
WEBAPP_SCRIPT=$RUNFEED_ROOT/scripts/webapp_standin.py
WEBAPP_DIR=$STATE/webapp
WEBAPP_OBJECTS=$WEBAPP_DIR/objects
WEBAPP_PID=$WEBAPP_DIR/webapp.pid
WEBAPP_LOG=$LOG_DIR/webapp.log
# The demo simulator (`runfeed demo`): pid file and log.
DEMO_PID=$STATE/demo.pid
DEMO_LOG=$LOG_DIR/demo.log
case "${RUNFEED_DEMO_SIMULATOR:-auto}" in
    0|no|false|off) DEMO_SIM=0 ;;
    1|yes|true|on) DEMO_SIM=1 ;;
    auto) if [[ $STATE == */test ]]; then DEMO_SIM=0; else DEMO_SIM=1; fi ;;
    *) die "RUNFEED_DEMO_SIMULATOR must be 0 or 1 (got '$RUNFEED_DEMO_SIMULATOR')" ;;
esac
# Change capture (`runfeed capture`, RUNFEED_CAPTURE): scripts/stack/capture.sh.
# shellcheck source=scripts/stack/capture.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack/capture.sh"

# ClickHouse runs unless RUNFEED_CLICKHOUSE=0. Left unset, it is skipped with a
# warning when clickhouse-server is not installed; RUNFEED_CLICKHOUSE=1 makes
# that an error.
CH_SERVER_BIN=$(command -v clickhouse-server 2>/dev/null || true)
CH_CLIENT_BIN=$(command -v clickhouse-client 2>/dev/null || true)
case "${RUNFEED_CLICKHOUSE:-auto}" in
    0|no|false|off) CH_ENABLED=0 ;;
    1|yes|true|on) CH_ENABLED=1 ;;
    auto)
        CH_ENABLED=1
        [[ -n $CH_SERVER_BIN && -n $CH_CLIENT_BIN ]] || CH_ENABLED=missing
        ;;
    *) die "RUNFEED_CLICKHOUSE must be 0 or 1 (got '$RUNFEED_CLICKHOUSE')" ;;
esac

# check_port_plan — the ports this stack binds must differ from each other, and should lie below
# the kernel's ephemeral port range (a warning names any that does not; the defaults do).
check_port_plan() {
    local -A seen=()
    local plan=("RUNFEED_PG_PORT=$PG_PORT" "RUNFEED_REDIS_PORT=$REDIS_PORT"
                "RUNFEED_HTTPS_PORT=$HTTPS_PORT" "RUNFEED_HTTP_PORT=$HTTP_PORT"
                "RUNFEED_WEBAPP_PORT=$WEBAPP_PORT")
    [[ $CH_ENABLED == 1 ]] && plan+=("RUNFEED_CH_HTTP_PORT=$CH_HTTP_PORT" "RUNFEED_CH_TCP_PORT=$CH_TCP_PORT")
    ((PG_REPLICA)) && plan+=("RUNFEED_PG_REPLICA_PORT=$REPLICA_PORT")
    ((PGBOUNCER)) && plan+=("RUNFEED_PGBOUNCER_PORT=$PGBOUNCER_PORT")
    if [[ $REDIS_MODE == cluster ]]; then
        local i
        for i in 1 2 3 4 5 6 7 8 9 10 11; do plan+=("RUNFEED_REDIS_PORT+$i=$((REDIS_PORT + i))"); done
    fi
    local entry name port m
    for entry in "${plan[@]}"; do
        name=${entry%%=*} port=${entry#*=}
        [[ -z ${seen[$port]:-} ]] || die "$name and ${seen[$port]} are both $port"
        seen[$port]=$name
        warn_ephemeral "$name" "$port"
    done
    for ((m = 1; m <= WORKERS; m++)); do
        port=$((METRICS_BASE + m))
        [[ -z ${seen[$port]:-} ]] \
            || die "worker $m's metrics port $port (RUNFEED_METRICS_PORT_BASE + $m) is also ${seen[$port]}"
    done
    warn_ephemeral RUNFEED_METRICS_PORT_BASE "$((METRICS_BASE + 1))" "$((METRICS_BASE + WORKERS))"
}

# AF_UNIX paths are limited to 107 bytes.
SUN_PATH_MAX=107

DB_NAME=runfeed
DB_USER=runfeed
DB_PASSWORD=runfeed
DATABASE_URL="postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"
REPLICA_URL="postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$REPLICA_PORT/$DB_NAME"
PGBOUNCER_URL="postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PGBOUNCER_PORT/$DB_NAME"

# Seed ids (db/postgres/seed-demo.sql); the values written to demo.env are read
# back from the database, these only select the rows.
SEED_DEV_ENV=cmdemoenv0000000000000001
SEED_PROD_ENV=cmdemoenv0000000000000002
SEED_PREVIEW_ENV=cmdemoenv0000000000000003
SEED_RUN=run_demo0001
SEED_BATCH=batch_demo0001
SEED_OLD_BATCH=batch_demo0002
SEED_TAG=demo-set
SEED_TAG2=customer:acme
# The run the demo page follows by default: a member of the tag set, so the simulator moves it.
SEED_PAGE_RUN=run_demo0012

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
    REPLICA_DATA=$PG_BASE/replica
    REPLICA_LOG=$PG_BASE/replica.log
    PGB_DIR=$PG_BASE/pgbouncer
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
# A read replica (RUNFEED_PG_REPLICA=1) receives WAL once it is flushed: flush often, so that its
# lag is recovery_min_apply_delay and not the WAL writer's pace.
wal_writer_delay = 10ms
# TLS with the stack's local CA (a client may use sslmode=require or verify-full; plain TCP still works).
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
$(capture_pg_conf)
EOF
    # The leaf of the local CA (tls_ensure), owned by postgres: the server refuses a key others can read.
    as_pg bash -c "cat > '$PG_DATA/server.crt'; chmod 0644 '$PG_DATA/server.crt'" <"$TLS_DIR/cert.pem"
    as_pg bash -c "umask 077; cat > '$PG_DATA/server.key'" <"$TLS_DIR/key.pem"
}

# --- read replica (RUNFEED_PG_REPLICA=1) -------------------------------------------------------

replica_running() {
    [[ -f $REPLICA_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DATA" status >/dev/null 2>&1
}

replica_write_conf() {
    as_pg tee "$REPLICA_DATA/runfeed.conf" >/dev/null <<EOF
# Written by scripts/stack.sh on every start: the read replica of the stack's PostgreSQL.
listen_addresses = '127.0.0.1'
port = $REPLICA_PORT
unix_socket_directories = '$PG_SOCK'
timezone = 'UTC'
log_timezone = 'UTC'
max_connections = 200
hot_standby = on
primary_conninfo = 'host=$PG_SOCK port=$PG_PORT user=postgres application_name=runfeed-replica'
# Replica queries never cancel replay and are not cancelled by it (the tests hold no long queries).
hot_standby_feedback = on
max_standby_streaming_delay = 30s
# Simulated lag: commits become visible here this long after the primary's (RUNFEED_PG_REPLICA_DELAY_MS).
recovery_min_apply_delay = '${REPLICA_DELAY_MS}ms'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    as_pg bash -c "cat > '$REPLICA_DATA/server.crt'; chmod 0644 '$REPLICA_DATA/server.crt'" <"$TLS_DIR/cert.pem"
    as_pg bash -c "umask 077; cat > '$REPLICA_DATA/server.key'" <"$TLS_DIR/key.pem"
    # An ALTER SYSTEM of an earlier run (a test changing the delay) must not outlive the stack's setting
    # (pg_basebackup -R put primary_conninfo there; it is above now).
    as_pg bash -c ": > '$REPLICA_DATA/postgresql.auto.conf'"
}

replica_start() {
    if replica_running; then
        log "replica: already running ($REPLICA_DATA)"
    else
        if [[ ! -f $REPLICA_DATA/PG_VERSION ]]; then
            rm -rf "$REPLICA_DATA"
            log "replica: pg_basebackup -R from 127.0.0.1:$PG_PORT into $REPLICA_DATA"
            as_pg "$PG_BIN/pg_basebackup" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -D "$REPLICA_DATA" -R -X stream \
                -c fast >"$PG_BASE/basebackup.log" 2>&1 \
                || { show_log "$PG_BASE/basebackup.log"; die "pg_basebackup failed"; }
        fi
        replica_write_conf
        port_check RUNFEED_PG_REPLICA_PORT "$REPLICA_PORT"
        log "replica: starting on 127.0.0.1:$REPLICA_PORT (recovery_min_apply_delay ${REPLICA_DELAY_MS} ms)"
        ln -sfn "$REPLICA_LOG" "$LOG_DIR/postgres-replica.log"
        as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DATA" -l "$REPLICA_LOG" -w -t 60 start >/dev/null \
            || { show_log "$REPLICA_LOG"; die "the replica failed to start$(port_note "$REPLICA_PORT")"; }
    fi
    wait_for 30 "the replica on port $REPLICA_PORT" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$REPLICA_PORT" \
        || { show_log "$REPLICA_LOG"; die "the replica is not accepting connections$(port_note "$REPLICA_PORT")"; }
    # Streaming: what the primary wrote before it started (schema, seed) arrives through it.
    wait_for 30 "the replica to stream from the primary" replica_streaming \
        || { show_log "$REPLICA_LOG"; die "the replica is not streaming from the primary"; }
}

replica_streaming() {
    [[ $("$PG_BIN/psql" -X -qAt -h "$PG_SOCK" -p "$REPLICA_PORT" -U postgres -d postgres \
        -c 'SELECT count(*) FROM pg_stat_wal_receiver' 2>/dev/null) == 1 ]]
}

replica_stop() {
    set_pg_paths
    if replica_running; then
        log "replica: stopping"
        as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DATA" -m fast -w -t 60 stop >/dev/null \
            || warn "pg_ctl stop of the replica failed (see $REPLICA_LOG)"
    fi
}

# --- PgBouncer (RUNFEED_PGBOUNCER=1) -----------------------------------------------------------

PGBOUNCER_BIN=$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)

pgbouncer_start() {
    [[ -x $PGBOUNCER_BIN ]] || die "RUNFEED_PGBOUNCER=1 needs pgbouncer (scripts/deps.sh installs Debian's package)"
    as_pg mkdir -p "$PGB_DIR"
    local pidf=$PGB_DIR/pgbouncer.pid
    if pid_alive "$pidf" pgbouncer; then
        log "pgbouncer: already running (pid $(pid_from "$pidf"))"
        return 0
    fi
    as_pg tee "$PGB_DIR/pgbouncer.ini" >/dev/null <<EOF
; Written by scripts/stack.sh on every start.
[databases]
$DB_NAME = host=127.0.0.1 port=$PG_PORT dbname=$DB_NAME

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
; Transaction pooling: each transaction (each of runfeed's statements) may run on any server connection.
pool_mode = transaction
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
default_pool_size = 20
max_client_conn = 1000
server_reset_query =
logfile = $PGB_DIR/pgbouncer.log
pidfile = $pidf
EOF
    printf '"%s" "%s"\n' "$DB_USER" "$DB_PASSWORD" | as_pg tee "$PGB_DIR/userlist.txt" >/dev/null
    as_pg chmod 0600 "$PGB_DIR/userlist.txt"
    port_check RUNFEED_PGBOUNCER_PORT "$PGBOUNCER_PORT"
    log "pgbouncer: starting on 127.0.0.1:$PGBOUNCER_PORT (transaction pooling) in front of 127.0.0.1:$PG_PORT"
    ln -sfn "$PGB_DIR/pgbouncer.log" "$LOG_DIR/pgbouncer.log"
    as_pg "$PGBOUNCER_BIN" -d "$PGB_DIR/pgbouncer.ini" >/dev/null 2>&1 \
        || { show_log "$PGB_DIR/pgbouncer.log"; die "pgbouncer failed to start$(port_note "$PGBOUNCER_PORT")"; }
    wait_for 20 "pgbouncer on port $PGBOUNCER_PORT" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" \
        || { show_log "$PGB_DIR/pgbouncer.log"; die "pgbouncer is not accepting connections"; }
}

pgbouncer_stop() {
    set_pg_paths
    local pidf=$PGB_DIR/pgbouncer.pid pid
    if pid_alive "$pidf" pgbouncer; then
        pid=$(pid_from "$pidf")
        log "pgbouncer: stopping"
        stop_pid "$pid" 5
    fi
}

pg_start() {
    set_pg_paths choose
    if pg_running; then
        log "postgres: already running ($PG_DATA)"
    else
        pg_prepare_dirs
        pg_init
        pg_write_conf
        port_check RUNFEED_PG_PORT "$PG_PORT"
        log "postgres: starting on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
            || { show_log "$PG_LOG"; die "postgres failed to start$(port_note "$PG_PORT")"; }
    fi
    wait_for 30 "postgres on port $PG_PORT" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        || { show_log "$PG_LOG"; die "postgres is not accepting connections$(port_note "$PG_PORT")"; }
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
    capture_bootstrap
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

# --- ClickHouse --------------------------------------------------------------------------

# Debian 12 ships clickhouse-server 18.16. It runs as root without complaint
# (it only refuses to start while another server holds <path>/status), so it
# runs as the invoking user with a config of its own: 127.0.0.1 only, no
# interserver port, small caches, UTC, data under $STATE/clickhouse, logs in
# $STATE/log. Only the pid in $CH_PID is ever signalled, after checking that it
# is still ours (config path on its command line, or our not-yet-exec'd wrapper);
# start-up checks use the pid and /ping only.

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
    cat >"$CH_CONF.new" <<XML
<?xml version="1.0"?>
<!-- Written by scripts/stack.sh on every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$LOG_DIR/clickhouse.log</log>
        <errorlog>$LOG_DIR/clickhouse.err.log</errorlog>
        <size>20M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <!-- no interserver_http_port: no replicas, so nothing else listens -->
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>64</max_concurrent_queries>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
    cat >"$CH_DIR/users.xml.new" <<'XML'
<?xml version="1.0"?>
<!-- Written by scripts/stack.sh on every start. User `default`, no password,
     loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>1000000000</max_memory_usage>
            <max_threads>2</max_threads>
            <background_pool_size>4</background_pool_size>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <log_queries>0</log_queries>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
    mv -f "$CH_CONF.new" "$CH_CONF"
    mv -f "$CH_DIR/users.xml.new" "$CH_DIR/users.xml"
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

# --- TLS --------------------------------------------------------------------------------

# A small local CA ($TLS_DIR/ca.pem: CA:TRUE, keyCertSign; RUNFEED_CA_CERT) signs the
# leaf nginx serves ($TLS_DIR/cert.pem: CA:FALSE, serverAuth, SAN 127.0.0.1 and
# localhost). rustls and other WebPKI clients reject a CA certificate used as the
# server's own (CaUsedAsEndEntity), so the old single self-signed CA:TRUE
# certificate is replaced when found.
tls_valid() {
    [[ -s $TLS_DIR/ca.pem && -s $TLS_DIR/ca-key.pem && -s $TLS_DIR/cert.pem && -s $TLS_DIR/key.pem ]] \
        || return 1
    openssl x509 -noout -text -in "$TLS_DIR/ca.pem" 2>/dev/null | grep -q 'CA:TRUE' || return 1
    openssl x509 -noout -text -in "$TLS_DIR/cert.pem" 2>/dev/null | grep -q 'CA:FALSE' || return 1
    openssl verify -CAfile "$TLS_DIR/ca.pem" -purpose sslserver "$TLS_DIR/cert.pem" >/dev/null 2>&1 \
        || return 1
    openssl x509 -noout -checkend 86400 -in "$TLS_DIR/cert.pem" >/dev/null 2>&1
}

tls_ensure() {
    mkdir -p "$TLS_DIR"
    tls_valid && return 0
    if [[ -s $TLS_DIR/cert.pem ]]; then
        log "tls: replacing $TLS_DIR/cert.pem with a leaf signed by a local CA"
    else
        log "tls: local CA and a leaf certificate for localhost/127.0.0.1"
    fi
    local tmp
    tmp=$(mktemp -d "$TLS_DIR/.new.XXXXXX")
    cat >"$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    openssl req -x509 -config "$tmp/openssl.cnf" -extensions ca_ext -newkey rsa:2048 -nodes \
        -days 3650 -sha256 -subj "/CN=runfeed local CA" \
        -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" >"$tmp/openssl.log" 2>&1 \
        && openssl req -new -config "$tmp/openssl.cnf" -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$tmp/key.pem" -out "$tmp/leaf.csr" >>"$tmp/openssl.log" 2>&1 \
        && openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
            -CAcreateserial -days 825 -sha256 -extfile "$tmp/openssl.cnf" -extensions leaf_ext \
            -out "$tmp/cert.pem" >>"$tmp/openssl.log" 2>&1 \
        || { show_log "$tmp/openssl.log"; rm -rf "$tmp"; die "openssl failed to create the local CA/certificate"; }
    chmod 0600 "$tmp/key.pem" "$tmp/ca-key.pem"
    mv -f "$tmp/ca.pem" "$tmp/ca-key.pem" "$tmp/key.pem" "$tmp/cert.pem" "$TLS_DIR/"
    rm -rf "$tmp"
    tls_valid || die "the new certificate $TLS_DIR/cert.pem does not verify against $TLS_DIR/ca.pem"
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

# --- webapp stand-in ---------------------------------------------------------------------------

# nginx sends every path but runfeed's routes to the trigger.dev webapp (nginx/runfeed.conf); the
# local stack runs scripts/webapp_standin.py in its place, on 127.0.0.1:$WEBAPP_PORT. It serves what
# an SDK subscriber needs from the webapp: GET/PUT /api/v1/packets/<file> (credentials checked in
# PostgreSQL) and the presigned object URLs it hands out; a JSON 404 for anything else. Only the pid
# in $WEBAPP_PID, checked against its command line, is ever signalled.

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

# webapp_start — (re)start the stand-in, so that a changed port or script is picked up.
webapp_start() {
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

# --- nginx ------------------------------------------------------------------------------------

# template_blocks TEXT — TEXT without the conditional blocks that do not apply: the lines
# between a line holding only @IF_BENCH@ (RUNFEED_NGINX_BENCH=1) or @IF_MULTI@
# (RUNFEED_NGINX_WORKERS > 1) and the next line holding only @ENDIF@. Marker lines are dropped.
template_blocks() {
    local line out='' keep=1 in_block=0 multi=0
    ((NGINX_WORKERS > 1)) && multi=1
    while IFS= read -r line; do
        case "$line" in
            '@IF_BENCH@' | '@IF_MULTI@')
                ((in_block)) && die "nginx template: nested $line"
                in_block=1
                if [[ $line == '@IF_BENCH@' ]]; then keep=$NGINX_BENCH; else keep=$multi; fi
                continue
                ;;
            '@ENDIF@')
                ((in_block)) || die "nginx template: @ENDIF@ without @IF_…@"
                in_block=0 keep=1
                continue
                ;;
        esac
        ((keep)) && out+=$line$'\n'
    done <<<"$1"
    ((in_block)) && die "nginx template: @IF_…@ without @ENDIF@"
    printf '%s' "${out%$'\n'}"
}

nginx_render() {
    mkdir -p "$NGINX_DIR/tmp" "$LOG_DIR"
    local tpl upstreams='' n
    tpl=$(<"$RUNFEED_ROOT/nginx/local.conf.template")
    tpl=$(template_blocks "$tpl")
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
    local listen_opts=''
    ((NGINX_WORKERS > 1)) && listen_opts+=' reuseport'
    # A burst of new connections queues here; the kernel caps it at net.core.somaxconn.
    ((NGINX_BENCH)) && listen_opts+=' backlog=4096'
    if ((NGINX_BENCH)); then
        [[ -f $NCHAN_MODULE ]] \
            || die "RUNFEED_NGINX_BENCH=1 needs nchan ($NCHAN_MODULE): run \`scripts/deps.sh --bench\`"
        mkdir -p "$BENCH_STATIC_DIR"
    fi
    # Literal replacement (no `&` expansion in bash >= 5.2).
    shopt -u patsub_replacement 2>/dev/null || true
    tpl=${tpl//@STATE@/"$STATE"}
    tpl=${tpl//@HTTPS_PORT@/"$HTTPS_PORT"}
    tpl=${tpl//@HTTP_PORT@/"$HTTP_PORT"}
    tpl=${tpl//@WEBAPP_PORT@/"$WEBAPP_PORT"}
    tpl=${tpl//@HTTP_LISTEN_OPTS@/"$listen_opts"}
    tpl=${tpl//@UPSTREAMS@/"$upstreams"}
    if ((FASTCGI_KEEPALIVE > 0)); then
        tpl=${tpl//@UPSTREAM_KEEPALIVE@/"keepalive $FASTCGI_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout  60s;"}
        tpl=${tpl//@FASTCGI_KEEP_CONN@/on}
    else
        tpl=${tpl//@UPSTREAM_KEEPALIVE@/"# RUNFEED_FASTCGI_KEEPALIVE=0: a new connection per request"}
        tpl=${tpl//@FASTCGI_KEEP_CONN@/off}
    fi
    tpl=${tpl//@DEMO_DIR@/"$DEMO_DIR"}
    tpl=${tpl//@NGINX_WORKERS@/"$NGINX_WORKERS"}
    tpl=${tpl//@NGINX_CONNECTIONS@/"$connections"}
    tpl=${tpl//@NCHAN_MODULE@/"$NCHAN_MODULE"}
    if ((rlimit < 65535)); then
        tpl=${tpl//"worker_rlimit_nofile 65535;"/"worker_rlimit_nofile $rlimit;  # capped by ulimit -Hn"}
    fi
    [[ $tpl =~ @[A-Z_]+@ ]] && die "nginx template: placeholder ${BASH_REMATCH[0]} left unreplaced"
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

# --- demo.env -----------------------------------------------------------------------------------

write_demo_env() {
    local q api_key env_id other_key run_id run_env preview_key batch old_batch tag page_run ch_url=''
    q() { psql_app -tA -c "$1" 2>/dev/null | head -n1; }
    api_key=$(q "SELECT \"apiKey\" FROM \"RuntimeEnvironment\" WHERE id = '$SEED_DEV_ENV'")
    env_id=$(q "SELECT id FROM \"RuntimeEnvironment\" WHERE id = '$SEED_DEV_ENV'")
    other_key=$(q "SELECT \"apiKey\" FROM \"RuntimeEnvironment\" WHERE id = '$SEED_PROD_ENV'")
    preview_key=$(q "SELECT \"apiKey\" FROM \"RuntimeEnvironment\" WHERE id = '$SEED_PREVIEW_ENV'")
    run_id=$(q "SELECT id FROM \"TaskRun\" WHERE \"friendlyId\" = '$SEED_RUN'")
    run_env=$(q "SELECT \"runtimeEnvironmentId\" FROM \"TaskRun\" WHERE \"friendlyId\" = '$SEED_RUN'")
    batch=$(q "SELECT \"friendlyId\" FROM \"BatchTaskRun\" WHERE \"friendlyId\" = '$SEED_BATCH'")
    old_batch=$(q "SELECT \"friendlyId\" FROM \"BatchTaskRun\" WHERE \"friendlyId\" = '$SEED_OLD_BATCH'")
    tag=$(q "SELECT '$SEED_TAG' FROM \"TaskRun\" WHERE \"runTags\" @> ARRAY['$SEED_TAG'] LIMIT 1")
    page_run=$(q "SELECT \"friendlyId\" FROM \"TaskRun\" WHERE \"friendlyId\" = '$SEED_PAGE_RUN'")
    DEMO_SIM_ENV_ID=$env_id
    DEMO_SIM_TAG=$tag
    [[ $CH_ENABLED == 1 ]] && ch_alive && ch_url=$CH_URL
    [[ -n $run_id && $run_env != "$env_id" ]] && warn "demo run $SEED_RUN is not in env $env_id"

    {
        echo "# Written by scripts/stack.sh start — source it: set -a; . $DEMO_ENV; set +a"
        [[ -n $api_key ]] || echo "# (no demo data: start with --seed)"
        echo "RUNFEED_STATE=$STATE"
        echo "RUNFEED_RUN_DIR=$RUN_DIR"
        echo "RUNFEED_URL=https://127.0.0.1:$HTTPS_PORT"
        echo "RUNFEED_HTTP_URL=http://127.0.0.1:$HTTP_PORT"
        echo "RUNFEED_CA_CERT=$TLS_DIR/ca.pem"
        echo "RUNFEED_WORKERS=$WORKERS"
        echo "RUNFEED_METRICS_URL=http://127.0.0.1:$((METRICS_BASE + 1))/metrics"
        echo "RUNFEED_HEALTH_URL=http://127.0.0.1:$((METRICS_BASE + 1))/healthz"
        local urls='' n
        for ((n = 1; n <= WORKERS; n++)); do urls+="${urls:+ }http://127.0.0.1:$((METRICS_BASE + n))/metrics"; done
        echo "RUNFEED_METRICS_URLS=\"$urls\""
        echo "RUNFEED_API_KEY=$api_key"
        echo "RUNFEED_ENV_ID=$env_id"
        echo "RUNFEED_DEMO_RUN=$([[ -n $run_id ]] && echo "$SEED_RUN")"
        echo "RUNFEED_DEMO_RUN_ID=$run_id"
        echo "RUNFEED_DEMO_BATCH=$batch"
        echo "RUNFEED_OLD_BATCH=$old_batch"
        echo "RUNFEED_DEMO_TAG=$tag"
        echo "RUNFEED_DEMO_TAG2=$([[ -n $tag ]] && echo "$SEED_TAG2")"
        echo "RUNFEED_DEMO_PAGE_URL=http://127.0.0.1:$HTTP_PORT/demo/"
        echo "RUNFEED_DEMO_PAGE_HTTPS_URL=https://127.0.0.1:$HTTPS_PORT/demo/"
        echo "RUNFEED_DEMO_PAGE_RUN=$page_run"
        echo "RUNFEED_OTHER_API_KEY=$other_key"
        echo "RUNFEED_OTHER_ENV_ID=$([[ -n $other_key ]] && echo "$SEED_PROD_ENV")"
        echo "RUNFEED_PREVIEW_API_KEY=$preview_key"
        echo "RUNFEED_PG_SOCKET_DIR=$PG_SOCK"
        echo "RUNFEED_PG_PORT=$PG_PORT"
        echo "RUNFEED_PG_REPLICA=$PG_REPLICA"
        if ((PG_REPLICA)); then
            echo "RUNFEED_PG_REPLICA_PORT=$REPLICA_PORT"
            echo "RUNFEED_PG_REPLICA_DELAY_MS=$REPLICA_DELAY_MS"
            echo "DATABASE_READ_REPLICA_URL=$REPLICA_URL"
        fi
        echo "RUNFEED_PGBOUNCER=$PGBOUNCER"
        ((PGBOUNCER)) && echo "RUNFEED_PGBOUNCER_URL=$PGBOUNCER_URL"
        echo "RUNFEED_REDIS_PORT=$REDIS_PORT"
        echo "RUNFEED_HTTPS_PORT=$HTTPS_PORT"
        echo "RUNFEED_HTTP_PORT=$HTTP_PORT"
        echo "RUNFEED_WEBAPP_PORT=$WEBAPP_PORT"
        echo "RUNFEED_WEBAPP_URL=http://127.0.0.1:$WEBAPP_PORT"
        echo "RUNFEED_WEBAPP_OBJECTS=$WEBAPP_OBJECTS"
        echo "RUNFEED_CLICKHOUSE=$([[ -n $ch_url ]] && echo 1 || echo 0)"
        echo "RUNFEED_CLICKHOUSE_URL=$ch_url"
        echo "RUNFEED_CH_HTTP_PORT=$CH_HTTP_PORT"
        echo "RUNFEED_CH_TCP_PORT=$CH_TCP_PORT"
        echo "DATABASE_URL=$DATABASE_URL"
        echo "# Redis: RUNFEED_REDIS_MODE=$REDIS_MODE (plain | tls | cluster)"
        echo "RUNFEED_REDIS_MODE=$REDIS_MODE"
        printf '%s\n' "${REDIS_ENV[@]}"
        capture_env
        if ((NGINX_BENCH)); then
            echo "# Benchmark stack (RUNFEED_NGINX_BENCH=1): nchan long-poll pub/sub and static JSON files"
            echo "RUNFEED_NGINX_WORKERS=$NGINX_WORKERS"
            echo "RUNFEED_BENCH_STATIC_DIR=$BENCH_STATIC_DIR"
            echo "RUNFEED_BENCH_STATIC_URL=http://127.0.0.1:$HTTP_PORT/bench/static/"
            echo "RUNFEED_BENCH_NCHAN_SUB_URL=http://127.0.0.1:$HTTP_PORT/bench/nchan/sub/"
            echo "RUNFEED_BENCH_NCHAN_PUB_URL=http://127.0.0.1:$HTTP_PORT/bench/nchan/pub/"
            echo "RUNFEED_BENCH_NCHAN_STATUS_URL=http://127.0.0.1:$HTTP_PORT/bench/nchan/status"
        fi
    } >"$DEMO_ENV.new"
    mv -f "$DEMO_ENV.new" "$DEMO_ENV"
    log "wrote $DEMO_ENV"
    write_demo_config "$env_id" "$api_key" "$page_run" "$tag"
}

# js_string VALUE — a JavaScript string literal (JSON rules; `<` escaped too).
js_string() {
    local s=$1 out='' c i hex
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
            \\) out+='\\' ;;
            \") out+='\"' ;;
            '<') out+='\u003c' ;;
            [[:cntrl:]]) printf -v hex '%04x' "'$c"; out+="\\u$hex" ;;
            *) out+=$c ;;
        esac
    done
    printf '"%s"' "$out"
}

# write_demo_config ENV_ID API_KEY RUN TAG — $STATE/demo-config.js, served as /demo/config.js: the
# demo page's defaults. The token is a public access token (read:runs, one year) minted with
# `runfeed token`, as a browser should hold; the secret key only when no binary can mint one.
write_demo_config() {
    local env_id=$1 api_key=$2 run=$3 tag=$4 token=''
    if [[ -n $api_key && -x $RUNFEED_BIN ]]; then
        token=$("$RUNFEED_BIN" token --env "$env_id" --key "$api_key" --scopes read:runs --ttl 31536000 2>/dev/null) || token=''
    fi
    [[ -n $token ]] || token=$api_key
    {
        echo "// Written by scripts/stack.sh start: the demo page's defaults (URL query parameters override them)."
        printf 'window.RUNFEED_DEMO = {"key": %s, "run": %s, "tag": %s, "createdAt": "1h"};\n' \
            "$(js_string "$token")" "$(js_string "$run")" "$(js_string "$tag")"
    } >"$DEMO_CONFIG.new"
    mv -f "$DEMO_CONFIG.new" "$DEMO_CONFIG"
}

# --- demo simulator -----------------------------------------------------------------------------

# Only the pid in $DEMO_PID, checked against its command line, is ever signalled.
demo_alive() { pid_alive "$DEMO_PID" " demo --env "; }

demo_stop() {
    if demo_alive; then
        log "demo simulator: stopping (pid $(pid_from "$DEMO_PID"))"
        stop_pid "$(pid_from "$DEMO_PID")" 5
    fi
    rm -f "$DEMO_PID"
}

# demo_start ENV_ID TAG — (re)start `runfeed demo` in the background (a rebuilt binary is picked up).
demo_start() {
    local env_id=$1 tag=$2 pid
    demo_stop
    if [[ -z $env_id || -z $tag ]]; then
        warn "demo simulator: no demo data (start with --seed); not started"
        return 0
    fi
    workers_check_bin
    mkdir -p "$LOG_DIR"
    # Restarted runs get a fresh createdAt; with ClickHouse the simulator writes that to task_runs_v2 too.
    local ch_env=(-u REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL -u CLICKHOUSE_URL -u RUNFEED_CLICKHOUSE_URL)
    [[ $CH_ENABLED == 1 ]] && ch_alive && ch_env+=(RUNFEED_CLICKHOUSE_URL="$CH_URL")
    printf '\n=== %s: %s demo --env %s --tag %s\n' "$(date -u +%FT%TZ)" "$RUNFEED_BIN" "$env_id" "$tag" >>"$DEMO_LOG"
    nohup setsid env "${ch_env[@]}" \
        DATABASE_URL="$DATABASE_URL" \
        "${REDIS_ENV[@]}" \
        PGTZ=UTC \
        "$RUNFEED_BIN" demo --env "$env_id" --tag "$tag" \
        >>"$DEMO_LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$DEMO_PID"
    sleep 0.3
    if ! pid_running "$pid"; then
        show_log "$DEMO_LOG" 10
        warn "demo simulator exited at once (log: $DEMO_LOG)"
        rm -f "$DEMO_PID"
        return 0
    fi
    log "demo simulator: pid $pid, moving runs tagged $tag (log: $DEMO_LOG; RUNFEED_DEMO_SIMULATOR=0 to skip)"
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
    check_port_plan

    mkdir -p "$STATE" "$LOG_DIR"
    log "state dir: $STATE"
    tls_ensure   # PostgreSQL serves the local CA's leaf too
    pg_start
    pg_bootstrap
    ((seed)) && pg_seed
    if ((PG_REPLICA)); then replica_start; else replica_stop; fi
    if ((PGBOUNCER)); then pgbouncer_start; else pgbouncer_stop; fi
    redis_start
    ch_record_mode "$([[ $CH_ENABLED == 1 ]] && echo 1 || echo 0)"
    case "$CH_ENABLED" in
        1)
            ch_start
            ((seed)) && ch_sync
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
    ((seed)) && webapp_seed
    webapp_start
    tls_ensure
    set_run_dir
    if ((with_workers)); then
        workers_start
    else
        warn "--no-workers: nginx will answer 503 until workers are started"
    fi
    nginx_start
    write_demo_env
    if ((with_workers)) && ((DEMO_SIM)); then
        demo_start "$DEMO_SIM_ENV_ID" "$DEMO_SIM_TAG"
    else
        demo_stop
    fi
    if ((with_workers)); then capture_start; else capture_stop; fi
    log "stack is up: https://127.0.0.1:$HTTPS_PORT (TLS)  http://127.0.0.1:$HTTP_PORT  demo page: http://127.0.0.1:$HTTP_PORT/demo/" \
        " webapp stand-in: http://127.0.0.1:$WEBAPP_PORT"
}

cmd_stop() {
    if [[ ! -d $STATE ]]; then
        log "nothing to stop ($STATE does not exist)"
        return 0
    fi
    demo_stop
    capture_stop
    nginx_stop
    webapp_stop
    workers_stop_all
    ch_stop
    redis_stop
    pgbouncer_stop
    replica_stop
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
    if replica_running && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$REPLICA_PORT"; then
        echo "replica   running   127.0.0.1:$REPLICA_PORT  data=$REPLICA_DATA"
    elif ((PG_REPLICA)); then
        echo "replica   stopped"; ok=1
    fi
    if pid_alive "$PGB_DIR/pgbouncer.pid" pgbouncer; then
        echo "pgbouncer running   127.0.0.1:$PGBOUNCER_PORT  (transaction pooling)"
    elif ((PGBOUNCER)); then
        echo "pgbouncer stopped"; ok=1
    fi
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
    if ch_alive && ch_ping; then
        echo "clickhouse running   $CH_URL  native=127.0.0.1:$CH_TCP_PORT  pid=$(pid_from "$CH_PID")"
    elif [[ $CH_ENABLED == 1 ]]; then
        echo "clickhouse stopped"; ok=1
    else
        echo "clickhouse disabled"
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
    if webapp_alive && webapp_ping; then
        echo "webapp    running   http://127.0.0.1:$WEBAPP_PORT  (stand-in: /api/v1/packets/…)  pid=$(pid_from "$WEBAPP_PID")"
    else
        echo "webapp    stopped"; ok=1
    fi
    if pid_alive "$NGINX_PID" nginx && nginx_answers; then
        echo "nginx     running   https://127.0.0.1:$HTTPS_PORT  http://127.0.0.1:$HTTP_PORT  pid=$(pid_from "$NGINX_PID")"
    else
        echo "nginx     stopped"; ok=1
    fi
    if demo_alive; then
        echo "demo      running   runfeed demo (simulator)  pid=$(pid_from "$DEMO_PID")  log=$DEMO_LOG"
    else
        echo "demo      off       (simulator not running)"
    fi
    capture_status
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

cmd_examples() {
    [[ -s $DEMO_ENV ]] || die "$DEMO_ENV not found: run \`scripts/stack.sh start --seed\` first"
    # shellcheck disable=SC1090
    set -a; . "$DEMO_ENV"; set +a
    [[ -n ${RUNFEED_API_KEY:-} ]] || die "no demo data in the database: run \`scripts/stack.sh start --seed\`"
    local bin=${RUNFEED_BIN#"$RUNFEED_ROOT"/}
    local ch_note
    if [[ -n ${RUNFEED_CLICKHOUSE_URL:-} ]]; then
        ch_note="Membership comes from ClickHouse ($RUNFEED_CLICKHOUSE_URL, trigger_dev.task_runs_v2).
   Runs you add to PostgreSQL reach it with: bash scripts/clickhouse-sync.sh"
    else
        ch_note="ClickHouse is off (RUNFEED_CLICKHOUSE=0): membership is read from PostgreSQL."
    fi
    local REDIS_CLI_HINT="redis-cli -p $REDIS_PORT" REDIS_PUBLISH_VERB=PUBLISH
    case $REDIS_MODE in
        tls) REDIS_CLI_HINT="redis-cli -p $REDIS_PORT --tls --cacert $TLS_DIR/ca.pem" ;;
        # -c follows MOVED to the master of the channel's slot (the workers SSUBSCRIBE there).
        cluster) REDIS_CLI_HINT="redis-cli -c -p $REDIS_PORT" REDIS_PUBLISH_VERB=SPUBLISH ;;
    esac
    local sim_cmd="DATABASE_URL=$DATABASE_URL ${REDIS_ENV[*]} ${RUNFEED_CLICKHOUSE_URL:+RUNFEED_CLICKHOUSE_URL=$RUNFEED_CLICKHOUSE_URL }$bin demo --env $RUNFEED_ENV_ID --tag $RUNFEED_DEMO_TAG"
    local sim_note
    if demo_alive; then
        sim_note="The simulator (runfeed demo) is running: pid $(pid_from "$DEMO_PID"), log $DEMO_LOG.
   It moves the $RUNFEED_DEMO_TAG runs PENDING → DEQUEUED → EXECUTING → COMPLETED_* and publishes each move.
   Stop it with \`scripts/stack.sh simulator stop\` (e.g. before running tests against this stack);
   by hand, in the foreground (Ctrl-C stops it; --duration 60 bounds it):

   $sim_cmd"
    else
        sim_note="The simulator is not running (RUNFEED_DEMO_SIMULATOR=0?). Start it with
   \`scripts/stack.sh simulator start\`, or in the foreground (Ctrl-C stops it; --duration 60 bounds it):

   $sim_cmd"
    fi
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

   ${REDIS_ENV[*]} $bin publish --env $RUNFEED_ENV_ID --run $RUNFEED_DEMO_RUN_ID --tags demo,user:42

   (or with redis-cli:)
   $REDIS_CLI_HINT $REDIS_PUBLISH_VERB 'realtime:env:{$RUNFEED_ENV_ID}' '{"v":1,"runId":"$RUNFEED_DEMO_RUN_ID","envId":"$RUNFEED_ENV_ID","tags":["demo","user:42"],"batchId":null}'

4) Tag feed snapshot: runs tagged $RUNFEED_DEMO_TAG created in the last hour (six of
   them also carry $RUNFEED_DEMO_TAG2; add ",$RUNFEED_DEMO_TAG2" to tags= to require both):

   curl -sk "$RUNFEED_URL/realtime/v1/runs?tags=$RUNFEED_DEMO_TAG&createdAt=1h" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY" \\
     -H "x-trigger-electric-version: 1.0.0-beta.1" -D -

   $ch_note

5) Live tag poll: the snapshot's electric-handle header (runs_<floorMs>_<seq>_<id>)
   pins the createdAt window, and its electric-offset header (<updatedAtMs>_<seq>)
   is the newest change it sent. Pass both back; the poll is held until a run
   with the tag changes (or ~20 s):

   curl -sk "$RUNFEED_URL/realtime/v1/runs?tags=$RUNFEED_DEMO_TAG&createdAt=1h&live=true&handle=<electric-handle>&offset=<electric-offset>" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY" \\
     -H "x-trigger-electric-version: 1.0.0-beta.1" -D -

   Wake it by changing a member (run_demo0012, internal id cmdemorun0000000000000012):

   $PG_BIN/psql "$DATABASE_URL" -c "UPDATE \"TaskRun\" SET status='EXECUTING', \"updatedAt\"=now() at time zone 'utc' WHERE id='cmdemorun0000000000000012'"
   ${REDIS_ENV[*]} $bin publish --env $RUNFEED_ENV_ID --run cmdemorun0000000000000012 --tags $RUNFEED_DEMO_TAG,$RUNFEED_DEMO_TAG2

6) Batch feeds: $RUNFEED_DEMO_BATCH (2 runs, 15 minutes old) and $RUNFEED_OLD_BATCH (2 runs,
   30 days old: upstream's ClickHouse path, with its implicit 7-day window, shows it empty):

   curl -sk "$RUNFEED_URL/realtime/v1/batches/$RUNFEED_DEMO_BATCH" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY" \\
     -H "x-trigger-electric-version: 1.0.0-beta.1" -D -
   curl -sk "$RUNFEED_URL/realtime/v1/batches/$RUNFEED_OLD_BATCH" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY" \\
     -H "x-trigger-electric-version: 1.0.0-beta.1"

   The production key $RUNFEED_OTHER_API_KEY sees none of these runs (404 / empty).

7) Demo page: a browser subscribed to run ${RUNFEED_DEMO_PAGE_RUN:-$RUNFEED_DEMO_RUN} and to the tag $RUNFEED_DEMO_TAG
   (createdAt=1h), as the SDK's Electric client does; statuses change live:

   ${RUNFEED_DEMO_PAGE_URL:-}
   ${RUNFEED_DEMO_PAGE_HTTPS_URL:-}  (certificate from the local CA: $RUNFEED_CA_CERT)
   Other runs or tags: append ?run=run_…&tag=…&key=<secret key or public access token>

   $sim_note

8) Everything that is not runfeed's goes to the trigger.dev webapp; here a stand-in
   (${RUNFEED_WEBAPP_URL:-}) serves what the SDK needs from it. run_demo0010's payload is
   offloaded (payloadType application/store): the SDK asks for a presigned URL, then downloads it:

   curl -s --cacert "$RUNFEED_CA_CERT" "$RUNFEED_URL/api/v1/packets/run_demo0010/payload.json" \\
     -H "Authorization: Bearer $RUNFEED_API_KEY"
   curl -s --cacert "$RUNFEED_CA_CERT" "<presignedUrl>" | head -c 200

Stop everything with: make stop
EOF
}

cmd_simulator() {
    case "${1:-}" in
        start)
            [[ -s $DEMO_ENV ]] || die "$DEMO_ENV not found: run \`scripts/stack.sh start --seed\` first"
            local env_id tag
            env_id=$(sed -n 's/^RUNFEED_ENV_ID=//p' "$DEMO_ENV" | tail -n1)
            tag=$(sed -n 's/^RUNFEED_DEMO_TAG=//p' "$DEMO_ENV" | tail -n1)
            demo_start "$env_id" "$tag"
            ;;
        stop) demo_stop ;;
        *) die "usage: $0 simulator {start|stop}" ;;
    esac
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
            workers_start
            ;;
        logs) cmd_logs ;;
        clean) cmd_clean ;;
        examples) cmd_examples ;;
        simulator) cmd_simulator "$@" ;;
        *)
            echo "usage: $0 {start [--seed] [--no-workers]|stop|status|restart-workers|logs|examples|simulator {start|stop}|clean}" >&2
            echo "       (scripts/clickhouse-sync.sh [--env ENV_ID] copies TaskRun rows into ClickHouse)" >&2
            exit 2
            ;;
    esac
}

main "$@"
