"""Additional environment API keys (`tr_<env>_sk_…`, the `"ApiKey"` table): found by the SHA-256 of the key,
with their own scopes, revocation, expiry and `"lastUsedAt"`; branch rules as for root keys; off with
RUNFEED_ADDITIONAL_API_KEYS=0. Seed keys: db/postgres/seed-demo.sql."""

import hashlib
import secrets
import string

import pytest
import requests

from conftest import (
    API_KEY, DEMO_BATCH, DEMO_RUN, DEV_BRANCH_RUN, ENV_ID, PROD_RUN, expected_body, get,
    make_run, psql, run_url, runs_list_url, batch_url, wait_until,
)
from pools import procs  # noqa: F401 (fixture)
from test_auth import INVALID_KEY, NO_BRANCH, NOT_FOUND, UNAUTHORIZED, assert_error

ADMIN_KEY = "tr_dev_sk_DemoAdminKey0123456789ab"
ONE_RUN_KEY = "tr_dev_sk_DemoReadRunsKey012345678"        # scopes {read:runs:run_demo0001}
NO_SCOPE_KEY = "tr_dev_sk_DemoNoScopeKey0123456789"
REVOKED_KEY = "tr_dev_sk_DemoRevokedKey0123456789"
EXPIRED_KEY = "tr_dev_sk_DemoExpiredKey0123456789"
PROD_ADMIN_KEY = "tr_prod_sk_ProdAdminKey0123456789ab"



def new_key(env_id, scopes=("admin",), slug="dev", key=None, revoked=False, expires_sql="NULL"):
    """Inserts an additional key for `env_id` the way the webapp stores it (hash only) and returns the key."""
    alphabet = string.ascii_letters + string.digits
    key = key or f"tr_{slug}_sk_" + "".join(secrets.choice(alphabet) for _ in range(24))
    digest = hashlib.sha256(key.encode()).hexdigest()
    scopes_sql = "ARRAY[" + ",".join("'" + s.replace("'", "''") + "'" for s in scopes) + "]::text[]"
    psql(f"""INSERT INTO "ApiKey" ("id", "name", "keyHash", "lastFour", "runtimeEnvironmentId", "scopes",
                                    "expiresAt", "revokedAt")
             VALUES ('k_{digest[:20]}', 'test', '{digest}', '{key[-4:]}', '{env_id}', {scopes_sql},
                     {expires_sql}, {"(now() AT TIME ZONE 'utc')" if revoked else "NULL"})""")
    return key


def last_used(key):
    digest = hashlib.sha256(key.encode()).hexdigest()
    rows = psql(f"""SELECT COALESCE("lastUsedAt"::text, '-') FROM "ApiKey" WHERE "keyHash" = '{digest}'""")
    assert len(rows) == 1, rows
    return "" if rows[0] == "-" else rows[0]


# ---- lookups ---------------------------------------------------------------------------------------

def test_admin_key_reads_the_run_like_the_root_key():
    r = get(run_url(DEMO_RUN), token=ADMIN_KEY)
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEMO_RUN, "insert")


def test_admin_key_reads_tag_and_batch_feeds():
    assert get(runs_list_url(), token=ADMIN_KEY, params={"tags": "demo-set"}).status_code == 200
    assert get(batch_url(DEMO_BATCH), token=ADMIN_KEY).status_code == 200


def test_keys_are_found_by_the_sha256_postgres_computes():
    """The seed stores encode(sha256(key), 'hex') computed by PostgreSQL: the worker's hash must equal it."""
    digest, = psql("""SELECT "keyHash" FROM "ApiKey" WHERE "id" = 'cmdemoapik000000000000001'""")
    assert digest == hashlib.sha256(ADMIN_KEY.encode()).hexdigest()


@pytest.mark.parametrize("key", [REVOKED_KEY, EXPIRED_KEY, "tr_dev_sk_NotStoredKey01234567890ab"])
def test_revoked_expired_and_unknown_keys_are_invalid(key):
    assert_error(get(run_url(DEMO_RUN), token=key), 401, INVALID_KEY)


def test_key_revoked_while_in_use_stops_working():
    key = new_key(ENV_ID)
    assert get(run_url(DEMO_RUN), token=key).status_code == 200
    digest = hashlib.sha256(key.encode()).hexdigest()
    psql(f"""UPDATE "ApiKey" SET "revokedAt" = now() AT TIME ZONE 'utc' WHERE "keyHash" = '{digest}'""")
    # Within the auth cache's lifetime (RUNFEED_AUTH_CACHE_TTL_MS, 10 s) the key stops working.
    wait_until(lambda: get(run_url(DEMO_RUN), token=key).status_code == 401, 15, 0.25, "the revoked key to be refused")


def test_key_of_another_environment_sees_nothing_of_this_one():
    assert get(run_url(PROD_RUN), token=PROD_ADMIN_KEY).status_code == 200
    r = get(run_url(DEMO_RUN), token=PROD_ADMIN_KEY)
    assert r.status_code == 404 and r.text == NOT_FOUND


def test_root_format_key_never_matches_an_additional_key_row():
    """A stored hash of a root-format string authenticates nothing: root keys use the root lookup only."""
    fake_root = "tr_dev_" + "".join(secrets.choice(string.ascii_letters) for _ in range(20))
    new_key(ENV_ID, key=fake_root)
    assert_error(get(run_url(DEMO_RUN), token=fake_root), 401, INVALID_KEY)


# ---- scopes ----------------------------------------------------------------------------------------

def test_scoped_key_reads_only_what_its_scopes_name():
    r = get(run_url(DEMO_RUN), token=ONE_RUN_KEY)
    assert r.status_code == 200 and r.text == expected_body(DEMO_RUN, "insert")
    other = make_run(ENV_ID)
    assert_error(get(run_url(other.friendly_id), token=ONE_RUN_KEY), 403, UNAUTHORIZED)
    assert_error(get(runs_list_url(), token=ONE_RUN_KEY, params={"tags": "demo-set"}), 403, UNAUTHORIZED)
    assert_error(get(batch_url(DEMO_BATCH), token=ONE_RUN_KEY), 403, UNAUTHORIZED)


def test_key_without_scopes_authorizes_nothing():
    assert_error(get(run_url(DEMO_RUN), token=NO_SCOPE_KEY), 403, UNAUTHORIZED)


def test_tag_scoped_key_reads_the_tag_feed():
    key = new_key(ENV_ID, scopes=("read:tags:demo-set",))
    assert get(runs_list_url(), token=key, params={"tags": "demo-set"}).status_code == 200
    assert_error(get(runs_list_url(), token=key, params={"tags": "other-tag"}), 403, UNAUTHORIZED)


# ---- branches --------------------------------------------------------------------------------------

def test_key_of_the_dev_root_env_follows_the_branch_header():
    r = get(run_url(DEV_BRANCH_RUN), token=ADMIN_KEY, extra={"x-trigger-branch": "dev-feature"})
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEV_BRANCH_RUN, "insert")
    # Without the header (or with `default`) the key acts as the root env, which does not hold that run.
    assert get(run_url(DEV_BRANCH_RUN), token=ADMIN_KEY).status_code == 404
    assert get(run_url(DEMO_RUN), token=ADMIN_KEY, extra={"x-trigger-branch": "default"}).status_code == 200
    assert_error(get(run_url(DEMO_RUN), token=ADMIN_KEY, extra={"x-trigger-branch": "no-such-branch"}), 401, NO_BRANCH)


# ---- lastUsedAt ------------------------------------------------------------------------------------

def test_use_is_recorded_and_failed_uses_are_not():
    key = new_key(ENV_ID)
    revoked = new_key(ENV_ID, revoked=True)
    assert_error(get(run_url(DEMO_RUN), token=key, extra={"x-trigger-branch": "no-such-branch"}), 401, NO_BRANCH)
    assert_error(get(run_url(DEMO_RUN), token=revoked), 401, INVALID_KEY)
    assert last_used(key) == ""
    assert get(run_url(DEMO_RUN), token=key).status_code == 200
    wait_until(lambda: last_used(key) != "", 10, 0.1, "lastUsedAt to be recorded")
    # Recorded after the refused uses: a record of theirs would be there by now.
    assert last_used(revoked) == ""


# ---- the setting -----------------------------------------------------------------------------------

def test_lookup_off_refuses_every_additional_key_but_not_root_keys(procs):
    pool = procs.pool("nokeys", workers=1, env={"RUNFEED_ADDITIONAL_API_KEYS": "0"})
    ng = procs.nginx({"main": [pool.port]})
    base = ng.url["main"]
    r = requests.get(run_url(DEMO_RUN, base=base), headers={"Authorization": "Bearer " + ADMIN_KEY}, timeout=10)
    assert (r.status_code, r.text) == (401, INVALID_KEY)
    r = requests.get(run_url(DEMO_RUN, base=base), headers={"Authorization": "Bearer " + API_KEY}, timeout=10)
    assert r.status_code == 200, r.text
