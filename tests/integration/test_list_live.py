"""Live list feeds: tag and batch long-polls woken by change records on the env channel
(full records by tags/batch, partial records for every list feed), rows re-checked against Postgres and
diffed against the connection's working set, the deadline backstop, and no re-emission of unchanged rows.

Each test uses a fresh environment, so its channel has no other subscribers: NUMSUB >= 1 means the worker
holding the poll is listening, and no other worker has heard of the env before the poll (it always
resolves once before holding, which gives it the connection's working set)."""

import concurrent.futures
import pytest

from conftest import (
    UP_TO_DATE_BODY, WAKE_GRACE, WORKERS, HELD_LIST, RECORDS_ACCEPTED, assert_feed_headers, batch_url,
    change_again_unpublished, ch_sync, fcgi_get, get, list_body, list_ids, make_batch, make_env,
    make_run, metric, numsub, offset_of, publish, publish_until_done, runs_list_url, start_list_live, touch,
    unique_tag, updated_ms, wait_pending, wait_until, worker_metrics, worker_sockets,
)

BACKSTOP_DELIVERIES = 'runfeed_backstop_deliveries_total{kind="list"}'


def open_feed(url, params, key, env_id):
    """Snapshot, then a live poll continuing from it (in a thread), once the env channel is subscribed."""
    snap = get(url, params=params, token=key)
    assert snap.status_code == 200, snap.text
    fut = start_list_live(url, snap.headers["electric-handle"], snap.headers["electric-offset"],
                          params=params, token=key)
    wait_until(lambda: numsub(env_id) >= 1 or fut.done(), 5, what="a worker to subscribe to the env channel")
    return snap, fut


def assert_live_answer(r, snap, expected_body, offset_ms):
    assert_feed_headers(r, live_response=True)
    assert r.text == expected_body
    assert r.headers["electric-handle"] == snap.headers["electric-handle"]
    assert offset_of(r)[0] == offset_ms
    if "x-runfeed-created-at-floor" in snap.headers:
        assert r.headers["x-runfeed-created-at-floor"] == snap.headers["x-runfeed-created-at-floor"]


# ---- tag feeds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("record", ["full", "partial"])
def test_change_record_wakes_the_tag_feed(record):
    env_id, key = make_env()
    t, other = unique_tag("t"), unique_tag("o")
    a = make_run(env_id=env_id, tags=[other, t], age="3 minutes")
    b = make_run(env_id=env_id, tags=[t], age="5 minutes")
    make_run(env_id=env_id, tags=[other], age="4 minutes")
    ch_sync(env_id)
    params = {"tags": t}
    snap, fut = open_feed(runs_list_url(), params, key, env_id)
    assert list_ids(snap) == [a.id, b.id]

    new_ms = touch(a, "EXECUTING", metadata='{"step":2}')
    expected = list_body([a], "update")
    tags = [other, t, "extra"] if record == "full" else None
    publish_until_done([fut], env_id, a.id, timeout=WAKE_GRACE, tags=tags)
    change_again_unpublished(a, [fut])
    r = fut.result()
    assert_live_answer(r, snap, expected, new_ms)  # a later, unpublished change would mean: the backstop answered
    assert r.json()[0]["value"]["metadata"] == '{"step":2}'


def test_backstop_delivers_a_change_that_was_never_published():
    env_id, key = make_env()
    t = unique_tag()
    a = make_run(env_id=env_id, tags=[t], age="3 minutes")
    ch_sync(env_id)
    snap, fut = open_feed(runs_list_url(), {"tags": t}, key, env_id)
    wait_pending([fut], 0.5)
    before = sum(metric(m, BACKSTOP_DELIVERIES) for m in worker_metrics())
    new_ms = touch(a, "EXECUTING", output='{"late":true}')
    wait_pending([fut], 0.5)  # no record: nothing wakes it before its deadline
    r = fut.result()
    assert_live_answer(r, snap, list_body([a], "update"), new_ms)
    after = sum(metric(m, BACKSTOP_DELIVERIES) for m in worker_metrics())
    assert after >= before + 1, "not answered by the backstop"


def test_run_created_after_the_snapshot_arrives_as_an_insert_from_its_record():
    """The new run is in Postgres only (not copied to ClickHouse): its full record alone brings it in,
    hydrated by id. The backstop (ClickHouse) could not have found it."""
    env_id, key = make_env()
    t = unique_tag()
    a = make_run(env_id=env_id, tags=[t], age="3 minutes")
    ch_sync(env_id)
    params = {"tags": t, "createdAt": "1h"}
    snap, fut = open_feed(runs_list_url(), params, key, env_id)
    assert list_ids(snap) == [a.id]

    new = make_run(env_id=env_id, tags=["x", t], age="1 second", status="PENDING")
    expected = list_body([new], "insert")
    new_ms = updated_ms(new.friendly_id)
    publish_until_done([fut], env_id, new.id, timeout=WAKE_GRACE, tags=["x", t])
    change_again_unpublished(new, [fut])
    assert_live_answer(fut.result(), snap, expected, new_ms)


def test_run_that_gains_the_tag_arrives_as_an_insert():
    env_id, key = make_env()
    t = unique_tag()
    a = make_run(env_id=env_id, tags=[t], age="3 minutes")
    c = make_run(env_id=env_id, tags=["x"], age="2 minutes")
    ch_sync(env_id)
    snap, fut = open_feed(runs_list_url(), {"tags": t}, key, env_id)
    assert list_ids(snap) == [a.id]
    new_ms = touch(c, runTags=["x", t])
    expected = list_body([c], "insert")
    publish_until_done([fut], env_id, c.id, timeout=WAKE_GRACE, tags=["x", t])
    change_again_unpublished(c, [fut])
    assert_live_answer(fut.result(), snap, expected, new_ms)


def test_records_that_cannot_match_do_not_wake_the_tag_feed():
    """Feed on {t1, t3}. Records for runs without both tags, or claiming tags without both, leave it held
    (the change records do reach the worker); at the deadline it answers [up-to-date] only."""
    env_id, key = make_env()
    t1, t2, t3 = unique_tag("t1"), unique_tag("t2"), unique_tag("t3")
    a = make_run(env_id=env_id, tags=[t1, t3], age="3 minutes")
    b = make_run(env_id=env_id, tags=[t2], age="3 minutes")
    c = make_run(env_id=env_id, tags=[t1], age="3 minutes")
    old = make_run(env_id=env_id, tags=[t1, t3], age="30 hours")   # both tags, created before the floor
    ch_sync(env_id)
    snap, fut = open_feed(runs_list_url(), {"tags": f"{t3},{t1}"}, key, env_id)
    assert list_ids(snap) == [a.id]
    wait_pending([fut], 0.3)
    before = worker_metrics()

    touch(b, "EXECUTING")
    touch(c, "EXECUTING")
    touch(old, "EXECUTING")
    new = make_run(env_id=env_id, tags=[t1], age="1 second")   # new, but only one of the tags
    records = [
        dict(run_id=b.id, tags=[t2]),                 # other tags
        dict(run_id=c.id, tags=[t1, t2]),             # one of the two tags
        dict(run_id=new.id, tags=[t1]),
        dict(run_id=c.id, tags=None),                 # partial: hydrated, then rejected by its tags
        dict(run_id=a.id, tags=[t1]),                 # a member, unchanged: claims the other tags
        dict(run_id=a.id, tags=[t1, t3]),             # a member, unchanged
        dict(run_id=old.id, tags=[t1, t3]),           # both tags, changed, but older than the window
    ]
    for rec in records:
        publish(env_id, rec["run_id"], tags=rec["tags"])
    wait_pending([fut], 0.6)
    after = worker_metrics()
    holders = [i for i, m in enumerate(before) if metric(m, HELD_LIST) >= 1]
    assert holders, "no worker reports a held list poll"
    assert all(metric(after[i], RECORDS_ACCEPTED) - metric(before[i], RECORDS_ACCEPTED) >= len(records)
               for i in holders), "the records did not reach the worker holding the poll"

    r = fut.result()
    assert_live_answer(r, snap, UP_TO_DATE_BODY, offset_of(snap)[0])


def test_unfiltered_feed_is_woken_by_any_full_record_of_its_env():
    env_id, key = make_env()
    a = make_run(env_id=env_id, tags=None, age="3 minutes")
    make_run(env_id=env_id, tags=["x"], age="4 minutes")
    ch_sync(env_id)
    snap, fut = open_feed(runs_list_url(), {"createdAt": "1h"}, key, env_id)
    assert len(list_ids(snap)) == 2
    new_ms = touch(a, "EXECUTING")
    expected = list_body([a], "update")
    publish_until_done([fut], env_id, a.id, timeout=WAKE_GRACE, tags=[])
    change_again_unpublished(a, [fut])
    assert_live_answer(fut.result(), snap, expected, new_ms)


def test_unchanged_rows_are_not_re_emitted_across_consecutive_polls():
    env_id, key = make_env()
    t = unique_tag()
    a = make_run(env_id=env_id, tags=[t], age="3 minutes")
    b = make_run(env_id=env_id, tags=[t], age="4 minutes")
    ch_sync(env_id)
    params = {"tags": t}
    snap, p1 = open_feed(runs_list_url(), params, key, env_id)

    # The same record twice; the row did not change: the poll keeps holding.
    for _ in range(2):
        publish(env_id, a.id, tags=[t])
        wait_pending([p1], 0.3)

    new_ms = touch(a, "EXECUTING")
    expected = list_body([a], "update")
    publish_until_done([p1], env_id, a.id, timeout=WAKE_GRACE, tags=[t])
    r1 = p1.result()
    assert_live_answer(r1, snap, expected, new_ms)

    # The next poll continues from that answer: the same record again (row unchanged) must not re-send a.
    p2 = start_list_live(runs_list_url(), r1.headers["electric-handle"], r1.headers["electric-offset"],
                         params=params, token=key)
    wait_until(lambda: numsub(env_id) >= 1 or p2.done(), 5, what="the env channel subscription")
    for _ in range(3):
        publish(env_id, a.id, tags=[t])
        publish(env_id, b.id)
        concurrent.futures.wait([p2], timeout=0.2)
    r2 = p2.result()
    assert r2.text == UP_TO_DATE_BODY, f"an unchanged row was emitted again: {list_ids(r2)} (a={a.id})"
    assert_live_answer(r2, snap, UP_TO_DATE_BODY, new_ms)


@pytest.mark.skipif(WORKERS < 2, reason="needs two workers")
@pytest.mark.parametrize("route", [(0, 0, 0), (0, 1, 1), (0, 1, 0)], ids=["same-worker", "hop-once", "hop-back"])
def test_change_is_sent_once_whichever_worker_answers(route):
    """The same sequence as above, each request pinned to a worker socket (nginx picks workers freely, so
    through nginx every pattern happens): snapshot on worker S, poll 1 (woken by a change) on P1, poll 2
    (an unchanged record) on P2. Poll 2 must not send the row again."""
    socks = worker_sockets()
    s_w, p1_w, p2_w = (socks[i] for i in route)
    env_id, key = make_env()
    t = unique_tag()
    a = make_run(env_id=env_id, tags=[t], age="3 minutes")
    ch_sync(env_id)
    path = "/realtime/v1/runs"
    snap = fcgi_get(s_w, path, params={"tags": t}, token=key)
    assert list_ids(snap.text) == [a.id]

    def poll(sock, resp):
        p = {"tags": t, "live": "true", "handle": resp.headers["electric-handle"],
             "offset": resp.headers["electric-offset"], "cursor": "", "log": "full"}
        f = concurrent.futures.ThreadPoolExecutor(1).submit(fcgi_get, sock, path, params=p, token=key)
        wait_until(lambda: numsub(env_id) >= 1 or f.done(), 5, what="the env channel subscription")
        return f

    p1 = poll(p1_w, snap)
    wait_pending([p1], 0.3)
    new_ms = touch(a, "EXECUTING")
    publish_until_done([p1], env_id, a.id, timeout=WAKE_GRACE, tags=[t])
    r1 = p1.result()
    assert r1.text == list_body([a], "update")

    p2 = poll(p2_w, r1)
    for _ in range(3):
        publish(env_id, a.id, tags=[t])
        concurrent.futures.wait([p2], timeout=0.2)
    r2 = p2.result()
    assert r2.text == UP_TO_DATE_BODY, \
        f"route {route}: a@{new_ms}, already sent by poll 1, was sent again by poll 2: {r2.text[:200]}"
    assert int(r2.headers["electric-offset"].split("_")[0]) == new_ms


# ---- batch feeds ---------------------------------------------------------------------------------

def test_batch_feed_woken_by_its_records_and_new_members():
    """Three batches, one connection each (a snapshot served from the 1 s runset cache of a previous step
    would start from an older state)."""
    env_id, key = make_env()
    b1, b2, b3, other = (make_batch(env_id=env_id) for _ in range(4))
    m1 = make_run(env_id=env_id, batch_id=b1.id, tags=["bt"], age="3 minutes")
    make_run(env_id=env_id, batch_id=b1.id, tags=None, age="5 minutes")
    m2 = make_run(env_id=env_id, batch_id=b2.id, tags=["bt"], age="3 minutes")
    m3 = make_run(env_id=env_id, batch_id=b3.id, tags=None, age="3 minutes")
    make_run(env_id=env_id, batch_id=other.id, tags=["bt"], age="3 minutes")
    ch_sync(env_id)

    # 1. A member changes; its full record names the batch.
    snap, fut = open_feed(batch_url(b1.friendly_id), None, key, env_id)
    assert list_ids(snap)[0] == m1.id and len(list_ids(snap)) == 2
    new_ms = touch(m1, "EXECUTING")
    expected = list_body([m1], "update")
    publish_until_done([fut], env_id, m1.id, timeout=WAKE_GRACE, tags=["bt"], batch_id=b1.id)
    change_again_unpublished(m1, [fut])
    assert_live_answer(fut.result(), snap, expected, new_ms)

    # 2. A run added to the batch after the snapshot (Postgres only; its record names the batch).
    snap, fut = open_feed(batch_url(b2.friendly_id), None, key, env_id)
    assert list_ids(snap) == [m2.id]
    new = make_run(env_id=env_id, batch_id=b2.id, tags=[], age="1 second")
    expected = list_body([new], "insert")
    new_ms = updated_ms(new.friendly_id)
    publish_until_done([fut], env_id, new.id, timeout=WAKE_GRACE, tags=[], batch_id=b2.id)
    change_again_unpublished(new, [fut])
    assert_live_answer(fut.result(), snap, expected, new_ms)

    # 3. A partial record (no tags, no batch) reaches every batch feed of the env; the row decides.
    snap, fut = open_feed(batch_url(b3.friendly_id), None, key, env_id)
    assert list_ids(snap) == [m3.id]
    stranger = make_run(env_id=env_id, batch_id=other.id, age="1 second")
    publish(env_id, stranger.id)                     # another batch's run: hydrated, rejected
    publish(env_id, stranger.id, tags=[], batch_id=b3.id)  # a full record that lies about the batch
    wait_pending([fut], 0.3)
    new_ms = touch(m3, "COMPLETED_SUCCESSFULLY", output='{"ok":1}')
    expected = list_body([m3], "update")
    publish_until_done([fut], env_id, m3.id, timeout=WAKE_GRACE)
    change_again_unpublished(m3, [fut])
    assert_live_answer(fut.result(), snap, expected, new_ms)
