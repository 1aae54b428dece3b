"""Non-live requests with a handle and an offset (catch-up: what changed since the offset, then up-to-date)."""

import time

from conftest import (
    FULL_SCHEMA, ROW_CACHE_S, UP_TO_DATE_BODY, assert_feed_headers, expected_body, get, make_run, offset_of, run_url,
    touch,
)


def catch_up(run, offset, **kw):
    return get(run_url(run.friendly_id), params={"offset": offset, "handle": run.handle, "log": "full"}, **kw)


def test_unchanged_run_answers_up_to_date_at_the_same_floor():
    run = make_run(status="EXECUTING")
    snap = get(run_url(run.friendly_id))
    u, _ = offset_of(snap)
    r = catch_up(run, snap.headers["electric-offset"])
    assert r.text == UP_TO_DATE_BODY
    assert_feed_headers(r, live_response=False)
    assert r.headers["electric-handle"] == run.handle
    assert offset_of(r)[0] == u


def test_changed_run_answers_update_with_the_new_row():
    run = make_run(status="PENDING")
    snap = get(run_url(run.friendly_id))
    new_ms = touch(run, "EXECUTING", metadata='{"step":2}')
    # A worker may answer from a row read up to 250 ms old (the run cache); step past it.
    time.sleep(ROW_CACHE_S)
    r = catch_up(run, snap.headers["electric-offset"])
    assert_feed_headers(r, live_response=False)
    assert r.text == expected_body(run.friendly_id, "update")
    value = r.json()[0]["value"]
    assert value["status"] == "EXECUTING" and value["metadata"] == '{"step":2}'
    assert offset_of(r)[0] == new_ms
    # ...and from the new offset it is up to date again.
    r2 = catch_up(run, r.headers["electric-offset"])
    assert r2.text == UP_TO_DATE_BODY
    assert offset_of(r2)[0] == new_ms


def test_catch_up_offset_is_compared_by_updated_at_ms():
    run = make_run()
    u, _ = offset_of(get(run_url(run.friendly_id)))
    # A floor one ms behind the row: the row is newer -> update.
    r = catch_up(run, f"{u - 1}_0")
    assert r.text == expected_body(run.friendly_id, "update")
    assert offset_of(r)[0] == u
    # A floor ahead of the row: nothing newer.
    r = catch_up(run, f"{u + 60000}_0")
    assert r.text == UP_TO_DATE_BODY
    assert offset_of(r)[0] == u + 60000
    assert r.headers["electric-schema"] == FULL_SCHEMA


def test_legacy_shape_id_param_acts_as_handle():
    run = make_run()
    snap = get(run_url(run.friendly_id), modern=False)
    r = get(run_url(run.friendly_id), params={"offset": snap.headers["electric-chunk-last-offset"],
                                               "shape_id": snap.headers["electric-shape-id"]}, modern=False)
    assert r.text == UP_TO_DATE_BODY
    assert_feed_headers(r, live_response=False, legacy=True)
