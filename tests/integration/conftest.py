"""Shared helpers for the runfeed integration suite.

The suite talks to a running stack THROUGH NGINX. It reads its coordinates from the
variables of `$RUNFEED_STATE/demo.env` (`make test` exports them; by hand:
`set -a; . .runfeed/demo.env; set +a`).

Only the Python standard library, `requests` and `pytest` are used. The database is
reached with `psql "$DATABASE_URL"`, Redis over a plain socket (RESP).
"""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------------------
# Configuration (from demo.env)
# --------------------------------------------------------------------------------------

_REQUIRED = [
    "RUNFEED_HTTP_URL", "RUNFEED_URL", "RUNFEED_API_KEY", "RUNFEED_ENV_ID", "RUNFEED_DEMO_RUN",
    "RUNFEED_DEMO_RUN_ID", "RUNFEED_OTHER_API_KEY", "RUNFEED_PREVIEW_API_KEY", "DATABASE_URL",
    "REDIS_HOST", "REDIS_PORT", "RUNFEED_STATE",
]


def _env(name, default=None):
    v = os.environ.get(name, default)
    return v


BASE_URL = (_env("RUNFEED_HTTP_URL") or "").rstrip("/")
HTTPS_URL = (_env("RUNFEED_URL") or "").rstrip("/")
CA_CERT = _env("RUNFEED_CA_CERT")
API_KEY = _env("RUNFEED_API_KEY")
ENV_ID = _env("RUNFEED_ENV_ID")
DEMO_RUN = _env("RUNFEED_DEMO_RUN")
DEMO_RUN_ID = _env("RUNFEED_DEMO_RUN_ID")
OTHER_API_KEY = _env("RUNFEED_OTHER_API_KEY")
OTHER_ENV_ID = _env("RUNFEED_OTHER_ENV_ID", "cmdemoenv0000000000000002")
PREVIEW_API_KEY = _env("RUNFEED_PREVIEW_API_KEY")
DATABASE_URL = _env("DATABASE_URL")
REDIS_HOST = _env("REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(_env("REDIS_PORT", "0") or 0)
STATE_DIR = Path(_env("RUNFEED_STATE", str(REPO_ROOT / ".runfeed")))
WORKERS = int(_env("RUNFEED_WORKERS", "2") or 2)

# Seed constants (db/postgres/seed-demo.sql).
PREVIEW_ENV_ID = "cmdemoenv0000000000000003"
BRANCH_ENV_ID = "cmdemoenv0000000000000004"
GONE_ENV_ID = "cmdemoenv0000000000000006"
GRACE_KEY = "tr_dev_RvkGraceKey012345678"
EXPIRED_KEY = "tr_dev_RvkExpirKey012345678"
GONE_PROJECT_KEY = "tr_dev_GoneKey0123456789abc"
BRANCH_RUN = "run_demofeatx01"
DEV_BRANCH_ENV_ID = "cmdemoenv0000000000000007"
DEV_BRANCH_RUN = "run_demodevft01"
PROD_RUN = "run_demoprod001"

MODERN = "1.0.0-beta.1"
API_VERSION = "2025-07-16"

# Workers may serve a non-live read from a row read up to 250 ms old (the run cache); waits step past it.
ROW_CACHE_S = 0.35

# The live-poll hold of the test stack is ~4 s (±15 %). Requests are bounded well above it.
LIVE_TIMEOUT = 20

# --------------------------------------------------------------------------------------
# Protocol constants: the schema header and the wire columns
# --------------------------------------------------------------------------------------

COLUMNS = [
    "id", "taskIdentifier", "createdAt", "updatedAt", "startedAt", "delayUntil", "queuedAt",
    "expiredAt", "completedAt", "friendlyId", "number", "isTest", "status", "usageDurationMs",
    "costInCents", "baseCostInCents", "ttl", "payload", "payloadType", "metadata", "metadataType",
    "output", "outputType", "runTags", "error", "realtimeStreams",
]
TIMESTAMP_COLUMNS = {"createdAt", "updatedAt", "startedAt", "delayUntil", "queuedAt", "expiredAt", "completedAt"}
RESERVED_COLUMNS = {"id", "taskIdentifier", "createdAt", "updatedAt", "friendlyId", "status"}

FULL_SCHEMA = (
    '{"id":{"type":"text"},"taskIdentifier":{"type":"text"},"createdAt":{"type":"timestamp"},'
    '"updatedAt":{"type":"timestamp"},"startedAt":{"type":"timestamp"},"delayUntil":{"type":"timestamp"},'
    '"queuedAt":{"type":"timestamp"},"expiredAt":{"type":"timestamp"},"completedAt":{"type":"timestamp"},'
    '"friendlyId":{"type":"text"},"number":{"type":"int4"},"isTest":{"type":"bool"},"status":{"type":"text"},'
    '"usageDurationMs":{"type":"int4"},"costInCents":{"type":"float8"},"baseCostInCents":{"type":"float8"},'
    '"ttl":{"type":"text"},"payload":{"type":"text"},"payloadType":{"type":"text"},"metadata":{"type":"text"},'
    '"metadataType":{"type":"text"},"output":{"type":"text"},"outputType":{"type":"text"},'
    '"runTags":{"type":"text","dims":1},"error":{"type":"jsonb"},"realtimeStreams":{"type":"text","dims":1}}'
)

UP_TO_DATE = '{"headers":{"control":"up-to-date"}}'
UP_TO_DATE_BODY = "[" + UP_TO_DATE + "]"


def schema_without(skip):
    """The electric-schema header string with the given columns removed (order kept)."""
    full = json.loads(FULL_SCHEMA)
    parts = []
    for c in COLUMNS:
        if c in skip:
            continue
        parts.append(json.dumps(c) + ":" + json.dumps(full[c], separators=(",", ":")))
    return "{" + ",".join(parts) + "}"


# --------------------------------------------------------------------------------------
# Reference encodings of column values, written independently of the server
# --------------------------------------------------------------------------------------

def js_number(x):
    """ECMAScript Number::toString(10) for a Python float."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    r = repr(abs(x))  # shortest round-trip digits: '0.55', '1e-07', '1e+21', '100.0'
    mant, _, exp = r.partition("e")
    e = int(exp) if exp else 0
    intpart, _, frac = mant.partition(".")
    digits = (intpart + frac).lstrip("0")
    # position of the decimal point relative to the start of `digits`
    lead_zeros = len(intpart + frac) - len((intpart + frac).lstrip("0"))
    n = len(intpart) - lead_zeros + e
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e2 = n - 1
    m = digits[0] + ("." + digits[1:] if k > 1 else "")
    return sign + m + "e" + ("-" if e2 < 0 else "+") + str(abs(e2))


def js_string(s):
    """JSON.stringify of a string (non-ASCII raw, controls as \\u00xx lowercase)."""
    return json.dumps(s, ensure_ascii=False)


def js_stringify(v):
    """Compact JSON.stringify of a parsed JSON value (dict order kept, numbers as JS)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return js_number(v)
    if isinstance(v, str):
        return js_string(v)
    if isinstance(v, list):
        return "[" + ",".join(js_stringify(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(js_string(k) + ":" + js_stringify(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


def pg_array(elems):
    """`{"a","b"}`: every element double-quoted, `\\` and `"` backslash-escaped, NULL unquoted."""
    out = []
    for e in elems:
        if e is None:
            out.append("NULL")
        else:
            out.append('"' + e.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------

PSQL = "/usr/lib/postgresql/15/bin/psql" if os.path.exists("/usr/lib/postgresql/15/bin/psql") else (shutil.which("psql") or "psql")


# The workers may read a streaming replica (`make test` runs one 50 ms behind). Most tests check something other
# than replication lag, and write on the primary then read through the workers: each of their writes waits until
# the replica has replayed it (read-your-writes for the test). test_replica.py, which measures the lag itself,
# turns this off (WAIT_FOR_REPLICA = False).
REPLICA_URL = _env("DATABASE_READ_REPLICA_URL")
WAIT_FOR_REPLICA = True
_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|TRUNCATE)\b", re.I)
_LSN_MARK = "runfeed-test-lsn:"


def _psql_run(url, sql):
    env = dict(os.environ, PGTZ="UTC")
    p = subprocess.run([PSQL, url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                       input=sql, capture_output=True, text=True, env=env, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.strip()}\nSQL: {sql}")
    return [line for line in p.stdout.split("\n") if line != ""]


def psql(sql):
    """Runs SQL with psql against DATABASE_URL; returns stdout lines (unaligned, tuples only). A write waits until
    the read replica (if any) has replayed it, unless WAIT_FOR_REPLICA is off."""
    wait = bool(REPLICA_URL) and WAIT_FOR_REPLICA and _WRITE.search(sql)
    if not wait:
        return _psql_run(DATABASE_URL, sql)
    lines = _psql_run(DATABASE_URL, sql.rstrip().rstrip(";") + f";\nSELECT '{_LSN_MARK}' || pg_current_wal_lsn();\n")
    lsn = lines.pop()[len(_LSN_MARK):]
    deadline = time.monotonic() + 15
    while _psql_run(REPLICA_URL, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") != ["t"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"the read replica did not replay {lsn} within 15 s")
        time.sleep(0.01)
    return lines


def lit(v):
    """An SQL literal."""
    if v is None:
        return "NULL"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) + "::float8"
    if isinstance(v, (list, tuple)):
        if not v:
            return "ARRAY[]::text[]"
        return "ARRAY[" + ",".join(lit(x) for x in v) + "]::text[]"
    return "'" + str(v).replace("'", "''") + "'"


NOW = "(now() AT TIME ZONE 'utc')"


def unique_suffix():
    return uuid.uuid4().hex[:16]


def env_project(env_id):
    return psql(f'SELECT "projectId" FROM "RuntimeEnvironment" WHERE id = {lit(env_id)}')[0]


def make_env(env_type="DEVELOPMENT"):
    """A fresh environment in the demo project (its own key and Redis channel). Returns (id, apiKey)."""
    sfx = unique_suffix()
    env_id = ("cmitenv" + sfx + "0" * 25)[:25]
    key = "tr_dev_" + (sfx + "0" * 20)[:20]
    psql(f'''INSERT INTO "RuntimeEnvironment" ("id","slug","apiKey","type","organizationId","projectId","createdAt","updatedAt")
             SELECT {lit(env_id)}, {lit("it-" + sfx)}, {lit(key)}, {lit(env_type)}::"RuntimeEnvironmentType",
                    "organizationId", "projectId", {NOW}, {NOW}
             FROM "RuntimeEnvironment" WHERE id = {lit(ENV_ID)}''')
    return env_id, key


class Run:
    def __init__(self, id, friendly_id, env_id):
        self.id = id
        self.friendly_id = friendly_id
        self.env_id = env_id

    @property
    def handle(self):
        return "run-" + self.id

    def __repr__(self):
        return f"Run({self.friendly_id}, {self.id})"


def make_run(env_id=None, status="PENDING", tags=None, realtime_streams="default", error=None,
             cost=0.0, base_cost=0.0, payload='{"hello":"world"}', payload_type="application/json",
             metadata=None, output=None, is_test=False, number=1, ttl=None, task="it-task",
             usage_ms=0, started=False, completed=False, batch_id=None, age="1 minute"):
    """Inserts a fresh run with unique ids (created and updated `age` ago) and returns it."""
    env_id = env_id or ENV_ID
    sfx = unique_suffix()
    run_id = ("cmit" + sfx + "0" * 25)[:25]
    fid = "run_it" + sfx
    project = env_project(env_id)
    ts = f"{NOW} - interval {lit(age)}"
    streams = "DEFAULT" if realtime_streams == "default" else lit(realtime_streams)
    err = "NULL" if error is None else lit(error if isinstance(error, str) else json.dumps(error)) + "::jsonb"
    sql = f'''
        INSERT INTO "TaskRun" ("id","friendlyId","taskIdentifier","status","number","isTest",
            "createdAt","updatedAt","queuedAt","startedAt","completedAt",
            "ttl","payload","payloadType","metadata","output","runTags","error","realtimeStreams",
            "usageDurationMs","costInCents","baseCostInCents","runtimeEnvironmentId","projectId","batchId")
        VALUES ({lit(run_id)}, {lit(fid)}, {lit(task)}, {lit(status)}::"TaskRunStatus", {number}, {lit(is_test)},
            {ts}, {ts}, {ts}, {ts if started else "NULL"}, {ts if completed else "NULL"},
            {lit(ttl)}, {lit(payload)}, {lit(payload_type)}, {lit(metadata)}, {lit(output)}, {lit(tags)}, {err}, {streams},
            {usage_ms}, {lit(float(cost))}, {lit(float(base_cost))}, {lit(env_id)}, {lit(project)}, {lit(batch_id)})
    '''
    psql(sql)
    return Run(run_id, fid, env_id)


def touch(run, status=None, **sets):
    """Changes a run and advances its updatedAt (strictly, by at least 1 ms). Returns the new updatedAt ms."""
    assigns = ['"updatedAt" = GREATEST(' + NOW + ', "updatedAt" + interval \'1 millisecond\')']
    if status is not None:
        assigns.append(f'"status" = {lit(status)}::"TaskRunStatus"')
    for col, v in sets.items():
        assigns.append(f'"{col}" = {lit(v)}')
    rows = psql(f'UPDATE "TaskRun" SET {", ".join(assigns)} WHERE id = {lit(run.id)} '
                f'RETURNING (extract(epoch from "updatedAt") * 1000)::bigint')
    return int(rows[0])


TS_FMT = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS'"


def db_row(friendly_id):
    """The run's columns as the reference encoding needs them (computed by Postgres)."""
    parts = []
    for c in COLUMNS:
        q = f'"{c}"'
        if c in TIMESTAMP_COLUMNS:
            expr = f"to_char({q}, {TS_FMT})"
        elif c == "isTest":
            expr = f"CASE WHEN {q} THEN 't' ELSE 'f' END"
        elif c in ("runTags", "realtimeStreams"):
            expr = f"to_json({q})"
        else:
            expr = f"{q}::text"
        parts.append(f"'{c}', {expr}")
    parts.append("'updatedAtMs', (extract(epoch from \"updatedAt\") * 1000)::bigint")
    parts.append("'envId', \"runtimeEnvironmentId\"")
    sql = f'SELECT json_build_object({", ".join(parts)})::text FROM "TaskRun" WHERE "friendlyId" = {lit(friendly_id)}'
    rows = psql(sql)
    assert rows, f"run {friendly_id} not found in the database"
    return json.loads(rows[0])


def wire_value(col, v):
    """Reference wire encoding of one column given db_row()'s representation."""
    if v is None:
        # upstream's native serializer: a NULL realtimeStreams is the empty-array literal; runTags null
        return "{}" if col == "realtimeStreams" else None
    if col in ("costInCents", "baseCostInCents"):
        return js_number(float(v))
    if col == "runTags":
        return pg_array(v) if v else None
    if col == "realtimeStreams":
        return pg_array(v)
    if col == "error":
        return js_stringify(json.loads(v, parse_int=float))
    return v


def expected_value(friendly_id, skip=(), row=None):
    """The exact `value` object text the feed must send for this run (minus skipped columns)."""
    row = row or db_row(friendly_id)
    out = []
    for c in COLUMNS:
        if c in skip:
            continue
        w = wire_value(c, row[c])
        out.append(js_string(c) + ":" + ("null" if w is None else js_string(w)))
    return "{" + ",".join(out) + "}"


def change_message(run_id, value, operation):
    key = '"public"."TaskRun"/"' + run_id + '"'
    return '{"key":' + js_string(key) + ',"value":' + value + ',"headers":{"operation":"' + operation + '"}}'


def expected_body(friendly_id, operation, skip=(), legacy_api=True, row=None):
    """`[<change>, up-to-date]` for the run's current row."""
    row = row or db_row(friendly_id)
    body = "[" + change_message(row["id"], expected_value(friendly_id, skip, row), operation) + "," + UP_TO_DATE + "]"
    if legacy_api:
        body = body.replace('"status":"DEQUEUED"', '"status":"EXECUTING"')
    return body


def updated_ms(friendly_id):
    return int(db_row(friendly_id)["updatedAtMs"])


# --------------------------------------------------------------------------------------
# Redis (RESP over a socket)
# --------------------------------------------------------------------------------------

def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    t, rest = line[:1], line[1:].rstrip(b"\r\n")
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RuntimeError("redis error: " + rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode()
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")


REDIS_MODE = _env("RUNFEED_REDIS_MODE", "plain")      # plain | tls | cluster (scripts/stack.sh)
REDIS_SHARDED = REDIS_MODE == "cluster" and _env("REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED", "1") != "0"


def _redis_socket(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    if REDIS_MODE == "tls":
        import ssl
        ctx = ssl.create_default_context(cafile=_env("RUNFEED_REDIS_TLS_CA_FILE") or CA_CERT)
        s = ctx.wrap_socket(s, server_hostname=host)
    return s


def _redis_once(args, host, port, timeout):
    s = _redis_socket(host, port, timeout)
    try:
        payload = b"*%d\r\n" % len(args)
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            payload += b"$%d\r\n%s\r\n" % (len(b), b)
        s.sendall(payload)
        with s.makefile("rb") as f:
            return _resp_read(f)
    finally:
        s.close()


def redis_cmd(*args, host=None, port=None, timeout=5):
    """One command on the stack's Redis, whatever RUNFEED_REDIS_MODE: TLS with the stack's CA; in a cluster the
    command follows MOVED to the master of its key's slot, and channel commands become their sharded forms when
    the workers use sharded pub/sub (a PUBLISH would not reach an SSUBSCRIBE)."""
    args = list(args)
    if REDIS_SHARDED and args and str(args[0]).upper() == "PUBLISH":
        args[0] = "SPUBLISH"
    if REDIS_SHARDED and len(args) >= 3 and [str(a).upper() for a in args[:2]] == ["PUBSUB", "NUMSUB"]:
        args = ["PUBSUB", "SHARDNUMSUB"] + args[2:]
    host, port = host or REDIS_HOST, port or REDIS_PORT
    if REDIS_MODE == "cluster" and len(args) >= 2 and str(args[0]).upper() not in ("PING", "SHUTDOWN", "PUBLISH"):
        key = args[2] if str(args[0]).upper() == "PUBSUB" and len(args) >= 3 else args[1]
        slot = _redis_once(["CLUSTER", "KEYSLOT", key], host, port, timeout)
        for node in _redis_once(["CLUSTER", "SLOTS"], host, port, timeout):
            if node[0] <= slot <= node[1]:
                host, port = node[2][0] or host, node[2][1]
                break
    return _redis_once(args, host, port, timeout)


def channel(env_id):
    return "realtime:env:{" + env_id + "}"


def publish(env_id, run_id, tags=None, batch_id=None, updated_at_ms=None):
    """PUBLISHes a v1 change record; returns the number of subscribers that received it."""
    rec = {"v": 1, "runId": run_id, "envId": env_id}
    if tags is not None:
        rec["tags"] = list(tags)
    rec["batchId"] = batch_id
    if updated_at_ms is not None:
        rec["updatedAtMs"] = updated_at_ms
    return redis_cmd("PUBLISH", channel(env_id), json.dumps(rec, separators=(",", ":")))


def numsub(env_id):
    reply = redis_cmd("PUBSUB", "NUMSUB", channel(env_id))
    return int(reply[1])


def redis_up():
    try:
        return redis_cmd("PING", timeout=1) == "PONG"
    except OSError:
        return False


def wait_until(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# JWT (HS256 / HS512 / none)
# --------------------------------------------------------------------------------------

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(payload, key, alg="HS256", header=None):
    header = header or {"alg": alg, "typ": "JWT"}
    signing_input = b64url(json.dumps(header, separators=(",", ":"))) + "." + b64url(json.dumps(payload, separators=(",", ":")))
    if alg == "none":
        return signing_input + "."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(sig)


def jwt_claims(sub=None, scopes=("read:runs",), ttl=900, **extra):
    now = int(time.time())
    claims = {"sub": sub or ENV_ID, "pub": True, "scopes": list(scopes), "iat": now, "exp": now + ttl,
              "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev"}
    claims.update(extra)
    return claims


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------

def run_url(friendly_id, base=None):
    return (base or BASE_URL) + "/realtime/v1/runs/" + friendly_id


def headers(token="default", modern=True, api_version=None, extra=None):
    h = {}
    if token == "default":
        token = API_KEY
    if token is not None:
        h["Authorization"] = "Bearer " + token
    if modern:
        h["x-trigger-electric-version"] = MODERN
    if api_version:
        h["x-trigger-api-version"] = api_version
    if extra:
        h.update(extra)
    return h


def get(url, params=None, timeout=10, **hkw):
    return requests.get(url, params=params, headers=headers(**hkw), timeout=timeout)


def snapshot(run, **kw):
    fid = run.friendly_id if isinstance(run, Run) else run
    r = get(run_url(fid), params=kw.pop("params", None), **kw)
    assert r.status_code == 200, (r.status_code, r.text)
    return r


def offset_of(resp):
    off = resp.headers["electric-offset"]
    a, b = off.split("_")
    return int(a), int(b)


def live(run, offset, handle=None, params=None, timeout=LIVE_TIMEOUT, **kw):
    """One live long-poll request (blocking)."""
    fid = run.friendly_id if isinstance(run, Run) else run
    p = {"live": "true", "handle": handle or run.handle, "offset": offset, "cursor": "", "log": "full"}
    if params:
        p.update(params)
    return get(run_url(fid), params=p, timeout=timeout, **kw)


_pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)


def start_live(run, offset, **kw):
    """Starts a live poll in a thread; returns a Future of the response."""
    return _pool.submit(live, run, offset, **kw)


def publish_until_done(futures, env_id, run_id, timeout=15, interval=0.25, **kw):
    """Publishes the record every `interval` until every future is done (bounded). Pub/sub is
    fire-and-forget, so a record sent before a worker's SUBSCRIBE completed would be lost: repeating
    it is harmless (an unchanged row never ends a poll)."""
    deadline = time.monotonic() + timeout
    sent = 0
    while not all(f.done() for f in futures):
        publish(env_id, run_id, **kw)
        sent += 1
        if time.monotonic() >= deadline:
            break
        concurrent.futures.wait(futures, timeout=interval)
    return sent


# A poll that a record should have woken is given WAKE_GRACE seconds (far above the wake latency,
# well below the ~3.4 s minimum hold of the test stack). Then the run is changed once more WITHOUT a
# record: a poll that was really woken already carries the published change, while a poll that
# missed the record would be answered by its deadline backstop with this later change instead.
# That turns "woken by the record, not by the backstop" into a content assertion.
WAKE_GRACE = 2.0
SENTINEL_STATUS = "WAITING_TO_RESUME"


def change_again_unpublished(run, futures, grace=WAKE_GRACE):
    concurrent.futures.wait(futures, timeout=grace)
    return touch(run, SENTINEL_STATUS, metadata='{"sentinel":"changed later, never published"}')


def assert_feed_headers(r, live_response, legacy=False, schema=FULL_SCHEMA):
    """The headers every 200 feed response carries (handle, offset, schema or cursor, cache control, CORS)."""
    h = r.headers
    assert r.status_code == 200, (r.status_code, r.text)
    assert h.get("content-type") == "application/json"
    assert h.get("cache-control") == "no-store"
    assert h.get("access-control-allow-origin") == "*"
    assert h.get("access-control-expose-headers") == "*"
    assert h.get("electric-handle")
    assert h.get("electric-offset")
    a, _, b = h["electric-offset"].partition("_")
    assert a.isdigit() and b.isdigit(), h["electric-offset"]
    if r.text.endswith(UP_TO_DATE + "]"):
        assert h.get("electric-up-to-date") == "", dict(h)
    if live_response:
        assert h.get("electric-cursor", "").isdigit(), dict(h)
        assert "electric-schema" not in h
    else:
        assert h.get("electric-schema") == schema
        assert "electric-cursor" not in h
    if legacy:
        assert h.get("electric-shape-id") == h["electric-handle"]
        assert h.get("electric-chunk-last-offset") == h["electric-offset"]
    else:
        assert "electric-shape-id" not in h
        assert "electric-chunk-last-offset" not in h


def worker_logs():
    return sorted((STATE_DIR / "log").glob("worker-*.log"))


def log_sizes():
    return {p: p.stat().st_size for p in worker_logs()}


def log_tail_since(sizes):
    """New text in each worker log since `sizes` (from log_sizes())."""
    out = {}
    for p in worker_logs():
        start = sizes.get(p, 0)
        with open(p, "rb") as f:
            f.seek(start)
            out[p] = f.read().decode("utf-8", "replace")
    return out


# --------------------------------------------------------------------------------------
# Session checks
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def stack_ready():
    missing = [n for n in _REQUIRED if not os.environ.get(n)]
    if missing:
        pytest.exit("integration tests need the stack's demo.env exported (missing: " + ", ".join(missing)
                    + "); run `make test`, or `set -a; . .runfeed/demo.env; set +a`", returncode=2)

    def ok():
        try:
            return requests.get(run_url(DEMO_RUN), headers=headers(), timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ok, 20, 0.2, "the stack to answer the demo run")
    yield


# --------------------------------------------------------------------------------------
# List feeds: tag route `/realtime/v1/runs?tags=…` and batch route `/realtime/v1/batches/:id`
# --------------------------------------------------------------------------------------

DEMO_TAG = _env("RUNFEED_DEMO_TAG", "demo-set")
DEMO_TAG2 = _env("RUNFEED_DEMO_TAG2", "customer:acme")
DEMO_BATCH = _env("RUNFEED_DEMO_BATCH", "batch_demo0001")
OLD_BATCH = _env("RUNFEED_OLD_BATCH", "batch_demo0002")
DEMO_BATCH_ID = "cmdemobatch00000000000001"
OLD_BATCH_ID = "cmdemobatch00000000000002"
CLICKHOUSE_URL = _env("RUNFEED_CLICKHOUSE_URL") or ""
CLICKHOUSE_ON = (_env("RUNFEED_CLICKHOUSE", "1" if CLICKHOUSE_URL else "0") == "1") and bool(CLICKHOUSE_URL)
METRICS_URLS = (_env("RUNFEED_METRICS_URLS") or _env("RUNFEED_METRICS_URL") or "").strip('"').split()
RUNFEED_BIN = _env("RUNFEED_BIN") or str(REPO_ROOT / ".build" / "debug" / "runfeed")

MAX_AGE_MS = 86_400_000   # REALTIME_MAXIMUM_CREATED_AT_FILTER_AGE_IN_MS
BUCKET_MS = 60_000        # REALTIME_BACKEND_NATIVE_RUNSET_CREATED_AT_BUCKET_MS
LIST_LIMIT = 1000         # REALTIME_BACKEND_NATIVE_MAX_LIST_RESULTS


def unique_tag(prefix="it"):
    return f"{prefix}-{unique_suffix()[:12]}"


def runs_list_url(base=None):
    return (base or BASE_URL) + "/realtime/v1/runs"


def batch_url(friendly_id, base=None):
    return (base or BASE_URL) + "/realtime/v1/batches/" + friendly_id


def tag_params(tags=None, created_at=None, **extra):
    p = {}
    if tags is not None:
        p["tags"] = tags if isinstance(tags, str) else ",".join(tags)
    if created_at is not None:
        p["createdAt"] = created_at
    p.update(extra)
    return p


def list_messages(resp_or_text):
    text = resp_or_text if isinstance(resp_or_text, str) else resp_or_text.text
    return json.loads(text)


def list_rows(resp_or_text):
    """[(internal id, operation)] of the change messages, in body order."""
    out = []
    for m in list_messages(resp_or_text):
        if "key" in m:
            assert m["key"] == '"public"."TaskRun"/"' + m["value"]["id"] + '"', m["key"]
            out.append((m["value"]["id"], m["headers"]["operation"]))
    return out


def list_ids(resp_or_text):
    return [i for i, _ in list_rows(resp_or_text)]


def list_body(runs, operation, skip=(), legacy_api=True):
    """The exact body for `runs` (Run objects or friendly ids, in order) each with `operation`, then up-to-date
    (DEQUEUED shown as EXECUTING unless the request names the current API version, as in expected_body)."""
    parts = []
    for r in runs:
        fid = r.friendly_id if isinstance(r, Run) else r
        row = db_row(fid)
        parts.append(change_message(row["id"], expected_value(fid, skip, row), operation))
    parts.append(UP_TO_DATE)
    body = "[" + ",".join(parts) + "]"
    if legacy_api:
        body = body.replace('"status":"DEQUEUED"', '"status":"EXECUTING"')
    return body


def tag_snapshot(tags=None, created_at=None, params=None, expect=200, **hkw):
    p = tag_params(tags, created_at)
    if params:
        p.update(params)
    r = get(runs_list_url(), params=p, **hkw)
    assert r.status_code == expect, (r.status_code, r.text)
    return r


def batch_snapshot(friendly_id, params=None, expect=200, **hkw):
    r = get(batch_url(friendly_id), params=params, **hkw)
    assert r.status_code == expect, (r.status_code, r.text)
    return r


def list_live(url, handle, offset, params=None, timeout=LIVE_TIMEOUT, **kw):
    """One live long-poll of a list feed (blocking); `params` adds tags/createdAt/skipColumns."""
    p = {"live": "true", "handle": handle, "offset": offset, "cursor": "", "log": "full"}
    if params:
        p.update(params)
    return get(url, params=p, timeout=timeout, **kw)


def start_list_live(url, handle, offset, **kw):
    return _pool.submit(list_live, url, handle, offset, **kw)


def live_after(url, resp, params=None, **kw):
    """A live poll continuing from `resp` (its handle and offset), started in a thread."""
    return start_list_live(url, resp.headers["electric-handle"], resp.headers["electric-offset"], params=params, **kw)


class Batch:
    def __init__(self, id, friendly_id, env_id):
        self.id = id
        self.friendly_id = friendly_id
        self.env_id = env_id

    def __repr__(self):
        return f"Batch({self.friendly_id}, {self.id})"


def make_batch(env_id=None, age="1 minute"):
    env_id = env_id or ENV_ID
    sfx = unique_suffix()
    bid = ("cmitbatch" + sfx + "0" * 25)[:25]
    fid = "batch_it" + sfx
    psql(f'''INSERT INTO "BatchTaskRun" ("id","friendlyId","runtimeEnvironmentId","createdAt")
             VALUES ({lit(bid)}, {lit(fid)}, {lit(env_id)}, {NOW} - interval {lit(age)})''')
    return Batch(bid, fid, env_id)


def ch_sync(env_id=None):
    """Copies TaskRun rows into ClickHouse (the test stack's stand-in for replication). No-op without ClickHouse."""
    if not CLICKHOUSE_ON:
        return
    args = ["bash", str(REPO_ROOT / "scripts" / "clickhouse-sync.sh"), "--quiet", "--no-prune"]
    if env_id:
        args += ["--env", env_id]
    env = dict(os.environ, DATABASE_URL=DATABASE_URL, RUNFEED_CLICKHOUSE_URL=CLICKHOUSE_URL)
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"clickhouse-sync failed ({p.returncode}): {p.stderr.strip()}")


def db_list_ids(sql_where, limit=LIST_LIMIT):
    """Internal ids of TaskRun rows matching `sql_where`, newest first (createdAt, id DESC)."""
    return psql(f'SELECT "id" FROM "TaskRun" WHERE {sql_where} ORDER BY "createdAt" DESC, "id" DESC LIMIT {limit}')


def ms_to_ts(ms):
    """A UTC timestamp(3) literal for epoch milliseconds."""
    return f"(to_timestamp({int(ms)} / 1000.0) AT TIME ZONE 'utc')"


def wait_pending(futures, seconds):
    """Waits `seconds`; asserts none of the futures completed (shows the first answer if one did)."""
    concurrent.futures.wait(futures, timeout=seconds)
    done = [f for f in futures if f.done()]
    assert not done, "a held poll was answered: " + (done[0].result().text[:500] if done else "")


# --------------------------------------------------------------------------------------
# Worker metrics (Prometheus text from each worker's /metrics)
# --------------------------------------------------------------------------------------

def parse_metrics(text):
    """{'name{labels}': value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def worker_metrics():
    """One dict per worker (in RUNFEED_METRICS_URLS order)."""
    out = []
    for u in METRICS_URLS:
        r = requests.get(u, timeout=5)
        assert r.status_code == 200, (u, r.status_code)
        out.append(parse_metrics(r.text))
    return out


def metric(samples, name):
    return samples.get(name, 0.0)


def metric_sum(all_samples, name):
    return sum(metric(s, name) for s in all_samples)


HELD_LIST = 'runfeed_held_polls{kind="list"}'
LIST_HYDRATES = "runfeed_list_hydrates_total"
CH_MEMBERSHIP = 'runfeed_membership_queries_total{resolver="clickhouse"}'
RECORDS_ACCEPTED = 'runfeed_change_records_total{result="accepted"}'
SUBSCRIBED_CHANNELS = "runfeed_redis_subscribed_channels"


# --------------------------------------------------------------------------------------
# A throwaway worker spoken to directly over FastCGI (no nginx)
# --------------------------------------------------------------------------------------

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 1, 3, 4, 5, 6, 7


def _fcgi_record(rtype, content, request_id=1):
    pad = (8 - len(content) % 8) % 8
    return bytes([1, rtype, request_id >> 8, request_id & 0xFF, len(content) >> 8, len(content) & 0xFF, pad, 0]) \
        + content + b"\0" * pad


def _fcgi_len(n):
    return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")


def _fcgi_params(params):
    out = b""
    for k, v in params.items():
        kb, vb = k.encode(), v.encode()
        out += _fcgi_len(len(kb)) + _fcgi_len(len(vb)) + kb + vb
    return out


class FcgiResponse:
    def __init__(self, status, headers, text):
        self.status_code = status
        self.headers = requests.structures.CaseInsensitiveDict(headers)
        self.text = text

    def json(self):
        return json.loads(self.text)


def fcgi_get(addr, path, params=None, timeout=LIVE_TIMEOUT, **hkw):
    """A GET to a FastCGI responder at (host, port) or a unix socket path, as nginx would send it; returns an
    FcgiResponse."""
    query = urllib.parse.urlencode(params or {})
    env = {
        "REQUEST_METHOD": "GET", "DOCUMENT_URI": path, "REQUEST_URI": path + ("?" + query if query else ""),
        "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
    }
    for k, v in headers(**hkw).items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    payload = _fcgi_record(FCGI_BEGIN_REQUEST, bytes([0, 1, 0, 0, 0, 0, 0, 0]))
    body = _fcgi_params(env)
    for i in range(0, len(body), 65535):
        payload += _fcgi_record(FCGI_PARAMS, body[i:i + 65535])
    payload += _fcgi_record(FCGI_PARAMS, b"") + _fcgi_record(FCGI_STDIN, b"")
    if isinstance(addr, (str, Path)):  # a worker's unix socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(addr))
    else:
        s = socket.create_connection(addr, timeout=timeout)
    return fcgi_exchange(s, payload)


def fcgi_read_answer(f):
    """The STDOUT bytes of one answer, read from the file `f` up to its END_REQUEST (None if the connection
    closes first); the connection can carry the next request afterwards."""
    out = b""
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        rtype, clen, plen = hdr[1], (hdr[4] << 8) | hdr[5], hdr[6]
        content = f.read(clen)
        f.read(plen)
        if rtype == FCGI_STDOUT:
            out += content
        elif rtype == FCGI_END_REQUEST:
            return out


def fcgi_exchange(s, payload, errors="strict"):
    """Sends a complete FastCGI request on the connected socket `s`, reads STDOUT records until
    END_REQUEST, closes the socket and parses the CGI response."""
    try:
        s.sendall(payload)
        with s.makefile("rb") as f:
            out = fcgi_read_answer(f)
        if out is None:
            raise ConnectionError("FastCGI connection closed before END_REQUEST")
    finally:
        s.close()
    head, _, body_bytes = out.partition(b"\r\n\r\n")
    status, hdrs = 200, {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            hdrs[name] = value.strip()
    return FcgiResponse(status, hdrs, body_bytes.decode("utf-8", errors))


def worker_sockets():
    """The stack's worker sockets (worker-1.sock, …), for requests pinned to one worker."""
    run_dir = Path(_env("RUNFEED_RUN_DIR") or (STATE_DIR / "run"))
    return [run_dir / f"worker-{n}.sock" for n in range(1, WORKERS + 1)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ThrowawayWorker:
    """`runfeed serve --listen 127.0.0.1:<port>` started by the test with its own environment; stopped by PID."""

    def __init__(self, name, env_overrides, unset=("REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL", "CLICKHOUSE_URL")):
        if not os.access(RUNFEED_BIN, os.X_OK):
            pytest.fail(f"runfeed binary not found at {RUNFEED_BIN} (set RUNFEED_BIN; make test builds it)")
        self.port = free_port()
        self.addr = ("127.0.0.1", self.port)
        status_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{status_port}/metrics"
        self.health_url = f"http://127.0.0.1:{status_port}/healthz"
        env = dict(os.environ)
        for k in unset:
            env.pop(k, None)
        env.update({"DATABASE_URL": DATABASE_URL, "REDIS_HOST": REDIS_HOST, "REDIS_PORT": str(REDIS_PORT), "PGTZ": "UTC"})
        env.update(env_overrides)
        (STATE_DIR / "log").mkdir(parents=True, exist_ok=True)
        self.log_path = STATE_DIR / "log" / f"aux-{name}-{self.port}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [RUNFEED_BIN, "serve", "--workers", "0", "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", f"127.0.0.1:{status_port}",
             "--hold-ms", "4000", "--log-level", "debug"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"throwaway worker exited ({self.proc.returncode}); log: {self.log_path}")
            try:
                socket.create_connection(self.addr, timeout=0.5).close()
                return True
            except OSError:
                return False

        def status_up():
            try:
                return requests.get(self.metrics_url, timeout=1).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_until(listening, 20, 0.05, f"the throwaway worker to listen on {self.addr}")
            wait_until(status_up, 10, 0.05, f"the throwaway worker's {self.metrics_url}")
        except BaseException:
            self.stop()
            raise

    def get(self, path, params=None, **kw):
        return fcgi_get(self.addr, path, params=params, **kw)

    def metrics(self):
        r = requests.get(self.metrics_url, timeout=5)
        assert r.status_code == 200
        return parse_metrics(r.text)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the worker drains and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------------------
# One live poll on every worker
# --------------------------------------------------------------------------------------

HELD_RUN = 'runfeed_held_polls{kind="run"}'


def start_live_on_each_worker(run, offset, **kw):
    """Starts live polls of `run` until every worker holds one (usually WORKERS polls). nginx's least_conn
    sends a request to the worker holding the fewest connections, so polls started together may pile onto one
    worker; started one at a time, each after the previous one is held, they spread over the workers."""
    futures = []
    start = [metric(s, HELD_RUN) for s in worker_metrics()]
    per_worker = []
    # A request still in flight from an earlier test counts in least_conn too (a tie then falls back to
    # round-robin): keep adding polls, one at a time, until every worker holds one (every poll gets the change).
    for _ in range(4 * WORKERS):
        before = metric_sum(worker_metrics(), HELD_RUN)
        futures.append(start_live(run, offset, **kw))
        wait_until(lambda: metric_sum(worker_metrics(), HELD_RUN) >= before + 1, 5, what="the poll to be held")
        per_worker = [metric(s, HELD_RUN) - b for s, b in zip(worker_metrics(), start)]
        if all(n >= 1 for n in per_worker):
            return futures
    raise AssertionError(f"polls not spread over the workers (new held polls per worker): {per_worker}")
