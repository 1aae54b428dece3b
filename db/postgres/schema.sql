-- runfeed: the subset of trigger.dev's PostgreSQL schema that the realtime runs
-- feed reads (see docs: realtime-compat.md §5.1 and §6).
--
-- * Identifiers are quoted camelCase, as Prisma generates them, and constraint /
--   index names follow Prisma's conventions (<Table>_pkey, <Table>_<col>_key,
--   <Table>_<cols>_idx, <Table>_<col>_fkey) so that the same queries work against
--   a real trigger.dev database.
-- * DateTime columns are timestamp(3) WITHOUT time zone and hold UTC.
-- * "updatedAt" never has a default: the writer stamps it (Prisma @updatedAt).
-- * Idempotent: every statement is guarded, so applying the file again is a no-op.
--
-- Apply with:  psql -v ON_ERROR_STOP=1 -f db/postgres/schema.sql

SET client_min_messages = warning;

BEGIN;

-- ---------------------------------------------------------------------------
-- Enums
-- ---------------------------------------------------------------------------

DO $$
BEGIN
    CREATE TYPE "TaskRunStatus" AS ENUM (
        'DELAYED',
        'PENDING',
        'PENDING_VERSION',
        'WAITING_FOR_DEPLOY',
        'DEQUEUED',
        'EXECUTING',
        'WAITING_TO_RESUME',
        'RETRYING_AFTER_FAILURE',
        'PAUSED',
        'CANCELED',
        'INTERRUPTED',
        'COMPLETED_SUCCESSFULLY',
        'COMPLETED_WITH_ERRORS',
        'SYSTEM_FAILURE',
        'CRASHED',
        'EXPIRED',
        'TIMED_OUT'
    );
EXCEPTION
    WHEN duplicate_object THEN NULL;
END
$$;

DO $$
BEGIN
    CREATE TYPE "RuntimeEnvironmentType" AS ENUM (
        'PRODUCTION',
        'STAGING',
        'DEVELOPMENT',
        'PREVIEW'
    );
EXCEPTION
    WHEN duplicate_object THEN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- Organization / Project
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "Organization" (
    "id"        TEXT         NOT NULL,
    "title"     TEXT         NOT NULL,
    "slug"      TEXT         NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Organization_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX IF NOT EXISTS "Organization_slug_key" ON "Organization"("slug");

CREATE TABLE IF NOT EXISTS "Project" (
    "id"             TEXT         NOT NULL,
    "organizationId" TEXT         NOT NULL,
    "name"           TEXT         NOT NULL,
    "slug"           TEXT         NOT NULL,
    "externalRef"    TEXT         NOT NULL,
    "deletedAt"      TIMESTAMP(3),
    "createdAt"      TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"      TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Project_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Project_organizationId_fkey" FOREIGN KEY ("organizationId")
        REFERENCES "Organization"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS "Project_slug_key" ON "Project"("slug");
CREATE UNIQUE INDEX IF NOT EXISTS "Project_externalRef_key" ON "Project"("externalRef");

-- ---------------------------------------------------------------------------
-- RuntimeEnvironment
-- A PREVIEW environment has branch children: rows whose "parentEnvironmentId"
-- points at it and whose "branchName" names the git branch. There is
-- deliberately no unique constraint on ("parentEnvironmentId","branchName").
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "RuntimeEnvironment" (
    "id"                  TEXT                     NOT NULL,
    "slug"                TEXT                     NOT NULL,
    "apiKey"              TEXT                     NOT NULL,
    "type"                "RuntimeEnvironmentType" NOT NULL DEFAULT 'DEVELOPMENT',
    "organizationId"      TEXT                     NOT NULL,
    "projectId"           TEXT                     NOT NULL,
    "branchName"          TEXT,
    "parentEnvironmentId" TEXT,
    "archivedAt"          TIMESTAMP(3),
    "createdAt"           TIMESTAMP(3)             NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"           TIMESTAMP(3)             NOT NULL,

    CONSTRAINT "RuntimeEnvironment_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "RuntimeEnvironment_organizationId_fkey" FOREIGN KEY ("organizationId")
        REFERENCES "Organization"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "RuntimeEnvironment_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES "Project"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "RuntimeEnvironment_parentEnvironmentId_fkey" FOREIGN KEY ("parentEnvironmentId")
        REFERENCES "RuntimeEnvironment"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS "RuntimeEnvironment_apiKey_key"
    ON "RuntimeEnvironment"("apiKey");
CREATE INDEX IF NOT EXISTS "RuntimeEnvironment_parentEnvironmentId_idx"
    ON "RuntimeEnvironment"("parentEnvironmentId");

-- ---------------------------------------------------------------------------
-- BatchTaskRun (only the columns the feed needs)
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "BatchTaskRun" (
    "id"                   TEXT         NOT NULL,
    "friendlyId"           TEXT         NOT NULL,
    "runtimeEnvironmentId" TEXT         NOT NULL,
    "createdAt"            TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "BatchTaskRun_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "BatchTaskRun_runtimeEnvironmentId_fkey" FOREIGN KEY ("runtimeEnvironmentId")
        REFERENCES "RuntimeEnvironment"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS "BatchTaskRun_friendlyId_key" ON "BatchTaskRun"("friendlyId");

-- ---------------------------------------------------------------------------
-- RevokedApiKey: a rotated key keeps working until "expiresAt" (grace period).
-- "apiKey" is indexed but NOT unique.
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "RevokedApiKey" (
    "id"                   TEXT         NOT NULL,
    "apiKey"               TEXT         NOT NULL,
    "runtimeEnvironmentId" TEXT         NOT NULL,
    "expiresAt"            TIMESTAMP(3) NOT NULL,
    "createdAt"            TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "RevokedApiKey_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "RevokedApiKey_runtimeEnvironmentId_fkey" FOREIGN KEY ("runtimeEnvironmentId")
        REFERENCES "RuntimeEnvironment"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE INDEX IF NOT EXISTS "RevokedApiKey_apiKey_idx" ON "RevokedApiKey"("apiKey");
CREATE INDEX IF NOT EXISTS "RevokedApiKey_runtimeEnvironmentId_idx"
    ON "RevokedApiKey"("runtimeEnvironmentId");

-- ---------------------------------------------------------------------------
-- ApiKey: additional environment API keys (tr_<env>_sk_ + 24 characters).
-- Only the lowercase hex SHA-256 of a key is stored ("keyHash"). "scopes" use
-- the public-token grammar (bare 'admin' = everything; empty = nothing).
-- Revoked ("revokedAt" set) and expired keys authenticate nothing.
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "ApiKey" (
    "id"                   TEXT         NOT NULL,
    "name"                 TEXT         NOT NULL,
    "keyHash"              TEXT         NOT NULL,
    "lastFour"             TEXT         NOT NULL,
    "runtimeEnvironmentId" TEXT         NOT NULL,
    "createdByUserId"      TEXT,
    "presetId"             TEXT,
    "scopes"               TEXT[]       NOT NULL DEFAULT ARRAY[]::TEXT[],
    "expiresAt"            TIMESTAMP(3),
    "revokedAt"            TIMESTAMP(3),
    "lastUsedAt"           TIMESTAMP(3),
    "createdAt"            TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ApiKey_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "ApiKey_runtimeEnvironmentId_fkey" FOREIGN KEY ("runtimeEnvironmentId")
        REFERENCES "RuntimeEnvironment"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS "ApiKey_keyHash_key" ON "ApiKey"("keyHash");
CREATE INDEX IF NOT EXISTS "ApiKey_runtimeEnvironmentId_idx" ON "ApiKey"("runtimeEnvironmentId");

-- ---------------------------------------------------------------------------
-- TaskRun: the 26 streamed columns in wire order (§5.1), then the three
-- relation columns the feed filters on.
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "TaskRun" (
    "id"                   TEXT            NOT NULL,
    "taskIdentifier"       TEXT            NOT NULL,
    "createdAt"            TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"            TIMESTAMP(3)    NOT NULL,
    "startedAt"            TIMESTAMP(3),
    "delayUntil"           TIMESTAMP(3),
    "queuedAt"             TIMESTAMP(3),
    "expiredAt"            TIMESTAMP(3),
    "completedAt"          TIMESTAMP(3),
    "friendlyId"           TEXT            NOT NULL,
    "number"               INTEGER         NOT NULL DEFAULT 0,
    "isTest"               BOOLEAN         NOT NULL DEFAULT false,
    "status"               "TaskRunStatus" NOT NULL DEFAULT 'PENDING',
    "usageDurationMs"      INTEGER         NOT NULL DEFAULT 0,
    "costInCents"          DOUBLE PRECISION NOT NULL DEFAULT 0,
    "baseCostInCents"      DOUBLE PRECISION NOT NULL DEFAULT 0,
    "ttl"                  TEXT,
    "payload"              TEXT            NOT NULL,
    "payloadType"          TEXT            NOT NULL DEFAULT 'application/json',
    "metadata"             TEXT,
    "metadataType"         TEXT            NOT NULL DEFAULT 'application/json',
    "output"               TEXT,
    "outputType"           TEXT            NOT NULL DEFAULT 'application/json',
    "runTags"              TEXT[],
    "error"                JSONB,
    "realtimeStreams"      TEXT[]          DEFAULT '{}'::TEXT[],

    "runtimeEnvironmentId" TEXT            NOT NULL,
    "projectId"            TEXT            NOT NULL,
    "batchId"              TEXT,

    CONSTRAINT "TaskRun_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "TaskRun_runtimeEnvironmentId_fkey" FOREIGN KEY ("runtimeEnvironmentId")
        REFERENCES "RuntimeEnvironment"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "TaskRun_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES "Project"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "TaskRun_batchId_fkey" FOREIGN KEY ("batchId")
        REFERENCES "BatchTaskRun"("id") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS "TaskRun_friendlyId_key" ON "TaskRun"("friendlyId");

-- Batch membership.
CREATE INDEX IF NOT EXISTS "TaskRun_runtimeEnvironmentId_batchId_idx"
    ON "TaskRun"("runtimeEnvironmentId", "batchId");

-- Newest-first listing within an environment (tag feeds, createdAt floor).
CREATE INDEX IF NOT EXISTS "TaskRun_runtimeEnvironmentId_createdAt_idx"
    ON "TaskRun"("runtimeEnvironmentId", "createdAt" DESC) INCLUDE ("id");

-- "runTags" @> ARRAY[...] containment.
CREATE INDEX IF NOT EXISTS "TaskRun_runTags_idx"
    ON "TaskRun" USING GIN ("runTags" array_ops);

CREATE INDEX IF NOT EXISTS "TaskRun_createdAt_idx"
    ON "TaskRun" USING BRIN ("createdAt");

COMMIT;
