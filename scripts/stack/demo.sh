# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's demo: demo.env (every URL, port and seeded id a client or test needs), the demo page's
# defaults (demo-config.js), the demo simulator (`runfeed demo`) and `examples`. Service hooks demo_start /
# demo_stop / demo_status. Sourced by scripts/stack.sh.

DEMO_ENV=$STATE/demo.env
DEMO_CONFIG=$STATE/demo-config.js
# The demo simulator (`runfeed demo`): pid file and log.
DEMO_PID=$STATE/demo.pid
DEMO_LOG=$LOG_DIR/demo.log

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
        if ((NGINX_BENCH)); then
            echo "# Benchmark stack (RUNFEED_NGINX_BENCH=1): nchan long-poll pub/sub and static JSON files"
            echo "RUNFEED_NGINX_WORKERS=$NGINX_WORKERS"
            echo "RUNFEED_BENCH_STATIC_DIR=$BENCH_STATIC_DIR"
            echo "RUNFEED_BENCH_STATIC_URL=http://127.0.0.1:$HTTP_PORT/bench/static/"
            echo "RUNFEED_BENCH_NCHAN_SUB_URL=http://127.0.0.1:$HTTP_PORT/bench/nchan/sub/"
            echo "RUNFEED_BENCH_NCHAN_PUB_URL=http://127.0.0.1:$HTTP_PORT/bench/nchan/pub/"
            echo "RUNFEED_BENCH_NCHAN_STATUS_URL=http://127.0.0.1:$HTTP_PORT/bench/nchan/status"
        fi
        stack_hook demo_env   # lines of other services (scripts/stack.sh)
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
simulator_alive() { pid_alive "$DEMO_PID" " demo --env "; }

simulator_stop() {
    if simulator_alive; then
        log "demo simulator: stopping (pid $(pid_from "$DEMO_PID"))"
        stop_pid "$(pid_from "$DEMO_PID")" 5
    fi
    rm -f "$DEMO_PID"
}

# simulator_start ENV_ID TAG — (re)start `runfeed demo` in the background (a rebuilt binary is picked up).
simulator_start() {
    local env_id=$1 tag=$2 pid
    simulator_stop
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

# --- commands -------------------------------------------------------------------------------------

# demo_examples — `scripts/stack.sh examples`: what to try against the seeded stack.
demo_examples() {
    [[ -s $DEMO_ENV ]] || die "$DEMO_ENV not found: run \`scripts/stack.sh start --seed\` first"
    set -a
    # shellcheck disable=SC1090
    . "$DEMO_ENV"
    set +a
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
    if simulator_alive; then
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

# demo_simulator start|stop — `scripts/stack.sh simulator …`: the simulator alone.
demo_simulator() {
    case "${1:-}" in
        start)
            [[ -s $DEMO_ENV ]] || die "$DEMO_ENV not found: run \`scripts/stack.sh start --seed\` first"
            local env_id tag
            env_id=$(sed -n 's/^RUNFEED_ENV_ID=//p' "$DEMO_ENV" | tail -n1)
            tag=$(sed -n 's/^RUNFEED_DEMO_TAG=//p' "$DEMO_ENV" | tail -n1)
            simulator_start "$env_id" "$tag"
            ;;
        stop) simulator_stop ;;
        *) die "usage: $0 simulator {start|stop}" ;;
    esac
}

# --- service hooks (scripts/stack.sh) -------------------------------------------------------------

# demo_start — demo.env and demo-config.js, then the simulator when RUNFEED_DEMO_SIMULATOR and workers
# run (else it is stopped).
demo_start() {
    write_demo_env
    if ((STACK_WITH_WORKERS)) && ((DEMO_SIM)); then
        simulator_start "$DEMO_SIM_ENV_ID" "$DEMO_SIM_TAG"
    else
        simulator_stop
    fi
}

demo_stop() { simulator_stop; }

# demo_status — the simulator's line; never false (it is optional).
demo_status() {
    if simulator_alive; then
        echo "demo      running   runfeed demo (simulator)  pid=$(pid_from "$DEMO_PID")  log=$DEMO_LOG"
    else
        echo "demo      off       (simulator not running)"
    fi
}
