#!/usr/bin/env bash
# Copy TaskRun rows from PostgreSQL into ClickHouse's trigger_dev.task_runs_v2 —
# the local stand-in for trigger.dev's logical replication, which fills that
# table in production.
#
#   scripts/clickhouse-sync.sh [--env ENV_ID] [--no-prune] [--quiet]
#
#   --env ENV_ID  only runs of that RuntimeEnvironment (default: every run)
#   --no-prune    don't mark ClickHouse rows whose run is gone from PostgreSQL
#   --quiet       no summary line
#
# Settings, first match wins:
#   PostgreSQL: DATABASE_URL, else DATABASE_URL from $RUNFEED_STATE/demo.env
#   ClickHouse: RUNFEED_CLICKHOUSE_URL, REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL,
#               CLICKHOUSE_URL, else RUNFEED_CLICKHOUSE_URL from demo.env
#               (http://[user[:password]@]host:port; user `default` if none)
#
# Every run in scope is written on each call (rows are tiny, and a rewrite also
# picks up changes made without touching "updatedAt"): run_id = TaskRun.id,
# organization_id/project_id from its RuntimeEnvironment, batch_id = "batchId"
# or '', root_run_id '', tags = "runTags" or [], created_at/updated_at in UTC,
# _version = "updatedAt" in epoch ms, _is_deleted 0. The table is a
# ReplacingMergeTree, so reading it with FINAL sees one row per run: re-running
# is harmless. Rows go over HTTP as JSONEachRow built by PostgreSQL's
# json_build_object, so tags with quotes, commas, backslashes or control
# characters arrive byte for byte. Timestamps are sent as epoch seconds (ms for
# a DateTime64 column), which both ClickHouse 18.16 and current versions read
# independently of the server's time zone.
#
# Pruning: a live ClickHouse row whose (run_id, created_at) no longer matches a
# PostgreSQL run in scope (the run was deleted, or its "createdAt" changed, which
# is part of the sort key) gets a tombstone: the same row with _version + 1 and
# _is_deleted = 1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENV_ID=''
PRUNE=1
QUIET=0
while (($#)); do
    case "$1" in
        --env) [[ $# -ge 2 && -n $2 ]] || die "--env needs an environment id"; ENV_ID=$2; shift 2 ;;
        --env=*) ENV_ID=${1#--env=}; [[ -n $ENV_ID ]] || die "--env needs an environment id"; shift ;;
        --no-prune) PRUNE=0; shift ;;
        --quiet|-q) QUIET=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (usage: clickhouse-sync.sh [--env ENV_ID] [--no-prune] [--quiet])" ;;
    esac
done

# --- settings ---------------------------------------------------------------------

DEMO_ENV_FILE=$(abs_path "${RUNFEED_STATE:-$RUNFEED_ROOT/.runfeed}")/demo.env
demo_value() {
    [[ -s $DEMO_ENV_FILE ]] || return 0
    # demo.env is KEY=value lines written by stack.sh; read, don't source.
    sed -n "s/^$1=//p" "$DEMO_ENV_FILE" | tail -n1
}

DB_URL=${DATABASE_URL:-$(demo_value DATABASE_URL)}
CH_URL=${RUNFEED_CLICKHOUSE_URL:-${REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL:-${CLICKHOUSE_URL:-$(demo_value RUNFEED_CLICKHOUSE_URL)}}}
[[ -n $DB_URL ]] || die "no DATABASE_URL (set it, or start the stack so $DEMO_ENV_FILE exists)"
[[ -n $CH_URL ]] || die "no ClickHouse URL (set RUNFEED_CLICKHOUSE_URL, or start the stack with ClickHouse enabled)"
CH_URL=${CH_URL%%\?*}   # upstream writes ?secure=<bool> (not a ClickHouse setting); the scheme decides TLS
CH_URL=${CH_URL%/}
TABLE=trigger_dev.task_runs_v2
COLUMNS='environment_id, organization_id, project_id, run_id, friendly_id, batch_id, root_run_id, tags, created_at, updated_at, _version, _is_deleted'

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rf-chsync.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ch_query [URL-PARAMS] < BODY — POST BODY (a query, optionally followed by its
# data) to ClickHouse; the response goes to stdout, an error message to stderr.
ch_query() {
    local params=${1:-}
    curl -sS --fail-with-body --max-time 120 -H 'Content-Type: text/plain; charset=utf-8' \
        --data-binary @- "$CH_URL/${params:+?$params}"
}

# ch_literal STRING — a ClickHouse string literal using only the escapes that
# 18.16 and current versions read alike: \\ \' and \xHH (two hex digits).
ch_literal() {
    local s=$1 out='' c i hex
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
            \\) out+='\\\\' ;;
            \') out+="\\'" ;;
            [[:cntrl:]]) printf -v hex '%02X' "'$c"; out+="\\x$hex" ;;
            *) out+=$c ;;
        esac
    done
    printf "'%s'" "$out"
}

psql_db() {
    "$PG_BIN/psql" "$DB_URL" -X -q -t -A -v ON_ERROR_STOP=1 -v env="$ENV_ID" "$@"
}

# --- target table ----------------------------------------------------------------------

created_type=$(printf '%s' "SELECT type FROM system.columns WHERE database = 'trigger_dev' AND table = 'task_runs_v2' AND name = 'created_at' FORMAT TabSeparated" \
    | ch_query 2>"$TMP/err") \
    || die "ClickHouse at $CH_URL is not answering: $(head -c 300 "$TMP/err")"
case "$created_type" in
    '') die "$TABLE does not exist on $CH_URL (apply db/clickhouse/compat-18.16/task_runs_v2.sql)" ;;
    DateTime64*) ms=1 ;;  # production DDL: send epoch seconds with milliseconds
    *) ms=0 ;;            # 18.16 DDL (DateTime): whole epoch seconds
esac

# --- PostgreSQL → JSONEachRow ---------------------------------------------------------------

# One JSON object per line. json_build_object escapes quotes, backslashes and
# control characters (\uXXXX), which ClickHouse's JSON reader decodes.
psql_db -v ms="$ms" >"$TMP/rows.json" <<'SQL' || die "reading TaskRun from PostgreSQL failed"
WITH src AS (
    SELECT r."id", r."friendlyId", r."runtimeEnvironmentId", r."batchId", r."runTags",
           e."organizationId", e."projectId",
           (extract(epoch FROM r."createdAt") * 1000)::bigint AS c_ms,
           (extract(epoch FROM r."updatedAt") * 1000)::bigint AS u_ms
    FROM "TaskRun" r
    JOIN "RuntimeEnvironment" e ON e."id" = r."runtimeEnvironmentId"
    WHERE (:'env' = '' OR r."runtimeEnvironmentId" = :'env')
)
SELECT json_build_object(
    'environment_id',  "runtimeEnvironmentId",
    'organization_id', "organizationId",
    'project_id',      "projectId",
    'run_id',          "id",
    'friendly_id',     "friendlyId",
    'batch_id',        coalesce("batchId", ''),
    'root_run_id',     '',
    'tags',            coalesce(array_remove("runTags", NULL), '{}'::text[]),
    'created_at',      CASE WHEN :'ms' = '1'
                            THEN (c_ms / 1000)::text || '.' || lpad((c_ms % 1000)::text, 3, '0')
                            ELSE (c_ms / 1000)::text END,
    'updated_at',      CASE WHEN :'ms' = '1'
                            THEN (u_ms / 1000)::text || '.' || lpad((u_ms % 1000)::text, 3, '0')
                            ELSE (u_ms / 1000)::text END,
    '_version',        u_ms,
    '_is_deleted',     0)
FROM src
ORDER BY c_ms, "id";
SQL

nrows=$(wc -l <"$TMP/rows.json")
if ((nrows > 0)); then
    { printf 'INSERT INTO %s (%s) FORMAT JSONEachRow\n' "$TABLE" "$COLUMNS"; cat "$TMP/rows.json"; } \
        | ch_query >"$TMP/out" 2>"$TMP/err" \
        || die "insert into $TABLE failed: $(cat "$TMP/out" "$TMP/err" | head -c 600)"
fi

# --- pruning -----------------------------------------------------------------------------------

ntomb=0
if ((PRUNE)); then
    scope=''
    [[ -n $ENV_ID ]] && scope=" AND environment_id = $(ch_literal "$ENV_ID")"
    printf 'SELECT run_id, toUnixTimestamp(created_at) FROM %s FINAL WHERE _is_deleted = 0%s FORMAT TabSeparated' \
        "$TABLE" "$scope" | ch_query >"$TMP/ch.keys" 2>"$TMP/err" \
        || die "reading $TABLE failed: $(cat "$TMP/ch.keys" "$TMP/err" | head -c 600)"
    psql_db >"$TMP/pg.keys" <<'SQL' || die "reading TaskRun ids from PostgreSQL failed"
SELECT "id" || E'\t' || floor(extract(epoch FROM "createdAt"))::bigint
FROM "TaskRun" WHERE (:'env' = '' OR "runtimeEnvironmentId" = :'env');
SQL
    # Only plain ids are compared: anything that ClickHouse's TabSeparated output
    # would escape differently from psql is left alone rather than tombstoned.
    LC_ALL=C sort -u "$TMP/pg.keys" >"$TMP/pg.sorted"
    LC_ALL=C grep -E $'^[A-Za-z0-9_.:-]+\t[0-9]+$' "$TMP/ch.keys" | LC_ALL=C sort -u >"$TMP/ch.sorted" || true
    LC_ALL=C comm -23 "$TMP/ch.sorted" "$TMP/pg.sorted" >"$TMP/stale"
    ntomb=$(wc -l <"$TMP/stale")
    if ((ntomb > 0)); then
        # Chunks keep each IN list (and the request) small.
        split -l 500 "$TMP/stale" "$TMP/stale."
        for f in "$TMP"/stale.*; do
            keys=$(awk -F'\t' '{ printf "%s('\''%s'\'', %s)", (NR > 1 ? ", " : ""), $1, $2 }' "$f")
            printf 'INSERT INTO %s (%s) SELECT environment_id, organization_id, project_id, run_id, friendly_id, batch_id, root_run_id, tags, created_at, updated_at, _version + 1, 1 FROM %s FINAL WHERE _is_deleted = 0 AND (run_id, toUnixTimestamp(created_at)) IN (%s)' \
                "$TABLE" "$COLUMNS" "$TABLE" "$keys" | ch_query >"$TMP/out" 2>"$TMP/err" \
                || die "writing tombstones failed: $(cat "$TMP/out" "$TMP/err" | head -c 600)"
        done
    fi
fi

((QUIET)) || log "clickhouse-sync: $nrows run(s) written, $ntomb tombstoned${ENV_ID:+ (env $ENV_ID)} → $TABLE at $CH_URL"
