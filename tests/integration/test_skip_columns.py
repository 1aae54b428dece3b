"""skipColumns: query parameter and the JWT `realtime.skipColumns` claim."""

import requests

from conftest import (
    API_KEY, COLUMNS, ENV_ID, FULL_SCHEMA, RESERVED_COLUMNS, assert_feed_headers, expected_body, get, headers, jwt_claims,
    live, make_run, mint_jwt, offset_of, run_url, schema_without,
)


def test_query_skip_columns_trimmed_unknown_ignored_reserved_kept():
    run = make_run(metadata='{"m":1}', output='{"o":1}', tags=["t"])
    q = " payload ,output,, bogus ,runTags,id,status,createdAt,updatedAt,friendlyId,taskIdentifier,PAYLOAD"
    r = get(run_url(run.friendly_id), params={"skipColumns": q})
    skip = {"payload", "output", "runTags"}
    assert_feed_headers(r, live_response=False, schema=schema_without(skip))
    assert r.text == expected_body(run.friendly_id, "insert", skip=skip)
    value = r.json()[0]["value"]
    assert list(value.keys()) == [c for c in COLUMNS if c not in skip]
    assert RESERVED_COLUMNS <= set(value.keys())
    assert '"payload"' not in r.headers["electric-schema"] and '"runTags"' not in r.headers["electric-schema"]


def test_only_reserved_or_unknown_entries_skip_nothing():
    run = make_run()
    r = get(run_url(run.friendly_id), params={"skipColumns": "id,status,createdAt,updatedAt,friendlyId,taskIdentifier,nope,"})
    assert r.headers["electric-schema"] == FULL_SCHEMA
    assert r.text == expected_body(run.friendly_id, "insert")


def test_skip_columns_apply_to_live_responses():
    run = make_run(metadata='{"m":1}')
    u, _ = offset_of(get(run_url(run.friendly_id)))
    r = live(run, f"{u - 1}_0", params={"skipColumns": "metadata,error,realtimeStreams"})
    skip = {"metadata", "error", "realtimeStreams"}
    assert_feed_headers(r, live_response=True)
    assert r.text == expected_body(run.friendly_id, "update", skip=skip)


def test_jwt_claim_overrides_the_query():
    run = make_run(metadata='{"m":1}')
    token = mint_jwt(jwt_claims(scopes=["read:runs"], realtime={"skipColumns": ["metadata", " ttl ", "id"]}), API_KEY)
    r = get(run_url(run.friendly_id), params={"skipColumns": "payload,output"}, token=token)
    skip = {"metadata", "ttl"}
    assert r.status_code == 200, r.text
    assert r.headers["electric-schema"] == schema_without(skip)
    assert r.text == expected_body(run.friendly_id, "insert", skip=skip)


def test_empty_jwt_claim_still_overrides_the_query():
    run = make_run()
    token = mint_jwt(jwt_claims(scopes=["read:runs"], realtime={"skipColumns": []}), API_KEY)
    r = get(run_url(run.friendly_id), params={"skipColumns": "payload,output"}, token=token)
    assert r.status_code == 200, r.text
    assert r.headers["electric-schema"] == FULL_SCHEMA
    assert r.text == expected_body(run.friendly_id, "insert")


def test_jwt_without_the_claim_uses_the_query():
    run = make_run()
    token = mint_jwt(jwt_claims(sub=ENV_ID, scopes=["read:runs"]), API_KEY)
    r = get(run_url(run.friendly_id), params={"skipColumns": "payload"}, token=token)
    assert r.headers["electric-schema"] == schema_without({"payload"})
    assert r.text == expected_body(run.friendly_id, "insert", skip={"payload"})


def test_raw_commas_and_plus_spaces_in_the_query():
    run = make_run()
    r = requests.get(run_url(run.friendly_id) + "?skipColumns=+payload+,output%20,%20ttl&log=full",
                     headers=headers(), timeout=10)
    skip = {"payload", "output", "ttl"}
    assert r.headers["electric-schema"] == schema_without(skip)
    assert r.text == expected_body(run.friendly_id, "insert", skip=skip)
