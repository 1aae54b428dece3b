"""Worker pools (`runfeed serve --workers N`): the supervisor, restarts, SIGTERM drain, SIGHUP rolling
restart under load, hopping between pools ("hosts") behind one nginx, and the per-environment
concurrency limit of held live polls.

Every process here is started by this module (through pools.py's `procs` fixture) and stopped by PID:
supervisors of the debug binary (`RUNFEED_BIN`) listening on free 127.0.0.1 TCP ports, and a small nginx
of its own whose config is generated in a temp dir (upstreams with `least_conn`, `fastcgi_next_upstream error;
fastcgi_next_upstream_tries 2; fastcgi_read_timeout 60s;` as in nginx/local.conf.template). They use
the test stack's PostgreSQL and Redis from demo.env. The stack's own nginx and workers are not used.

The rolling-restart test is sized by environment variables, so the same code produces the figures in
docs/OPERATIONS.md:

    RUNFEED_ROLLING_SUBSCRIBERS (40)  RUNFEED_ROLLING_RUNS (10)  RUNFEED_ROLLING_CHANGES (60)
    RUNFEED_ROLLING_RELOADS (2)       RUNFEED_ROLLING_WORKERS (2)  RUNFEED_ROLLING_SPACING_MS (300)
"""

import concurrent.futures
import json
import os
import random
import signal
import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from conftest import (
    MODERN, UP_TO_DATE_BODY, expected_body, headers, make_env, make_run, publish, redis_cmd, run_url, touch,
    updated_ms, wait_until,
)
from pools import _ppid, alive, pick_ports, procs  # noqa: F401 (procs is a fixture)

POLL_TIMEOUT = 30                # HTTP timeout of one request: far above any hold used here
LIMIT_BODY = '{"error":"Too many concurrent requests"}'
LIMIT_FAILED_BODY = '{"error":"Failed to get concurrency limit"}'
STATUSES = ["EXECUTING", "WAITING_TO_RESUME", "RETRYING_AFTER_FAILURE", "PAUSED", "INTERRUPTED",
            "COMPLETED_SUCCESSFULLY", "COMPLETED_WITH_ERRORS"]

_executor = concurrent.futures.ThreadPoolExecutor(max_workers=256)


def _int_env(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


# --------------------------------------------------------------------------------------
# HTTP helpers (through the test nginx)
# --------------------------------------------------------------------------------------

def snap(base, run, key=None):
    r = requests.get(run_url(run.friendly_id, base), headers=headers(token=key or "default"), timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r


def live_poll(base, run, offset, key=None, cursor="", timeout=POLL_TIMEOUT):
    p = {"live": "true", "handle": run.handle, "offset": offset, "cursor": cursor, "log": "full"}
    return requests.get(run_url(run.friendly_id, base), params=p, headers=headers(token=key or "default"),
                        timeout=timeout)


def start_poll(base, run, offset, **kw):
    return _executor.submit(live_poll, base, run, offset, **kw)


def floor(resp):
    return int(resp.headers["electric-offset"].split("_")[0])


def changes(resp):
    return [m for m in json.loads(resp.text) if "value" in m]


def version(msg):
    """The write counter a test put into the row's metadata (`{"n": …}`), or None."""
    md = msg["value"].get("metadata")
    try:
        return json.loads(md).get("n") if md else None
    except ValueError:
        return None


def change(env_id, run, n, status=None):
    """One distinct version of the run (status and metadata `{"n": n}`), published; returns updatedAtMs."""
    ms = touch(run, status or STATUSES[n % len(STATUSES)], metadata=json.dumps({"n": n}))
    publish(env_id, run.id, updated_at_ms=ms)
    return ms


def wait_held(pool, n, timeout=10):
    wait_until(lambda: sum(pool.held()) >= n, timeout, 0.05, f"{n} polls to be held in {pool}")


def zcard(env_id):
    return int(redis_cmd("ZCARD", "tr:realtime:native:concurrency:{" + env_id + "}"))


# --------------------------------------------------------------------------------------
# 1. Pool basics
# --------------------------------------------------------------------------------------

def test_pool_runs_two_worker_processes_that_serve_through_nginx(procs):
    pool = procs.pool("basic", workers=2)
    ng = procs.nginx({"main": [pool.port]})
    pids = pool.worker_pids()
    assert len(pids) == 2, pids
    assert pool.pid not in pids
    # The supervisor runs no threads; each worker is a separate process (pool, loop, acceptor threads).
    assert os.listdir(f"/proc/{pool.pid}/task") == [str(pool.pid)]
    assert sorted(pool.slot_of(p) for p in pids) == [1, 2]
    for slot in (1, 2):
        r = requests.get(pool.health_url(slot), timeout=5)
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text

    run = make_run()
    s = snap(ng.url["main"], run)
    assert s.text == expected_body(run.friendly_id, "insert")
    fut = start_poll(ng.url["main"], run, s.headers["electric-offset"])
    wait_held(pool, 1)
    ms = change(run.env_id, run, 1)
    r = fut.result(timeout=POLL_TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.text == expected_body(run.friendly_id, "update")
    assert floor(r) == ms


# --------------------------------------------------------------------------------------
# 2. A worker that dies is replaced
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_worker_is_replaced_and_clients_keep_working(procs, sig):
    """A worker that dies (SIGKILL), or that one stops by hand (SIGTERM: it drains and exits), is
    replaced by the supervisor in the same slot, and the pool keeps serving on its one socket."""
    # A hold far longer than the test: the polls still held when the worker dies are held for real, not
    # answered at their deadline while the polls are being spread over both workers.
    pool = procs.pool("kill", workers=2, hold_ms=20000)
    ng = procs.nginx({"main": [pool.port]})
    base = ng.url["main"]
    run = make_run()
    s = snap(base, run)
    off = s.headers["electric-offset"]
    # Polls started one at a time (each after the previous is held) until both workers hold some:
    # the kernel hands the shared socket's connections to whichever worker accepts first (on a slow
    # sanitizer build the same worker can win several times in a row: 8 in a row happened once under ASan).
    futs = []
    while min(pool.held()) < 1:
        assert len(futs) < 32, f"32 polls all went to one worker: {pool.held()}"
        futs.append(start_poll(base, run, off))
        wait_held(pool, len(futs))
    held = pool.held()

    before = pool.worker_pids()
    victim = before[0]
    slot = pool.slot_of(victim)
    on_victim = int(held[slot - 1])
    os.kill(victim, sig)

    def replaced():
        pids = pool.worker_pids()
        return len(pids) == 2 and victim not in pids and pool.healthy(slot) and pids
    after = wait_until(replaced, 20, 0.1, f"the supervisor to replace worker {slot} (pid {victim})")
    fresh = (set(after) - set(before)).pop()
    assert pool.slot_of(fresh) == slot
    assert _ppid(fresh) == pool.pid
    assert pool.accepts(), (f"after worker {slot} exited nothing accepts on {pool.addr}: the shared "
                            f"listening socket was shut down (see {pool.log_path})")

    # The dead worker's polls: SIGTERM — the drain answers each up-to-date; SIGKILL — nginx sees the upstream
    # connection close before any answer and, as `fastcgi_next_upstream error` allows for a GET, sends the poll
    # again to a live worker, where it is held (or answers its 503 page when no try is left). The other
    # worker's polls still hold.
    def settled():
        return sum(pool.held()) + sum(f.done() for f in futs) >= len(futs)
    wait_until(settled, 10, 0.05, "the dead worker's polls to end or be held again")
    time.sleep(0.2)
    done = [f for f in futs if f.done()]
    pending = [f for f in futs if not f.done()]
    if sig == signal.SIGTERM:
        assert len(done) == on_victim, (len(done), len(pending), held)
    else:
        assert len(done) <= on_victim, (len(done), len(pending), held)
    for f in done:
        lost = f.result()
        assert lost.status_code in (200, 503), (lost.status_code, lost.text)
        if lost.status_code == 200:
            assert lost.text == UP_TO_DATE_BODY and floor(lost) == floor(s)
        else:
            assert sig == signal.SIGKILL, "a drained poll must be answered, not cut"
    # The clients re-poll (as the SDK does after a 503 or an up-to-date) and every poll sees the next change.
    repolls = [start_poll(base, run, off) for _ in done]
    wait_held(pool, len(futs))
    ms = change(run.env_id, run, 1)
    for f in pending + repolls:
        r = f.result(timeout=POLL_TIMEOUT)
        assert r.status_code == 200, r.text
        assert r.text == expected_body(run.friendly_id, "update") and floor(r) == ms
    assert snap(base, run).text == expected_body(run.friendly_id, "insert")


# --------------------------------------------------------------------------------------
# 3. SIGTERM: the pool drains
# --------------------------------------------------------------------------------------

def test_sigterm_drains_every_held_poll_with_up_to_date_and_exits(procs):
    pool = procs.pool("drain", workers=2, hold_ms=20000)
    ng = procs.nginx({"main": [pool.port]})
    base = ng.url["main"]
    env_id, key = make_env()
    runs = [make_run(env_id=env_id) for _ in range(5)]
    polls = []  # (run, floor, started, future)
    for i in range(10):
        run = runs[i % len(runs)]
        s = snap(base, run, key)
        started = time.monotonic()
        polls.append((run, floor(s), started, start_poll(base, run, s.headers["electric-offset"], key=key)))
    wait_held(pool, 10)
    assert zcard(env_id) == 10
    workers = pool.worker_pids()

    pool.signal(signal.SIGTERM)
    ends = {}
    for run, fl, started, fut in polls:
        r = fut.result(timeout=POLL_TIMEOUT)
        ends[fut] = time.monotonic()
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.text == UP_TO_DATE_BODY
        assert r.headers["electric-handle"] == run.handle
        assert floor(r) == fl, "the drain moved the offset floor"
        assert r.headers.get("electric-cursor", "").isdigit()
        # Held for 17-23 s otherwise: answered by the drain, not by the hold deadline.
        assert ends[fut] - started < 17, "a poll was answered by its deadline, not by the drain"
    assert pool.wait_exit(30), "the supervisor did not exit after SIGTERM"
    assert pool.proc.returncode == 0
    wait_until(lambda: not any(alive(p) for p in workers), 10, 0.05, "the workers to exit")
    # The answered polls gave their concurrency slots back.
    wait_until(lambda: zcard(env_id) == 0, 5, 0.05, "the drained polls' concurrency slots to be released")
    # Nothing listens on the pool's port any more (nginx answers its 503 page).
    assert not pool.accepts()
    r = requests.get(run_url(runs[0].friendly_id, base), headers=headers(token=key), timeout=10)
    assert r.status_code == 503


def held_socket():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", pick_ports(1)[0]))
    s.listen(128)
    return s


@pytest.mark.parametrize("fd", [0, 3, 7], ids=["fd0-spawn-fcgi", "fd3-systemd", "fd7"])
def test_pool_serves_on_an_inherited_socket(procs, fd):
    """`serve --workers 2 --listen-fd N`: the supervisor hands the socket it was given to its workers
    (as fd 3) whatever its own number is, and the workers stay up."""
    held = held_socket()
    try:
        pool = procs.pool(f"fd{fd}", workers=2, listen_sock=held, listen_fd=fd, ready_timeout=15)
        pids = pool.worker_pids()
        run = make_run()
        ng = procs.nginx({"main": [pool.port]})
        s = snap(ng.url["main"], run)
        assert s.text == expected_body(run.friendly_id, "insert")
        time.sleep(1)
        assert pool.worker_pids() == pids, f"workers restarted meanwhile (see {pool.log_path})"
    finally:
        held.close()


# --------------------------------------------------------------------------------------
# 3b. Restart on a socket held by the parent (systemd socket activation): no connection refused
# --------------------------------------------------------------------------------------

def test_restart_on_a_held_socket_refuses_no_connection(procs):
    """deploy/systemd/runfeed.socket keeps the listening socket open across `systemctl restart` and passes
    it as fd 3: the old pool drains, connections arriving meanwhile wait in the socket's backlog, the new
    pool serves them."""
    held = held_socket()
    try:
        old = procs.pool("socket-old", workers=2, listen_sock=held)
        ng = procs.nginx({"main": [old.port]})
        base = ng.url["main"]
        run = make_run()
        s = snap(base, run)
        fut = start_poll(base, run, s.headers["electric-offset"])
        wait_held(old, 1)
        old.signal(signal.SIGTERM)
        r = fut.result(timeout=POLL_TIMEOUT)
        assert r.status_code == 200 and r.text == UP_TO_DATE_BODY and floor(r) == floor(s), r.text
        assert old.wait_exit(30)
        # Between the two pools the socket still listens: a request now waits for the new pool.
        assert old.accepts(), ("after the pool drained, the held listening socket no longer listens: a "
                               "worker's drain shut down the shared socket (connections are refused)")
        waiting = _executor.submit(requests.get, run_url(run.friendly_id, base), headers=headers(), timeout=POLL_TIMEOUT)
        new = procs.pool("socket-new", workers=2, listen_sock=held)
        r = waiting.result(timeout=POLL_TIMEOUT)
        assert r.status_code == 200 and r.text == expected_body(run.friendly_id, "insert"), (r.status_code, r.text)
        fut = start_poll(base, run, s.headers["electric-offset"])
        wait_held(new, 1)
        ms = change(run.env_id, run, 1)
        r = fut.result(timeout=POLL_TIMEOUT)
        assert r.status_code == 200 and floor(r) == ms and r.text == expected_body(run.friendly_id, "update")
    finally:
        held.close()


# --------------------------------------------------------------------------------------
# A client that plays the SDK's loop: snapshot → live → live …
# --------------------------------------------------------------------------------------

class Subscriber:
    """Follows one run: snapshot, then live polls with the returned handle/offset/cursor, re-polling at
    once; retries 5xx, 429 and connection errors with a small backoff. Records every change received."""

    def __init__(self, base, run, key=None, deadline=None):
        self.base = base          # a URL, or a callable returning the URL for the next request
        self.run = run
        self.key = key
        self.received = []        # [(updatedAtMs, n)]
        self.violations = []
        self.retries = 0
        self.polls = 0
        self.last = None
        self.ready = threading.Event()
        self.final = None         # set by the test when the writer is done: stop once seen
        self.stop = threading.Event()
        self.deadline = deadline
        self.error = None

    def url(self):
        return self.base() if callable(self.base) else self.base

    def request(self, params):
        delay = 0.05
        while True:
            if self.deadline and time.monotonic() > self.deadline:
                raise AssertionError(f"{self.run}: gave up retrying (retries={self.retries})")
            try:
                r = requests.get(run_url(self.run.friendly_id, self.url()), params=params,
                                 headers=headers(token=self.key or "default"), timeout=POLL_TIMEOUT)
                if r.status_code == 200:
                    return r
                if r.status_code != 429 and r.status_code < 500:
                    raise AssertionError(f"{self.run}: unexpected {r.status_code} {r.text[:200]}")
            except (requests.ConnectionError, requests.Timeout):
                pass
            self.retries += 1
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    def take(self, r):
        f = floor(r)
        got = changes(r)
        if len(got) > 1:
            self.violations.append(f"{len(got)} changes in one response")
        for m in got:
            if m["key"] != '"public"."TaskRun"/"' + self.run.id + '"':
                self.violations.append("foreign key " + m["key"])
            if self.last is not None and f <= self.last:
                self.violations.append(f"duplicate or older row: {f} after {self.last}")
            self.received.append((f, version(m)))
        if not got and self.last is not None and f != self.last:
            self.violations.append(f"up-to-date moved the floor {self.last} -> {f}")
        self.last = f if got or self.last is None else self.last

    def loop(self):
        try:
            r = self.request({})
            self.last = floor(r)
            handle, offset, cursor = r.headers["electric-handle"], r.headers["electric-offset"], ""
            self.ready.set()
            while not self.stop.is_set():
                if self.final is not None and self.last is not None and self.last >= self.final:
                    return
                r = self.request({"live": "true", "handle": handle, "offset": offset, "cursor": cursor,
                                  "log": "full"})
                self.polls += 1
                self.take(r)
                handle = r.headers["electric-handle"]
                offset = r.headers["electric-offset"]
                cursor = r.headers.get("electric-cursor", "")
        except BaseException as e:
            self.error = e
            self.ready.set()


# --------------------------------------------------------------------------------------
# 4. SIGHUP under load loses no update
# --------------------------------------------------------------------------------------

def test_rolling_restart_under_load_loses_no_update(procs):
    n_subs = _int_env("RUNFEED_ROLLING_SUBSCRIBERS", 40)
    n_runs = _int_env("RUNFEED_ROLLING_RUNS", 10)
    n_changes = _int_env("RUNFEED_ROLLING_CHANGES", 60)
    n_reloads = _int_env("RUNFEED_ROLLING_RELOADS", 2)
    n_workers = _int_env("RUNFEED_ROLLING_WORKERS", 2)
    spacing = _int_env("RUNFEED_ROLLING_SPACING_MS", 300) / 1000.0
    pool = procs.pool("rolling", workers=n_workers)
    ng = procs.nginx({"main": [pool.port]})
    env_id, key = make_env()
    runs = [make_run(env_id=env_id) for _ in range(n_runs)]
    budget = time.monotonic() + 30 + n_changes * spacing * 2
    subs = [Subscriber(ng.url["main"], runs[i % n_runs], key, deadline=budget) for i in range(n_subs)]
    threads = [threading.Thread(target=s.loop, daemon=True) for s in subs]
    for t in threads:
        t.start()
    for s in subs:
        assert s.ready.wait(30), "a subscriber never got its snapshot"
        assert s.error is None, s.error
    wait_until(lambda: sum(pool.held()) >= n_subs, 30, 0.1, "every subscriber to hold a live poll")

    writes = {r.id: [] for r in runs}   # run id -> [(updatedAtMs, n)]
    generations = [sorted(pool.worker_pids())]
    reload_at = {round(n_changes * (k + 1) / (n_reloads + 1)) for k in range(n_reloads)}
    try:
        last_write = 0.0
        for n in range(1, n_changes + 1):
            if n in reload_at:
                old = set(pool.worker_pids())
                pool.signal(signal.SIGHUP)
                wait_until(lambda: (lambda p: len(p) == n_workers and not (set(p) & old))(pool.worker_pids()),
                           30, 0.05, "the rolling restart to replace every worker")
                generations.append(sorted(pool.worker_pids()))
                # The replacements serve on the socket the supervisor opened once.
                assert pool.accepts(), (f"after SIGHUP nothing accepts on {pool.addr}: the shared "
                                        f"listening socket was shut down (see {pool.log_path})")
            time.sleep(max(0.0, last_write + spacing - time.monotonic()))
            run = runs[n % n_runs]
            last_write = time.monotonic()
            writes[run.id].append((change(env_id, run, n), n))
        final = {r.id: updated_ms(r.friendly_id) for r in runs}
        for s in subs:
            s.final = final[s.run.id]
        for t in threads:
            t.join(timeout=max(1.0, budget - time.monotonic()))
    finally:
        for s in subs:
            s.stop.set()

    published = sum(len(writes[s.run.id]) for s in subs)
    received = sum(len(s.received) for s in subs)
    retries = sum(s.retries for s in subs)
    print(f"\nrolling restart: subscribers={n_subs} runs={n_runs} workers={n_workers} SIGHUPs={n_reloads} "
          f"writes={n_changes} changes_published={published} changes_received={received} retries={retries} "
          f"polls={sum(s.polls for s in subs)} worker_generations={generations}")
    assert len(generations) == n_reloads + 1
    for s, t in zip(subs, threads):
        assert s.error is None, f"{s.run}: {s.error!r}"
        assert not t.is_alive(), f"{s.run}: subscriber still polling (last {s.last}, final {s.final})"
        assert not s.violations, (s.run, s.violations)
        assert s.last == final[s.run.id], (s.run, s.last, final[s.run.id])
        want = writes[s.run.id]
        got = s.received
        assert [ms for ms, _ in got] == sorted(set(ms for ms, _ in got)), "not strictly increasing"
        missing = [w for w in want if w not in got]
        assert not missing, f"{s.run}: missed {missing} (received {got})"
        assert got == want, f"{s.run}: received {got}, written {want}"
    assert received == published
    assert pool.proc.poll() is None and len(pool.worker_pids()) == n_workers


# --------------------------------------------------------------------------------------
# 5. Two pools ("hosts") behind one nginx: a client hops between them
# --------------------------------------------------------------------------------------

def test_client_hops_between_two_pools_without_loss_or_duplicates(procs):
    a = procs.pool("hostA", workers=1)
    b = procs.pool("hostB", workers=1)
    ng = procs.nginx({"a": [a.port], "b": [b.port], "all": [a.port, b.port]})
    env_id, key = make_env()
    run = make_run(env_id=env_id)
    pools = {"a": a, "b": b}
    written, got = [], []

    def take(r, expect_change):
        assert r.status_code == 200, (r.status_code, r.text)
        cs = changes(r)
        if expect_change is None:
            assert r.text == UP_TO_DATE_BODY, "an unchanged row was delivered again"
            assert floor(r) == (got[-1][0] if got else first), "up-to-date moved the floor"
        else:
            assert len(cs) == 1 and floor(r) == expect_change[0] and version(cs[0]) == expect_change[1], r.text
            got.append((floor(r), version(cs[0])))
        return r.headers["electric-offset"], r.headers.get("electric-cursor", "")

    s = snap(ng.url["a"], run, key)
    first = floor(s)
    offset, cursor = s.headers["electric-offset"], ""
    n = 0
    # Alternate hosts on every poll: A → B → A → …, each pool held or woken in turn.
    for step, host in enumerate(["b", "a", "b", "a", "b", "a"]):
        if step % 2 == 0:
            # Held on this host, then woken by a record.
            before = sum(pools[host].held())
            fut = _executor.submit(live_poll, ng.url[host], run, offset, key=key, cursor=cursor)
            wait_until(lambda: sum(pools[host].held()) > before, 10, 0.05, f"the poll to be held on {host}")
            n += 1
            written.append((change(env_id, run, n), n))
            offset, cursor = take(fut.result(timeout=POLL_TIMEOUT), written[-1])
        else:
            # Changed while the client was between polls: the next host, which never saw this
            # client, must still deliver it (reads once / replays the gap).
            n += 1
            written.append((change(env_id, run, n), n))
            offset, cursor = take(live_poll(ng.url[host], run, offset, key=key, cursor=cursor), written[-1])
    # No change: the other host must not deliver the row this client already has (held to its deadline).
    offset, cursor = take(live_poll(ng.url["b"], run, offset, key=key, cursor=cursor), None)

    # Mid-stream stop: the poll is held on one host of the shared upstream; that host is stopped with
    # SIGTERM; the drained poll answers up-to-date and the client's next poll lands on the other host.
    fut = _executor.submit(live_poll, ng.url["all"], run, offset, key=key, cursor=cursor)
    wait_until(lambda: sum(a.held()) + sum(b.held()) >= 1, 10, 0.05, "the poll to be held")
    victim, survivor = (a, b) if sum(a.held()) >= 1 else (b, a)
    victim.signal(signal.SIGTERM)
    offset, cursor = take(fut.result(timeout=POLL_TIMEOUT), None)
    assert victim.wait_exit(30)
    n += 1
    written.append((change(env_id, run, n), n))      # written while the client is between polls
    offset, cursor = take(live_poll(ng.url["all"], run, offset, key=key, cursor=cursor), written[-1])
    before = sum(survivor.held())
    fut = _executor.submit(live_poll, ng.url["all"], run, offset, key=key, cursor=cursor)
    wait_until(lambda: sum(survivor.held()) > before, 10, 0.05, f"the poll to be held on {survivor}")
    n += 1
    written.append((change(env_id, run, n), n))
    offset, cursor = take(fut.result(timeout=POLL_TIMEOUT), written[-1])

    assert got == written
    assert got[-1][0] == updated_ms(run.friendly_id)


# --------------------------------------------------------------------------------------
# 6. Per-environment concurrency limit of held live polls
# --------------------------------------------------------------------------------------

def _raw_live(base, run, offset, key):
    """A live poll on a raw socket (so the test can walk away mid-hold)."""
    u = urlsplit(base)
    q = urlencode({"live": "true", "handle": run.handle, "offset": offset, "cursor": "", "log": "full"})
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    s.sendall((f"GET /realtime/v1/runs/{run.friendly_id}?{q} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
               f"Authorization: Bearer {key}\r\nx-trigger-electric-version: {MODERN}\r\n\r\n").encode())
    return s


def test_concurrency_limit_of_held_live_polls(procs):
    pool = procs.pool("limit", workers=2, env={"REALTIME_BACKEND_NATIVE_DEFAULT_CONCURRENCY_LIMIT": "2"})
    ng = procs.nginx({"main": [pool.port]})
    base = ng.url["main"]
    env_id, key = make_env()
    r1, r2, r3 = (make_run(env_id=env_id) for _ in range(3))
    o1, o2, o3 = (snap(base, r, key).headers["electric-offset"] for r in (r1, r2, r3))

    f1 = start_poll(base, r1, o1, key=key)
    f2 = start_poll(base, r2, o2, key=key)
    wait_held(pool, 2)
    assert zcard(env_id) == 2
    third = live_poll(base, r3, o3, key=key)
    assert third.status_code == 429, (third.status_code, third.text)
    assert third.text == LIMIT_BODY
    assert third.headers.get("retry-after") == "1"
    assert zcard(env_id) == 2
    # Snapshots are not limited.
    assert snap(base, r3, key).status_code == 200

    # One poll answered (its run changed) → its slot is released → a new live poll is admitted.
    ms = change(env_id, r1, 1)
    a1 = f1.result(timeout=POLL_TIMEOUT)
    assert a1.status_code == 200 and floor(a1) == ms, a1.text
    wait_until(lambda: zcard(env_id) == 1, 5, 0.05, "the answered poll's slot to be released")
    f3 = start_poll(base, r3, o3, key=key)
    wait_held(pool, 2)
    assert not f3.done()
    assert zcard(env_id) == 2

    # A client that walks away mid-hold releases its slot too.
    f2_ms = change(env_id, r2, 2)
    assert f2.result(timeout=POLL_TIMEOUT).status_code == 200
    wait_until(lambda: zcard(env_id) == 1, 5, 0.05, "the second poll's slot to be released")
    sock = _raw_live(base, r2, f"{f2_ms}_{int(time.time() * 1000)}", key)
    try:
        wait_until(lambda: zcard(env_id) == 2, 10, 0.05, "the raw poll to take a slot")
        blocked = live_poll(base, r1, a1.headers["electric-offset"], key=key)
        assert blocked.status_code == 429 and blocked.text == LIMIT_BODY
    finally:
        sock.close()
    wait_until(lambda: zcard(env_id) == 1, 10, 0.05, "the departed client's slot to be released")
    ms3 = change(env_id, r3, 3)
    a3 = f3.result(timeout=POLL_TIMEOUT)
    assert a3.status_code == 200 and floor(a3) == ms3
    wait_until(lambda: zcard(env_id) == 0, 5, 0.05, "every slot to be released")


def test_concurrency_limit_redis_unreachable_fails_live_polls_only(procs):
    closed = pick_ports(1)[0]   # nothing listens here
    pool = procs.pool("limit-down", workers=1, env={"RATE_LIMIT_REDIS_HOST": "127.0.0.1",
                                                    "RATE_LIMIT_REDIS_PORT": str(closed)})
    ng = procs.nginx({"main": [pool.port]})
    run = make_run()
    s = snap(ng.url["main"], run)
    assert s.text == expected_body(run.friendly_id, "insert")
    r = live_poll(ng.url["main"], run, s.headers["electric-offset"])
    assert r.status_code == 500, (r.status_code, r.text)
    assert r.text == LIMIT_FAILED_BODY
    assert snap(ng.url["main"], run).status_code == 200
