"""Authentication and scopes: secret keys, preview branches, public access tokens."""

import time

import pytest

from conftest import (
    API_KEY, BRANCH_ENV_ID, BRANCH_RUN, DEMO_RUN, DEV_BRANCH_ENV_ID, DEV_BRANCH_RUN, ENV_ID, EXPIRED_KEY, GONE_ENV_ID, GONE_PROJECT_KEY, GRACE_KEY,
    OTHER_API_KEY, PREVIEW_API_KEY, PREVIEW_ENV_ID, PROD_RUN, b64url, expected_body, get, jwt_claims, mint_jwt,
    run_url,
)

MISSING = '{"error":"Invalid or Missing API key"}'
INVALID_KEY = '{"error":"Invalid API key"}'
BRANCH_REQUIRED = '{"error":"x-trigger-branch header required for preview env"}'
NO_BRANCH = '{"error":"No matching branch env"}'
PAT_INVALID = '{"error":"Public Access Token is invalid"}'
PAT_UNKNOWN = '{"error":"Invalid Public Access Token"}'
UNAUTHORIZED = '{"error":"Unauthorized","code":"unauthorized","param":"access_token","type":"authorization"}'
NOT_FOUND = '{"error":"Not found"}'


def assert_error(r, status, body):
    assert (r.status_code, r.text) == (status, body)
    assert r.headers.get("content-type") == "application/json"
    assert "electric-handle" not in r.headers


# ---- secret keys ----------------------------------------------------------------------

@pytest.mark.parametrize("auth", [None, "", "Bearer", "Bearer ", "Bearer    "])
def test_missing_token(auth):
    extra = {"Authorization": auth} if auth is not None else None
    r = get(run_url(DEMO_RUN), token=None, extra=extra)
    assert_error(r, 401, MISSING)


def test_unknown_key():
    assert_error(get(run_url(DEMO_RUN), token="tr_dev_NotAKey0123456789abc"), 401, INVALID_KEY)


def test_key_is_trimmed_and_bearer_prefix_optional():
    r = get(run_url(DEMO_RUN), token=None, extra={"Authorization": "Bearer   " + API_KEY + "  "})
    assert r.status_code == 200
    r = get(run_url(DEMO_RUN), token=None, extra={"Authorization": API_KEY})
    assert r.status_code == 200


def test_revoked_key_inside_grace_period_works():
    r = get(run_url(DEMO_RUN), token=GRACE_KEY)
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEMO_RUN, "insert")


def test_revoked_key_past_grace_period_is_rejected():
    assert_error(get(run_url(DEMO_RUN), token=EXPIRED_KEY), 401, INVALID_KEY)


def test_key_of_soft_deleted_project_is_rejected():
    assert_error(get(run_url(DEMO_RUN), token=GONE_PROJECT_KEY), 401, INVALID_KEY)


def test_key_of_another_environment_gets_404():
    r = get(run_url(DEMO_RUN), token=OTHER_API_KEY)
    assert_error(r, 404, NOT_FOUND)
    assert r.headers.get("x-should-retry") == "false"
    # ...while it sees its own environment's run.
    r = get(run_url(PROD_RUN), token=OTHER_API_KEY)
    assert r.status_code == 200
    assert r.text == expected_body(PROD_RUN, "insert")


def test_publishable_key_is_rejected():
    assert_error(get(run_url(DEMO_RUN), token="pk_dev_abcdefghijklmnopqrst"), 401, INVALID_KEY)


# ---- preview branches -----------------------------------------------------------------

def test_preview_key_without_branch_header():
    assert_error(get(run_url(BRANCH_RUN), token=PREVIEW_API_KEY), 401, BRANCH_REQUIRED)


@pytest.mark.parametrize("branch", ["refs/heads/feature-x", "feature-x", "refs/remotes/feature-x"])
def test_preview_key_with_branch_acts_as_the_branch_env(branch):
    r = get(run_url(BRANCH_RUN), token=PREVIEW_API_KEY, extra={"x-trigger-branch": branch})
    assert r.status_code == 200, r.text
    assert r.text == expected_body(BRANCH_RUN, "insert")
    # The branch env is not the demo env: the demo run is not visible.
    r = get(run_url(DEMO_RUN), token=PREVIEW_API_KEY, extra={"x-trigger-branch": branch})
    assert_error(r, 404, NOT_FOUND)


@pytest.mark.parametrize("branch", ["no-such-branch", "old-branch"])
def test_preview_key_with_unknown_or_archived_branch(branch):
    r = get(run_url(BRANCH_RUN), token=PREVIEW_API_KEY, extra={"x-trigger-branch": branch})
    assert_error(r, 401, NO_BRANCH)


def test_preview_key_with_unsupported_refs_prefix_counts_as_missing():
    r = get(run_url(BRANCH_RUN), token=PREVIEW_API_KEY, extra={"x-trigger-branch": "refs/weird/feature-x"})
    assert_error(r, 401, BRANCH_REQUIRED)


# ---- public access tokens ---------------------------------------------------------------

def pat(scopes=("read:runs",), key=API_KEY, alg="HS256", **claims):
    return mint_jwt(jwt_claims(scopes=scopes, **claims), key, alg=alg)


def test_jwt_read_runs():
    r = get(run_url(DEMO_RUN), token=pat(["read:runs"]))
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEMO_RUN, "insert")


def test_jwt_scoped_to_this_run():
    assert get(run_url(DEMO_RUN), token=pat([f"read:runs:{DEMO_RUN}"])).status_code == 200


def test_jwt_scoped_to_another_run_is_forbidden():
    r = get(run_url(DEMO_RUN), token=pat(["read:runs:run_demo0002"]))
    assert_error(r, 403, UNAUTHORIZED)


@pytest.mark.parametrize("scope,run", [
    ("read:tags:demo", "run_demo0003"),
    ("read:tags:user:42", "run_demo0001"),          # the id may contain colons
    ("read:tasks:send-email", "run_demo0004"),
    ("read:batch:batch_demo0001", "run_demo0007"),
    ("read:all", "run_demo0003"),
    ("admin", "run_demo0003"),
    ("*:runs", "run_demo0003"),
])
def test_jwt_scopes_granting_the_run(scope, run):
    r = get(run_url(run), token=pat([scope]))
    assert r.status_code == 200, (scope, r.text)


@pytest.mark.parametrize("scopes", [
    [], ["read:tags:nope"], ["write:runs"], ["read:tasks:hello-world"], ["read:runs:"], ["admin:runs:x"],
])
def test_jwt_scopes_not_granting_the_run(scopes):
    # run_demo0004: task send-email, no tags, no batch.
    r = get(run_url("run_demo0004"), token=pat(scopes))
    assert_error(r, 403, UNAUTHORIZED)


def test_jwt_scopes_not_a_list_count_as_empty():
    r = get(run_url(DEMO_RUN), token=mint_jwt(dict(jwt_claims(), scopes="read:runs"), API_KEY))
    assert_error(r, 403, UNAUTHORIZED)


@pytest.mark.parametrize("case", [
    "wrong-signature", "wrong-iss", "wrong-aud", "expired", "exp-now", "nbf-future", "alg-none", "alg-hs512",
    "other-env-key",
])
def test_invalid_jwt(case):
    now = int(time.time())
    if case == "wrong-signature":
        token = pat(key="tr_dev_NotTheKey0123456789a")
    elif case == "wrong-iss":
        token = pat(iss="https://evil.example")
    elif case == "wrong-aud":
        token = pat(aud="https://other.trigger.dev")
    elif case == "expired":
        token = pat(exp=now - 60)
    elif case == "exp-now":
        token = pat(exp=now - 1)
    elif case == "nbf-future":
        token = pat(nbf=now + 600)
    elif case == "alg-none":
        token = pat(alg="none")
    elif case == "alg-hs512":
        token = pat(alg="HS512")
    else:
        token = pat(key=OTHER_API_KEY)
    assert_error(get(run_url(DEMO_RUN), token=token), 401, PAT_INVALID)


def test_jwt_tampered_payload_is_invalid():
    token = pat(["read:runs:run_demo0002"])
    h, _, sig = token.split(".")
    forged = b64url('{"sub":"%s","pub":true,"scopes":["read:runs"],"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev"}' % ENV_ID)
    assert_error(get(run_url(DEMO_RUN), token=f"{h}.{forged}.{sig}"), 401, PAT_INVALID)


def test_jwt_audience_array_is_accepted():
    r = get(run_url(DEMO_RUN), token=pat(aud=["https://x.example", "https://api.trigger.dev"]))
    assert r.status_code == 200, r.text


def test_jwt_unknown_subject():
    token = pat(sub="cmnosuchenv00000000000000")
    assert_error(get(run_url(DEMO_RUN), token=token), 401, PAT_UNKNOWN)


def test_jwt_without_subject():
    claims = jwt_claims()
    del claims["sub"]
    assert_error(get(run_url(DEMO_RUN), token=mint_jwt(claims, API_KEY)), 401, PAT_UNKNOWN)


def test_jwt_of_soft_deleted_project():
    token = pat(sub=GONE_ENV_ID, key=GONE_PROJECT_KEY)
    assert_error(get(run_url(DEMO_RUN), token=token), 401, PAT_UNKNOWN)


def test_token_without_pub_is_a_secret_key():
    claims = jwt_claims()
    del claims["pub"]
    assert_error(get(run_url(DEMO_RUN), token=mint_jwt(claims, API_KEY)), 401, INVALID_KEY)


def test_branch_jwt_is_signed_with_the_parent_key():
    ok = pat(sub=BRANCH_ENV_ID, key=PREVIEW_API_KEY)
    r = get(run_url(BRANCH_RUN), token=ok)
    assert r.status_code == 200, r.text
    assert r.text == expected_body(BRANCH_RUN, "insert")
    own_key = pat(sub=BRANCH_ENV_ID, key="tr_preview_FeatXKey0123456789ab")
    assert_error(get(run_url(BRANCH_RUN), token=own_key), 401, PAT_INVALID)


def test_jwt_of_parent_preview_env_does_not_see_branch_runs():
    r = get(run_url(BRANCH_RUN), token=pat(sub=PREVIEW_ENV_ID, key=PREVIEW_API_KEY))
    assert_error(r, 404, NOT_FOUND)


# ---- public access tokens signed with a revoked key in its grace period ---------------------

def test_jwt_signed_with_revoked_key_in_grace_is_accepted():
    r = get(run_url(DEMO_RUN), token=pat(key=GRACE_KEY))
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEMO_RUN, "insert")


def test_jwt_signed_with_revoked_key_past_grace_is_rejected():
    assert_error(get(run_url(DEMO_RUN), token=pat(key=EXPIRED_KEY)), 401, PAT_INVALID)


def test_expired_jwt_signed_with_grace_key_is_rejected():
    token = pat(key=GRACE_KEY, exp=int(time.time()) - 60)
    assert_error(get(run_url(DEMO_RUN), token=token), 401, PAT_INVALID)


# ---- x-trigger-branch for DEVELOPMENT keys ----------------------------------------------------

@pytest.mark.parametrize("branch", ["dev-feature", "refs/heads/dev-feature", "refs/tags/dev-feature"])
def test_dev_key_with_branch_acts_as_the_branch_env(branch):
    r = get(run_url(DEV_BRANCH_RUN), extra={"x-trigger-branch": branch})
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEV_BRANCH_RUN, "insert")
    r = get(run_url(DEMO_RUN), extra={"x-trigger-branch": branch})
    assert_error(r, 404, NOT_FOUND)


@pytest.mark.parametrize("extra", [None, {"x-trigger-branch": "default"}, {"x-trigger-branch": ""},
                                   {"x-trigger-branch": "refs/weird/dev-feature"}])
def test_dev_key_without_branch_is_the_root_env(extra):
    r = get(run_url(DEMO_RUN), extra=extra)
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEMO_RUN, "insert")
    assert_error(get(run_url(DEV_BRANCH_RUN), extra=extra), 404, NOT_FOUND)


@pytest.mark.parametrize("branch", ["no-such-branch", "refs/heads/"])
def test_dev_key_with_unknown_branch(branch):
    assert_error(get(run_url(DEMO_RUN), extra={"x-trigger-branch": branch}), 401, NO_BRANCH)


def test_prod_key_ignores_branch_header():
    r = get(run_url(PROD_RUN), token=OTHER_API_KEY, extra={"x-trigger-branch": "no-such-branch"})
    assert r.status_code == 200, r.text


def test_jwt_ignores_branch_header():
    r = get(run_url(DEMO_RUN), token=pat(), extra={"x-trigger-branch": "no-such-branch"})
    assert r.status_code == 200, r.text
    r = get(run_url(DEV_BRANCH_RUN), token=pat(sub=DEV_BRANCH_ENV_ID, key=API_KEY))
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEV_BRANCH_RUN, "insert")
