"""No update is lost across worker hops and out-of-order `updatedAt` stamps.

trigger.dev stamps `updatedAt` on the app server's clock when it builds the statement, on many app instances,
so two writes (of two runs, or of one run) can share a millisecond, and a later commit can carry an EARLIER
stamp. The old offset floor (`updatedAt > floor`) silently dropped such a write until a later one came along.
The server now identifies what a client holds by content:

- single run: the offset is `<updatedAtMs>_<basisMs><token as 20 digits>`, the token being the digest of the
  row the client holds; a row is sent when its digest differs;
- tag and batch feeds: the offset's token names the connection's working set, which every worker stores in
  Redis (`runfeed:view:{<envId>}:<handle>`, a hash with `@token`) before it answers, so a poll that lands on
  another worker (or host) continues exactly;
- offsets without a token (`<u>_0`, minted before tokens) keep the floor rule for a single run, and make a
  list feed re-send every member as an update (as does a stored view that is gone).

Every scenario runs through two hosts, each a one-worker `runfeed serve` pool (pools.py), behind a private
nginx with one upstream per host, so the test picks the worker of each poll and consecutive polls land on
DIFFERENT workers (single-run cases also run twice on one worker). Pools run without ClickHouse: tag and
batch membership come from the Postgres resolver. Each test uses a fresh environment (its own channel).

"On the wake" is checked as conftest's WAKE_GRACE helpers do: once the change is published, the run is
changed again WITHOUT a record a little later; a poll that was really woken answers the published version,
while one that missed it would be answered by its deadline backstop with the later, unpublished version.
The poll must also end before the shortest hold (0.85 × 4 s).
"""

import concurrent.futures
import json
import time

import pytest
import requests

from conftest import (
    UP_TO_DATE_BODY, WAKE_GRACE, assert_feed_headers, batch_url, change_again_unpublished, expected_body,
    get, headers, list_body, list_rows, lit, make_batch, make_env, make_run, ms_to_ts, offset_of, psql,
    publish, publish_until_done, redis_cmd, run_url, runs_list_url, unique_tag, updated_ms, wait_until,
)
from pools import HOLD_MS, Procs

POLL_TIMEOUT = 30
HOLD_MIN_S = HOLD_MS * 0.85 / 1000       # the shortest hold of the pools (4 s ± 15 %)
STAMPS = {"same-ms": 0, "5ms-earlier": 5}

_executor = concurrent.futures.ThreadPoolExecutor(max_workers=16)


# --------------------------------------------------------------------------------------
# Two hosts: one-worker pools A and B behind one nginx (upstream "a" → A, "b" → B)
# --------------------------------------------------------------------------------------

class Hosts:
    def __init__(self, a, b, ng):
        self.pool = {"a": a, "b": b}
        self.ng = ng

    def url(self, host):
        return self.ng.url[host]


@pytest.fixture(scope="module")
def hosts():
    procs = Procs()
    try:
        a = procs.pool("lostA", workers=1)
        b = procs.pool("lostB", workers=1)
        ng = procs.nginx({"a": [a.port], "b": [b.port]})
        yield Hosts(a, b, ng)
    finally:
        errors = procs.close()
        assert not errors, errors


def other(host):
    return "b" if host == "a" else "a"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def set_row(run, status, metadata, ms):
    """Writes the run as the app does, with `updatedAt` stamped explicitly (epoch ms); returns the stamp read
    back (TIMESTAMP(3) without time zone, UTC)."""
    rows = psql(f'''UPDATE "TaskRun" SET "status" = {lit(status)}::"TaskRunStatus", "metadata" = {lit(metadata)},
                    "updatedAt" = {ms_to_ts(ms)} WHERE id = {lit(run.id)}
                    RETURNING (extract(epoch from "updatedAt") * 1000)::bigint''')
    got = int(rows[0])
    assert got == ms, f"updatedAt stored as {got}, wanted {ms}"
    return got


def now_ms():
    return int(time.time() * 1000)


def token_of(resp):
    """The offset's version token (the last 20 digits of its tail), or None for an offset without one."""
    tail = resp.headers["electric-offset"].split("_", 1)[1]
    return int(tail[-20:]) if len(tail) >= 21 else None


def run_live(base, run, offset, key, cursor=""):
    p = {"live": "true", "handle": run.handle, "offset": offset, "cursor": cursor, "log": "full"}
    return requests.get(run_url(run.friendly_id, base), params=p, headers=headers(token=key), timeout=POLL_TIMEOUT)


def list_live(url, handle, offset, params, key, cursor=""):
    p = {"live": "true", "handle": handle, "offset": offset, "cursor": cursor, "log": "full"}
    p.update(params or {})
    return requests.get(url, params=p, headers=headers(token=key), timeout=POLL_TIMEOUT)


def start_held(pool, kind, fn, *args):
    """Starts a live poll in a thread and waits until `pool` holds it; returns (future, start time)."""
    before = sum(pool.held(kind))
    started = time.monotonic()
    fut = _executor.submit(fn, *args)
    wait_until(lambda: sum(pool.held(kind)) > before or fut.done(), 10, 0.02, f"the poll to be held on {pool}")
    assert not fut.done(), f"answered instead of held: {fut.result().status_code} {fut.result().text[:400]}"
    return fut, started


def woken_answer(fut, started, run, env_id, expected, sentinel=True, **record):
    """Publishes the change record (repeatedly, until answered; bounded by WAKE_GRACE) and returns the
    answer, which must be `expected` and come before the shortest hold. With `sentinel`, the run is then
    changed again without a record (so the database is one version ahead of what the client holds)."""
    publish_until_done([fut], env_id, run.id, timeout=WAKE_GRACE, **record)
    if sentinel:
        change_again_unpublished(run, [fut])
    r = fut.result(timeout=POLL_TIMEOUT)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.text == expected, ("not woken with the published version (a different body means it was lost, or "
                                "answered by the backstop with the later unpublished change)")
    assert elapsed < HOLD_MIN_S, f"answered after {elapsed:.2f}s: by the hold deadline, not by the wake"
    return r


class ListFeed:
    """A tag feed (`/realtime/v1/runs?tags=T`) or a batch feed (`/realtime/v1/batches/:id`) of a fresh env
    with two member runs: `first` (newer) and `second`."""

    def __init__(self, kind):
        self.kind = kind
        self.env_id, self.key = make_env()
        if kind == "tag":
            self.tag = unique_tag("lost")
            self.batch = None
            member = {"tags": [self.tag]}
            self.params = {"tags": self.tag}
        else:
            self.tag = None
            self.batch = make_batch(env_id=self.env_id)
            member = {"tags": ["x"], "batch_id": self.batch.id}
            self.params = {}
        make_run(env_id=self.env_id, tags=["x"], age="2 minutes")          # never a member
        self.first = make_run(env_id=self.env_id, age="3 minutes", **member)
        self.second = make_run(env_id=self.env_id, age="4 minutes", **member)

    def url(self, base):
        return runs_list_url(base) if self.kind == "tag" else batch_url(self.batch.friendly_id, base)

    def record(self, ms):
        """The full change record the app publishes for a member (tags, batchId, updatedAtMs)."""
        if self.kind == "tag":
            return {"tags": [self.tag], "batch_id": None, "updated_at_ms": ms}
        return {"tags": ["x"], "batch_id": self.batch.id, "updated_at_ms": ms}

    def snapshot(self, base):
        r = get(self.url(base), params=self.params, token=self.key)
        assert_feed_headers(r, live_response=False)
        assert r.text == list_body([self.first, self.second], "insert")
        return r

    def live(self, base, resp_or_offset, handle=None):
        if isinstance(resp_or_offset, str):
            offset, cursor = resp_or_offset, ""
        else:
            offset, cursor = resp_or_offset.headers["electric-offset"], resp_or_offset.headers.get("electric-cursor", "")
            handle = handle or resp_or_offset.headers["electric-handle"]
        return list_live, self.url(base), handle, offset, self.params, self.key, cursor

    def view_key(self, handle):
        return "runfeed:view:{" + self.env_id + "}:" + handle


def deliver_first_change(hosts, feed, snap, host, x):
    """`first` changes (updatedAt = x) and a poll held on `host` delivers it; returns that answer."""
    fut, started = start_held(hosts.pool[host], "list", *feed.live(hosts.url(host), snap))
    set_row(feed.first, "EXECUTING", '{"step":1}', x)
    r = woken_answer(fut, started, feed.first, feed.env_id, list_body([feed.first], "update"), sentinel=False,
                     **feed.record(x))
    assert_feed_headers(r, live_response=True)
    assert r.headers["electric-handle"] == snap.headers["electric-handle"]
    assert offset_of(r)[0] == x
    assert token_of(r) not in (None, 0), r.headers["electric-offset"]
    return r


# --------------------------------------------------------------------------------------
# 1-2. Tag and batch feeds: a member written in the same millisecond as (or 5 ms before) the
#      member just delivered, picked up by a poll on the OTHER worker
# --------------------------------------------------------------------------------------

def same_ms_member_on_the_other_worker(hosts, kind, back, when):
    feed = ListFeed(kind)
    snap = feed.snapshot(hosts.url("a"))
    handle = snap.headers["electric-handle"]
    x = now_ms()
    r1 = deliver_first_change(hosts, feed, snap, "b", x)
    stamp = x - back
    if when == "held":
        # The next poll lands on worker A, which loads the connection's view from Redis and holds; then the
        # second member changes with a stamp at or below the offset's floor, and its record is published.
        fut, started = start_held(hosts.pool["a"], "list", *feed.live(hosts.url("a"), r1))
        time.sleep(0.3)  # let the hop's resolve finish: the change below must come in as a record
        set_row(feed.second, "PAUSED", '{"step":2}', stamp)
        r2 = woken_answer(fut, started, feed.second, feed.env_id, list_body([feed.second], "update"),
                          **feed.record(stamp))
    else:
        # The second member changes while the client is between polls (its record reaches nobody); the
        # next poll, on worker A, must send it at once.
        set_row(feed.second, "PAUSED", '{"step":2}', stamp)
        publish(feed.env_id, feed.second.id, **feed.record(stamp))
        started = time.monotonic()
        fn, *args = feed.live(hosts.url("a"), r1)
        r2 = fn(*args)
        assert time.monotonic() - started < HOLD_MIN_S, "held to the deadline: the change was not seen at once"
        assert r2.text == list_body([feed.second], "update"), r2.text
    assert_feed_headers(r2, live_response=True)
    assert r2.headers["electric-handle"] == handle
    assert offset_of(r2)[0] == x, "the offset's first segment is max(floor, updatedAt of the rows sent)"
    assert token_of(r2) not in (None, 0, token_of(r1))
    # The stored view is the one the client now holds (what a third worker would load).
    assert redis_cmd("HGET", feed.view_key(handle), "@token") == str(token_of(r2))
    # Back on worker B (its local copy of the view is stale now): nothing the client holds is sent again.
    # "held": the later, unpublished change is sent (at once, or by the backstop), and only it; otherwise
    # nothing is new and the poll holds to its deadline.
    fn, *args = feed.live(hosts.url("b"), r2)
    want = list_body([feed.second], "update") if when == "held" else UP_TO_DATE_BODY
    r3 = fn(*args)
    assert r3.status_code == 200 and r3.text == want, r3.text


@pytest.mark.parametrize("when", ["held", "between-polls"])
@pytest.mark.parametrize("stamp", list(STAMPS), ids=list(STAMPS))
def test_tag_feed_member_written_in_the_same_ms_is_delivered_after_a_hop(hosts, stamp, when):
    same_ms_member_on_the_other_worker(hosts, "tag", STAMPS[stamp], when)


@pytest.mark.parametrize("when", ["held", "between-polls"])
@pytest.mark.parametrize("stamp", list(STAMPS), ids=list(STAMPS))
def test_batch_feed_member_written_in_the_same_ms_is_delivered_after_a_hop(hosts, stamp, when):
    same_ms_member_on_the_other_worker(hosts, "batch", STAMPS[stamp], when)


@pytest.mark.parametrize("hop", ["same-worker", "other-worker"])
@pytest.mark.parametrize("stamp", list(STAMPS), ids=list(STAMPS))
@pytest.mark.parametrize("kind", ["tag", "batch"])
def test_list_member_rewritten_in_the_same_ms_is_delivered(hosts, kind, stamp, hop):
    """One member written twice, the second time in the same millisecond as (or 5 ms before) the version
    just delivered: the second version is delivered, with its own content, on the same or the other worker."""
    feed = ListFeed(kind)
    snap = feed.snapshot(hosts.url("a"))
    x = now_ms()
    r1 = deliver_first_change(hosts, feed, snap, "a", x)
    host = "a" if hop == "same-worker" else "b"
    stamp_ms = x - STAMPS[stamp]
    fut, started = start_held(hosts.pool[host], "list", *feed.live(hosts.url(host), r1))
    time.sleep(0.3)
    set_row(feed.first, "PAUSED", '{"step":2}', stamp_ms)
    r2 = woken_answer(fut, started, feed.first, feed.env_id, list_body([feed.first], "update"), **feed.record(stamp_ms))
    v = r2.json()[0]["value"]
    assert (v["status"], v["metadata"]) == ("PAUSED", '{"step":2}')
    assert offset_of(r2)[0] == x and token_of(r2) not in (None, 0, token_of(r1))
    # The later unpublished change reaches the client on the other worker too (at once, or by the backstop).
    fn, *args = feed.live(hosts.url(other(host)), r2)
    r3 = fn(*args)
    assert r3.status_code == 200 and r3.text == list_body([feed.first], "update"), r3.text


# --------------------------------------------------------------------------------------
# 3. Single run: a second write in the same millisecond as (or 5 ms before) the version sent
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["held", "between-polls"])
@pytest.mark.parametrize("hop", ["same-worker", "other-worker"])
@pytest.mark.parametrize("stamp", list(STAMPS), ids=list(STAMPS))
def test_single_run_second_write_in_the_same_ms_is_delivered(hosts, stamp, hop, when):
    back = STAMPS[stamp]
    env_id, key = make_env()
    run = make_run(env_id=env_id, age="3 minutes")
    s = get(run_url(run.friendly_id, hosts.url("a")), token=key)
    assert s.status_code == 200 and s.text == expected_body(run.friendly_id, "insert"), s.text
    assert token_of(s) not in (None, 0), s.headers["electric-offset"]

    # Version 1 (updatedAt = x), delivered by a poll held on worker A.
    fut, started = start_held(hosts.pool["a"], "run", run_live, hosts.url("a"), run, s.headers["electric-offset"], key)
    x = now_ms()
    set_row(run, "EXECUTING", '{"n":1}', x)
    r1 = woken_answer(fut, started, run, env_id, expected_body(run.friendly_id, "update"), sentinel=False,
                      updated_at_ms=x)
    assert offset_of(r1)[0] == x
    assert token_of(r1) not in (None, 0, token_of(s))

    # Version 2, stamped x (or x − 5 ms), with another status and metadata.
    host = "a" if hop == "same-worker" else "b"
    stamp_ms = x - back
    offset, cursor = r1.headers["electric-offset"], r1.headers.get("electric-cursor", "")
    if when == "held":
        fut, started = start_held(hosts.pool[host], "run", run_live, hosts.url(host), run, offset, key, cursor)
        set_row(run, "PAUSED", '{"n":2}', stamp_ms)
        r2 = woken_answer(fut, started, run, env_id, expected_body(run.friendly_id, "update"), updated_at_ms=stamp_ms)
    else:
        set_row(run, "PAUSED", '{"n":2}', stamp_ms)
        publish(env_id, run.id, updated_at_ms=stamp_ms)
        started = time.monotonic()
        r2 = run_live(hosts.url(host), run, offset, key, cursor)
        assert time.monotonic() - started < HOLD_MIN_S, "held to the deadline: the change was not seen at once"
        assert r2.text == expected_body(run.friendly_id, "update"), r2.text
    assert_feed_headers(r2, live_response=True)
    assert r2.headers["electric-handle"] == run.handle
    v = r2.json()[0]["value"]
    assert (v["status"], v["metadata"]) == ("PAUSED", '{"n":2}')
    assert offset_of(r2)[0] == stamp_ms, "the offset's first segment is the sent row's updatedAt"
    assert token_of(r2) not in (None, 0, token_of(r1))
    # The client holds version 2 now. On the other worker: "held" — the later unpublished change is sent
    # (at once, or by the backstop); otherwise nothing is new and the poll holds to its deadline.
    r3 = run_live(hosts.url(other(host)), run, r2.headers["electric-offset"], key)
    assert r3.status_code == 200, (r3.status_code, r3.text)
    if when == "held":
        assert r3.text == expected_body(run.friendly_id, "update"), r3.text
        assert token_of(r3) not in (None, 0, token_of(r2))
    else:
        assert r3.text == UP_TO_DATE_BODY, ("an unchanged row was sent again", r3.text)
        assert offset_of(r3)[0] == stamp_ms and token_of(r3) == token_of(r2)


# --------------------------------------------------------------------------------------
# 4. Offsets from before tokens (and stored views that are gone)
# --------------------------------------------------------------------------------------

def test_single_run_offset_without_a_token_keeps_the_floor_rule(hosts):
    env_id, key = make_env()
    run = make_run(env_id=env_id, age="3 minutes")
    s = get(run_url(run.friendly_id, hosts.url("a")), token=key)
    assert s.status_code == 200
    u = offset_of(s)[0]
    # A floor below the row's updatedAt: the row is new to this client, sent at once.
    r = run_live(hosts.url("b"), run, f"{u - 1}_0", key)
    assert r.status_code == 200 and r.text == expected_body(run.friendly_id, "update"), r.text
    assert offset_of(r)[0] == u and token_of(r) not in (None, 0)
    # A floor at the row's updatedAt: nothing new; held, then woken by a later write.
    fut, started = start_held(hosts.pool["b"], "run", run_live, hosts.url("b"), run, f"{u}_0", key)
    x = now_ms()
    set_row(run, "EXECUTING", '{"n":1}', x)
    r = woken_answer(fut, started, run, env_id, expected_body(run.friendly_id, "update"), updated_at_ms=x)
    assert offset_of(r)[0] == x and token_of(r) not in (None, 0)
    # A floor at the row's updatedAt with nothing new: up-to-date at the deadline, the offset unchanged.
    fin = expected_body(run.friendly_id, "update")
    u2 = updated_ms(run.friendly_id)
    r = run_live(hosts.url("a"), run, f"{u2}_0", key)
    assert r.status_code == 200 and r.text == UP_TO_DATE_BODY, r.text
    assert offset_of(r)[0] == u2 and token_of(r) is None, "an up-to-date keeps the client's view (no token)"
    # A catch-up (non-live) from an old floor still sends the row.
    r = get(run_url(run.friendly_id, hosts.url("b")), params={"handle": run.handle, "offset": f"{u2 - 1}_0"}, token=key)
    assert r.status_code == 200 and r.text == fin, r.text


@pytest.mark.parametrize("cause", ["offset-without-token", "stored-view-gone"])
@pytest.mark.parametrize("kind", ["tag", "batch"])
def test_list_without_a_usable_view_resends_every_member_as_update(hosts, kind, cause):
    feed = ListFeed(kind)
    snap = feed.snapshot(hosts.url("a"))
    handle = snap.headers["electric-handle"]
    key = feed.view_key(handle)
    assert redis_cmd("HGET", key, "@token") == str(token_of(snap)), "the snapshot's working set is not stored"
    if cause == "offset-without-token":
        offset = f"{offset_of(snap)[0]}_0"
    else:
        assert redis_cmd("DEL", key) == 1
        offset = snap.headers["electric-offset"]
    # Worker B never saw this connection: nothing but the offset tells it what the client holds.
    started = time.monotonic()
    fn, *args = feed.live(hosts.url("b"), offset, handle=handle)
    r = fn(*args)
    assert time.monotonic() - started < HOLD_MIN_S, "held instead of re-sending the members"
    assert_feed_headers(r, live_response=True)
    assert r.text == list_body([feed.first, feed.second], "update"), r.text
    assert sorted(list_rows(r)) == sorted([(feed.first.id, "update"), (feed.second.id, "update")])
    assert token_of(r) not in (None, 0)
    assert redis_cmd("HGET", key, "@token") == str(token_of(r))
    # From there the connection continues exactly on worker A: only the next change is sent.
    fut, started = start_held(hosts.pool["a"], "list", *feed.live(hosts.url("a"), r))
    time.sleep(0.3)
    x = now_ms()
    set_row(feed.second, "EXECUTING", '{"after":"resend"}', x)
    r2 = woken_answer(fut, started, feed.second, feed.env_id, list_body([feed.second], "update"), **feed.record(x))
    assert r2.headers["electric-handle"] == handle and offset_of(r2)[0] == x
    v = json.loads(r2.text)[0]["value"]
    assert v["metadata"] == '{"after":"resend"}'
