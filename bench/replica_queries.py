#!/usr/bin/env python3
"""PostgreSQL statements per change, by target, with a read replica (docs/BENCHMARKS.md, "Read replica").

Runs against a running local stack started with RUNFEED_PG_REPLICA=1 (its demo.env exported): SDK-like clients
(tests/integration/test_convergence.Client) hold single-run feeds (10 per run) and tag feeds (10 per tag) while a
writer changes the runs round-robin at a steady rate, publishing each change record with its `updatedAtMs`. Counts
come from the workers' /metrics (summed over workers) over the writing period:

- statements on the primary and on the replica (`runfeed_postgres_queries_total{target}`; a replica read is three
  statements: the last replayed commit's time before and after it, and the read),
- position samples of the replica gate (`runfeed_replica_position_samples_total{target}`: on connections of their own,
  not request statements),
- where the reads that could use the replica went (`runfeed_replica_routes_total{route}`).

Each mode sets the replica's recovery_min_apply_delay live (ALTER SYSTEM on the replica) and restarts the workers
with its environment. Bounded: MODES × (SECONDS + ~15 s).

    set -a; . "$RUNFEED_STATE/demo.env"; set +a
    python3 bench/replica_queries.py [--seconds 30] [--rate 10] [--modes replica50,replica200,primary]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from conftest import (  # noqa: E402
    API_KEY, ENV_ID, ch_sync, lit, make_run, psql, publish, run_url, runs_list_url, unique_tag, worker_metrics, wait_until,
)
from test_convergence import Client  # noqa: E402
from test_replica import set_delay  # noqa: E402

MODES = {
    "replica50": ({}, 50),
    "replica200": ({}, 200),
    "replica2000": ({}, 2000),
    "primary": ({"REALTIME_BACKEND_NATIVE_RUN_READS_FROM_PRIMARY": "1"}, 50),
}
NAMES = ['runfeed_postgres_queries_total{target="primary"}', 'runfeed_postgres_queries_total{target="replica"}',
         'runfeed_replica_position_samples_total{target="primary"}', 'runfeed_replica_position_samples_total{target="replica"}',
         'runfeed_run_row_reads_total', 'runfeed_list_hydrates_total', 'runfeed_backstop_deliveries_total{kind="run"}',
         'runfeed_backstop_deliveries_total{kind="list"}']
ROUTES = ["replica", "replica_after_wait", "primary_down", "primary_lagging", "primary_timed_out", "primary_gate_off",
          "primary_positions_unknown"]


def sums():
    ms = worker_metrics()
    out = {n: sum(m.get(n, 0.0) for m in ms) for n in NAMES}
    for r in ROUTES:
        out["route:" + r] = sum(m.get(f'runfeed_replica_routes_total{{route="{r}"}}', 0.0) for m in ms)
    return out


def restart_workers(env):
    e = dict(os.environ)
    e.pop("REALTIME_BACKEND_NATIVE_RUN_READS_FROM_PRIMARY", None)
    e.update(env)
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "stack.sh"), "restart-workers"], env=e, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: len(worker_metrics()) > 0, 30, 0.2, "workers")


def run_mode(name, seconds, rate):
    env, delay = MODES[name]
    set_delay(delay)
    restart_workers(env)
    tags = [unique_tag("bq"), unique_tag("bq")]
    runs = [make_run(tags=[tags[i % 2]], age="10 seconds") for i in range(20)]
    ch_sync(ENV_ID)
    hard = time.monotonic() + seconds + 120
    clients = [Client(f"r{i}", "run", run_url(runs[i % 20].friendly_id), {}, API_KEY, hard) for i in range(200)]
    clients += [Client(f"t{i}", "tag", runs_list_url(), {"tags": tags[i % 2], "createdAt": "1h"}, API_KEY, hard)
                for i in range(20)]
    for c in clients:
        c.thread.start()
    for c in clients:
        c.ready.wait(60)
    time.sleep(2)
    before = sums()
    t0 = time.monotonic()
    changes = 0
    while time.monotonic() - t0 < seconds:
        run = runs[changes % len(runs)]
        ms = psql(f'''UPDATE "TaskRun" SET "metadata" = {lit(json.dumps({"n": changes}))},
                         "updatedAt" = GREATEST((now() AT TIME ZONE 'utc'), "updatedAt" + interval '1 millisecond')
                      WHERE id = {lit(run.id)} RETURNING (extract(epoch from "updatedAt") * 1000)::bigint''')
        publish(ENV_ID, run.id, tags=[tags[runs.index(run) % 2]], updated_at_ms=int(ms[0]))
        changes += 1
        time.sleep(max(0.0, t0 + changes / rate - time.monotonic()))
    time.sleep(1)
    after = sums()
    for c in clients:
        c.stop.set()
    for c in clients:
        c.thread.join(30)
    d = {k: after[k] - before[k] for k in after}
    return {"mode": name, "delay_ms": delay, "changes": changes, "seconds": round(time.monotonic() - t0, 1), **d}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--modes", default="primary,replica50,replica200,replica2000")
    a = ap.parse_args()
    rows = []
    try:
        for m in a.modes.split(","):
            r = run_mode(m, a.seconds, a.rate)
            rows.append(r)
            print(json.dumps(r), flush=True)
    finally:
        set_delay(int(os.environ.get("RUNFEED_PG_REPLICA_DELAY_MS", "0") or 0))
        restart_workers({})
    print("| mode | replica delay | changes | primary statements / change | replica statements / change | "
          "position samples / change (primary, replica) | row reads + hydrates / change | routes (replica, after wait, primary) | backstop deliveries |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["changes"]
        p = r['runfeed_postgres_queries_total{target="primary"}'] / n
        q = r['runfeed_postgres_queries_total{target="replica"}'] / n
        sp = r['runfeed_replica_position_samples_total{target="primary"}'] / n
        sr = r['runfeed_replica_position_samples_total{target="replica"}'] / n
        reads = (r["runfeed_run_row_reads_total"] + r["runfeed_list_hydrates_total"]) / n
        prim = sum(r["route:" + x] for x in ROUTES if x.startswith("primary"))
        bs = r['runfeed_backstop_deliveries_total{kind="run"}'] + r['runfeed_backstop_deliveries_total{kind="list"}']
        print(f"| {r['mode']} | {r['delay_ms']} ms | {n} | {p:.2f} | {q:.2f} | {sp:.2f}, {sr:.2f} | {reads:.2f} | "
              f"{int(r['route:replica'])}, {int(r['route:replica_after_wait'])}, {int(prim)} | {int(bs)} |")


if __name__ == "__main__":
    main()
