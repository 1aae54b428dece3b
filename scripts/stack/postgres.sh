# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's PostgreSQL 15: the primary (always), its streaming read replica (RUNFEED_PG_REPLICA=1) and
# PgBouncer in front of it (RUNFEED_PGBOUNCER=1). Service hooks postgres_start / postgres_stop /
# postgres_status at the end. Sourced by scripts/stack.sh.

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
EOF
    # Settings other services need (<service>_pg_conf, scripts/stack.sh).
    stack_hook pg_conf | as_pg tee -a "$PG_DATA/runfeed.conf" >/dev/null
    # The leaf of the local CA (tls_ensure), owned by postgres: the server refuses a key others can read.
    as_pg bash -c "cat > '$PG_DATA/server.crt'; chmod 0644 '$PG_DATA/server.crt'" <"$TLS_DIR/cert.pem"
    as_pg bash -c "umask 077; cat > '$PG_DATA/server.key'" <"$TLS_DIR/key.pem"
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
    stack_hook bootstrap   # what other services need in the database (<service>_bootstrap, scripts/stack.sh)
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

# --- service hooks (scripts/stack.sh) -------------------------------------------------------------

# postgres_start — the primary, its role, database and schema (and the demo seed with `start --seed`),
# then the replica and PgBouncer when configured; the ones not configured are stopped.
postgres_start() {
    pg_start
    pg_bootstrap
    if ((STACK_SEED)); then pg_seed; fi
    if ((PG_REPLICA)); then replica_start; else replica_stop; fi
    if ((PGBOUNCER)); then pgbouncer_start; else pgbouncer_stop; fi
}

postgres_stop() {
    pgbouncer_stop
    replica_stop
    pg_stop
}

# postgres_status — one line each for the primary and, when running or configured, the replica and
# PgBouncer; false when one that should run does not.
postgres_status() {
    local ok=0
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
    return $ok
}
