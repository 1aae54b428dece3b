"""Membership resolvers (README "ClickHouse"): the stack's workers resolve tag and batch membership
in ClickHouse; a throwaway worker started here without a ClickHouse URL resolves it in Postgres and must
give the same rows in the same order. A throwaway worker whose ClickHouse is unreachable answers list
feeds with a retryable 503 (never a 4xx, which the client treats as fatal) while single-run feeds work.

The throwaway workers are spoken to directly over FastCGI (conftest.fcgi_get) and stopped by PID."""

import concurrent.futures
import json

import pytest
import requests

from conftest import (
    API_KEY, BASE_URL, CLICKHOUSE_ON, CLICKHOUSE_URL, DEMO_BATCH, DEMO_RUN, DEMO_TAG, DEMO_TAG2, OLD_BATCH, WAKE_GRACE,
    ThrowawayWorker, change_again_unpublished, ch_sync, expected_body, get,
    list_body, list_rows, make_batch, make_env, make_run, numsub, publish_until_done,
    unique_tag, wait_until, worker_metrics, CH_MEMBERSHIP,
)

RUNS_PATH = "/realtime/v1/runs"


@pytest.mark.skipif(not CLICKHOUSE_ON, reason="the stack runs without ClickHouse")
def test_postgres_resolver_gives_the_same_rows_as_clickhouse():
    env_id, key = make_env()
    t1, t2 = unique_tag("a"), unique_tag("b")
    b = make_batch(env_id=env_id, age="20 days")
    # Distinct seconds everywhere (ClickHouse 18.16 stores created_at in whole seconds).
    ages = ["1 minute", "2 minutes", "7 minutes", "50 minutes", "3 hours", "23 hours", "30 hours", "9 days", "20 days"]
    for i, age in enumerate(ages):
        make_run(env_id=env_id, tags=[t1, t2, f"n{i}"], age=age, batch_id=b.id if i % 2 else None)
        make_run(env_id=env_id, tags=[t1], age=age + " 10 seconds")
        make_run(env_id=env_id, tags=[t2, "x"], age=age + " 20 seconds", batch_id=b.id if i % 3 == 0 else None)
        make_run(env_id=env_id, tags=None, age=age + " 30 seconds")
    ch_sync(env_id)

    cases = [
        (key, RUNS_PATH, {"tags": t1}),
        (key, RUNS_PATH, {"tags": f"{t2},{t1}"}),
        (key, RUNS_PATH, {"tags": f"{t1},{t2}", "createdAt": "1h"}),
        (key, RUNS_PATH, {"tags": t2, "createdAt": "2d"}),
        (key, RUNS_PATH, {}),
        (key, RUNS_PATH, {"createdAt": "5m"}),
        (key, RUNS_PATH, {"tags": "x", "skipColumns": "payload,output"}),
        (key, "/realtime/v1/batches/" + b.friendly_id, {}),
        (API_KEY, RUNS_PATH, {"tags": f"{DEMO_TAG},{DEMO_TAG2}"}),
        (API_KEY, RUNS_PATH, {"tags": DEMO_TAG2}),
        (API_KEY, "/realtime/v1/batches/" + DEMO_BATCH, {}),
        (API_KEY, "/realtime/v1/batches/" + OLD_BATCH, {}),
    ]
    ch_before = sum(m.get(CH_MEMBERSHIP, 0) for m in worker_metrics())
    with ThrowawayWorker("pg-resolver", {}) as w:
        for token, path, params in cases:
            via_ch = get(BASE_URL + path, params=params, token=token)
            via_pg = w.get(path, params=params, token=token)
            assert via_ch.status_code == 200 and via_pg.status_code == 200, (path, params, via_pg.text)
            assert list_rows(via_pg.text) == list_rows(via_ch.text), (path, params)
            assert via_pg.text == via_ch.text, (path, params)
            assert via_pg.headers["electric-schema"] == via_ch.headers["electric-schema"]
            assert len(list_rows(via_pg.text)) > 0, (path, params)
        m = w.metrics()
        assert m.get('runfeed_membership_queries_total{resolver="postgres"}', 0) >= 1
        # Every resolver's series exists from start-up; this worker's ClickHouse one stays at 0.
        assert m.get(CH_MEMBERSHIP, -1) == 0, m
        assert json.loads(requests.get(w.health_url, timeout=5).text)["clickhouse"] == "not configured"
    assert sum(m.get(CH_MEMBERSHIP, 0) for m in worker_metrics()) > ch_before, "the stack did not use ClickHouse"


@pytest.mark.skipif(not CLICKHOUSE_ON, reason="the stack runs without ClickHouse")
@pytest.mark.parametrize("var", ["REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL", "CLICKHOUSE_URL"])
def test_clickhouse_url_as_upstream_writes_it(var):
    """Upstream's self-hosting files end CLICKHOUSE_URL in ?secure=false (docker-compose) or ?secure=<bool>
    (Helm); the parameter is dropped (ClickHouse would answer `Unknown setting secure`) and other parameters
    are kept as ClickHouse settings."""
    env_id, key = make_env()
    t = unique_tag()
    runs = [make_run(env_id=env_id, tags=[t], age=f"{i + 1} minutes") for i in range(3)]
    ch_sync(env_id)
    base = CLICKHOUSE_URL.rstrip("/")
    url = base + "?secure=false&max_execution_time=30"
    with ThrowawayWorker("ch-secure", {var: url}) as w:
        r = w.get(RUNS_PATH, params={"tags": t}, token=key)
        assert r.status_code == 200, r.text
        assert r.text == list_body(runs, "insert")
        m = w.metrics()
        assert any(k.startswith('runfeed_membership_queries_total{resolver="clickhouse"') and v > 0
                   for k, v in m.items()), m
        assert json.loads(requests.get(w.health_url, timeout=5).text)["clickhouse"] not in ("down", "not configured")
        # secure=true with http:// is a warning; the scheme decides (no TLS).
    with ThrowawayWorker("ch-secure-true", {var: base + "?secure=true"}) as w:
        r = w.get(RUNS_PATH, params={"tags": t}, token=key)
        assert r.status_code == 200, r.text
        assert r.text == list_body(runs, "insert")
        assert "secure=true" in w.log_path.read_text(errors="replace")


def test_postgres_resolver_worker_serves_live_tag_feeds():
    env_id, key = make_env()
    t = unique_tag()
    a = make_run(env_id=env_id, tags=[t], age="2 minutes")
    with ThrowawayWorker("pg-live", {}) as w:
        snap = w.get(RUNS_PATH, params={"tags": t}, token=key)
        assert snap.text == list_body([a], "insert")
        params = {"tags": t, "live": "true", "handle": snap.headers["electric-handle"],
                  "offset": snap.headers["electric-offset"], "cursor": "", "log": "full"}
        fut = concurrent.futures.ThreadPoolExecutor(1).submit(w.get, RUNS_PATH, params=params, token=key)
        wait_until(lambda: numsub(env_id) >= 1 or fut.done(), 5, what="the throwaway worker to subscribe")
        new = make_run(env_id=env_id, tags=[t], age="1 second")   # never copied to ClickHouse: irrelevant here
        expected = list_body([new], "insert")
        publish_until_done([fut], env_id, new.id, timeout=WAKE_GRACE, tags=[t])
        change_again_unpublished(new, [fut])
        r = fut.result()
        assert r.status_code == 200
        assert r.text == expected


def test_unreachable_clickhouse_is_a_retryable_error_for_list_feeds_only():
    t = unique_tag()
    make_run(tags=[t], age="2 minutes")
    with ThrowawayWorker("ch-down", {"REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL": "http://127.0.0.1:1"}) as w:
        for path, params in ((RUNS_PATH, {"tags": t}), (RUNS_PATH, {}), (RUNS_PATH, {"tags": t, "createdAt": "1h"}),
                             ("/realtime/v1/batches/" + DEMO_BATCH, {}), ("/realtime/v1/batches/" + OLD_BATCH, {})):
            r = w.get(path, params=params)
            assert r.status_code == 503, (path, params, r.status_code, r.text)
            assert r.headers.get("retry-after"), dict(r.headers)
            assert r.headers.get("content-type") == "application/json"
            assert "error" in r.json()
            assert "electric-handle" not in r.headers
        # Single-run feeds don't need ClickHouse.
        r = w.get("/realtime/v1/runs/" + DEMO_RUN)
        assert r.status_code == 200, r.text
        assert r.text == expected_body(DEMO_RUN, "insert")
        # Request errors keep their own status; an unknown batch is still a 404 (Postgres lookup).
        assert w.get(RUNS_PATH, params={"tags": "a,,b"}).status_code == 400
        assert w.get("/realtime/v1/batches/batch_doesnotexist00").status_code == 404
        health = requests.get(w.health_url, timeout=5)
        assert health.status_code == 503
        assert health.json()["clickhouse"] == "down"
        assert w.metrics().get("runfeed_clickhouse_errors_total", 0) >= 1
