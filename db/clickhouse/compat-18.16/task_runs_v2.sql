-- trigger_dev.task_runs_v2 for ClickHouse 18.16 (Debian 12's clickhouse-server),
-- which the local stack (scripts/stack.sh) and `make test` load. It also loads
-- on current ClickHouse. Apply with:
--   clickhouse-client --port 59000 --multiquery < db/clickhouse/compat-18.16/task_runs_v2.sql
--
-- Same column names, partitioning and sort key as the production table
-- (db/clickhouse/production/task_runs_v2.sql), with what 18.16 lacks replaced:
--   * created_at / updated_at are DateTime('UTC') (whole seconds), not
--     DateTime64(3): 18.16 has no DateTime64. Seconds are enough for
--     `created_at >= toDateTime(<floorSeconds>)` with a whole-second floor.
--   * ReplacingMergeTree(_version): 18.16 takes only a version column. Deleted
--     rows stay as rows with _is_deleted = 1 (the highest _version wins under
--     FINAL), so queries keep `AND _is_deleted = 0`.
--   * no idx_tags skip index: 18.16 has no data-skipping indexes at all (no
--     INDEX clause, no allow_experimental_data_skipping_indices setting).
-- Filled locally by scripts/clickhouse-sync.sh (_version = updatedAt in epoch ms).

CREATE DATABASE IF NOT EXISTS trigger_dev;

CREATE TABLE IF NOT EXISTS trigger_dev.task_runs_v2
(
    environment_id   String,
    organization_id  String,
    project_id       String,
    run_id           String,
    friendly_id      String,
    batch_id         String DEFAULT '',
    root_run_id      String DEFAULT '',
    created_at       DateTime('UTC'),
    updated_at       DateTime('UTC'),
    tags             Array(String),
    _version         UInt64,
    _is_deleted      UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(created_at)
ORDER BY (organization_id, project_id, environment_id, created_at, run_id);
