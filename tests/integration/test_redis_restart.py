"""Redis restarted during a hold (ARCHITECTURE "Redis reconnects"): the held poll still
answers, every worker reconnects and resubscribes, and records wake polls again afterwards."""

import subprocess

from conftest import (
    ENV_ID, REDIS_PORT, STATE_DIR, WAKE_GRACE, assert_feed_headers, change_again_unpublished, expected_body, get,
    log_sizes, log_tail_since, make_run, numsub, offset_of, publish_until_done, redis_cmd, redis_up, run_url,
    start_live, touch, wait_until, worker_metrics, metric_sum, HELD_RUN,
)


def stop_redis():
    try:
        redis_cmd("SHUTDOWN", "NOSAVE")
    except (ConnectionError, OSError):
        pass  # the server closes the connection instead of replying
    wait_until(lambda: not redis_up(), 10, 0.05, "redis to stop")


def start_redis():
    """Starts Redis again exactly as redis_start in scripts/stack/redis.sh does (same port, pid file, dir and
    log), so `stack.sh stop` still manages it. Only Redis is touched: `stack.sh start --no-workers`
    would also bring back Redis, but it re-runs every other step of the stack (PostgreSQL bootstrap,
    ClickHouse, an nginx reload) in the middle of the suite."""
    redis_dir = STATE_DIR / "redis"
    p = subprocess.run(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--daemonize", "yes",
                        "--pidfile", str(redis_dir / "redis.pid"), "--dir", str(redis_dir), "--save", "",
                        "--appendonly", "no", "--logfile", str(STATE_DIR / "log" / "redis.log")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"redis-server failed to start: {p.stdout}{p.stderr}"
    wait_until(redis_up, 20, 0.1, "redis to come back")
    wait_until((redis_dir / "redis.pid").exists, 5, 0.1, "the redis pid file")


def test_redis_restart_during_a_hold():
    held_run = make_run(status="PENDING")
    held_snap = get(run_url(held_run.friendly_id))
    before = metric_sum(worker_metrics(), HELD_RUN)
    held = start_live(held_run, held_snap.headers["electric-offset"])
    # Held for real (admitted by the concurrency limiter and parked) before Redis goes away: a live
    # request that arrives during the outage is answered 500 "Failed to get concurrency limit".
    wait_until(lambda: metric_sum(worker_metrics(), HELD_RUN) >= before + 1, 5, what="the poll to be held")
    wait_until(lambda: numsub(ENV_ID) >= 1, 5, what="a worker to subscribe")
    sizes = log_sizes()

    stop_redis()
    try:
        # A change made while Redis is down: its record could not be delivered anyway.
        held_ms = touch(held_run, "EXECUTING", metadata='{"during":"outage"}')
    finally:
        start_redis()

    # Every worker notices, reconnects, and resubscribes what it still wants.
    def reconnected():
        tails = log_tail_since(sizes)
        return tails and all("redis subscriber disconnected" in t and "redis subscriber connected to" in t
                             for t in tails.values())
    wait_until(reconnected, 15, 0.1, "every worker log to show a Redis disconnect and reconnect")
    # The channel the held poll needs (still held, or lingering) is subscribed again.
    wait_until(lambda: numsub(ENV_ID) >= 1, 10, what="the env channel to be resubscribed after the restart")

    # The poll held across the restart still answers normally, with the change made during the outage
    # (re-read after the resubscription, or at the latest by the backstop).
    r = held.result()
    assert_feed_headers(r, live_response=True)
    assert r.text == expected_body(held_run.friendly_id, "update")
    assert offset_of(r)[0] == held_ms

    # A new poll is woken by a record published on the restarted Redis.
    run = make_run(status="PENDING")
    fut = start_live(run, get(run_url(run.friendly_id)).headers["electric-offset"])
    wait_until(lambda: numsub(ENV_ID) >= 1, 10, what="the env channel to be subscribed again")
    new_ms = touch(run, "EXECUTING")
    expected = expected_body(run.friendly_id, "update")
    publish_until_done([fut], ENV_ID, run.id, timeout=WAKE_GRACE)
    change_again_unpublished(run, [fut])
    r = fut.result()
    assert_feed_headers(r, live_response=True)
    assert r.text == expected, "not woken by a record published on the restarted Redis"
    assert offset_of(r)[0] == new_ms
