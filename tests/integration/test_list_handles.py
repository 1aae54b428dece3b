"""List-feed handles: `runs_<floorMs>_<seq>_<nonce8>` pins the tag feed's window and is
re-clamped on every request, so a crafted handle cannot widen it; `batch_<id>_<seq>_<nonce8>` belongs
to one batch; anything outside `[A-Za-z0-9_-]` is a 400."""

import re

import pytest

from conftest import (
    BUCKET_MS, DEMO_BATCH, DEMO_BATCH_ID, ENV_ID, MAX_AGE_MS, OLD_BATCH, OLD_BATCH_ID, UP_TO_DATE_BODY,
    assert_feed_headers, batch_snapshot, batch_url, ch_sync, get, list_body, make_batch, make_run, psql,
    runs_list_url, tag_snapshot, unique_tag,
)

RUNS_HANDLE = re.compile(r"^runs_(\d+)_(\d+)_([0-9a-f]{8})$")


def db_now_ms():
    return int(psql("SELECT (extract(epoch from now()) * 1000)::bigint")[0])


def live_params(tags, handle, offset, **extra):
    p = {"tags": tags, "live": "true", "handle": handle, "offset": offset, "cursor": "", "log": "full"}
    p.update(extra)
    return p


def assert_window_24h(r, before, after):
    f = int(r.headers["x-runfeed-created-at-floor"])
    m = RUNS_HANDLE.match(r.headers["electric-handle"])
    assert m and int(m.group(1)) == f, r.headers["electric-handle"]
    assert f % BUCKET_MS == 0
    assert before - MAX_AGE_MS - BUCKET_MS - 5000 <= f <= after - MAX_AGE_MS + 5000, f


@pytest.mark.parametrize("crafted", ["runs_1_1_deadbeef", "runs_0_0_00000000", "runs_1000_7_deadbeef"])
def test_crafted_old_floor_is_repinned_to_24h(crafted):
    """A handle pins its window, but the floor is re-clamped on every request: an old or crafted floor
    never widens the window beyond the maximum age. (The connection keeps its handle: a legitimate
    long-lived subscription must not be restarted each time the 24 h window slides by a minute.)"""
    t = unique_tag()
    recent = make_run(tags=[t], age="1 hour")
    make_run(tags=[t], age="30 hours")
    make_run(tags=[t], age="3 days")
    ch_sync(ENV_ID)
    before = db_now_ms()
    for params in (live_params(t, crafted, "1_0"), live_params(t, crafted, "1_0", createdAt="1w"),
                   {"tags": t, "handle": crafted, "offset": "1_0"}):
        r = get(runs_list_url(), params=params)
        after = db_now_ms()
        assert r.status_code == 200, r.text
        f = int(r.headers["x-runfeed-created-at-floor"])
        assert f % BUCKET_MS == 0
        assert before - MAX_AGE_MS - BUCKET_MS - 5000 <= f <= after - MAX_AGE_MS + 5000, f
        ids = [m["value"]["id"] for m in r.json() if "value" in m]
        assert ids == [recent.id], "a run older than 24 h was delivered"


def test_a_pinned_1h_window_survives_later_requests():
    """The pinned floor is not recomputed from createdAt: a catch-up with the handle keeps the 1 h window
    (and the handle), even when the later request asks for another createdAt."""
    t = unique_tag()
    recent = make_run(tags=[t], age="30 minutes")
    make_run(tags=[t], age="3 hours")
    ch_sync(ENV_ID)
    snap = tag_snapshot([t], created_at="1h")
    assert snap.text == list_body([recent], "insert")
    h = snap.headers["electric-handle"]
    for created_at in ("1h", "20h", None):
        params = {"tags": t, "handle": h, "offset": snap.headers["electric-offset"]}
        if created_at:
            params["createdAt"] = created_at
        r = get(runs_list_url(), params=params)
        assert_feed_headers(r, live_response=False)
        assert r.headers["electric-handle"] == h
        assert r.headers["x-runfeed-created-at-floor"] == snap.headers["x-runfeed-created-at-floor"]
        assert r.text == UP_TO_DATE_BODY


def test_batch_handle_of_another_batch_starts_a_new_connection():
    b = make_batch()
    member = make_run(tags=["hb"], batch_id=b.id, age="2 minutes")
    ch_sync(ENV_ID)
    snap_old = batch_snapshot(OLD_BATCH)
    assert snap_old.headers["electric-handle"].startswith(f"batch_{OLD_BATCH_ID}_")
    foreign = snap_old.headers["electric-handle"]
    for live in (True, False):
        params = {"handle": foreign, "offset": snap_old.headers["electric-offset"]}
        if live:
            params.update(live="true", cursor="", log="full")
        r = get(batch_url(b.friendly_id), params=params)
        assert r.status_code == 200, r.text
        assert r.headers["electric-handle"].startswith(f"batch_{b.id}_"), r.headers["electric-handle"]
        assert_feed_headers(r, live_response=False)
        assert r.text == list_body([member], "insert")
    # The same with a crafted handle naming the demo batch.
    r = get(batch_url(b.friendly_id), params={"handle": f"batch_{DEMO_BATCH_ID}_1_deadbeef", "offset": "1_0",
                                              "live": "true"})
    assert r.headers["electric-handle"].startswith(f"batch_{b.id}_")
    assert r.text == list_body([member], "insert")


def test_handles_of_the_other_route_start_a_new_connection():
    t = unique_tag()
    run = make_run(tags=[t], age="2 minutes")
    ch_sync(ENV_ID)
    batch_h = batch_snapshot(DEMO_BATCH).headers["electric-handle"]
    r = get(runs_list_url(), params=live_params(t, batch_h, "1_0"))
    assert RUNS_HANDLE.match(r.headers["electric-handle"])
    assert r.text == list_body([run], "insert")
    runs_h = tag_snapshot([t]).headers["electric-handle"]
    r = get(batch_url(DEMO_BATCH), params={"handle": runs_h, "offset": "1_0", "live": "true"})
    assert r.headers["electric-handle"].startswith(f"batch_{DEMO_BATCH_ID}_")
    assert r.text == list_body(["run_demo0008", "run_demo0007"], "insert")  # same createdAt: id DESC
    # Valid characters but not a list handle: recomputed from the query.
    for h in ("run-cmdemorun0000000000000001", "runs_x_1_deadbeef", "runs_1_1_DEADBEEF", "runs_1_1_deadbee",
              "runs_99999999999999999999_1_deadbeef", "batch__1_deadbeef"):
        r = get(runs_list_url(), params=live_params(t, h, "1_0"))
        assert r.status_code == 200, (h, r.text)
        assert r.headers["electric-handle"] != h
        assert r.text == list_body([run], "insert"), h


@pytest.mark.parametrize("handle", [
    "runs_1_1_dead beef", "runs_1_1_deadbeef!", "runs_1/1_deadbeef", "runs.1.1.deadbeef", "batch_ü_1_deadbeef",
    "runs_1_1_deadbeef\n", "runs_1_1_deadbeef%", "x" * 201, "runs_1_1_dead\"beef",
])
def test_handle_with_invalid_characters_is_a_400(handle):
    urls_params = [
        (runs_list_url(), {"tags": "a", "live": "true", "offset": "1_0", "handle": handle}),
        (runs_list_url(), {"tags": "a", "offset": "1_0", "handle": handle}),
        (batch_url(DEMO_BATCH), {"live": "true", "offset": "1_0", "handle": handle}),
        (batch_url(OLD_BATCH), {"offset": "-1", "shape_id": handle}),
    ]
    for url, params in urls_params:
        r = get(url, params=params)
        assert r.status_code == 400, (url, params, r.status_code, r.text)
        assert r.headers.get("content-type") == "application/json"
        body = r.json()
        assert body["error"] == "Query Error"
        assert "Invalid handle" in [d["message"] for d in body["details"]], body
