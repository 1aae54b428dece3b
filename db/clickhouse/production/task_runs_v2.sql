-- trigger_dev.task_runs_v2 for current ClickHouse (>= 23.2: ReplacingMergeTree
-- with an is_deleted column). Apply with:
--   clickhouse-client --multiquery < db/clickhouse/production/task_runs_v2.sql
--
-- In a trigger.dev deployment this table already exists: trigger.dev's own
-- migration (internal-packages/clickhouse/schema/004_create_task_runs_v2.sql)
-- creates it with many more columns, and trigger.dev's logical replication
-- from PostgreSQL fills it (_version is the commit LSN). runfeed only reads it.
-- This file declares just the columns runfeed's membership query uses, with the
-- upstream types, engine, partitioning, sort key and tag index — for a
-- standalone ClickHouse, staging, or checking compatibility. Both statements
-- are idempotent; on a server that already has the upstream table they do
-- nothing.
--
-- The local stack does NOT load this file (Debian's ClickHouse is 18.16); it
-- loads db/clickhouse/compat-18.16/task_runs_v2.sql. See db/clickhouse/README.md.

CREATE DATABASE IF NOT EXISTS trigger_dev;

CREATE TABLE IF NOT EXISTS trigger_dev.task_runs_v2
(
    environment_id   String,
    organization_id  String,
    project_id       String,
    run_id           String,          -- internal TaskRun.id
    friendly_id      String,          -- run_...
    batch_id         String,          -- internal BatchTaskRun.id, or ''
    root_run_id      String,
    created_at       DateTime64(3),   -- UTC
    updated_at       DateTime64(3),   -- UTC
    tags             Array(String) CODEC(ZSTD(1)),
    _version         UInt64,          -- replication: commit LSN
    _is_deleted      UInt8 DEFAULT 0,

    INDEX idx_tags tags TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(_version, _is_deleted)
PARTITION BY toYYYYMM(created_at)
ORDER BY (organization_id, project_id, environment_id, created_at, run_id);
