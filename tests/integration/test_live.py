"""Live long-polls: wake on a change record, hold on records that don't
concern the run or don't advance it, backstop re-read at the deadline, gap read."""

import concurrent.futures
import time

from conftest import (
    ENV_ID, UP_TO_DATE_BODY, WAKE_GRACE, WORKERS, assert_feed_headers, change_again_unpublished, channel,
    expected_body, get, live, make_env, make_run, numsub, offset_of, publish, publish_until_done, redis_cmd, run_url,
    start_live, start_live_on_each_worker, touch, wait_until,
)


def fut_wait(fut, timeout):
    concurrent.futures.wait([fut], timeout=timeout)


def test_publish_wakes_the_poll_with_the_new_row():
    run = make_run(status="PENDING", tags=["it", "wake"])
    snap = get(run_url(run.friendly_id))
    fut = start_live(run, snap.headers["electric-offset"])
    wait_until(lambda: numsub(ENV_ID) >= 1, 5, what="a worker to subscribe to the env channel")
    new_ms = touch(run, "EXECUTING")
    expected = expected_body(run.friendly_id, "update")
    publish_until_done([fut], ENV_ID, run.id, timeout=WAKE_GRACE, tags=["it", "wake"])
    change_again_unpublished(run, [fut])
    r = fut.result()
    assert_feed_headers(r, live_response=True)
    assert r.text == expected, "not woken by the record (answered by the backstop with a later change?)"
    assert r.json()[0]["value"]["status"] == "EXECUTING"
    assert r.headers["electric-handle"] == run.handle
    assert offset_of(r)[0] == new_ms


def test_records_for_other_runs_and_empty_wakes_do_not_end_the_poll():
    """X is polled on every worker; W is polled too. Records for another run (Y) and for W itself
    (whose row did not change) must leave every poll held. Then X changes and its record ends
    the X polls with the change; W answers [up-to-date] at its deadline, at its original floor."""
    x, y, w = make_run(), make_run(), make_run()
    off_x = get(run_url(x.friendly_id)).headers["electric-offset"]
    snap_w = get(run_url(w.friendly_id))
    off_w = snap_w.headers["electric-offset"]
    fx = start_live_on_each_worker(x, off_x)
    fw = start_live(w, off_w)
    wait_until(lambda: numsub(ENV_ID) >= WORKERS, 3, what=f"{WORKERS} workers to subscribe to the env channel")
    time.sleep(0.3)  # let every poll register behind the subscription

    touch(y, "EXECUTING")
    receivers = publish(ENV_ID, y.id, tags=[])
    assert receivers >= WORKERS
    publish(ENV_ID, w.id)  # a partial record for W, whose row did not move
    time.sleep(0.5)  # give a wrong wake time to answer
    assert not any(f.done() for f in fx + [fw]), "a record for another run / an unchanged row ended a held poll"

    new_ms = touch(x, "COMPLETED_SUCCESSFULLY", output='{"ok":true}')
    publish_until_done(fx, ENV_ID, x.id)
    expected = expected_body(x.friendly_id, "update")
    for f in fx:
        r = f.result()
        assert_feed_headers(r, live_response=True)
        assert r.text == expected
        assert offset_of(r)[0] == new_ms

    rw = fw.result()
    assert_feed_headers(rw, live_response=True)
    assert rw.text == UP_TO_DATE_BODY
    assert offset_of(rw)[0] == offset_of(snap_w)[0]
    assert rw.headers["electric-handle"] == w.handle


def test_backstop_delivers_a_change_that_was_never_published():
    run = make_run(status="PENDING")
    snap = get(run_url(run.friendly_id))
    fut = start_live(run, snap.headers["electric-offset"])
    wait_until(lambda: numsub(ENV_ID) >= 1, 5, what="a worker to subscribe")
    time.sleep(0.5)  # the poll is held (past its initial gap read) before the row changes
    assert not fut.done(), fut.result().text
    new_ms = touch(run, "EXECUTING", output='{"late":true}')
    r = fut.result()
    assert_feed_headers(r, live_response=True)
    assert r.text == expected_body(run.friendly_id, "update")
    assert r.json()[0]["value"]["output"] == '{"late":true}'
    assert offset_of(r)[0] == new_ms


def test_live_poll_behind_the_row_is_answered_by_the_gap_read():
    """An offset from another worker / an old response (tail 0): the run is read before holding."""
    run = make_run(status="EXECUTING")
    u, _ = offset_of(get(run_url(run.friendly_id)))
    r = live(run, f"{u - 1}_0")
    assert_feed_headers(r, live_response=True)
    assert r.text == expected_body(run.friendly_id, "update")
    assert offset_of(r)[0] == u



def test_record_received_between_two_requests_is_replayed():
    """Every worker is subscribed; the client's previous response was sent, then the run changed
    and its record arrived before the client's next live request. That request must answer the
    change at once (replay buffer / gap read), not wait for the backstop."""
    anchor, run = make_run(), make_run(status="PENDING")
    anchor_off = get(run_url(anchor.friendly_id)).headers["electric-offset"]
    anchors = start_live_on_each_worker(anchor, anchor_off)
    wait_until(lambda: numsub(ENV_ID) >= WORKERS, 3, what=f"{WORKERS} workers to subscribe to the env channel")
    time.sleep(0.3)  # subscriptions confirmed comfortably before the next response is sent

    snap = get(run_url(run.friendly_id))
    new_ms = touch(run, "EXECUTING")
    expected = expected_body(run.friendly_id, "update")
    assert publish(ENV_ID, run.id) >= WORKERS
    fut = start_live(run, snap.headers["electric-offset"])
    change_again_unpublished(run, [fut])
    r = fut.result()
    assert_feed_headers(r, live_response=True)
    assert r.text == expected, "the record published in the gap was missed"
    assert offset_of(r)[0] == new_ms

    touch(anchor, "EXECUTING")
    publish_until_done(anchors, ENV_ID, anchor.id)
    for f in anchors:
        assert f.result().status_code == 200


def test_bare_run_id_frame_and_lenient_records_wake_the_poll():
    """A frame that is not a JSON object is a bare internal run id (the early format); a record
    without `v`, with unknown fields, wakes too."""
    for frame in ("{id}", '{{"runId":"{id}","envId":"{env}","extra":{{"x":[1,2]}},"status":"EXECUTING"}}'):
        run = make_run(status="PENDING")
        fut = start_live(run, get(run_url(run.friendly_id)).headers["electric-offset"])
        wait_until(lambda: numsub(ENV_ID) >= 1, 5, what="a worker to subscribe")
        touch(run, "EXECUTING")
        expected = expected_body(run.friendly_id, "update")
        payload = frame.format(id=run.id, env=ENV_ID)
        deadline = time.monotonic() + WAKE_GRACE
        while not fut.done() and time.monotonic() < deadline:
            redis_cmd("PUBLISH", channel(ENV_ID), payload)
            fut_wait(fut, 0.25)
        change_again_unpublished(run, [fut])
        r = fut.result()
        assert r.text == expected, f"frame {payload!r} did not wake the poll"


def test_malformed_record_does_not_break_the_subscriber():
    """Garbage on the channel is ignored; the next good record still wakes a poll."""
    run = make_run(status="PENDING")
    fut = start_live(run, get(run_url(run.friendly_id)).headers["electric-offset"])
    wait_until(lambda: numsub(ENV_ID) >= 1, 5, what="a worker to subscribe")
    for junk in ("{not json", "", "{}", '{"v":1}', '{"runId":5}', "\u00ff\u0000"):
        redis_cmd("PUBLISH", channel(ENV_ID), junk)
    touch(run, "EXECUTING")
    expected = expected_body(run.friendly_id, "update")
    publish_until_done([fut], ENV_ID, run.id, timeout=WAKE_GRACE)
    change_again_unpublished(run, [fut])
    assert fut.result().text == expected


def test_record_on_another_environments_channel_does_not_wake():
    """The channel names the environment: a record for run R published on another env's
    channel must not reach R's feeds, even though its runId matches."""
    env_id, key = make_env()
    run = make_run(env_id=env_id, status="PENDING")
    anchor = make_run()  # demo env: makes every worker subscribe to the demo channel too
    off = get(run_url(run.friendly_id), token=key).headers["electric-offset"]
    anchor_off = get(run_url(anchor.friendly_id)).headers["electric-offset"]
    polls = start_live_on_each_worker(run, off, token=key)
    anchors = start_live_on_each_worker(anchor, anchor_off)
    wait_until(lambda: numsub(env_id) >= WORKERS and numsub(ENV_ID) >= WORKERS, 3,
               what="every worker to subscribe to both env channels")
    time.sleep(0.3)

    touch(run, "EXECUTING")
    expected = expected_body(run.friendly_id, "update")
    rec = '{"v":1,"runId":"%s","envId":"%s","batchId":null}' % (run.id, env_id)
    assert redis_cmd("PUBLISH", channel(ENV_ID), rec) >= WORKERS
    time.sleep(0.5)  # give a wrong wake time to answer
    assert not any(f.done() for f in polls), "a record on another environment's channel woke the poll"

    publish_until_done(polls, env_id, run.id, timeout=WAKE_GRACE)
    change_again_unpublished(run, polls)
    for f in polls:
        assert f.result().text == expected

    touch(anchor, "EXECUTING")
    publish_until_done(anchors, ENV_ID, anchor.id)
    for f in anchors:
        assert f.result().status_code == 200
