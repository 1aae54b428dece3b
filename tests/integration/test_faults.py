"""Faults: no update may be lost. Every change written (and published) during a fault reaches its subscriber
afterwards, and the workers recover without a restart.

Covered elsewhere (referenced, not repeated):
- a change written but never published, single-run feed: test_live.py::test_backstop_delivers_a_change_that_was_never_published
- the same for a tag feed: test_list_live.py::test_backstop_delivers_a_change_that_was_never_published
- Redis restarted during a hold: test_redis_restart.py::test_redis_restart_during_a_hold
- ClickHouse unreachable → 503 + retry-after for list snapshots: test_list_resolvers.py::test_unreachable_clickhouse_is_a_retryable_error_for_list_feeds_only
- SIGKILL / SIGTERM of a worker under load, rolling restarts: test_pool.py
"""

import concurrent.futures
import os
import resource
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from conftest import (
    API_KEY, BASE_URL, DEMO_BATCH, DEMO_RUN, ENV_ID, HELD_LIST, HELD_RUN, MODERN, STATE_DIR, WORKERS, ThrowawayWorker,
    ch_sync, expected_body, fcgi_get, get, list_ids, make_env, make_run, metric_sum, offset_of, publish,
    publish_until_done, run_url, runs_list_url, start_live, tag_snapshot, touch, unique_tag, wait_until,
    worker_metrics, worker_sockets, CLICKHOUSE_ON, CLICKHOUSE_URL,
)

RUN_DIR = Path(os.environ.get("RUNFEED_RUN_DIR") or (STATE_DIR / "run"))
HEALTH_URLS = [u.replace("/metrics", "/healthz") for u in
               (os.environ.get("RUNFEED_METRICS_URLS") or os.environ.get("RUNFEED_METRICS_URL") or "").strip('"').split()]
PG_BIN = "/usr/lib/postgresql/15/bin"


def worker_pids():
    return [int((RUN_DIR / f"worker-{n}.pid").read_text().strip()) for n in range(1, WORKERS + 1)]


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def all_healthy():
    try:
        return all(requests.get(u, timeout=2).status_code == 200 for u in HEALTH_URLS)
    except requests.RequestException:
        return False


def held_total():
    s = worker_metrics()
    return metric_sum(s, HELD_RUN) + metric_sum(s, HELD_LIST)


def follow_until(run, offset, want_ms, token=API_KEY, timeout=20):
    """Follows the run like the SDK (live polls from `offset`, retrying 5xx) until a response carries
    updatedAt >= want_ms. Returns the responses seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = get(run_url(run.friendly_id), token=token, timeout=20,
                params={"live": "true", "handle": run.handle, "offset": offset, "cursor": "", "log": "full"})
        seen.append(r)
        if r.status_code >= 500 or r.status_code == 429:
            time.sleep(0.2)
            continue
        assert r.status_code == 200, (r.status_code, r.text)
        offset = r.headers["electric-offset"]
        if offset_of(r)[0] >= want_ms:
            return seen
    raise AssertionError(f"change {want_ms} never delivered; last: {[ (x.status_code, x.text[:120]) for x in seen[-3:]]}")


# --------------------------------------------------------------------------------------
# PostgreSQL outage
# --------------------------------------------------------------------------------------

def pg_data():
    loc = (STATE_DIR / "pg.location")
    base = Path(loc.read_text().strip()) if loc.exists() else STATE_DIR / "pg"
    return base / "data", base / "postgres.log"


def pg_ctl(*args):
    data, log = pg_data()
    p = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", str(data), "-l", str(log), "-w",
                        "-t", "60", *args], capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, f"pg_ctl {args} failed: {p.stdout}{p.stderr}"


def pg_up():
    port = urlsplit(os.environ["DATABASE_URL"]).port
    return subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0


@pytest.mark.skipif(not os.path.exists(f"{PG_BIN}/pg_ctl"), reason="PostgreSQL 15 binaries not found")
def test_postgres_outage_is_retryable_and_loses_no_update():
    pids = worker_pids()
    held_run = make_run(status="PENDING")
    snap_run = make_run(status="PENDING")
    _, fresh_key = make_env()            # never used before the outage: not in any auth cache
    t = unique_tag("pgdown")
    make_run(tags=[t], age="2 minutes")  # a member: the tag snapshot must hydrate it from Postgres
    ch_sync(ENV_ID)
    held_snap = get(run_url(held_run.friendly_id))
    get(run_url(snap_run.friendly_id))   # caches the demo key's environment
    before = held_total()
    held = start_live(held_run, held_snap.headers["electric-offset"])
    wait_until(lambda: held_total() >= before + 1, 5, what="the poll to be held")

    outage = []
    pg_ctl("stop", "-m", "fast")
    try:
        time.sleep(0.4)  # past the 250 ms row cache
        publish(ENV_ID, held_run.id)      # a wake whose row read fails
        cases = [
            ("snapshot, cached key", run_url(snap_run.friendly_id), {}, API_KEY),
            ("snapshot, uncached key", run_url(snap_run.friendly_id), {}, fresh_key),
            ("tag snapshot", runs_list_url(), {"tags": t}, API_KEY),
            ("batch snapshot", BASE_URL + "/realtime/v1/batches/" + DEMO_BATCH, {}, API_KEY),
            ("live poll", run_url(snap_run.friendly_id),
             {"live": "true", "handle": snap_run.handle, "offset": "1_1", "cursor": ""}, API_KEY),
        ]
        for name, url, params, key in cases:
            t0 = time.monotonic()
            r = get(url, params=params, token=key, timeout=15)
            outage.append((name, r.status_code, r.headers.get("retry-after"), r.headers.get("electric-offset"),
                           round(time.monotonic() - t0, 2), r.text[:120]))
    finally:
        pg_ctl("start")
    wait_until(pg_up, 30, 0.1, "postgres to accept connections")
    print("during the postgres outage:", outage)
    # A live poll may instead be held and answered up-to-date with its offset floor unchanged (ARCHITECTURE
    # "Failures"): the client re-polls from the same floor, so nothing is lost.
    def ok(o):
        if o[0] == "live poll" and o[1] == 200:
            return o[5] == '[{"headers":{"control":"up-to-date"}}]' and (o[3] or "").split("_")[0] == "1"
        return o[1] >= 500 and bool(o[2])
    bad = [o for o in outage if not ok(o)]
    assert not bad, f"requests during the outage must be 5xx with retry-after (never 4xx): {bad}"

    # Back without restarting workers: snapshots work (bounded), the held poll answers 200.
    wait_until(lambda: get(run_url(snap_run.friendly_id)).status_code == 200, 15, 0.2, "snapshots to work again")
    wait_until(lambda: get(run_url(snap_run.friendly_id), token=fresh_key).status_code == 404, 15, 0.2,
               "an uncached key to authenticate again")
    want = touch(held_run, "EXECUTING", metadata='{"after":"outage"}')
    publish_until_done([held], ENV_ID, held_run.id, timeout=10)
    r = held.result()
    assert r.status_code == 200, (r.status_code, r.text)
    seen = [r] if offset_of(r)[0] >= want else follow_until(held_run, r.headers["electric-offset"], want)
    assert seen[-1].text == expected_body(held_run.friendly_id, "update")
    # A fresh live poll is woken by a record again.
    snap = get(run_url(snap_run.friendly_id))
    fut = start_live(snap_run, snap.headers["electric-offset"])
    want2 = touch(snap_run, "EXECUTING")
    publish_until_done([fut], ENV_ID, snap_run.id, timeout=10)
    r2 = fut.result()
    assert r2.status_code == 200 and offset_of(r2)[0] == want2, r2.text[:300]
    wait_until(all_healthy, 15, 0.2, "every worker's /healthz to be ok again")
    assert worker_pids() == pids, "a worker was restarted"


# --------------------------------------------------------------------------------------
# ClickHouse outage while a list feed is held (worker behind a TCP proxy we can cut)
# --------------------------------------------------------------------------------------

class CuttableProxy:
    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.lsock.listen(64)
        self.up = True
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.lsock.close()


@pytest.mark.skipif(not CLICKHOUSE_ON, reason="the stack runs without ClickHouse")
def test_clickhouse_outage_keeps_the_held_list_feed_working_set():
    u = urlsplit(CLICKHOUSE_URL)
    proxy = CuttableProxy((u.hostname, u.port))
    t = unique_tag("chdown")
    r1 = make_run(tags=[t], status="PENDING", age="2 minutes")
    ch_sync(ENV_ID)
    try:
        with ThrowawayWorker("ch-cut", {"REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL": f"http://127.0.0.1:{proxy.port}"}) as w:
            path = "/realtime/v1/runs"
            snap = w.get(path, params={"tags": t})
            assert snap.status_code == 200 and list_ids(snap.text) == [r1.id], snap.text[:300]
            h, off = snap.headers["electric-handle"], snap.headers["electric-offset"]
            pool = concurrent.futures.ThreadPoolExecutor(4)

            def poll(h, off):
                return w.get(path, params={"tags": t, "live": "true", "handle": h, "offset": off, "cursor": ""})

            proxy.cut()
            # 1. an update of a member and 2. a run created during the outage, each with its full record.
            fut = pool.submit(poll, h, off)
            time.sleep(0.5)
            touch(r1, "EXECUTING")
            deadline = time.monotonic() + 3
            while not fut.done() and time.monotonic() < deadline:
                publish(ENV_ID, r1.id, tags=[t])
                concurrent.futures.wait([fut], timeout=0.25)
            r = fut.result()
            assert r.status_code == 200, (r.status_code, r.text)
            assert (r1.id, "update") in [(i, op) for i, op in _rows(r.text)], r.text[:300]
            h, off = r.headers["electric-handle"], r.headers["electric-offset"]

            fut = pool.submit(poll, h, off)
            time.sleep(0.3)
            r2 = make_run(tags=[t], status="PENDING", age="1 second")
            deadline = time.monotonic() + 3
            while not fut.done() and time.monotonic() < deadline:
                publish(ENV_ID, r2.id, tags=[t])
                concurrent.futures.wait([fut], timeout=0.25)
            r = fut.result()
            assert r.status_code == 200, (r.status_code, r.text)
            assert (r2.id, "insert") in _rows(r.text), r.text[:300]
            h, off = r.headers["electric-handle"], r.headers["electric-offset"]

            # 3. the deadline passes during the outage: answered 200 (up-to-date), nothing re-sent or dropped.
            r = poll(h, off)
            assert r.status_code == 200, (r.status_code, r.text)
            assert _rows(r.text) == [], r.text[:300]
            h, off = r.headers["electric-handle"], r.headers["electric-offset"]

            # ClickHouse back: the working set was kept (r1, r2 not re-sent as inserts); a later change arrives.
            proxy.restore()
            ch_sync(ENV_ID)
            fut = pool.submit(poll, h, off)
            time.sleep(0.3)
            touch(r2, "EXECUTING")
            deadline = time.monotonic() + 3
            while not fut.done() and time.monotonic() < deadline:
                publish(ENV_ID, r2.id, tags=[t])
                concurrent.futures.wait([fut], timeout=0.25)
            r = fut.result()
            assert r.status_code == 200, (r.status_code, r.text)
            assert _rows(r.text) == [(r2.id, "update")], r.text[:300]
            assert w.proc.poll() is None
    finally:
        proxy.close()


def _rows(text):
    import json
    return [(m["value"]["id"], m["headers"]["operation"]) for m in json.loads(text) if "key" in m]


# --------------------------------------------------------------------------------------
# Thousands of clients that leave mid-hold
# --------------------------------------------------------------------------------------

def live_request(run, offset, key):
    u = urlsplit(BASE_URL)
    q = urlencode({"live": "true", "handle": run.handle, "offset": offset, "cursor": "", "log": "full"})
    return (f"GET /realtime/v1/runs/{run.friendly_id}?{q} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
            f"Authorization: Bearer {key}\r\nx-trigger-electric-version: {MODERN}\r\n\r\n").encode()


def test_thousands_of_clients_leaving_mid_hold_release_everything():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(2000, hard - 200)
    env_id, key = make_env()
    run = make_run(env_id=env_id)
    snap = get(run_url(run.friendly_id), token=key)
    req = live_request(run, snap.headers["electric-offset"], key)
    pids = worker_pids()
    wait_until(lambda: held_total() == 0, 10, 0.1, "no held polls before the test")  # leftovers of earlier tests
    time.sleep(0.2)
    base_fds = [fd_count(p) for p in pids]
    base_rss = [rss_kb(p) for p in pids]
    u = urlsplit(BASE_URL)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((u.hostname, u.port), timeout=5)
            s.sendall(req)
            socks.append(s)
        wait_until(lambda: held_total() >= n, 20, 0.2, f"{n} polls to be held")
        peak_fds = [fd_count(p) for p in pids]
        readable, _, _ = select.select(socks[:1000], [], [], 0)  # select() takes fds < 1024
        assert not readable, f"{len(readable)} of the polls were answered instead of held"
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: held_total() == 0, 20, 0.2, "runfeed_held_polls to return to 0")
    wait_until(lambda: all(fd_count(p) <= b + 4 for p, b in zip(pids, base_fds)), 20, 0.2,
               f"worker fds to return to the baseline {base_fds}")
    after_rss = [rss_kb(p) for p in pids]
    print(f"{n} clients left mid-hold: fds base={base_fds} peak={peak_fds} after={[fd_count(p) for p in pids]} "
          f"rss_kb before={base_rss} after={after_rss}")
    # A parked poll costs a few KB (libfcgi's buffers are freed before parking); allow for the allocator
    # keeping freed pages, but not for memory held per departed client.
    assert all(a <= b + 32 * 1024 for a, b in zip(after_rss, base_rss)), (base_rss, after_rss)
    assert worker_pids() == pids
    # And the workers still serve.
    assert get(run_url(run.friendly_id), token=key).status_code == 200
    assert all_healthy()


# --------------------------------------------------------------------------------------
# A stalled reader does not block the other subscribers
# --------------------------------------------------------------------------------------

N_STALLED = int(os.environ.get("RUNFEED_TEST_STALLED", "6"))
BIG_PAYLOAD = '{"blob":"' + "x" * 2_000_000 + '"}'


def stalled_socket(connect, request):
    s = socket.socket(*connect[0])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.settimeout(5)
    s.connect(connect[1])
    s.sendall(request)
    return s


def test_stalled_reader_through_nginx_does_not_block_other_subscribers():
    run = make_run(status="PENDING", payload=BIG_PAYLOAD)
    snap = get(run_url(run.friendly_id))
    u = urlsplit(BASE_URL)
    before = held_total()
    stalled = stalled_socket(((socket.AF_INET, socket.SOCK_STREAM), (u.hostname, u.port)),
                             live_request(run, snap.headers["electric-offset"], API_KEY))
    try:
        subs = [start_live(run, snap.headers["electric-offset"], timeout=20) for _ in range(20)]
        wait_until(lambda: held_total() >= before + 21, 10, 0.1, "21 held polls")
        want = touch(run, "EXECUTING")
        publish_until_done(subs, ENV_ID, run.id, timeout=10)
        for f in subs:
            r = f.result()
            assert r.status_code == 200 and offset_of(r)[0] == want, (r.status_code, r.text[:200])
    finally:
        stalled.close()
    assert all_healthy()


def test_stalled_fastcgi_readers_do_not_block_other_answers():
    """Straight to a worker (no nginx buffering): six stalled FastCGI readers, each
    owed a 2 MB answer, must not stop 20 other subscribers from getting theirs."""
    from conftest import _fcgi_record, _fcgi_params, FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_STDIN, headers
    big = make_run(status="PENDING", payload=BIG_PAYLOAD)
    small = make_run(status="PENDING")
    with ThrowawayWorker("stalled", {}) as w:
        big_off = w.get("/realtime/v1/runs/" + big.friendly_id).headers["electric-offset"]
        small_off = w.get("/realtime/v1/runs/" + small.friendly_id).headers["electric-offset"]

        def fcgi_request(run, off):
            q = urlencode({"live": "true", "handle": run.handle, "offset": off, "cursor": ""})
            path = "/realtime/v1/runs/" + run.friendly_id
            env = {"REQUEST_METHOD": "GET", "DOCUMENT_URI": path, "REQUEST_URI": path + "?" + q, "QUERY_STRING": q,
                   "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1"}
            for k, v in headers().items():
                env["HTTP_" + k.upper().replace("-", "_")] = v
            return (_fcgi_record(FCGI_BEGIN_REQUEST, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + _fcgi_record(FCGI_PARAMS, _fcgi_params(env))
                    + _fcgi_record(FCGI_PARAMS, b"") + _fcgi_record(FCGI_STDIN, b""))

        stalled = [stalled_socket(((socket.AF_INET, socket.SOCK_STREAM), w.addr), fcgi_request(big, big_off))
                   for _ in range(N_STALLED)]
        try:
            pool = concurrent.futures.ThreadPoolExecutor(20)
            subs = [pool.submit(fcgi_get, w.addr, "/realtime/v1/runs/" + small.friendly_id,
                                {"live": "true", "handle": small.handle, "offset": small_off, "cursor": ""}, 20)
                    for _ in range(20)]
            wait_until(lambda: w.metrics().get(HELD_RUN, 0) >= 20 + N_STALLED, 10, 0.1, "all polls held")
            touch(big, "EXECUTING")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and w.metrics().get(HELD_RUN, 0) > 20:
                publish(ENV_ID, big.id)
                time.sleep(0.25)
            time.sleep(0.5)  # the writers are now stuck on the stalled sockets, if they can be
            want = touch(small, "EXECUTING")
            publish_until_done(subs, ENV_ID, small.id, timeout=5)
            done, pending = concurrent.futures.wait(subs, timeout=1)
            assert not pending, f"{len(pending)} of 20 subscribers got no answer while {N_STALLED} FastCGI readers were stalled"
            for f in subs:
                r = f.result()
                assert r.status_code == 200 and offset_of(r)[0] == want, (r.status_code, r.text[:200])
        finally:
            for s in stalled:
                s.close()
