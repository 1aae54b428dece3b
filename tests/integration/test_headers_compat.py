"""Legacy header names (without x-trigger-electric-version) and the DEQUEUED -> EXECUTING rewrite for old API versions."""

from conftest import (
    API_VERSION, FULL_SCHEMA, assert_feed_headers, expected_body, get, live, make_run, offset_of, run_url,
)

DEQUEUED_RUN = "run_demo0005"


def test_legacy_client_gets_legacy_header_names_on_snapshots():
    run = make_run()
    r = get(run_url(run.friendly_id), modern=False)
    assert_feed_headers(r, live_response=False, legacy=True)
    assert r.headers["electric-shape-id"] == run.handle
    assert r.text == expected_body(run.friendly_id, "insert")


def test_empty_electric_version_counts_as_legacy():
    run = make_run()
    r = get(run_url(run.friendly_id), modern=False, extra={"x-trigger-electric-version": ""})
    assert_feed_headers(r, live_response=False, legacy=True)


def test_modern_client_gets_only_modern_names():
    run = make_run()
    for version in ("1.0.0-beta.1", "0.8.1"):
        r = get(run_url(run.friendly_id), modern=False, extra={"x-trigger-electric-version": version})
        assert_feed_headers(r, live_response=False, legacy=False)
        assert r.headers["electric-schema"] == FULL_SCHEMA


def test_legacy_names_on_live_responses():
    run = make_run()
    u, _ = offset_of(get(run_url(run.friendly_id)))
    r = live(run, f"{u - 1}_0", modern=False)
    assert_feed_headers(r, live_response=True, legacy=True)
    r = live(run, f"{u - 1}_0")
    assert_feed_headers(r, live_response=True, legacy=False)


def test_dequeued_is_rewritten_for_old_api_versions():
    for api_version in (None, "2025-07-15", "2025-07-16T00:00:00Z", "2024-01-01"):
        r = get(run_url(DEQUEUED_RUN), api_version=api_version)
        assert r.status_code == 200
        assert r.json()[0]["value"]["status"] == "EXECUTING", api_version
        assert r.text == expected_body(DEQUEUED_RUN, "insert", legacy_api=True)
        assert '"DEQUEUED"' not in r.text


def test_dequeued_is_kept_for_the_current_api_version():
    r = get(run_url(DEQUEUED_RUN), api_version=API_VERSION)
    assert r.status_code == 200
    assert r.json()[0]["value"]["status"] == "DEQUEUED"
    assert r.text == expected_body(DEQUEUED_RUN, "insert", legacy_api=False)


def test_dequeued_rewrite_applies_to_live_responses():
    run = make_run(status="DEQUEUED")
    u, _ = offset_of(get(run_url(run.friendly_id)))
    old = live(run, f"{u - 1}_0")
    assert old.json()[0]["value"]["status"] == "EXECUTING"
    assert old.text == expected_body(run.friendly_id, "update", legacy_api=True)
    cur = live(run, f"{u - 1}_0", api_version=API_VERSION)
    assert cur.json()[0]["value"]["status"] == "DEQUEUED"
    assert cur.text == expected_body(run.friendly_id, "update", legacy_api=False)
