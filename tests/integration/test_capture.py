"""Change capture (`runfeed capture`, issue 16): plain SQL writes, with no record published by anyone, become
change records read from a logical replication slot (pgoutput) and wake held polls; faults lose nothing.

Each test starts its own capturer(s) on a slot and publication of its own (the test stack runs none: other
tests rely on unpublished writes staying unpublished), and a Redis subscriber of its own on the env channels
it watches. A record from the capturer carries the commit `lsn`, so it is told apart from any other publisher.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import (
    DATABASE_URL, ENV_ID, REDIS_HOST, REDIS_PORT, RUNFEED_BIN, STATE_DIR, UP_TO_DATE_BODY, _redis_socket, _resp_read,
    batch_url, ch_sync, channel, env_project, expected_body, get, list_ids, lit, make_batch, make_env, make_run,
    metric_sum, numsub, psql, run_url, runs_list_url, start_list_live, start_live, touch, unique_suffix,
    unique_tag, wait_until, worker_metrics, NOW, HELD_LIST, HELD_RUN,
)
from tcpproxy import TcpProxy

METRICS_PORT_BASE = int(os.environ.get("RUNFEED_CAPTURE_METRICS_PORT") or 19600)
RUN_BACKSTOP = 'runfeed_backstop_deliveries_total{kind="run"}'
LIST_BACKSTOP = 'runfeed_backstop_deliveries_total{kind="list"}'
_port_seq = [0]


class Capturer:
    """One `runfeed capture` process on `slot` (its log in $RUNFEED_STATE/log/capture-<slot>-<n>.log)."""

    def __init__(self, slot, publication=None, extra_env=None):
        _port_seq[0] += 1
        self.slot = slot
        self.port = METRICS_PORT_BASE + 1 + (_port_seq[0] % 8)
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": DATABASE_URL, "RUNFEED_CAPTURE_SLOT": slot,
            "RUNFEED_CAPTURE_PUBLICATION": publication or slot,
            "RUNFEED_CAPTURE_METRICS_PORT": str(self.port),
            "RUNFEED_CAPTURE_RETRY_MIN_MS": "100", "RUNFEED_CAPTURE_RETRY_MAX_MS": "1000",
        })
        env.pop("RUNFEED_CAPTURE_METRICS_LISTEN", None)
        env.update(extra_env or {})
        log_dir = STATE_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"capture-{slot}-{_port_seq[0]}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([RUNFEED_BIN, "capture"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def health(self):
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()
        except (requests.RequestException, ValueError):
            return {}

    def metrics(self):
        r = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2)
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def state(self):
        return self.health().get("state")

    def wait_state(self, state, timeout=30):
        wait_until(lambda: self.state() == state or self.proc.poll() is not None, timeout, 0.1,
                   f"capturer {self.slot} to be {state}")
        assert self.proc.poll() is None, f"capturer exited ({self.proc.returncode}): {self.tail()}"

    def tail(self):
        try:
            return self.log_path.read_text()[-2000:]
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.log.close()


def drop_slot(slot):
    """Drops the slot once no process uses it, and its publication."""
    def gone():
        rows = psql(f"SELECT active FROM pg_replication_slots WHERE slot_name = {lit(slot)}")
        if not rows:
            return True
        if rows == ["f"]:
            psql(f"SELECT pg_drop_replication_slot({lit(slot)}) FROM pg_replication_slots "
                 f"WHERE slot_name = {lit(slot)} AND NOT active")
        return False
    wait_until(gone, 20, 0.2, f"slot {slot} to be dropped")
    psql(f'DROP PUBLICATION IF EXISTS "{slot}"')


@pytest.fixture
def slot():
    name = "it_capture_" + unique_suffix()[:10]
    started = []
    yield name, started
    for c in started:
        c.kill()
    drop_slot(name)


def start(slot_fixture, **kw):
    name, started = slot_fixture
    c = Capturer(name, **kw)
    started.append(c)
    return c


class Subscriber:
    """A Redis SUBSCRIBE on env channels, collecting the capturer's records (those with an `lsn`)."""

    def __init__(self, *env_ids):
        self.sock = _redis_socket(REDIS_HOST, REDIS_PORT, 30)
        chans = [channel(e) for e in env_ids]
        payload = b"*%d\r\n$9\r\nSUBSCRIBE\r\n" % (len(chans) + 1)
        for c in chans:
            payload += b"$%d\r\n%s\r\n" % (len(c.encode()), c.encode())
        self.sock.sendall(payload)
        self.f = self.sock.makefile("rb")
        for _ in chans:
            assert _resp_read(self.f)[0] == "subscribe"
        self.lock = threading.Lock()
        self.records = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                msg = _resp_read(self.f)
            except (OSError, ConnectionError, ValueError, RuntimeError):
                return
            if isinstance(msg, list) and msg and msg[0] == "message":
                rec = json.loads(msg[2])
                if "lsn" in rec:
                    with self.lock:
                        self.records.append(rec)

    def run_ids(self):
        with self.lock:
            return {r["runId"] for r in self.records}

    def count(self):
        with self.lock:
            return len(self.records)

    def wait_for(self, ids, timeout=60):
        ids = set(ids)
        wait_until(lambda: ids <= self.run_ids(), timeout, 0.1,
                   f"records for {len(ids)} runs (have {len(ids & self.run_ids())})")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def bulk_insert(env_id, n, tag, transactions=1):
    """Inserts n runs with `tag` by SQL, in `transactions` commits; returns their ids."""
    project = env_project(env_id)
    prefix = "cmcap" + unique_suffix()[:8]
    per = n // transactions
    stmts = []
    for t in range(transactions):
        stmts.append(f'''BEGIN;
INSERT INTO "TaskRun" ("id","friendlyId","taskIdentifier","updatedAt","payload","runTags","runtimeEnvironmentId","projectId")
SELECT {lit(prefix)} || lpad(g::text, 8, '0'), 'run_' || {lit(prefix)} || lpad(g::text, 8, '0'), 'cap-task', {NOW},
       '{{}}', ARRAY[{lit(tag)}]::text[], {lit(env_id)}, {lit(project)}
FROM generate_series({t * per + 1}, {(t + 1) * per}) g;
COMMIT;''')
    psql("\n".join(stmts))
    return {f"{prefix}{i:08d}" for i in range(1, transactions * per + 1)}


def psql_super(sql):
    """SQL as the postgres superuser, over the stack's unix socket (trust), as scripts/stack.sh's psql_super."""
    from urllib.parse import urlsplit
    from conftest import PSQL
    loc = STATE_DIR / "pg.location"
    base = Path(loc.read_text().strip()) if loc.exists() else STATE_DIR / "pg"
    u = urlsplit(DATABASE_URL)
    p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(base / "run"), "-p", str(u.port),
                        "-U", "postgres", "-d", u.path.lstrip("/"), "-c", sql], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def lsn_bytes(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def held():
    m = worker_metrics()
    return metric_sum(m, HELD_RUN) + metric_sum(m, HELD_LIST)


def backstops():
    m = worker_metrics()
    return metric_sum(m, RUN_BACKSTOP) + metric_sum(m, LIST_BACKSTOP)


# ---- wakes ----------------------------------------------------------------------------------------

def test_plain_sql_update_wakes_run_tag_and_batch_feeds(slot):
    cap = start(slot)
    cap.wait_state("active")
    env_id, key = make_env()
    t = unique_tag("cap")
    batch = make_batch(env_id=env_id)
    run = make_run(env_id=env_id, tags=[t], batch_id=batch.id, age="2 minutes")
    ch_sync(env_id)
    sub = Subscriber(env_id)
    try:
        rsnap = get(run_url(run.friendly_id), token=key)
        tsnap = get(runs_list_url(), params={"tags": t}, token=key)
        bsnap = get(batch_url(batch.friendly_id), token=key)
        assert (rsnap.status_code, tsnap.status_code, bsnap.status_code) == (200, 200, 200)
        assert list_ids(tsnap) == [run.id] and list_ids(bsnap) == [run.id]
        before = backstops()
        held0 = held()
        futs = [
            start_live(run, rsnap.headers["electric-offset"], token=key),
            start_list_live(runs_list_url(), tsnap.headers["electric-handle"], tsnap.headers["electric-offset"],
                            params={"tags": t}, token=key),
            start_list_live(batch_url(batch.friendly_id), bsnap.headers["electric-handle"],
                            bsnap.headers["electric-offset"], token=key),
        ]
        wait_until(lambda: held() >= held0 + 3 or any(f.done() for f in futs), 10, what="the polls to be held")
        wait_until(lambda: numsub(env_id) >= 2, 5, what="a worker to subscribe to the env channel")
        # The only write: plain SQL, nobody publishes.
        touch(run, "EXECUTING", metadata='{"by":"sql"}')
        results = [f.result(timeout=30) for f in futs]
        for r in results:
            assert r.status_code == 200, r.text
            assert r.text != UP_TO_DATE_BODY
            assert '"status":"EXECUTING"' in r.text, r.text
        assert results[0].text == expected_body(run.friendly_id, "update")
        sub.wait_for({run.id}, 10)
        rec = next(r for r in sub.records if r["runId"] == run.id)
        assert rec["envId"] == env_id and rec["tags"] == [t] and rec["batchId"] == batch.id
        assert isinstance(rec["updatedAtMs"], int)
        # Woken by the captured record: no poll was answered by its hold-deadline re-read.
        assert backstops() == before
    finally:
        sub.close()


def test_run_inserted_by_sql_appears_in_a_tag_feed(slot):
    cap = start(slot)
    cap.wait_state("active")
    env_id, key = make_env()
    t = unique_tag("capins")
    old = make_run(env_id=env_id, tags=[t], age="3 minutes")
    ch_sync(env_id)
    snap = get(runs_list_url(), params={"tags": t}, token=key)
    assert list_ids(snap) == [old.id]
    before = backstops()
    fut = start_list_live(runs_list_url(), snap.headers["electric-handle"], snap.headers["electric-offset"],
                          params={"tags": t}, token=key)
    wait_until(lambda: numsub(env_id) >= 1 or fut.done(), 5, what="the poll to be held")
    new = make_run(env_id=env_id, tags=[t], age="1 second")  # plain SQL INSERT, no ClickHouse sync, no record
    r = fut.result(timeout=30)
    assert r.status_code == 200, r.text
    assert new.id in list_ids(r), r.text
    assert backstops() == before


# ---- faults ---------------------------------------------------------------------------------------

def test_capturer_killed_mid_stream_resumes_and_loses_nothing(slot):
    cap = start(slot)
    cap.wait_state("active")
    env_id, _ = make_env()
    sub = Subscriber(env_id)
    try:
        result = {}
        writer = threading.Thread(target=lambda: result.setdefault("ids", bulk_insert(env_id, 3000, "capkill", 60)))
        writer.start()
        wait_until(lambda: sub.count() >= 200 or not writer.is_alive(), 60, 0.05, "some records")
        cap.kill(signal.SIGKILL)
        killed_at = sub.count()
        writer.join(120)
        again = start(slot)
        again.wait_state("active", 60)
        sub.wait_for(result["ids"], 120)
        print(f"records before the kill: {killed_at}; after the restart: {sub.count()} for {len(result['ids'])} runs")
        wait_until(lambda: again.metrics()["runfeed_capture_backlog_records"] == 0, 20, what="an empty backlog")
        assert again.metrics()["runfeed_capture_lag_seconds"] == 0
    finally:
        sub.close()


def test_redis_unreachable_stops_confirming_then_publishes_the_backlog(slot):
    proxy = TcpProxy(REDIS_PORT)
    try:
        cap = start(slot, extra_env={"REDIS_PORT": str(proxy.port), "RUNFEED_CAPTURE_MAX_BACKLOG": "500"})
        cap.wait_state("active")
        env_id, _ = make_env()
        sub = Subscriber(env_id)  # straight to Redis: it sees every record published
        try:
            first = bulk_insert(env_id, 10, "capredis")
            sub.wait_for(first, 30)
            proxy.partition()
            during = bulk_insert(env_id, 1500, "capredis", 15)  # more than the backlog bound
            wait_until(lambda: cap.metrics()["runfeed_capture_redis_up"] == 0, 30, what="the capturer to see Redis down")
            wait_until(lambda: cap.metrics()["runfeed_capture_backlog_records"] >= 500, 30, what="a full backlog")
            m = cap.metrics()
            confirmed = m["runfeed_capture_confirmed_lsn_bytes"]
            assert m["runfeed_capture_backlog_records"] <= 500 + 100, "the backlog bound (plus one transaction)"
            assert cap.health().get("status") == "degraded"
            assert not (during & sub.run_ids())
            proxy.heal()
            sub.wait_for(during, 120)
            wait_until(lambda: cap.metrics()["runfeed_capture_backlog_records"] == 0, 30, what="an empty backlog")
            assert cap.metrics()["runfeed_capture_redis_up"] == 1
            assert cap.metrics()["runfeed_capture_confirmed_lsn_bytes"] > confirmed
            # While Redis was unreachable the slot was never confirmed past an unpublished transaction.
            first_commit = min(lsn_bytes(r["lsn"]) for r in sub.records if r["runId"] in during)
            assert confirmed < first_commit, (confirmed, first_commit)
        finally:
            sub.close()
    finally:
        proxy.close()


def test_redis_restart_publishes_what_was_committed_meanwhile(slot):
    from test_redis_restart import start_redis, stop_redis
    cap = start(slot)
    cap.wait_state("active")
    env_id, _ = make_env()
    published0 = cap.metrics()["runfeed_capture_records_published_total"]
    stop_redis()
    try:
        during = bulk_insert(env_id, 200, "caprr", 4)
        wait_until(lambda: cap.metrics()["runfeed_capture_redis_up"] == 0, 30, what="the capturer to see Redis down")
        wait_until(lambda: cap.metrics()["runfeed_capture_backlog_records"] == len(during), 30,
                   what="every change of the outage waiting")
        assert cap.metrics()["runfeed_capture_records_published_total"] == published0
    finally:
        start_redis()
    wait_until(lambda: cap.metrics()["runfeed_capture_backlog_records"] == 0, 60, what="the backlog published")
    m = cap.metrics()
    assert m["runfeed_capture_records_published_total"] - published0 == len(during)
    assert m["runfeed_capture_redis_up"] == 1 and m["runfeed_capture_lag_seconds"] == 0
    sub = Subscriber(env_id)
    try:
        later = bulk_insert(env_id, 3, "caprr")
        sub.wait_for(later, 30)
    finally:
        sub.close()


def test_postgres_restart_resumes_from_the_slot(slot):
    from test_faults import PG_BIN, pg_ctl, pg_up
    if not os.path.exists(f"{PG_BIN}/pg_ctl"):
        pytest.fail("PostgreSQL 15 binaries not found")
    cap = start(slot)
    cap.wait_state("active")
    env_id, _ = make_env()
    sub = Subscriber(env_id)
    try:
        before = bulk_insert(env_id, 50, "cappg")
        pg_ctl("restart", "-m", "fast")
        wait_until(pg_up, 30, 0.1, "postgres to accept connections")
        after = bulk_insert(env_id, 50, "cappg")
        sub.wait_for(before | after, 60)
        wait_until(lambda: cap.state() == "active", 30, what="the capturer streaming again")
        assert cap.metrics()["runfeed_capture_reconnects_total"] >= 1
    finally:
        sub.close()


def test_ten_thousand_rows_in_one_commit(slot):
    cap = start(slot)
    cap.wait_state("active")
    env_id, _ = make_env()
    sub = Subscriber(env_id)
    try:
        published0 = cap.metrics()["runfeed_capture_records_published_total"]
        ids = bulk_insert(env_id, 10_000, "capbig")
        sub.wait_for(ids, 180)
        lsns = {r["lsn"] for r in sub.records if r["runId"] in ids}
        assert len(lsns) == 1, "one transaction, one commit LSN"
        m = cap.metrics()
        assert m["runfeed_capture_records_published_total"] - published0 == 10_000
        assert sub.count() == 10_000, "published = received, each once"
        wait_until(lambda: cap.metrics()["runfeed_capture_backlog_records"] == 0, 20, what="an empty backlog")
    finally:
        sub.close()


def test_standby_takes_over_from_a_killed_active_capturer(slot):
    a = start(slot)
    a.wait_state("active")
    b = start(slot)
    b.wait_state("standby")
    assert a.state() == "active"
    env_id, _ = make_env()
    sub = Subscriber(env_id)
    try:
        first = bulk_insert(env_id, 5, "capstandby")
        sub.wait_for(first, 30)
        a.kill(signal.SIGKILL)
        b.wait_state("active", 60)
        later = bulk_insert(env_id, 5, "capstandby")
        sub.wait_for(later, 30)
        assert b.metrics()["runfeed_capture_standby_retries_total"] >= 1
    finally:
        sub.close()


def test_role_without_rights_gets_the_publication_sql(slot):
    """A role that may not create the publication: the process exits 2 naming the SQL an operator must run."""
    name, _ = slot
    role = "it_norights_" + unique_suffix()[:8]
    psql_super(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw'")
    try:
        from urllib.parse import urlsplit, urlunsplit
        u = urlsplit(DATABASE_URL)
        url = urlunsplit((u.scheme, f"{role}:pw@{u.hostname}:{u.port}", u.path, u.query, ""))
        c = Capturer(name, extra_env={"DATABASE_URL": url})
        rc = c.proc.wait(timeout=30)
        c.log.close()
        out = c.tail()
        assert rc == 2, out
        assert f'CREATE PUBLICATION {name} FOR TABLE "TaskRun"' in out, out
    finally:
        psql_super(f"DROP ROLE {role}")


def test_every_metric_the_capture_alerts_use_exists_on_a_capturer(slot):
    """deploy/prometheus/runfeed-capture-alerts.yml only names series an active capturer and a standby expose."""
    import re
    import yaml
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "runfeed-capture-alerts.yml"
    exprs = [r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
    used = {n for e in exprs for n in re.findall(r"\b(runfeed_capture_[a-z_]+)\b", e)}
    assert used >= {"runfeed_capture_active", "runfeed_capture_lag_bytes", "runfeed_capture_lag_seconds",
                    "runfeed_capture_redis_up"}, used
    active = start(slot)
    active.wait_state("active")
    standby = start(slot)
    standby.wait_state("standby")
    wait_until(lambda: standby.metrics().get("runfeed_capture_standby_retries_total", 0) >= 1, 30, 0.2,
               "the second capturer to stand by")
    for c, streaming in ((active, 1.0), (standby, 0.0)):
        m = c.metrics()
        for name in used:
            assert name in m, f"{name} is not exposed by a capturer ({sorted(m)})"
        assert m["runfeed_capture_active"] == streaming
        assert m["runfeed_capture_redis_up"] == 1.0
