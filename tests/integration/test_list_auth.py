"""Batch feed snapshots and list-route authorization: old batches resolve
(no 7-day window), batches of other environments are a retryable 404, and public access tokens are
checked against the route's resources."""

import unicodedata

import pytest

from conftest import (
    API_KEY, DEMO_BATCH, ENV_ID, OLD_BATCH, OTHER_API_KEY, UP_TO_DATE_BODY, assert_feed_headers, batch_snapshot,
    batch_url, ch_sync, get, jwt_claims, list_body, make_batch, make_env, make_run, mint_jwt, run_url, runs_list_url,
    tag_snapshot, unique_tag,
)

NOT_FOUND = '{"error":"Not found"}'
UNAUTHORIZED = '{"error":"Unauthorized","code":"unauthorized","param":"access_token","type":"authorization"}'


def pat(scopes, key=API_KEY, **claims):
    return mint_jwt(jwt_claims(scopes=scopes, **claims), key)


def assert_error(r, status, body):
    assert (r.status_code, r.text) == (status, body)
    assert r.headers.get("content-type") == "application/json"
    assert "electric-handle" not in r.headers


# ---- batch feed ------------------------------------------------------------------------------------

def test_old_batch_returns_its_runs():
    """batch_demo0002 is 30 days old: outside upstream's implicit 7-day ClickHouse window, which runfeed does not apply."""
    r = batch_snapshot(OLD_BATCH)
    assert_feed_headers(r, live_response=False)
    assert r.headers["electric-up-to-date"] == ""
    assert "x-runfeed-created-at-floor" not in r.headers
    # Both created at the same instant: id DESC.
    assert r.text == list_body(["run_demo0022", "run_demo0021"], "insert")


def test_batch_snapshot_lists_only_its_members_newest_first():
    b = make_batch(age="40 days")
    m1 = make_run(batch_id=b.id, tags=["bm"], age="40 days")
    m2 = make_run(batch_id=b.id, tags=None, age="10 days", status="EXECUTING")
    m3 = make_run(batch_id=b.id, tags=["bm", "z"], age="2 minutes", status="COMPLETED_SUCCESSFULLY", completed=True)
    make_run(tags=["bm"], age="1 minute")                          # not in the batch
    other_env, _ = make_env()
    make_run(env_id=other_env, batch_id=b.id, age="1 minute")      # the batch id, but another env
    ch_sync(ENV_ID)
    ch_sync(other_env)
    r = batch_snapshot(b.friendly_id)
    assert_feed_headers(r, live_response=False)
    assert r.text == list_body([m3, m2, m1], "insert")
    assert r.headers["electric-handle"].startswith(f"batch_{b.id}_")
    # An empty batch: just up-to-date, offset 0_<seq>.
    empty = make_batch()
    r = batch_snapshot(empty.friendly_id)
    assert r.text == UP_TO_DATE_BODY
    assert r.headers["electric-offset"].startswith("0_")


def test_batch_of_another_environment_is_a_retryable_404():
    for key, batch in ((OTHER_API_KEY, OLD_BATCH), (OTHER_API_KEY, DEMO_BATCH), (API_KEY, "batch_doesnotexist00")):
        r = get(batch_url(batch), token=key)
        assert_error(r, 404, NOT_FOUND)
        assert r.headers.get("x-should-retry") == "true"
        r = get(batch_url(batch), token=key, params={"live": "true", "handle": "batch_x_1_deadbeef", "offset": "1_0"})
        assert_error(r, 404, NOT_FOUND)
        assert r.headers.get("x-should-retry") == "true"
    # Looked up by friendly id only: the internal id does not name the batch.
    assert_error(get(batch_url("cmdemobatch00000000000001")), 404, NOT_FOUND)


# ---- public access tokens --------------------------------------------------------------------------

@pytest.mark.parametrize("scopes", [
    [f"read:batch:{DEMO_BATCH}"], ["read:runs"], ["read:batch"], ["read:all"], ["admin"],
    ["read:tags:x", f"read:batch:{DEMO_BATCH}"],
])
def test_jwt_scopes_granting_the_batch(scopes):
    r = get(batch_url(DEMO_BATCH), token=pat(scopes))
    assert r.status_code == 200, (scopes, r.text)
    assert r.text == list_body(["run_demo0008", "run_demo0007"], "insert")


@pytest.mark.parametrize("scopes", [
    ["read:tags:x"], [f"read:batch:{OLD_BATCH}"], ["read:runs:run_demo0007"], ["read:tasks:batch-child"],
    ["read:tags:demo"], ["write:batch"], ["read:runs:"], [],
])
def test_jwt_scopes_not_granting_the_batch(scopes):
    """Run-level grants (a member run, its task or tag) do not open the batch feed."""
    assert_error(get(batch_url(DEMO_BATCH), token=pat(scopes)), 403, UNAUTHORIZED)


def test_batch_404_comes_before_the_scope_check():
    r = get(batch_url("batch_doesnotexist00"), token=pat(["read:tags:x"]))
    assert_error(r, 404, NOT_FOUND)


def test_jwt_tag_scopes_on_the_tag_route():
    t, other = unique_tag("t"), unique_tag("o")
    both = make_run(tags=[t, other], age="2 minutes")
    make_run(tags=[t], age="3 minutes")
    ch_sync(ENV_ID)
    expected = list_body([both], "insert")
    # read:tags:<t> may subscribe to tags=<t>,other; the feed still requires both tags.
    for scopes in ([f"read:tags:{t}"], [f"read:tags:{other}"], ["read:runs"], ["read:tags"], ["read:all"],
                   ["admin"], ["read:tags:nope", f"read:tags:{other}"]):
        r = tag_snapshot([t, other], token=pat(scopes))
        assert r.text == expected, scopes
    for scopes in (["read:runs:run_x"], [f"read:runs:{both.friendly_id}"], ["read:tags:nope"],
                   [f"read:tasks:it-task"], [f"read:batch:{DEMO_BATCH}"], ["write:tags"], []):
        r = get(runs_list_url(), params={"tags": f"{t},{other}"}, token=pat(scopes))
        assert_error(r, 403, UNAUTHORIZED)
    # No tags: only the runs / tags collections open the unfiltered feed.
    assert_error(get(runs_list_url(), token=pat([f"read:tags:{t}"])), 403, UNAUTHORIZED)
    assert get(runs_list_url(), token=pat(["read:tags"]), params={"createdAt": "1m"}).status_code == 200


def test_jwt_of_another_environment_sees_its_own_batch_space():
    r = get(batch_url(OLD_BATCH), token=pat(["read:runs"], key=OTHER_API_KEY, sub="cmdemoenv0000000000000002"))
    assert_error(r, 404, NOT_FOUND)
    assert r.headers.get("x-should-retry") == "true"


def test_tag_scopes_compare_tags_byte_for_byte():
    """Tags are distinct byte strings everywhere (Postgres, ClickHouse, the feed's filter): "café" composed
    (NFC) and decomposed (NFD) are two tags. A token scoped to one must not open the other's feed, nor a run
    tagged only with the other (upstream compares scope ids with ===)."""
    sfx = unique_tag("")
    nfc, nfd = unicodedata.normalize("NFC", f"café{sfx}"), unicodedata.normalize("NFD", f"café{sfx}")
    assert nfc != nfd
    make_run(tags=[nfc], age="2 minutes")
    decomposed = make_run(tags=[nfd], age="3 minutes")
    ch_sync(ENV_ID)
    tok = pat([f"read:tags:{nfc}"])
    assert tag_snapshot([nfc], token=tok).status_code == 200
    r = get(runs_list_url(), params={"tags": nfd}, token=tok)
    assert_error(r, 403, UNAUTHORIZED)
    assert_error(get(run_url(decomposed.friendly_id), token=tok), 403, UNAUTHORIZED)
