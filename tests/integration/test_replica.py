"""A streaming read replica behind `DATABASE_READ_REPLICA_URL`, lagging on purpose (recovery_min_apply_delay,
changed live with ALTER SYSTEM on the replica): every change still arrives at its final version, a run or batch
created on the primary and subscribed at once is found, and the replica takes the reads it can serve.

The test stack runs with a replica (`make test`: RUNFEED_PG_REPLICA=1); these tests fail without one.

Delivery check: SDK-like clients (test_convergence.Client) follow three runs (single-run feeds), a tag and a
batch holding the three. A writer changes one run at a time and publishes its change record (with
`updatedAtMs`), then waits until every client following that run holds the new row, compared with the row read
back from the primary in the reference encoding (conftest.expected_value). Every message a client receives for
the run after the record was published must be that version: one older would be a delivery "one version
behind" (a replica read older than the change). The change must also arrive through its record, not the hold
deadline's backstop read (`runfeed_backstop_deliveries_total` unchanged), which is where a stale read would
otherwise leave it.
"""

import json
import os
import subprocess
import threading
import time

import pytest

from conftest import (
    API_KEY, BASE_URL, ENV_ID, PSQL, batch_url, db_row, expected_value, get, headers, make_batch, make_run, publish,
    run_url, runs_list_url, unique_tag, ch_sync, wait_until, worker_metrics, metric_sum, psql, lit,
)
from pools import procs  # noqa: F401 (fixture)
from test_convergence import Client

REPLICA_PORT = os.environ.get("RUNFEED_PG_REPLICA_PORT", "")
PG_SOCKET_DIR = os.environ.get("RUNFEED_PG_SOCKET_DIR", "")
REPLICA_URL = os.environ.get("DATABASE_READ_REPLICA_URL", "")
STACK_DELAY_MS = int(os.environ.get("RUNFEED_PG_REPLICA_DELAY_MS", "0") or 0)
CHANGES = int(os.environ.get("RUNFEED_REPLICA_CHANGES", "") or 9)


def require_replica():
    if os.environ.get("RUNFEED_PG_REPLICA") != "1" or not REPLICA_PORT:
        pytest.fail("the test stack must run a read replica: RUNFEED_PG_REPLICA=1 (make test sets it)")


def replica_psql(sql, db="runfeed"):
    p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", PG_SOCKET_DIR, "-p", REPLICA_PORT,
                        "-U", "postgres", "-d", db, "-c", sql], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"psql on the replica failed: {p.stderr.strip()}")
    return [line for line in p.stdout.split("\n") if line]


def set_delay(ms):
    """recovery_min_apply_delay on the replica, live."""
    replica_psql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{int(ms)}ms'", db="postgres")
    replica_psql("SELECT pg_reload_conf()", db="postgres")
    want = f"{int(ms)}ms" if ms % 1000 else f"{int(ms) // 1000}s"
    wait_until(lambda: replica_psql("SHOW recovery_min_apply_delay", db="postgres") in ([want], [f"{int(ms)}ms"]), 10,
               0.05, f"recovery_min_apply_delay = {ms} ms")


@pytest.fixture(autouse=True)
def writes_do_not_wait_for_the_replica():
    """This module measures what the lag does: its writes must not wait for the replica (conftest.WAIT_FOR_REPLICA)."""
    import conftest
    conftest.WAIT_FOR_REPLICA = False
    yield
    conftest.WAIT_FOR_REPLICA = True


@pytest.fixture
def delay():
    """Sets the replica's delay for one test and puts the stack's back afterwards."""
    require_replica()
    yield set_delay
    set_delay(STACK_DELAY_MS)


def sums(samples_list, names):
    return {n: sum(s.get(n, 0.0) for s in samples_list) for n in names}


COUNTERS = [
    'runfeed_postgres_queries_total{target="primary"}', 'runfeed_postgres_queries_total{target="replica"}',
    'runfeed_replica_routes_total{route="replica"}', 'runfeed_replica_routes_total{route="replica_after_wait"}',
    'runfeed_replica_routes_total{route="primary_lagging"}', 'runfeed_replica_routes_total{route="primary_timed_out"}',
    'runfeed_replica_fallbacks_total{reason="miss"}', 'runfeed_replica_fallbacks_total{reason="stale"}',
    'runfeed_replica_fallbacks_total{reason="moving"}',
    'runfeed_backstop_deliveries_total{kind="run"}', 'runfeed_backstop_deliveries_total{kind="list"}',
    'runfeed_run_row_reads_total', 'runfeed_list_hydrates_total',
]


# --------------------------------------------------------------------------------------
# Changes at their final version
# --------------------------------------------------------------------------------------

class LoggingClient(Client):
    """test_convergence.Client that also keeps every change message it receives: (time, run id, value)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.messages = []

    def apply(self, r):
        if r.status_code == 200 and r.text:
            now = time.monotonic()
            for m in json.loads(r.text):
                if "key" in m and m["headers"]["operation"] in ("insert", "update"):
                    self.messages.append((now, m["value"]["id"], m["value"]))
        super().apply(r)


STATUSES = ["EXECUTING", "PAUSED", "WAITING_TO_RESUME", "COMPLETED_SUCCESSFULLY", "RETRYING_AFTER_FAILURE"]


def follow_changes(base_url, metrics, n_changes):
    """Runs the delivery check against `base_url`; returns (figures, metric deltas)."""
    tag = unique_tag("replica")
    batch = make_batch()
    runs = [make_run(tags=[tag], batch_id=batch.id, age="10 seconds") for _ in range(3)]
    ch_sync(ENV_ID)
    hard = time.monotonic() + 60 + n_changes * 15
    clients = [LoggingClient(f"run{i}", "run", run_url(r.friendly_id, base=base_url), {}, API_KEY, hard)
               for i, r in enumerate(runs)]
    clients.append(LoggingClient("tag", "tag", runs_list_url(base=base_url), {"tags": tag, "createdAt": "1h"}, API_KEY, hard))
    clients.append(LoggingClient("batch", "batch", batch_url(batch.friendly_id, base=base_url), {}, API_KEY, hard))
    followers = {r.id: [clients[i], clients[3], clients[4]] for i, r in enumerate(runs)}
    for c in clients:
        c.thread.start()
    try:
        for c in clients:
            assert c.ready.wait(30), f"{c.name}: no snapshot"
        # Every client holds every run as the database has it before the first change.
        for r in runs:
            want = json.loads(expected_value(r.friendly_id))
            wait_until(lambda: all(c.snapshot_rows().get(r.id) == want for c in followers[r.id]), 30, 0.05,
                       f"the snapshots of {r.friendly_id}")
        before = sums(metrics(), COUNTERS)
        published = received = behind = 0
        behind_examples = []
        for k in range(n_changes):
            run = runs[k % len(runs)]
            rows = psql(f'''UPDATE "TaskRun" SET "status" = {lit(STATUSES[k % len(STATUSES)])}::"TaskRunStatus",
                                "metadata" = {lit(json.dumps({"n": k}))},
                                "updatedAt" = GREATEST((now() AT TIME ZONE 'utc'), "updatedAt" + interval '1 millisecond')
                            WHERE id = {lit(run.id)} RETURNING (extract(epoch from "updatedAt") * 1000)::bigint''')
            want_text = expected_value(run.friendly_id, row=db_row(run.friendly_id))
            want = json.loads(want_text)
            t_pub = time.monotonic()
            publish(ENV_ID, run.id, tags=[tag], batch_id=batch.id, updated_at_ms=int(rows[0]))
            published += len(followers[run.id])
            wait_until(lambda: all(c.snapshot_rows().get(run.id) == want for c in followers[run.id]), 20, 0.02,
                       f"change {k} of {run.friendly_id} to reach every client")
            received += len(followers[run.id])
            for c in followers[run.id]:
                for t, rid, value in list(c.messages):
                    if rid == run.id and t >= t_pub and value != want:
                        behind += 1
                        behind_examples.append((c.name, k, value.get("metadata"), want.get("metadata")))
        after = sums(metrics(), COUNTERS)
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.thread.join(30)
    errors = [(c.name, repr(c.error)) for c in clients if c.error]
    assert not errors, errors
    figures = {"published": published, "received": received, "behind": behind, "behind_examples": behind_examples[:5],
               "polls": sum(c.polls for c in clients), "retries": sum(c.retries for c in clients)}
    return figures, {k: after[k] - before[k] for k in COUNTERS}


@pytest.mark.parametrize("delay_ms", [200, 2000])
def test_changes_arrive_at_their_final_version_through_a_lagging_replica(delay, delay_ms):
    """200 ms first: after a read waited in vain (2 s) the gate skips the replica for
    `…REPLICA_LAG_OBSERVED_FLOOR_TTL_MS` (60 s), as upstream's does; the 2 s cases come later."""
    delay(delay_ms)
    figures, d = follow_changes(BASE_URL, worker_metrics, CHANGES)
    print(f"replica {delay_ms} ms:", figures, d)
    assert figures["published"] == figures["received"], figures
    assert figures["behind"] == 0, figures
    assert d['runfeed_backstop_deliveries_total{kind="run"}'] == 0 and d['runfeed_backstop_deliveries_total{kind="list"}'] == 0, \
        f"changes waited for the backstop (a read older than the change?): {d}"
    assert d['runfeed_replica_fallbacks_total{reason="stale"}'] == 0, d
    if delay_ms == 200:
        # The replica catches up within the gate's longest wait: it serves the reads.
        assert d['runfeed_postgres_queries_total{target="replica"}'] > 0, d
        assert d['runfeed_replica_routes_total{route="replica_after_wait"}'] + d['runfeed_replica_routes_total{route="replica"}'] > 0, d
    else:
        # 2 s behind, longer than the gate waits (1 s): fresh reads go to the primary at once, measured.
        assert d['runfeed_replica_routes_total{route="primary_lagging"}'] + d['runfeed_replica_routes_total{route="primary_timed_out"}'] > 0, d


def test_a_replica_2s_behind_serves_the_hydrates_when_the_gate_may_wait_that_long(delay, procs):
    """The same delivery check through a pool whose gate waits up to 3 s (`…REPLICA_LAG_MAX_DELAY_MS=3000`, no
    ClickHouse: membership from the Postgres resolver, on the replica too): the replica serves the hydrates, each
    change still arrives at its final version (about 2 s late, by design)."""
    delay(2000)
    # Holds far longer than lag + gate wait (2 s + up to 3 s): with the test stack's 4 s hold a record could arrive
    # late enough in a hold for its deadline to come before the gate let the replica read go, and the deadline's
    # own read would deliver the change (correct, but not what this test measures).
    pool = procs.pool("replica", workers=2, hold_ms=20000, env={"DATABASE_READ_REPLICA_URL": REPLICA_URL,
                                                  "REALTIME_BACKEND_NATIVE_REPLICA_LAG_MAX_DELAY_MS": "3000"})
    ng = procs.nginx({"pool": [pool.port]})
    figures, d = follow_changes(ng.url["pool"], pool.metrics, 6)
    print("replica 2000 ms, max delay 3 s:", figures, d)
    assert figures["published"] == figures["received"], figures
    assert figures["behind"] == 0, figures
    assert d['runfeed_backstop_deliveries_total{kind="run"}'] == 0 and d['runfeed_backstop_deliveries_total{kind="list"}'] == 0, d
    assert d['runfeed_replica_routes_total{route="replica_after_wait"}'] > 0, d
    assert d['runfeed_postgres_queries_total{target="replica"}'] > d['runfeed_postgres_queries_total{target="primary"}'], \
        f"the replica should take the hydrate load: {d}"


def test_reads_from_primary_switch(delay, procs):
    """`…RUN_READS_FROM_PRIMARY=1`: a replica configured, every statement on the primary."""
    delay(STACK_DELAY_MS)
    pool = procs.pool("primaryonly", workers=1, env={"DATABASE_READ_REPLICA_URL": REPLICA_URL,
                                                      "REALTIME_BACKEND_NATIVE_RUN_READS_FROM_PRIMARY": "1"})
    ng = procs.nginx({"pool": [pool.port]})
    run = make_run()
    for _ in range(3):
        r = get(run_url(run.friendly_id, base=ng.url["pool"]))
        assert r.status_code == 200, r.text
    m = sums(pool.metrics(), COUNTERS)
    assert m['runfeed_postgres_queries_total{target="primary"}'] > 0 and m['runfeed_postgres_queries_total{target="replica"}'] == 0, m


# --------------------------------------------------------------------------------------
# Lookups: never a 404 for something that exists on the primary
# --------------------------------------------------------------------------------------

def test_zz_run_and_batch_created_on_the_primary_and_subscribed_at_once_are_found(delay):
    delay(2000)
    before = sums(worker_metrics(), COUNTERS)
    batch = make_batch()
    run = make_run(batch_id=batch.id)
    # Not on the replica yet (2 s behind): the lookups and the row read must go to the primary.
    assert replica_psql(f'SELECT count(*) FROM "TaskRun" WHERE id = {lit(run.id)}') == ["0"]
    r = get(run_url(run.friendly_id))
    assert r.status_code == 200, (r.status_code, r.text)
    msgs = json.loads(r.text)
    assert [m["headers"]["operation"] for m in msgs if "key" in m] == ["insert"], r.text[:300]
    assert json.dumps(msgs[0]["value"], separators=(",", ":"), ensure_ascii=False) == expected_value(run.friendly_id)
    b = get(batch_url(batch.friendly_id))
    assert b.status_code == 200, (b.status_code, b.text)
    after = sums(worker_metrics(), COUNTERS)
    assert after['runfeed_replica_fallbacks_total{reason="miss"}'] > before['runfeed_replica_fallbacks_total{reason="miss"}'], \
        "the replica's miss should have been asked of the primary"
