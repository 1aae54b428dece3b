"""Many held polls of one run all wake from one change record, sharing one read of the run."""

import time

from conftest import (
    API_VERSION, COLUMNS, ENV_ID, WORKERS, assert_feed_headers, change_again_unpublished, db_row, expected_body,
    get, make_run, numsub, offset_of, publish, run_url, start_live, touch, wait_until,
)

POLLS = 20


def test_one_publish_wakes_every_poll_of_the_run():
    run = make_run(status="PENDING", tags=["fan"])
    offset = get(run_url(run.friendly_id)).headers["electric-offset"]
    futures = [start_live(run, offset) for _ in range(POLLS)]
    wait_until(lambda: numsub(ENV_ID) >= WORKERS, 3, what=f"{WORKERS} workers to subscribe to the env channel")
    time.sleep(0.5)  # every poll registered
    assert not any(f.done() for f in futures), [f.result().text for f in futures if f.done()][:1]

    new_ms = touch(run, "EXECUTING", metadata='{"fan":"out"}')
    expected = expected_body(run.friendly_id, "update")
    receivers = publish(ENV_ID, run.id, tags=["fan"])
    assert receivers == WORKERS, "the one record must reach every worker"
    change_again_unpublished(run, futures)

    for f in futures:
        r = f.result()
        assert_feed_headers(r, live_response=True)
        assert r.text == expected
        assert offset_of(r)[0] == new_ms
        assert r.json()[0]["value"]["metadata"] == '{"fan":"out"}'


def test_one_wake_serves_polls_with_different_columns_and_versions():
    """Polls of one run that differ in skipColumns, header names and API version share one wake
    (one row read) but each gets its own encoding."""
    run = make_run(status="PENDING", metadata='{"m":1}', output='{"o":1}')
    offset = get(run_url(run.friendly_id)).headers["electric-offset"]
    variants = []
    for skip in ("", "payload", "metadata, output,bogus"):
        for api_version in (None, API_VERSION):
            for modern in (True, False):
                variants.append((skip, api_version, modern))
    futures = []
    for skip, api_version, modern in variants:
        params = {"skipColumns": skip} if skip else None
        futures.append(start_live(run, offset, params=params, api_version=api_version, modern=modern))
    wait_until(lambda: numsub(ENV_ID) >= WORKERS, 3, what=f"{WORKERS} workers to subscribe to the env channel")
    time.sleep(0.5)
    assert not any(f.done() for f in futures)

    touch(run, "DEQUEUED")
    row = db_row(run.friendly_id)
    assert publish(ENV_ID, run.id) == WORKERS
    change_again_unpublished(run, futures)
    for (skip, api_version, modern), f in zip(variants, futures):
        r = f.result()
        skipped = {c.strip() for c in skip.split(",")} & set(COLUMNS)
        assert_feed_headers(r, live_response=True, legacy=not modern)
        assert r.text == expected_body(run.friendly_id, "update", skip=skipped,
                                       legacy_api=api_version != API_VERSION, row=row), (skip, api_version, modern)
