"""Convergence checker: SDK-like clients behind a load balancer over two hosts end up holding exactly the
database, whatever the order of writes, their stamps, lost records, a Redis restart and a killed worker.

Setup (every process started here and stopped by PID, see pools.py):

- host A: a `runfeed serve --workers 2` pool; host B: another 2-worker pool (both `--hold-ms 4000`, no
  ClickHouse: tag and batch membership from the Postgres resolver);
- a private nginx with ONE round-robin upstream over both hosts, so consecutive polls of a client land on
  any of the four workers.

Clients (threads, one `requests.Session` each) do what the SDK does: a snapshot (`offset=-1`), then live
polls with the returned handle/offset/cursor, re-polling at once; every body is applied (insert and update
set the row — rows are always full —, delete is ignored, `must-refetch` restarts from a snapshot); 5xx, 429
and connection errors are retried after a short backoff; any other status is fatal. RUNFEED_CONVERGENCE_RUN_CLIENTS
single-run clients (6), …_TAG_CLIENTS tag-feed clients (6), …_BATCH_CLIENTS batch-feed clients (4).

A writer changes a fixed set of runs (some carry the tag, some are in the batch, some both, some neither)
and inserts a few new ones (with the tag and/or in the batch) for RUNFEED_CONVERGENCE_SECONDS (60): random
status and metadata, `updatedAt` stamped explicitly — the previous stamp again, 1–50 ms before it, or now —
and publishes the change record as the app does, except ~10 % of changes that are deliberately never
published. Meanwhile the stack's Redis is restarted (as test_redis_restart.py does it) and one worker of
host A is SIGKILLed (its supervisor replaces it).

After the writer stops, every client must converge within three hold cycles: its materialized rows equal
the database row for row, all 26 columns in the reference wire encoding (conftest.expected_value); for list
clients, exactly the runs that match the filter now. The figures (published and received changes, polls,
retries, converged clients) are printed and written to $RUNFEED_STATE/log/convergence.json.
"""

import json
import os
import random
import signal
import threading
import time
from collections import Counter

import requests

from conftest import (
    COLUMNS, STATE_DIR, batch_url, db_row, expected_value, headers, lit, make_batch, make_env, make_run,
    ms_to_ts, psql, publish, run_url, runs_list_url, unique_tag, wait_until,
)
from pools import HOLD_MS, procs  # noqa: F401 (procs is a fixture)
from test_redis_restart import start_redis, stop_redis


def _int_env(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


SECONDS = float(os.environ.get("RUNFEED_CONVERGENCE_SECONDS", "").strip() or 60)
RUN_CLIENTS = _int_env("RUNFEED_CONVERGENCE_RUN_CLIENTS", 6)
TAG_CLIENTS = _int_env("RUNFEED_CONVERGENCE_TAG_CLIENTS", 6)
BATCH_CLIENTS = _int_env("RUNFEED_CONVERGENCE_BATCH_CLIENTS", 4)
# Extra environment of both pools, as JSON (diagnosis: e.g. '{"REALTIME_BACKEND_NATIVE_RUN_CACHE_MAX_ENTRIES":"0"}').
POOL_ENV = json.loads(os.environ.get("RUNFEED_CONVERGENCE_POOL_ENV", "").strip() or "{}")
UNPUBLISHED = 0.10                              # share of changes whose record is never published
HOLD_MAX_S = HOLD_MS * 1.15 / 1000             # the longest hold of the pools (4 s ± 15 %)
CONVERGE_S = 3 * HOLD_MAX_S                     # the bound after the writer stops: three hold cycles
POLL_TIMEOUT = 30
# No DEQUEUED: without the current x-trigger-api-version it is sent as EXECUTING (legacy API versions do not know DEQUEUED).
STATUSES = ["PENDING", "EXECUTING", "WAITING_TO_RESUME", "RETRYING_AFTER_FAILURE", "PAUSED", "INTERRUPTED",
            "COMPLETED_SUCCESSFULLY", "COMPLETED_WITH_ERRORS", "SYSTEM_FAILURE", "CRASHED"]


# --------------------------------------------------------------------------------------
# An SDK-like client
# --------------------------------------------------------------------------------------

class Client:
    """Follows one feed and materializes its rows ({internal id: value object})."""

    def __init__(self, name, kind, url, params, key, hard_deadline):
        self.name = name
        self.kind = kind            # "run", "tag" or "batch"
        self.url = url
        self.params = params
        self.key = key
        self.hard_deadline = hard_deadline
        self.session = requests.Session()
        self.lock = threading.Lock()
        self.rows = {}
        self.handle = None
        self.offset = "-1"
        self.cursor = ""
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error = None
        self.polls = 0
        self.received = 0           # change messages applied
        self.retries = 0
        self.refetches = 0
        self.statuses = Counter()
        self.thread = threading.Thread(target=self.loop, name=name, daemon=True)

    def snapshot_rows(self):
        with self.lock:
            return {k: dict(v) for k, v in self.rows.items()}

    def request(self):
        """One request of the SDK's loop, retried on 5xx, 429 and connection errors."""
        params = dict(self.params)
        if self.handle is None:
            params["offset"] = "-1"
        else:
            params.update({"live": "true", "handle": self.handle, "offset": self.offset, "cursor": self.cursor,
                           "log": "full"})
        delay = 0.05
        while True:
            if time.monotonic() > self.hard_deadline:
                raise AssertionError(f"{self.name}: past the test's hard deadline")
            try:
                r = self.session.get(self.url, params=params, headers=headers(token=self.key), timeout=POLL_TIMEOUT)
                self.statuses[r.status_code] += 1
                if r.status_code in (200, 409):
                    return r
                if r.status_code != 429 and r.status_code < 500:
                    raise AssertionError(f"{self.name}: fatal {r.status_code} {r.text[:300]}")
            except (requests.ConnectionError, requests.Timeout):
                self.statuses["connection-error"] += 1
            if self.stop.is_set():
                return None
            self.retries += 1
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    def restart(self):
        self.refetches += 1
        with self.lock:
            self.rows.clear()
        self.handle, self.offset, self.cursor = None, "-1", ""

    def apply(self, r):
        if r.status_code == 409:
            self.restart()
            return
        msgs = json.loads(r.text) if r.text else []
        with self.lock:
            for m in msgs:
                if "key" in m:
                    op = m["headers"]["operation"]
                    if op in ("insert", "update"):
                        v = m["value"]
                        assert m["key"] == '"public"."TaskRun"/"' + v["id"] + '"', m["key"]
                        self.rows[v["id"]] = {**self.rows.get(v["id"], {}), **v}
                        self.received += 1
                elif m.get("headers", {}).get("control") == "must-refetch":
                    self.rows.clear()
                    self.refetches += 1
                    self.handle, self.offset, self.cursor = None, "-1", ""
                    return
        self.handle = r.headers["electric-handle"]
        self.offset = r.headers["electric-offset"]
        self.cursor = r.headers.get("electric-cursor", "")

    def loop(self):
        try:
            while not self.stop.is_set():
                r = self.request()
                if r is None:
                    return
                self.polls += 1
                self.apply(r)
                self.ready.set()
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.ready.set()
            self.session.close()


# --------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------

class TrackedRun:
    def __init__(self, run, tags, batch_id):
        self.run = run
        self.tags = tags
        self.batch_id = batch_id
        self.last_ms = int(db_row(run.friendly_id)["updatedAtMs"])


class Writer:
    def __init__(self, env_id, tag, batch, runs, seconds, seed):
        self.env_id = env_id
        self.tag = tag
        self.batch = batch
        self.runs = list(runs)
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.error = None
        self.writes = 0
        self.inserts = 0
        self.published = 0
        self.unpublished = 0        # deliberately not published
        self.publish_failed = 0     # published while Redis was down: lost
        self.stamps = Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop, name="writer", daemon=True)

    def record(self, tr, ms):
        if self.rng.random() < UNPUBLISHED:
            self.unpublished += 1
            return
        try:
            publish(self.env_id, tr.run.id, tags=tr.tags or [], batch_id=tr.batch_id, updated_at_ms=ms)
            self.published += 1
        except (OSError, RuntimeError):
            self.publish_failed += 1

    def insert(self):
        n = self.inserts
        tags = [self.tag, "conv"] if n % 3 != 1 else ["conv"]
        batch_id = self.batch.id if n % 3 != 0 else None
        run = make_run(env_id=self.env_id, tags=tags, batch_id=batch_id, age="0 seconds",
                       metadata=json.dumps({"inserted": n}))
        tr = TrackedRun(run, tags, batch_id)
        with self.lock:
            self.runs.append(tr)
        self.inserts += 1
        self.writes += 1
        self.record(tr, tr.last_ms)

    def change(self):
        tr = self.rng.choice(self.runs)
        mode = self.rng.choice(["same", "earlier", "now"])
        if mode == "same":
            ms = tr.last_ms
        elif mode == "earlier":
            ms = tr.last_ms - self.rng.randint(1, 50)
        else:
            ms = int(time.time() * 1000)
        self.stamps[mode] += 1
        status = self.rng.choice(STATUSES)
        metadata = json.dumps({"w": self.writes, "r": self.rng.randint(0, 10 ** 9)})
        rows = psql(f'''UPDATE "TaskRun" SET "status" = {lit(status)}::"TaskRunStatus", "metadata" = {lit(metadata)},
                        "updatedAt" = {ms_to_ts(ms)} WHERE id = {lit(tr.run.id)}
                        RETURNING (extract(epoch from "updatedAt") * 1000)::bigint''')
        assert int(rows[0]) == ms, (rows, ms)
        tr.last_ms = ms
        self.writes += 1
        self.record(tr, ms)

    def loop(self):
        end = time.monotonic() + self.seconds
        max_inserts = 6
        try:
            while not self.stop.is_set() and time.monotonic() < end:
                elapsed = self.seconds - (end - time.monotonic())
                # Inserts spread over the run: one about every seconds/(max_inserts+1).
                if self.inserts < max_inserts and elapsed > (self.inserts + 1) * self.seconds / (max_inserts + 1):
                    self.insert()
                else:
                    self.change()
                time.sleep(self.rng.uniform(0.01, 0.06))
        except BaseException as e:
            self.error = e


# --------------------------------------------------------------------------------------
# The database's answer
# --------------------------------------------------------------------------------------

def wire_rows(ids_and_fids):
    """{internal id: the value object the feed must hold} for (id, friendlyId) pairs (read now)."""
    return {i: json.loads(expected_value(f)) for i, f in ids_and_fids}


def members(where):
    return [tuple(line.split("|")) for line in psql(f'SELECT "id", "friendlyId" FROM "TaskRun" WHERE {where}')]


def differences(got, want):
    out = []
    for i in sorted(want.keys() - got.keys()):
        out.append(f"missing {i}")
    for i in sorted(got.keys() - want.keys()):
        out.append(f"extra {i}")
    for i in sorted(got.keys() & want.keys()):
        cols = [c for c in COLUMNS if got[i].get(c) != want[i].get(c)]
        if cols or list(got[i]) != COLUMNS:
            out.append(f"{i}: " + ", ".join(f"{c}: client {got[i].get(c)!r} db {want[i].get(c)!r}" for c in cols))
    return out


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------

def test_clients_converge_to_the_database_across_hosts_restarts_and_lost_records(procs):
    a = procs.pool("convA", workers=2, env=POOL_ENV)
    b = procs.pool("convB", workers=2, env=POOL_ENV)
    ng = procs.nginx({"all": [a.port, b.port]}, balance="")   # round-robin over both hosts
    base = ng.url["all"]

    env_id, key = make_env()
    tag = unique_tag("conv")
    batch = make_batch(env_id=env_id)
    spec = ([([tag, "conv"], None)] * 4 + [(["conv"], batch.id)] * 3 + [([tag], batch.id)] * 2
            + [(None, None)] * 3)
    runs = [TrackedRun(make_run(env_id=env_id, tags=t, batch_id=bid, age=f"{10 + i} minutes"), t, bid)
            for i, (t, bid) in enumerate(spec)]

    started = time.monotonic()
    hard_deadline = started + SECONDS + 120
    clients = []
    for i in range(RUN_CLIENTS):
        tr = runs[i % len(runs)]
        clients.append(Client(f"run-{i}", "run", run_url(tr.run.friendly_id, base), {}, key, hard_deadline))
        clients[-1].run = tr.run
    for i in range(TAG_CLIENTS):
        clients.append(Client(f"tag-{i}", "tag", runs_list_url(base), {"tags": tag}, key, hard_deadline))
    for i in range(BATCH_CLIENTS):
        clients.append(Client(f"batch-{i}", "batch", batch_url(batch.friendly_id, base), {}, key, hard_deadline))

    seed = _int_env("RUNFEED_CONVERGENCE_SEED", random.randrange(10 ** 9))
    writer = Writer(env_id, tag, batch, runs, SECONDS, seed=seed)
    events = {}
    try:
        for c in clients:
            c.thread.start()
        for c in clients:
            assert c.ready.wait(30), f"{c.name}: no snapshot within 30 s"
            assert c.error is None, f"{c.name}: {c.error!r}"

        writer.thread.start()
        t0 = time.monotonic()

        # Mid-run faults: a Redis restart at ~35 %, a SIGKILLed worker of host A at ~60 %.
        time.sleep(max(0.0, t0 + SECONDS * 0.35 - time.monotonic()))
        events["redis_restart_at_s"] = round(time.monotonic() - t0, 1)
        stop_redis()
        try:
            time.sleep(1.0)
        finally:
            start_redis()
        events["redis_back_at_s"] = round(time.monotonic() - t0, 1)

        time.sleep(max(0.0, t0 + SECONDS * 0.6 - time.monotonic()))
        before = a.worker_pids()
        victim = before[0]
        events["sigkill_at_s"] = round(time.monotonic() - t0, 1)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            pids = a.worker_pids()
            return len(pids) == 2 and victim not in pids and all(a.healthy(i) for i in (1, 2))
        wait_until(replaced, 20, 0.1, f"host A's supervisor to replace worker {victim}")
        events["replaced_at_s"] = round(time.monotonic() - t0, 1)

        writer.thread.join(timeout=SECONDS + 60)
        assert not writer.thread.is_alive(), "the writer did not stop"
        assert writer.error is None, f"writer: {writer.error!r}"
        stopped = time.monotonic()
        events["writer_stopped_at_s"] = round(stopped - t0, 1)

        # What every client must hold now (the database no longer changes).
        tag_members = members(f'"runtimeEnvironmentId" = {lit(env_id)} AND "runTags" @> ARRAY[{lit(tag)}]::text[]')
        batch_members = members(f'"runtimeEnvironmentId" = {lit(env_id)} AND "batchId" = {lit(batch.id)}')
        want = {"tag": wire_rows(tag_members), "batch": wire_rows(batch_members)}
        for c in clients:
            if c.kind == "run":
                c.want = wire_rows([(c.run.id, c.run.friendly_id)])
            else:
                c.want = want[c.kind]

        converged_at = {}
        while True:
            now = time.monotonic()
            for c in clients:
                if c.name not in converged_at and not differences(c.snapshot_rows(), c.want):
                    converged_at[c.name] = round(now - stopped, 2)
            if len(converged_at) == len(clients) or now - stopped > CONVERGE_S:
                break
            time.sleep(0.2)
        # A converged client must stay converged (nothing older may arrive later).
        time.sleep(0.5)
        late = {c.name: differences(c.snapshot_rows(), c.want) for c in clients}
    finally:
        writer.stop.set()
        for c in clients:
            c.stop.set()
        if writer.thread.is_alive():
            writer.thread.join(timeout=30)

    for c in clients:
        c.thread.join(timeout=HOLD_MAX_S + 10)

    pools_alive = a.proc.poll() is None and b.proc.poll() is None
    figures = {
        "seconds": SECONDS,
        "seed": seed,
        "hosts": {"A": {"workers": 2, "port": a.port}, "B": {"workers": 2, "port": b.port}},
        "hold_ms": HOLD_MS,
        "pool_env": POOL_ENV,
        "clients": {"run": RUN_CLIENTS, "tag": TAG_CLIENTS, "batch": BATCH_CLIENTS},
        "runs": {"fixed": len(runs), "inserted": writer.inserts, "tag_members": len(tag_members),
                 "batch_members": len(batch_members)},
        "writes": writer.writes,
        "stamps": dict(writer.stamps),
        "published": writer.published,
        "unpublished_deliberately": writer.unpublished,
        "publish_failed_redis_down": writer.publish_failed,
        "received_changes": sum(c.received for c in clients),
        "received_by_kind": {k: sum(c.received for c in clients if c.kind == k) for k in ("run", "tag", "batch")},
        "polls": sum(c.polls for c in clients),
        "retries": sum(c.retries for c in clients),
        "refetches": sum(c.refetches for c in clients),
        "statuses": dict(sum((c.statuses for c in clients), Counter())),
        "events": events,
        "converged_clients": len(converged_at),
        "total_clients": len(clients),
        "converged_after_s": {"max": max(converged_at.values(), default=None), "per_client": converged_at},
        "convergence_bound_s": round(CONVERGE_S, 1),
        "not_converged": {n: d[:5] for n, d in late.items() if d},
    }
    figures["statuses"] = {str(k): v for k, v in figures["statuses"].items()}
    out = STATE_DIR / "log" / "convergence.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nconvergence: writes={writer.writes} (stamps {dict(writer.stamps)}, inserts {writer.inserts}) "
          f"published={writer.published} unpublished={writer.unpublished} publish_failed={writer.publish_failed} "
          f"received={figures['received_changes']} {figures['received_by_kind']} polls={figures['polls']} "
          f"retries={figures['retries']} statuses={figures['statuses']} events={events} "
          f"converged={len(converged_at)}/{len(clients)} in {figures['converged_after_s']['max']} s "
          f"(bound {CONVERGE_S:.1f} s) → {out}")

    errors = {c.name: repr(c.error) for c in clients if c.error is not None}
    assert not errors, errors
    assert pools_alive, "a supervisor exited"
    assert writer.published > 0 and writer.unpublished > 0
    bad = {n: d for n, d in late.items() if d}
    assert not bad, ("clients that do not hold the database "
                     f"{CONVERGE_S:.1f} s after the writer stopped:\n" + json.dumps(bad, indent=1)[:6000])
    assert len(converged_at) == len(clients)
