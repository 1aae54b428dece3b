# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's configuration: every RUNFEED_* variable scripts/stack.sh reads, checked, and the values
# more than one service uses. Sourced by scripts/stack.sh (after scripts/lib.sh), before the service files.
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
# Shared by several services: ClickHouse's URL (workers, demo simulator, demo.env).
CH_URL="http://127.0.0.1:$CH_HTTP_PORT"
case "${RUNFEED_DEMO_SIMULATOR:-auto}" in
    0|no|false|off) DEMO_SIM=0 ;;
    1|yes|true|on) DEMO_SIM=1 ;;
    auto) if [[ $STATE == */test ]]; then DEMO_SIM=0; else DEMO_SIM=1; fi ;;
    *) die "RUNFEED_DEMO_SIMULATOR must be 0 or 1 (got '$RUNFEED_DEMO_SIMULATOR')" ;;
esac

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
