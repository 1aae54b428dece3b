-- runfeed demo data. Apply after schema.sql:
--   psql -v ON_ERROR_STOP=1 -f db/postgres/seed-demo.sql
--
-- Idempotent: every INSERT ends with ON CONFLICT DO NOTHING, so re-applying it
-- never changes rows that already exist (timestamps stay those of the first
-- application). All timestamps are UTC, written as now() AT TIME ZONE 'utc'
-- into the zone-less timestamp(3) columns.
--
-- What is here (ids are fixed; cuid-shaped, 25 characters):
--
--   Organization cmdemoorg0000000000000001  "Demo Org"
--   Project      cmdemoproj000000000000001  demo project
--   Project      cmdemoproj000000000000002  soft-deleted project ("deletedAt" set)
--
--   RuntimeEnvironment (apiKey)
--     cmdemoenv0000000000000001  DEVELOPMENT  tr_dev_DemoKey0123456789abc       the demo env
--     cmdemoenv0000000000000002  PRODUCTION   tr_prod_ProdKey0123456789abc      second env (isolation)
--     cmdemoenv0000000000000003  PREVIEW      tr_preview_PrevKey0123456789abc   preview parent
--     cmdemoenv0000000000000004  PREVIEW      tr_preview_FeatXKey0123456789ab   branch 'feature-x' of ...03
--     cmdemoenv0000000000000005  PREVIEW      tr_preview_OldBKey0123456789abc   branch 'old-branch', archived
--     cmdemoenv0000000000000006  DEVELOPMENT  tr_dev_GoneKey0123456789abc       in the deleted project
--     cmdemoenv0000000000000007  DEVELOPMENT  tr_dev_DevFtKey0123456789abc      branch 'dev-feature' of ...01
--
--   RevokedApiKey (both point at the demo env)
--     tr_dev_RvkGraceKey012345678  still inside its grace period (expires in ~10 years)
--     tr_dev_RvkExpirKey012345678  grace period over
--
--   ApiKey (additional keys; stored as sha256 hex, the key itself is only here)
--     tr_dev_sk_DemoAdminKey0123456789ab   demo env, scopes {admin}
--     tr_dev_sk_DemoReadRunsKey012345678   demo env, scopes {read:runs:run_demo0001}
--     tr_dev_sk_DemoNoScopeKey0123456789   demo env, no scopes (authorizes nothing)
--     tr_dev_sk_DemoRevokedKey0123456789   demo env, revoked
--     tr_dev_sk_DemoExpiredKey0123456789   demo env, expired an hour ago
--     tr_prod_sk_ProdAdminKey0123456789ab  PRODUCTION env, scopes {admin}
--
--   BatchTaskRun cmdemobatch00000000000001 / batch_demo0001 (demo env), runs 0007 and 0008
--   BatchTaskRun cmdemobatch00000000000002 / batch_demo0002 (demo env), created 30 days ago
--                (outside upstream's implicit 7-day ClickHouse batch window), runs 0021 and 0022
--
--   TaskRun (demo env unless noted), friendly id run_demoNNNN, internal id cmdemorun000000000000NNNN
--
--   Tag-feed set (RUNFEED_DEMO_TAG=demo-set; runs 0012-0020, 0102). Its tags are
--   used nowhere else, so feeds on the older tags are unchanged (a feed with no
--   tags lists every run of the env, these included):
--     0012-0017  {demo-set, customer:acme}, created 3-55 minutes ago, various statuses;
--                0014 also has  owner:o'neil  (a single quote: valid in ?tags=);
--                0016 also has  it's, a \ "tag"  (quotes, comma, backslash: a tag
--                the list route rejects in ?tags=, but a run may carry it)
--     0018       {demo-set} only          0019  {customer:acme} only
--     0020       {demo-set, customer:acme}, created 30 hours ago (outside the 24 h window)
--     0102       {demo-set, customer:acme} in the PRODUCTION env (must not leak)
--
-- ClickHouse (trigger_dev.task_runs_v2) is filled from these rows by
-- scripts/clickhouse-sync.sh; `scripts/stack.sh start --seed` runs it.

SET client_min_messages = warning;

BEGIN;

INSERT INTO "Organization" ("id", "title", "slug", "createdAt", "updatedAt")
VALUES ('cmdemoorg0000000000000001', 'Demo Org', 'demo-org',
        now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
ON CONFLICT DO NOTHING;

INSERT INTO "Project" ("id", "organizationId", "name", "slug", "externalRef", "deletedAt", "createdAt", "updatedAt")
VALUES
    ('cmdemoproj000000000000001', 'cmdemoorg0000000000000001', 'Demo Project', 'demo-project',
     'proj_rfdemo00000000000001', NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'),
    ('cmdemoproj000000000000002', 'cmdemoorg0000000000000001', 'Deleted Project', 'deleted-project',
     'proj_rfdemo00000000000002', (now() AT TIME ZONE 'utc') - interval '1 day',
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
ON CONFLICT DO NOTHING;

-- Parents first: the branch children reference the PREVIEW parent.
INSERT INTO "RuntimeEnvironment"
    ("id", "slug", "apiKey", "type", "organizationId", "projectId",
     "branchName", "parentEnvironmentId", "archivedAt", "createdAt", "updatedAt")
VALUES
    ('cmdemoenv0000000000000001', 'dev', 'tr_dev_DemoKey0123456789abc', 'DEVELOPMENT',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000001', NULL, NULL, NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'),
    ('cmdemoenv0000000000000002', 'prod', 'tr_prod_ProdKey0123456789abc', 'PRODUCTION',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000001', NULL, NULL, NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'),
    ('cmdemoenv0000000000000003', 'preview', 'tr_preview_PrevKey0123456789abc', 'PREVIEW',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000001', NULL, NULL, NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'),
    ('cmdemoenv0000000000000006', 'dev', 'tr_dev_GoneKey0123456789abc', 'DEVELOPMENT',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000002', NULL, NULL, NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
ON CONFLICT DO NOTHING;

INSERT INTO "RuntimeEnvironment"
    ("id", "slug", "apiKey", "type", "organizationId", "projectId",
     "branchName", "parentEnvironmentId", "archivedAt", "createdAt", "updatedAt")
VALUES
    ('cmdemoenv0000000000000004', 'preview-feature-x', 'tr_preview_FeatXKey0123456789ab', 'PREVIEW',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000001',
     'feature-x', 'cmdemoenv0000000000000003', NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'),
    ('cmdemoenv0000000000000005', 'preview-old-branch', 'tr_preview_OldBKey0123456789abc', 'PREVIEW',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000001',
     'old-branch', 'cmdemoenv0000000000000003', (now() AT TIME ZONE 'utc') - interval '1 day',
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'),
    ('cmdemoenv0000000000000007', 'dev-dev-feature', 'tr_dev_DevFtKey0123456789abc', 'DEVELOPMENT',
     'cmdemoorg0000000000000001', 'cmdemoproj000000000000001',
     'dev-feature', 'cmdemoenv0000000000000001', NULL,
     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
ON CONFLICT DO NOTHING;

INSERT INTO "RevokedApiKey" ("id", "apiKey", "runtimeEnvironmentId", "expiresAt", "createdAt")
VALUES
    ('cmdemorevk000000000000001', 'tr_dev_RvkGraceKey012345678', 'cmdemoenv0000000000000001',
     (now() AT TIME ZONE 'utc') + interval '3650 days', now() AT TIME ZONE 'utc'),
    ('cmdemorevk000000000000002', 'tr_dev_RvkExpirKey012345678', 'cmdemoenv0000000000000001',
     (now() AT TIME ZONE 'utc') - interval '1 hour', (now() AT TIME ZONE 'utc') - interval '25 hours')
ON CONFLICT DO NOTHING;

INSERT INTO "ApiKey" ("id", "name", "keyHash", "lastFour", "runtimeEnvironmentId", "scopes",
                      "expiresAt", "revokedAt", "createdAt")
SELECT k.id, k.name, encode(sha256(convert_to(k.key, 'UTF8')), 'hex'), right(k.key, 4), k.env, k.scopes,
       k.expires, k.revoked, now() AT TIME ZONE 'utc'
FROM (VALUES
    ('cmdemoapik000000000000001', 'demo admin', 'tr_dev_sk_DemoAdminKey0123456789ab',
     'cmdemoenv0000000000000001', ARRAY['admin'], NULL::timestamp(3), NULL::timestamp(3)),
    ('cmdemoapik000000000000002', 'demo one run', 'tr_dev_sk_DemoReadRunsKey012345678',
     'cmdemoenv0000000000000001', ARRAY['read:runs:run_demo0001'], NULL, NULL),
    ('cmdemoapik000000000000003', 'demo no scopes', 'tr_dev_sk_DemoNoScopeKey0123456789',
     'cmdemoenv0000000000000001', ARRAY[]::text[], NULL, NULL),
    ('cmdemoapik000000000000004', 'demo revoked', 'tr_dev_sk_DemoRevokedKey0123456789',
     'cmdemoenv0000000000000001', ARRAY['admin'], NULL, (now() AT TIME ZONE 'utc') - interval '1 hour'),
    ('cmdemoapik000000000000005', 'demo expired', 'tr_dev_sk_DemoExpiredKey0123456789',
     'cmdemoenv0000000000000001', ARRAY['admin'], (now() AT TIME ZONE 'utc') - interval '1 hour', NULL),
    ('cmdemoapik000000000000006', 'prod admin', 'tr_prod_sk_ProdAdminKey0123456789ab',
     'cmdemoenv0000000000000002', ARRAY['admin'], NULL, NULL)
) AS k(id, name, key, env, scopes, expires, revoked)
ON CONFLICT DO NOTHING;

INSERT INTO "BatchTaskRun" ("id", "friendlyId", "runtimeEnvironmentId", "createdAt")
VALUES ('cmdemobatch00000000000001', 'batch_demo0001', 'cmdemoenv0000000000000001',
        (now() AT TIME ZONE 'utc') - interval '15 minutes'),
       ('cmdemobatch00000000000002', 'batch_demo0002', 'cmdemoenv0000000000000001',
        (now() AT TIME ZONE 'utc') - interval '30 days')
ON CONFLICT DO NOTHING;

-- TaskRuns. Columns not listed take their defaults (number 0, isTest false,
-- *Type 'application/json', realtimeStreams '{}', ...).
INSERT INTO "TaskRun"
    ("id", "friendlyId", "taskIdentifier", "status", "number", "isTest",
     "createdAt", "updatedAt", "queuedAt", "startedAt", "completedAt", "delayUntil", "expiredAt",
     "ttl", "payload", "payloadType", "metadata", "output",
     "runTags", "error", "realtimeStreams",
     "usageDurationMs", "costInCents", "baseCostInCents",
     "runtimeEnvironmentId", "projectId", "batchId")
VALUES
    -- 0001: the demo run (RUNFEED_DEMO_RUN). Queued; flip it to EXECUTING and publish.
    ('cmdemorun0000000000000001', 'run_demo0001', 'hello-world', 'PENDING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '2 minutes', (now() AT TIME ZONE 'utc') - interval '2 minutes',
     (now() AT TIME ZONE 'utc') - interval '2 minutes', NULL, NULL, NULL, NULL,
     '10m', '{"name":"Ada"}', 'application/json', NULL, NULL,
     ARRAY['demo', 'user:42'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0002: executing, with metadata, a registered stream and a cost.
    ('cmdemorun0000000000000002', 'run_demo0002', 'hello-world', 'EXECUTING', 2, false,
     (now() AT TIME ZONE 'utc') - interval '10 minutes', (now() AT TIME ZONE 'utc') - interval '1 minute',
     (now() AT TIME ZONE 'utc') - interval '10 minutes', (now() AT TIME ZONE 'utc') - interval '9 minutes', NULL, NULL, NULL,
     NULL, '{"name":"Grace"}', 'application/json', '{"progress":0.5,"step":"fetching"}', NULL,
     ARRAY['demo', 'user:42'], NULL, ARRAY['logs'],
     5400, 0.55, 0.0025,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0003: completed successfully, with output.
    ('cmdemorun0000000000000003', 'run_demo0003', 'hello-world', 'COMPLETED_SUCCESSFULLY', 3, false,
     (now() AT TIME ZONE 'utc') - interval '30 minutes', (now() AT TIME ZONE 'utc') - interval '28 minutes',
     (now() AT TIME ZONE 'utc') - interval '30 minutes', (now() AT TIME ZONE 'utc') - interval '29 minutes',
     (now() AT TIME ZONE 'utc') - interval '28 minutes', NULL, NULL,
     NULL, '{"name":"Linus"}', 'application/json', NULL, '{"greeting":"Hello, Linus!"}',
     ARRAY['demo'], NULL, '{}',
     61234, 0.55, 0.0025,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0004: failed; NULL runTags and a jsonb error.
    ('cmdemorun0000000000000004', 'run_demo0004', 'send-email', 'COMPLETED_WITH_ERRORS', 1, false,
     (now() AT TIME ZONE 'utc') - interval '20 minutes', (now() AT TIME ZONE 'utc') - interval '19 minutes',
     (now() AT TIME ZONE 'utc') - interval '20 minutes', (now() AT TIME ZONE 'utc') - interval '20 minutes',
     (now() AT TIME ZONE 'utc') - interval '19 minutes', NULL, NULL,
     NULL, '{"to":"ada@example.com"}', 'application/json', NULL, NULL,
     NULL,
     '{"type":"BUILT_IN_ERROR","name":"Error","message":"SMTP connection refused","stackTrace":"Error: SMTP connection refused\n    at sendEmail (src/trigger/email.ts:18:11)"}'::jsonb,
     '{}',
     812, 0.01, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0005: DEQUEUED (rewritten to EXECUTING for old API versions); empty runTags
    -- array (sent as null); superjson payload; test run.
    ('cmdemorun0000000000000005', 'run_demo0005', 'send-email', 'DEQUEUED', 2, true,
     (now() AT TIME ZONE 'utc') - interval '90 seconds', (now() AT TIME ZONE 'utc') - interval '80 seconds',
     (now() AT TIME ZONE 'utc') - interval '90 seconds', NULL, NULL, NULL, NULL,
     NULL, '{"json":{"to":"grace@example.com","at":"2026-01-01T00:00:00.000Z"},"meta":{"values":{"at":["Date"]}}}',
     'application/super+json', NULL, NULL,
     ARRAY[]::text[], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0006: delayed; a tag that needs quoting in an array literal.
    ('cmdemorun0000000000000006', 'run_demo0006', 'reminder', 'DELAYED', 1, false,
     (now() AT TIME ZONE 'utc') - interval '5 minutes', (now() AT TIME ZONE 'utc') - interval '5 minutes',
     NULL, NULL, NULL, (now() AT TIME ZONE 'utc') + interval '1 hour', NULL,
     '2h', '{"text":"stand up"}', 'application/json', NULL, NULL,
     ARRAY['user:7', 'odd,tag "quoted" \ slash'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0007 / 0008: members of batch_demo0001.
    ('cmdemorun0000000000000007', 'run_demo0007', 'batch-child', 'COMPLETED_SUCCESSFULLY', 1, false,
     (now() AT TIME ZONE 'utc') - interval '15 minutes', (now() AT TIME ZONE 'utc') - interval '14 minutes',
     (now() AT TIME ZONE 'utc') - interval '15 minutes', (now() AT TIME ZONE 'utc') - interval '15 minutes',
     (now() AT TIME ZONE 'utc') - interval '14 minutes', NULL, NULL,
     NULL, '{"item":1}', 'application/json', NULL, '{"ok":true}',
     ARRAY['demo', 'batch'], NULL, '{}',
     950, 0.02, 0.0025,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', 'cmdemobatch00000000000001'),
    ('cmdemorun0000000000000008', 'run_demo0008', 'batch-child', 'EXECUTING', 2, false,
     (now() AT TIME ZONE 'utc') - interval '15 minutes', (now() AT TIME ZONE 'utc') - interval '13 minutes',
     (now() AT TIME ZONE 'utc') - interval '15 minutes', (now() AT TIME ZONE 'utc') - interval '13 minutes',
     NULL, NULL, NULL,
     NULL, '{"item":2}', 'application/json', NULL, NULL,
     ARRAY['demo', 'batch'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', 'cmdemobatch00000000000001'),

    -- 0009: created two days ago, i.e. outside the default 24 h createdAt window.
    ('cmdemorun0000000000000009', 'run_demo0009', 'hello-world', 'COMPLETED_SUCCESSFULLY', 4, false,
     (now() AT TIME ZONE 'utc') - interval '2 days', (now() AT TIME ZONE 'utc') - interval '2 days',
     (now() AT TIME ZONE 'utc') - interval '2 days', (now() AT TIME ZONE 'utc') - interval '2 days',
     (now() AT TIME ZONE 'utc') - interval '2 days', NULL, NULL,
     NULL, '{"name":"Old"}', 'application/json', NULL, '{"greeting":"Hello, Old!"}',
     ARRAY['demo', 'user:42'], NULL, '{}',
     1000, 0.55, 0.0025,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0010: payload offloaded to object storage. "payload" holds the file name the SDK passes to
    -- the webapp's GET /api/v1/packets/<file>; the object is packets/<project externalRef>/<env
    -- slug>/<file>, which the local stack's webapp stand-in serves (scripts/webapp_standin.py).
    ('cmdemorun0000000000000010', 'run_demo0010', 'big-input', 'CANCELED', 1, false,
     (now() AT TIME ZONE 'utc') - interval '40 minutes', (now() AT TIME ZONE 'utc') - interval '39 minutes',
     (now() AT TIME ZONE 'utc') - interval '40 minutes', NULL,
     (now() AT TIME ZONE 'utc') - interval '39 minutes', NULL, NULL,
     NULL, 'run_demo0010/payload.json', 'application/store', NULL, NULL,
     ARRAY['demo'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0011: expired by its TTL.
    ('cmdemorun0000000000000011', 'run_demo0011', 'reminder', 'EXPIRED', 2, false,
     (now() AT TIME ZONE 'utc') - interval '50 minutes', (now() AT TIME ZONE 'utc') - interval '49 minutes',
     (now() AT TIME ZONE 'utc') - interval '50 minutes', NULL, NULL, NULL,
     (now() AT TIME ZONE 'utc') - interval '49 minutes',
     '1m', '{"text":"too late"}', 'application/json', NULL, NULL,
     ARRAY['user:7'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- PRODUCTION env: same tags as the demo runs, must never leak into the DEV feed.
    ('cmdemorun0000000000000101', 'run_demoprod001', 'hello-world', 'EXECUTING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '3 minutes', (now() AT TIME ZONE 'utc') - interval '3 minutes',
     (now() AT TIME ZONE 'utc') - interval '3 minutes', (now() AT TIME ZONE 'utc') - interval '3 minutes',
     NULL, NULL, NULL,
     NULL, '{"name":"Prod"}', 'application/json', NULL, NULL,
     ARRAY['demo', 'user:42'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000002', 'cmdemoproj000000000000001', NULL),

    -- PREVIEW branch env 'feature-x'.
    ('cmdemorun0000000000000201', 'run_demofeatx01', 'hello-world', 'PENDING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '4 minutes', (now() AT TIME ZONE 'utc') - interval '4 minutes',
     (now() AT TIME ZONE 'utc') - interval '4 minutes', NULL, NULL, NULL, NULL,
     NULL, '{"name":"Branch"}', 'application/json', NULL, NULL,
     ARRAY['demo'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000004', 'cmdemoproj000000000000001', NULL),

    -- DEVELOPMENT branch env 'dev-feature'.
    ('cmdemorun0000000000000202', 'run_demodevft01', 'hello-world', 'PENDING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '4 minutes', (now() AT TIME ZONE 'utc') - interval '4 minutes',
     (now() AT TIME ZONE 'utc') - interval '4 minutes', NULL, NULL, NULL, NULL,
     NULL, '{"name":"DevBranch"}', 'application/json', NULL, NULL,
     ARRAY['demo'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000007', 'cmdemoproj000000000000001', NULL)
ON CONFLICT DO NOTHING;

-- Tag-feed set and the old batch's runs (see the header). A separate statement so
-- the rows above stay exactly as they were.
INSERT INTO "TaskRun"
    ("id", "friendlyId", "taskIdentifier", "status", "number", "isTest",
     "createdAt", "updatedAt", "queuedAt", "startedAt", "completedAt", "delayUntil", "expiredAt",
     "ttl", "payload", "payloadType", "metadata", "output",
     "runTags", "error", "realtimeStreams",
     "usageDurationMs", "costInCents", "baseCostInCents",
     "runtimeEnvironmentId", "projectId", "batchId")
VALUES
    -- 0012: queued 3 minutes ago.
    ('cmdemorun0000000000000012', 'run_demo0012', 'sync-customer', 'PENDING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '3 minutes', (now() AT TIME ZONE 'utc') - interval '3 minutes',
     (now() AT TIME ZONE 'utc') - interval '3 minutes', NULL, NULL, NULL, NULL,
     NULL, '{"customer":"acme","step":1}', 'application/json', NULL, NULL,
     ARRAY['demo-set', 'customer:acme'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0013: executing, with metadata.
    ('cmdemorun0000000000000013', 'run_demo0013', 'sync-customer', 'EXECUTING', 2, false,
     (now() AT TIME ZONE 'utc') - interval '8 minutes', (now() AT TIME ZONE 'utc') - interval '1 minute',
     (now() AT TIME ZONE 'utc') - interval '8 minutes', (now() AT TIME ZONE 'utc') - interval '7 minutes', NULL, NULL, NULL,
     NULL, '{"customer":"acme","step":2}', 'application/json', '{"progress":0.25}', NULL,
     ARRAY['demo-set', 'customer:acme'], NULL, '{}',
     4200, 0.3, 0.0025,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0014: completed successfully; a tag with a single quote.
    ('cmdemorun0000000000000014', 'run_demo0014', 'sync-customer', 'COMPLETED_SUCCESSFULLY', 3, false,
     (now() AT TIME ZONE 'utc') - interval '15 minutes', (now() AT TIME ZONE 'utc') - interval '13 minutes',
     (now() AT TIME ZONE 'utc') - interval '15 minutes', (now() AT TIME ZONE 'utc') - interval '14 minutes',
     (now() AT TIME ZONE 'utc') - interval '13 minutes', NULL, NULL,
     NULL, '{"customer":"acme","step":3}', 'application/json', NULL, '{"synced":42}',
     ARRAY['demo-set', 'customer:acme', 'owner:o''neil'], NULL, '{}',
     61000, 0.55, 0.0025,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0015: failed.
    ('cmdemorun0000000000000015', 'run_demo0015', 'sync-customer', 'COMPLETED_WITH_ERRORS', 4, false,
     (now() AT TIME ZONE 'utc') - interval '25 minutes', (now() AT TIME ZONE 'utc') - interval '24 minutes',
     (now() AT TIME ZONE 'utc') - interval '25 minutes', (now() AT TIME ZONE 'utc') - interval '25 minutes',
     (now() AT TIME ZONE 'utc') - interval '24 minutes', NULL, NULL,
     NULL, '{"customer":"acme","step":4}', 'application/json', NULL, NULL,
     ARRAY['demo-set', 'customer:acme'],
     '{"type":"BUILT_IN_ERROR","name":"Error","message":"upstream 503","stackTrace":"Error: upstream 503"}'::jsonb,
     '{}',
     1500, 0.02, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0016: waiting; a third tag with a single quote, a comma, a backslash and double quotes.
    ('cmdemorun0000000000000016', 'run_demo0016', 'sync-customer', 'WAITING_TO_RESUME', 5, false,
     (now() AT TIME ZONE 'utc') - interval '40 minutes', (now() AT TIME ZONE 'utc') - interval '35 minutes',
     (now() AT TIME ZONE 'utc') - interval '40 minutes', (now() AT TIME ZONE 'utc') - interval '39 minutes', NULL, NULL, NULL,
     NULL, '{"customer":"acme","step":5}', 'application/json', NULL, NULL,
     ARRAY['demo-set', 'customer:acme', 'it''s, a \ "tag"'], NULL, '{}',
     800, 0.01, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0017: canceled.
    ('cmdemorun0000000000000017', 'run_demo0017', 'sync-customer', 'CANCELED', 6, false,
     (now() AT TIME ZONE 'utc') - interval '55 minutes', (now() AT TIME ZONE 'utc') - interval '54 minutes',
     (now() AT TIME ZONE 'utc') - interval '55 minutes', NULL,
     (now() AT TIME ZONE 'utc') - interval '54 minutes', NULL, NULL,
     NULL, '{"customer":"acme","step":6}', 'application/json', NULL, NULL,
     ARRAY['demo-set', 'customer:acme'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0018: only demo-set.
    ('cmdemorun0000000000000018', 'run_demo0018', 'sync-customer', 'EXECUTING', 7, false,
     (now() AT TIME ZONE 'utc') - interval '10 minutes', (now() AT TIME ZONE 'utc') - interval '9 minutes',
     (now() AT TIME ZONE 'utc') - interval '10 minutes', (now() AT TIME ZONE 'utc') - interval '9 minutes', NULL, NULL, NULL,
     NULL, '{"customer":"globex"}', 'application/json', NULL, NULL,
     ARRAY['demo-set'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0019: only customer:acme.
    ('cmdemorun0000000000000019', 'run_demo0019', 'bill-customer', 'PENDING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '12 minutes', (now() AT TIME ZONE 'utc') - interval '12 minutes',
     (now() AT TIME ZONE 'utc') - interval '12 minutes', NULL, NULL, NULL, NULL,
     NULL, '{"customer":"acme"}', 'application/json', NULL, NULL,
     ARRAY['customer:acme'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0020: both tags, created 30 hours ago: outside any createdAt window (max 24 h).
    ('cmdemorun0000000000000020', 'run_demo0020', 'sync-customer', 'COMPLETED_SUCCESSFULLY', 8, false,
     (now() AT TIME ZONE 'utc') - interval '30 hours', (now() AT TIME ZONE 'utc') - interval '30 hours',
     (now() AT TIME ZONE 'utc') - interval '30 hours', (now() AT TIME ZONE 'utc') - interval '30 hours',
     (now() AT TIME ZONE 'utc') - interval '30 hours', NULL, NULL,
     NULL, '{"customer":"acme","step":0}', 'application/json', NULL, '{"synced":1}',
     ARRAY['demo-set', 'customer:acme'], NULL, '{}',
     900, 0.02, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', NULL),

    -- 0021 / 0022: members of the old batch batch_demo0002 (30 days old).
    ('cmdemorun0000000000000021', 'run_demo0021', 'batch-child', 'COMPLETED_SUCCESSFULLY', 3, false,
     (now() AT TIME ZONE 'utc') - interval '30 days', (now() AT TIME ZONE 'utc') - interval '30 days' + interval '1 minute',
     (now() AT TIME ZONE 'utc') - interval '30 days', (now() AT TIME ZONE 'utc') - interval '30 days',
     (now() AT TIME ZONE 'utc') - interval '30 days' + interval '1 minute', NULL, NULL,
     NULL, '{"item":1}', 'application/json', NULL, '{"ok":true}',
     ARRAY['old-batch'], NULL, '{}',
     700, 0.01, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', 'cmdemobatch00000000000002'),
    ('cmdemorun0000000000000022', 'run_demo0022', 'batch-child', 'COMPLETED_WITH_ERRORS', 4, false,
     (now() AT TIME ZONE 'utc') - interval '30 days', (now() AT TIME ZONE 'utc') - interval '30 days' + interval '2 minutes',
     (now() AT TIME ZONE 'utc') - interval '30 days', (now() AT TIME ZONE 'utc') - interval '30 days',
     (now() AT TIME ZONE 'utc') - interval '30 days' + interval '2 minutes', NULL, NULL,
     NULL, '{"item":2}', 'application/json', NULL, NULL,
     ARRAY['old-batch'],
     '{"type":"STRING_ERROR","raw":"item 2 failed"}'::jsonb, '{}',
     300, 0.01, 0,
     'cmdemoenv0000000000000001', 'cmdemoproj000000000000001', 'cmdemobatch00000000000002'),

    -- PRODUCTION env: the tag-feed tags again; must never show in the DEV tag feed.
    ('cmdemorun0000000000000102', 'run_demoprod002', 'sync-customer', 'EXECUTING', 1, false,
     (now() AT TIME ZONE 'utc') - interval '6 minutes', (now() AT TIME ZONE 'utc') - interval '5 minutes',
     (now() AT TIME ZONE 'utc') - interval '6 minutes', (now() AT TIME ZONE 'utc') - interval '5 minutes',
     NULL, NULL, NULL,
     NULL, '{"customer":"acme"}', 'application/json', NULL, NULL,
     ARRAY['demo-set', 'customer:acme'], NULL, '{}',
     0, 0, 0,
     'cmdemoenv0000000000000002', 'cmdemoproj000000000000001', NULL)
ON CONFLICT DO NOTHING;

COMMIT;
