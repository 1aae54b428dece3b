"""Many held tag feeds, one change record: each worker hydrates the run once for all of its
feeds that the record can concern, and no feed goes back to ClickHouse. Checked on the workers' /metrics."""

import time

from conftest import (
    CH_MEMBERSHIP, HELD_LIST, LIST_HYDRATES, WORKERS, assert_feed_headers, ch_sync, list_body, live_after,
    make_env, make_run, metric, metric_sum, numsub, offset_of, publish, runs_list_url, tag_snapshot, touch,
    unique_tag, wait_pending, wait_until, worker_metrics,
)

POLLS = 20
LIST_NOTIFY_WAKES = 'runfeed_wakes_total{kind="list",reason="notify"}'


def test_one_record_wakes_20_tag_feeds_with_one_hydrate_per_worker():
    env_id, key = make_env()
    t, other = unique_tag("t"), unique_tag("o")
    a = make_run(env_id=env_id, tags=[t, other], age="3 minutes")
    b = make_run(env_id=env_id, tags=[t], age="4 minutes")
    ch_sync(env_id)
    params = {"tags": t}
    # One connection (handle) per subscriber, as 20 clients would have.
    snaps = [tag_snapshot([t], token=key) for _ in range(POLLS)]
    assert len({s.headers["electric-handle"] for s in snaps}) == POLLS
    base_held = metric_sum(worker_metrics(), HELD_LIST)
    futures = [live_after(runs_list_url(), s, params=params, token=key) for s in snaps]
    wait_until(lambda: metric_sum(worker_metrics(), HELD_LIST) >= base_held + POLLS, 5,
               what=f"{POLLS} list polls to be held")
    time.sleep(1.2)  # the cold resolves each new poll makes before holding have settled
    before = worker_metrics()
    holders = [i for i, m in enumerate(before) if metric(m, HELD_LIST) > 0]
    wait_until(lambda: numsub(env_id) >= len(holders), 3, what="every holding worker to subscribe")
    wait_pending(futures, 0.1)

    new_ms = touch(a, "EXECUTING", metadata='{"fan":"out"}')
    expected = list_body([a], "update")
    assert publish(env_id, a.id, tags=[t, other]) == len(holders), "the record must reach every holding worker"
    results = [f.result() for f in futures]
    after = worker_metrics()

    for s, r in zip(snaps, results):
        assert_feed_headers(r, live_response=True)
        assert r.text == expected
        assert r.headers["electric-handle"] == s.headers["electric-handle"]
        assert offset_of(r)[0] == new_ms

    hydrates = [metric(after[i], LIST_HYDRATES) - metric(before[i], LIST_HYDRATES) for i in range(len(before))]
    ch_queries = [metric(after[i], CH_MEMBERSHIP) - metric(before[i], CH_MEMBERSHIP) for i in range(len(before))]
    wakes = metric_sum(after, LIST_NOTIFY_WAKES) - metric_sum(before, LIST_NOTIFY_WAKES)
    assert sum(hydrates) <= WORKERS, hydrates
    for i in range(len(before)):
        assert hydrates[i] == (1 if i in holders else 0), (i, hydrates, holders)
    assert ch_queries == [0] * len(before), ch_queries
    assert wakes == POLLS
