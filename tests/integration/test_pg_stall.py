"""A PostgreSQL stall under load: `LOCK TABLE "TaskRun" IN ACCESS EXCLUSIVE MODE` for 30 s (every read of a run
waits; on a replica too, which replays the lock) while snapshots arrive at a steady rate and 100 SDK-like
subscribers hold live polls.

What must hold (properties, not latencies):
- every snapshot is answered 200, or 503 `{"error":"Service Unavailable"}` with `Retry-After` — never another
  status and never left without an answer: the client's timeout (15 s) is above the request deadline
  (`RUNFEED_REQUEST_TIMEOUT_MS`, 10 s), so a timeout would mean an unbounded wait;
- open connections per worker (`process_open_fds`) stay bounded: at most 120 above what the held subscribers
  already use, and the statements waiting for a connection never exceed the queue bound;
- every worker's `/healthz` answers within 1 s (the health GET's own timeout, the one timed assertion here) and
  says `"postgres":"slow"` during the stall (from 3 s into it: detection takes a second of waiting), `"ok"` after it;
- every change written during the stall (the writes wait for the lock, then commit and are published) reaches
  every subscriber of its run after it.
"""

import concurrent.futures
import json
import os
import subprocess
import threading
import time

import requests

from conftest import (
    API_KEY, BASE_URL, DATABASE_URL, ENV_ID, METRICS_URLS, PSQL, expected_value, headers, lit, make_run, metric, psql,
    publish, run_url, wait_until, worker_metrics,
)
from test_convergence import Client

LOCK_S = float(os.environ.get("RUNFEED_STALL_SECONDS", "") or 30)
RATE = float(os.environ.get("RUNFEED_STALL_RATE", "") or 50)          # snapshots per second
SUBSCRIBERS = int(os.environ.get("RUNFEED_STALL_SUBSCRIBERS", "") or 100)
REQUEST_TIMEOUT_S = 10                                                  # the workers' default deadline
CLIENT_TIMEOUT_S = REQUEST_TIMEOUT_S + 5
HEALTH_URLS = [u.replace("/metrics", "/healthz") for u in METRICS_URLS]
FDS = "process_open_fds"
QUEUED = 'runfeed_postgres_statements{target="primary",state="queued"}'


def health_all():
    """Each worker's /healthz, asked with a 1 s timeout: (status, body) per worker."""
    out = []
    for u in HEALTH_URLS:
        r = requests.get(u, timeout=1.0)
        out.append((r.status_code, r.json()))
    return out


def test_a_30s_lock_sheds_instead_of_queueing_and_loses_nothing():
    runs = [make_run(status="PENDING") for _ in range(20)]          # followed by the subscribers
    targets = [make_run(status="PENDING") for _ in range(150)]      # snapshot targets: each read needs the database
    hard = time.monotonic() + LOCK_S + 180
    clients = [Client(f"sub{i}", "run", run_url(runs[i % len(runs)].friendly_id), {}, API_KEY, hard)
               for i in range(SUBSCRIBERS)]
    for c in clients:
        c.thread.start()
    lock = None
    stop = threading.Event()
    results, health, samples, writes = [], [], [], []
    try:
        for c in clients:
            assert c.ready.wait(30), f"{c.name}: no snapshot"
        wait_until(lambda: sum(metric(m, 'runfeed_held_polls{kind="run"}') for m in worker_metrics()) >= SUBSCRIBERS * 0.9,
                   30, 0.1, "the subscribers' polls to be held")
        baseline = [metric(m, FDS) for m in worker_metrics()]
        queue_limit = max(metric(m, "runfeed_postgres_queue_limit") for m in worker_metrics())

        # The lock, held by a psql session of its own for LOCK_S.
        lock = subprocess.Popen([PSQL, DATABASE_URL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                 f'BEGIN; LOCK TABLE "TaskRun" IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({LOCK_S}); COMMIT;'],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                "WHERE c.relname = 'TaskRun' AND l.mode = 'AccessExclusiveLock' AND l.granted")[0] == "1",
                   10, 0.05, "the lock")
        t_locked = time.monotonic()

        def snapshot(run):
            t0 = time.monotonic()
            try:
                r = requests.get(run_url(run.friendly_id), headers=headers(), timeout=CLIENT_TIMEOUT_S)
                results.append((r.status_code, r.headers.get("retry-after"), r.text[:80], time.monotonic() - t0))
            except requests.RequestException as e:
                results.append(("error", None, repr(e)[:120], time.monotonic() - t0))

        def load():
            with concurrent.futures.ThreadPoolExecutor(max_workers=400) as pool:
                i = 0
                next_t = time.monotonic()
                while not stop.is_set():
                    pool.submit(snapshot, targets[i % len(targets)])
                    i += 1
                    next_t += 1 / RATE
                    time.sleep(max(0, next_t - time.monotonic()))

        def watch():
            while not stop.is_set():
                try:
                    health.append((time.monotonic(), health_all()))
                except requests.RequestException as e:
                    health.append((time.monotonic(), repr(e)))
                try:
                    samples.append([(metric(m, FDS), metric(m, QUEUED)) for m in worker_metrics()])
                except requests.RequestException:
                    pass
                time.sleep(0.5)

        def write(run, k):
            # Waits for the lock, commits after it, then publishes (as the app does).
            rows = psql(f'''UPDATE "TaskRun" SET "status" = 'EXECUTING', "metadata" = {lit(json.dumps({"stall": k}))},
                               "updatedAt" = GREATEST((now() AT TIME ZONE 'utc'), "updatedAt" + interval '1 millisecond')
                            WHERE id = {lit(run.id)} RETURNING (extract(epoch from "updatedAt") * 1000)::bigint''')
            publish(ENV_ID, run.id, updated_at_ms=int(rows[0]))
            writes.append(run)

        threads = [threading.Thread(target=load, daemon=True), threading.Thread(target=watch, daemon=True)]
        writers = [threading.Thread(target=write, args=(runs[k], k), daemon=True) for k in range(5)]
        for t in threads + writers:
            t.start()
        lock.wait(LOCK_S + 30)
        t_released = time.monotonic()
        # Load goes on a little after the release: the workers recover.
        time.sleep(3)
        stop.set()
        for t in threads + writers:
            t.join(CLIENT_TIMEOUT_S + 10)

        # Snapshots: 200, or a retryable 503 with Retry-After; never anything else, never unanswered.
        bad = [r for r in results if not (r[0] == 200 or (r[0] == 503 and r[1] and "Service Unavailable" in r[2]))]
        statuses = {}
        for r in results:
            statuses[r[0]] = statuses.get(r[0], 0) + 1
        during = sum(1 for r in results if r[0] == 503)
        shed = sorted(r[3] for r in results if r[0] == 503)
        print(f"stall: {len(results)} snapshots {statuses}; 503 answered in p50 {shed[len(shed) // 2] if shed else 0:.3f} s, "
              f"max {shed[-1] if shed else 0:.3f} s; lock {t_released - t_locked:.1f} s; "
              f"fds baseline {baseline} max {[max(s[i][0] for s in samples) for i in range(len(baseline))]}; "
              f"queued max {max(max(q for _, q in s) for s in samples)} (limit {queue_limit})")
        assert results and not bad, f"snapshots must be 200 or 503 + Retry-After: {bad[:5]} ({statuses})"
        assert during > 0, f"the stall shed nothing: {statuses}"

        # Connections and queued statements bounded.
        for i, base in enumerate(baseline):
            peak = max(s[i][0] for s in samples)
            assert peak <= base + 120, f"worker {i + 1}: open fds {base} → {peak}"
        assert max(max(q for _, q in s) for s in samples) <= queue_limit

        # Health answered within 1 s every time, and said postgres was slow during the stall.
        failed = [h for h in health if isinstance(h[1], str)]
        assert not failed, f"/healthz did not answer within 1 s: {failed[:3]}"
        slow = [h for t, h in health if t_locked + 3 < t < t_released - 1]
        not_slow = [(round(t - t_locked, 1), [(code, body["postgres"]) for code, body in h]) for t, h in health
                    if t_locked + 3 < t < t_released - 1 and not all(code == 503 and body["postgres"] == "slow" for code, body in h)]
        assert slow and not not_slow, f"/healthz during the stall: {not_slow[:5]}"

        # After the stall: healthy, and every change written during it reached every subscriber of its run.
        wait_until(lambda: all(code == 200 and body["postgres"] == "ok" for code, body in health_all()), 30, 0.2,
                   "/healthz to say ok again")
        assert len(writes) == 5
        for run in writes:
            want = json.loads(expected_value(run.friendly_id))
            followers = [c for c in clients if c.url == run_url(run.friendly_id)]
            wait_until(lambda: all(c.snapshot_rows().get(run.id) == want for c in followers), 30, 0.1,
                       f"the change to {run.friendly_id} written during the stall to reach its subscribers")
    finally:
        stop.set()
        if lock and lock.poll() is None:
            lock.terminate()
            lock.wait(10)
        for c in clients:
            c.stop.set()
        for c in clients:
            c.thread.join(30)
    errors = [(c.name, repr(c.error)) for c in clients if c.error]
    assert not errors, errors[:5]
