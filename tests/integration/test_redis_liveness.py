"""A silently dead pub/sub connection (ARCHITECTURE "Redis liveness"): a connection that stops carrying bytes
without FIN or RST (a NAT or load balancer that forgot it) is detected by the subscriber's PING deadline,
`/healthz` says redis down while no connection works, and after the reconnect the held polls get the changes
made meanwhile from the gap read that follows the resubscription, not from their backstop."""

import time

import requests

from conftest import REDIS_PORT, make_run, parse_metrics, wait_until
from pools import procs  # noqa: F401 (fixture)
from tcpproxy import TcpProxy
from test_pool import change, snap, start_poll, wait_held

PING_MS = 1000          # the pool's RUNFEED_REDIS_PING_INTERVAL_MS and _TIMEOUT_MS
HOLD_MS = 20000         # far longer than detection + reconnect, so a backstop answer is visible as such


def metric(pool, series, slot=1):
    return parse_metrics(requests.get(pool.metrics_url(slot), timeout=5).text).get(series, 0)


def redis_health(pool, slot=1):
    r = requests.get(pool.health_url(slot), timeout=5)
    return r.status_code, r.json().get("redis")


def test_blackholed_subscriber_is_replaced_and_the_gap_is_read(procs):
    proxy = TcpProxy(REDIS_PORT)
    try:
        pool = procs.pool("blackhole", workers=1, hold_ms=HOLD_MS, env={
            "REDIS_PORT": str(proxy.port),
            "RATE_LIMIT_REDIS_PORT": str(REDIS_PORT),     # only the pub/sub connection goes through the proxy
            "RUNFEED_REDIS_PING_INTERVAL_MS": str(PING_MS),
            "RUNFEED_REDIS_PING_TIMEOUT_MS": str(PING_MS),
        })
        ng = procs.nginx({"main": [pool.port]})
        base = ng.url["main"]
        run = make_run()
        s = snap(base, run)
        fut = start_poll(base, run, s.headers["electric-offset"])
        wait_held(pool, 1)
        wait_until(lambda: metric(pool, "runfeed_redis_subscribed_channels") >= 1, 10, 0.05,
                   "the environment's channel to be subscribed")
        assert redis_health(pool) == (200, "ok")
        backstops = metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}')

        t0 = time.monotonic()
        assert proxy.partition() >= 1
        # Detected by the PING deadline (interval + timeout + a 1 s tick), reported while nothing connects.
        wait_until(lambda: redis_health(pool) == (503, "down"), 30, 0.05, "/healthz to report redis down")
        detected_s = time.monotonic() - t0
        # A change made while the worker cannot hear its record.
        ms = change(run.env_id, run, 1, status="EXECUTING")
        proxy.heal()
        wait_until(lambda: redis_health(pool) == (200, "ok"), 30, 0.05, "/healthz to report redis up again")

        r = fut.result()
        assert r.status_code == 200, r.text
        assert '"status":"EXECUTING"' in r.text and int(r.headers["electric-offset"].split("_")[0]) == ms
        # Delivered by the read after the resubscription, not by the hold deadline's backstop.
        assert metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}') == backstops
        assert metric(pool, "runfeed_redis_reconnects_total") >= 1
        print(f"silent connection detected after {detected_s:.1f} s (ping interval and timeout {PING_MS} ms)")
    finally:
        proxy.close()
