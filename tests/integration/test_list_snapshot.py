"""Tag-list snapshots (`GET /realtime/v1/runs?tags=…`): membership, order, headers, the
createdAt window (clamp, bucketing, inclusive floor) and tag validation. Every test makes its own runs
under unique tags (or in a fresh environment) and copies them into ClickHouse before snapshotting."""

import json
import re
import unicodedata

import pytest

from conftest import (
    API_KEY, API_VERSION, BUCKET_MS, DEMO_TAG, DEMO_TAG2, ENV_ID, LIST_LIMIT, MAX_AGE_MS, NOW, OTHER_API_KEY,
    UP_TO_DATE_BODY, assert_feed_headers, ch_sync, db_list_ids, get, jwt_claims, list_body, list_ids, list_rows,
    lit, make_env, make_run, mint_jwt, ms_to_ts, psql, runs_list_url, schema_without, tag_snapshot, unique_suffix,
    unique_tag,
)

HANDLE_RE = re.compile(r"^runs_(\d+)_(\d+)_[0-9a-f]{8}$")


def db_now_ms():
    return int(psql("SELECT (extract(epoch from now()) * 1000)::bigint")[0])


def floor_of(r):
    """The x-runfeed-created-at-floor header, checked against the handle that pins it."""
    f = int(r.headers["x-runfeed-created-at-floor"])
    m = HANDLE_RE.match(r.headers["electric-handle"])
    assert m, r.headers["electric-handle"]
    assert int(m.group(1)) == f, (r.headers["electric-handle"], f)
    return f


# ---- membership, order, headers ----------------------------------------------------------------

def test_all_tags_required_order_independent_newest_first():
    t1, t2 = unique_tag("a"), unique_tag("b")
    # Distinct minutes: "newest first" is unambiguous whatever the resolver's time resolution.
    r3 = make_run(tags=[t1, t2], age="3 minutes")
    r9 = make_run(tags=["x", t2, t1, "y"], age="9 minutes", status="EXECUTING", metadata='{"m":1}')
    r5 = make_run(tags=[t2, t1], age="5 minutes", status="COMPLETED_SUCCESSFULLY", output='{"o":1}', completed=True)
    only1 = make_run(tags=[t1], age="4 minutes")
    only2 = make_run(tags=[t2, "x"], age="6 minutes")
    ch_sync(ENV_ID)

    a = tag_snapshot([t1, t2])
    b = tag_snapshot([t2, t1])
    dup = tag_snapshot([t1, t2, t1])
    for r in (a, b, dup):
        assert_feed_headers(r, live_response=False)
        assert r.headers["electric-up-to-date"] == ""
        assert "x-runfeed-created-at-clamped" not in r.headers
        assert r.text == list_body([r3, r5, r9], "insert"), "rows, their order or their encoding differ"
        floor_of(r)
    # Offset: the newest updatedAt sent.
    assert int(a.headers["electric-offset"].split("_")[0]) == max(
        int(x) for x in psql(f'SELECT (extract(epoch from "updatedAt") * 1000)::bigint FROM "TaskRun" '
                              f'WHERE id IN ({lit(r3.id)}, {lit(r5.id)}, {lit(r9.id)})'))
    # Every snapshot is a new connection: its own handle.
    assert len({a.headers["electric-handle"], b.headers["electric-handle"], dup.headers["electric-handle"]}) == 3

    # One tag: the runs that carry it, whatever else they carry.
    assert list_ids(tag_snapshot([t1])) == [r3.id, only1.id, r5.id, r9.id]
    assert list_ids(tag_snapshot([t2])) == [r3.id, r5.id, only2.id, r9.id]
    assert tag_snapshot([t1, t2, "not-there-" + unique_suffix()]).text == UP_TO_DATE_BODY


def test_rows_within_one_second_are_newest_first():
    """Two runs created 800 ms apart in the same second; the newer one has the smaller id. Newest first
    means the newer one leads, whatever the ids (Postgres membership orders by createdAt ms)."""
    t = unique_tag()
    older, newer = make_run(tags=[t]), make_run(tags=[t])
    sec = int(psql("SELECT floor(extract(epoch from now()))::bigint * 1000 - 300000")[0])
    older_id, newer_id = "cmitzzzz" + unique_suffix() + "0", "cmitaaaa" + unique_suffix() + "0"  # 25 chars
    psql(f'''UPDATE "TaskRun" SET id = {lit(older_id)}, "createdAt" = {ms_to_ts(sec + 100)} WHERE id = {lit(older.id)};
             UPDATE "TaskRun" SET id = {lit(newer_id)}, "createdAt" = {ms_to_ts(sec + 900)} WHERE id = {lit(newer.id)};''')
    ch_sync(ENV_ID)
    assert db_list_ids(f'"runTags" @> ARRAY[{lit(t)}]') == [newer_id, older_id]
    r = tag_snapshot([t])
    assert list_ids(r) == [newer_id, older_id], "snapshot rows are not newest first within one second"


def test_skip_columns_api_version_and_legacy_header_names():
    t = unique_tag()
    a = make_run(tags=[t], age="2 minutes", status="DEQUEUED", metadata='{"m":1}', output='{"o":1}')
    b = make_run(tags=[t], age="3 minutes", status="EXECUTING")
    ch_sync(ENV_ID)
    skip = {"payload", "output"}
    r = tag_snapshot([t], params={"skipColumns": "payload, output,bogus"})
    assert_feed_headers(r, live_response=False, schema=schema_without(skip))
    assert r.text == list_body([a, b], "insert", skip=skip)
    assert r.json()[0]["value"]["status"] == "EXECUTING"          # DEQUEUED, no current API version
    r = tag_snapshot([t], api_version=API_VERSION)
    assert r.text == list_body([a, b], "insert", legacy_api=False)
    assert r.json()[0]["value"]["status"] == "DEQUEUED"
    legacy = tag_snapshot([t], modern=False)
    assert_feed_headers(legacy, live_response=False, legacy=True)
    assert legacy.text == list_body([a, b], "insert")
    # The JWT's realtime.skipColumns claim wins over the query.
    tok = mint_jwt(jwt_claims(scopes=["read:runs"], realtime={"skipColumns": ["metadata"]}), API_KEY)
    r = tag_snapshot([t], params={"skipColumns": "payload"}, token=tok)
    assert r.text == list_body([a, b], "insert", skip={"metadata"})
    assert r.headers["electric-schema"] == schema_without({"metadata"})


def test_runs_of_other_environments_never_show():
    r = tag_snapshot([DEMO_TAG, DEMO_TAG2])
    # Seed: 0012-0017 carry both tags (3-55 minutes old); 0018 / 0019 carry one; 0020 is 30 h old;
    # 0102 (same tags) is in the PRODUCTION env.
    assert r.text == list_body([f"run_demo00{n}" for n in range(12, 18)], "insert")
    prod = tag_snapshot([DEMO_TAG, DEMO_TAG2], token=OTHER_API_KEY)
    assert prod.text == list_body(["run_demoprod002"], "insert")


def test_no_tags_lists_every_run_of_the_environment_in_the_window():
    env_id, key = make_env()
    other_env, _ = make_env()
    runs = {
        "1m": make_run(env_id=env_id, tags=["x"], age="1 minute"),
        "2m": make_run(env_id=env_id, tags=None, age="2 minutes"),        # NULL runTags
        "3m": make_run(env_id=env_id, tags=[], age="3 minutes"),          # empty runTags
        "23h": make_run(env_id=env_id, tags=["y"], age="23 hours"),
        "30h": make_run(env_id=env_id, tags=["x"], age="30 hours"),       # outside any window
    }
    make_run(env_id=other_env, tags=["x"], age="1 minute")
    ch_sync(env_id)
    ch_sync(other_env)
    expected = [runs["1m"], runs["2m"], runs["3m"], runs["23h"]]
    for params in ({}, {"tags": ""}):
        r = get(runs_list_url(), params=params, token=key)
        assert_feed_headers(r, live_response=False)
        assert r.text == list_body(expected, "insert")
    assert list_ids(tag_snapshot(["x"], token=key)) == [runs["1m"].id]
    assert list_ids(tag_snapshot(None, created_at="2h", token=key)) == [x.id for x in expected[:3]]


def test_no_tags_is_bounded_to_the_newest_1000():
    env_id, key = make_env()
    sfx = unique_suffix()[:12]
    n = LIST_LIMIT + 3
    # One run per second, newest first by construction (ids sort the other way round).
    psql(f'''INSERT INTO "TaskRun" ("id","friendlyId","taskIdentifier","status","createdAt","updatedAt","payload",
                                     "runtimeEnvironmentId","projectId","runTags")
             SELECT 'cmb' || {lit(sfx)} || lpad(i::text, 10, '0'), 'run_b' || {lit(sfx)} || i, 'bulk', 'PENDING',
                    {NOW} - (i + 10) * interval '1 second', {NOW} - (i + 10) * interval '1 second', '{{}}',
                    {lit(env_id)}, "projectId", ARRAY['bulk']
             FROM generate_series(1, {n}) AS i, (SELECT "projectId" FROM "RuntimeEnvironment" WHERE id = {lit(env_id)}) p''')
    ch_sync(env_id)
    expected = db_list_ids(f'"runtimeEnvironmentId" = {lit(env_id)}', limit=LIST_LIMIT)
    assert len(expected) == LIST_LIMIT
    for tags in (None, ["bulk"]):
        r = tag_snapshot(tags, token=key)
        rows = list_rows(r)
        assert len(rows) == LIST_LIMIT
        assert [i for i, _ in rows] == expected
        assert {op for _, op in rows} == {"insert"}
        assert r.text.endswith(UP_TO_DATE_BODY[1:])


# ---- createdAt window ----------------------------------------------------------------------------

def test_created_at_2d_is_clamped_to_24h():
    t = unique_tag()
    recent = make_run(tags=[t], age="1 hour")
    day = make_run(tags=[t], age="23 hours 50 minutes")
    make_run(tags=[t], age="30 hours")
    ch_sync(ENV_ID)
    before = db_now_ms()
    for created_at in ("2d", "1w", "25h", "1440m1s"):
        r = tag_snapshot([t], created_at=created_at)
        after = db_now_ms()
        assert_feed_headers(r, live_response=False)
        assert r.headers.get("x-runfeed-created-at-clamped") == str(MAX_AGE_MS), (created_at, dict(r.headers))
        f = floor_of(r)
        assert f % BUCKET_MS == 0
        assert before - MAX_AGE_MS - BUCKET_MS - 5000 <= f <= after - MAX_AGE_MS + 5000, (created_at, f)
        assert r.text == list_body([recent, day], "insert"), created_at


def test_created_at_1h_excludes_older_runs_and_is_not_clamped():
    t = unique_tag()
    new = make_run(tags=[t], age="30 minutes")
    old = make_run(tags=[t], age="2 hours")
    ch_sync(ENV_ID)
    before = db_now_ms()
    r = tag_snapshot([t], created_at="1h")
    after = db_now_ms()
    assert "x-runfeed-created-at-clamped" not in r.headers
    f = floor_of(r)
    assert f % BUCKET_MS == 0
    assert before - 3_600_000 - BUCKET_MS - 5000 <= f <= after - 3_600_000 + 5000
    assert r.text == list_body([new], "insert")
    # Grammar: units concatenate; only the first term of each unit counts.
    assert list_ids(tag_snapshot([t], created_at="1h30m")) == [new.id]
    assert list_ids(tag_snapshot([t], created_at="3h")) == [new.id, old.id]
    assert list_ids(tag_snapshot([t], created_at="10m1h")) == [new.id]
    assert list_ids(tag_snapshot([t], created_at="1h5h")) == [new.id]


@pytest.mark.parametrize("created_at", ["banana", "", "1x", "-1h", "1.5h", "h", "1h ", "9" * 101 + "s"])
def test_invalid_created_at_falls_back_to_the_24h_clamp(created_at):
    t = unique_tag()
    day = make_run(tags=[t], age="20 hours")
    make_run(tags=[t], age="30 hours")
    ch_sync(ENV_ID)
    before = db_now_ms()
    r = tag_snapshot([t], created_at=created_at)
    after = db_now_ms()
    assert_feed_headers(r, live_response=False)
    assert r.headers.get("x-runfeed-created-at-clamped") == str(MAX_AGE_MS)
    f = floor_of(r)
    assert f % BUCKET_MS == 0
    assert before - MAX_AGE_MS - BUCKET_MS - 5000 <= f <= after - MAX_AGE_MS + 5000
    assert r.text == list_body([day], "insert")


def test_default_window_is_24h_unclamped():
    t = unique_tag()
    day = make_run(tags=[t], age="23 hours")
    make_run(tags=[t], age="25 hours")
    ch_sync(ENV_ID)
    before = db_now_ms()
    r = tag_snapshot([t])
    after = db_now_ms()
    assert "x-runfeed-created-at-clamped" not in r.headers
    f = floor_of(r)
    assert f % BUCKET_MS == 0
    assert before - MAX_AGE_MS - BUCKET_MS - 5000 <= f <= after - MAX_AGE_MS + 5000
    assert r.text == list_body([day], "insert")


def test_floor_is_inclusive_and_exact_to_the_millisecond():
    """A run created exactly at the floor is in; one created 1 ms (or 1 s) before it is out."""
    probe = unique_tag("probe")
    for _ in range(3):
        f = floor_of(tag_snapshot([probe], created_at="1h"))
        t = unique_tag()
        at, ms_before, s_before = make_run(tags=[t]), make_run(tags=[t]), make_run(tags=[t])
        psql(f'''UPDATE "TaskRun" SET "createdAt" = {ms_to_ts(f)} WHERE id = {lit(at.id)};
                 UPDATE "TaskRun" SET "createdAt" = {ms_to_ts(f - 1)} WHERE id = {lit(ms_before.id)};
                 UPDATE "TaskRun" SET "createdAt" = {ms_to_ts(f - 1000)} WHERE id = {lit(s_before.id)};''')
        ch_sync(ENV_ID)
        r = tag_snapshot([t], created_at="1h")
        if floor_of(r) != f:
            continue  # a minute boundary passed in between: the floor moved; try again
        assert list_ids(r) == [at.id]
        return
    pytest.fail("the floor kept moving")


# ---- tag validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("tags,bad", [
    ("a,,b", ""), (",a", ""), ("a,", ""), (",", ""),
    ('say "hi"', 'say "hi"'), ("back\\slash", "back\\slash"),
    ("nul\x00", "nul\x00"), ("ctl\x01x", "ctl\x01x"), ("tab\tx", "tab\tx"), ("nl\nx", "nl\nx"),
    ("us\x1fx", "us\x1fx"), ("del\x7fx", "del\x7fx"),
    ("ok,bad\"one", 'bad"one'),
])
def test_invalid_tags_are_a_400_query_error(tags, bad):
    for params in ({"tags": tags}, {"tags": tags, "live": "true", "offset": "1_1", "handle": "runs_1_1_deadbeef"}):
        r = get(runs_list_url(), params=params)
        assert r.status_code == 400, (tags, r.status_code, r.text)
        assert r.headers.get("content-type") == "application/json"
        assert "electric-handle" not in r.headers
        body = r.json()
        assert body["error"] == "Query Error"
        messages = [d["message"] for d in body["details"]]
        assert "Invalid tag: " + json.dumps(bad, ensure_ascii=False) in messages, messages


def test_single_quotes_and_other_printable_tags_are_accepted():
    assert tag_snapshot(["owner:o'neil"]).text == list_body(["run_demo0014"], "insert")
    sfx = unique_suffix()[:10]
    odd = [f"it's-{sfx}", f"ünï cødé {sfx}", f"semi;colon&amp=%20+{sfx}", f"🙂{sfx}", f"x'); DROP TABLE t; --{sfx}"]
    runs = [make_run(tags=[tg], age=f"{i + 1} minutes") for i, tg in enumerate(odd)]
    ch_sync(ENV_ID)
    for tg, run in zip(odd, runs):
        r = tag_snapshot([tg])
        assert r.text == list_body([run], "insert"), tg
    # Tags are compared byte for byte: no case folding, no Unicode normalization.
    nfc, nfd = unicodedata.normalize("NFC", f"café-{sfx}"), unicodedata.normalize("NFD", f"café-{sfx}")
    upper = make_run(tags=[f"CASE-{sfx}"], age="1 minute")
    lower = make_run(tags=[f"case-{sfx}"], age="2 minutes")
    composed = make_run(tags=[nfc], age="1 minute")
    decomposed = make_run(tags=[nfd], age="2 minutes")
    ch_sync(ENV_ID)
    assert list_ids(tag_snapshot([f"CASE-{sfx}"])) == [upper.id]
    assert list_ids(tag_snapshot([f"case-{sfx}"])) == [lower.id]
    assert list_ids(tag_snapshot([nfc])) == [composed.id]
    assert list_ids(tag_snapshot([nfd])) == [decomposed.id]
    assert tag_snapshot([nfc, nfd]).text == UP_TO_DATE_BODY
    # The seed's tag with a comma, quotes and a backslash can't be requested, but the run still shows
    # under its other tags, with the tag encoded in runTags.
    r = tag_snapshot([DEMO_TAG, DEMO_TAG2])
    row = [m for m in r.json() if m.get("value", {}).get("friendlyId") == "run_demo0016"][0]
    assert row["value"]["runTags"] == '{"demo-set","customer:acme","it\'s, a \\\\ \\"tag\\""}'
