"""Hostile input: malformed queries, crafted handles, injection attempts, forged tokens and
junk change records. Each one is answered with the right 4xx JSON error (or ignored) — never a 5xx, a crash,
a hang, or another environment's data. The last test checks every worker is still healthy with the same pid.

Already covered elsewhere (not repeated here):
- crafted `runs_` handles cannot widen the createdAt window: test_list_handles.py::test_crafted_old_floor_is_repinned_to_24h
- batch handles of another batch of the same env: test_list_handles.py::test_batch_handle_of_another_batch_starts_a_new_connection
- wrong signature / iss / aud / exp / nbf / alg none / HS512, revoked key past grace, key of another env (404),
  scopes for another run: test_auth.py; scopes for another tag / batch: test_list_auth.py
- junk records on the channel of a held single-run poll, records on another env's channel (single run):
  test_live.py::test_malformed_record_does_not_break_the_subscriber / ::test_record_on_another_environments_channel_does_not_wake
"""

import concurrent.futures
import json
import os
import socket
import time
from pathlib import Path

import pytest
import requests

from conftest import (
    API_KEY, BASE_URL, DEMO_BATCH, DEMO_RUN, ENV_ID, OTHER_API_KEY, OTHER_ENV_ID, STATE_DIR, ThrowawayWorker, WORKERS,
    FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FcgiResponse, _fcgi_params, fcgi_exchange,
    _fcgi_record, b64url, batch_url, change_again_unpublished, channel, ch_sync, expected_body, get, headers,
    jwt_claims, list_body, list_ids, live_after, make_batch, make_env, make_run, mint_jwt, publish,
    publish_until_done, redis_cmd, run_url, runs_list_url, start_live, tag_snapshot, touch, unique_tag, wait_pending,
    wait_until, worker_sockets, WAKE_GRACE, numsub,
)

RUN_DIR = Path(os.environ.get("RUNFEED_RUN_DIR") or (STATE_DIR / "run"))
HEALTH_URLS = [u.replace("/metrics", "/healthz") for u in
               (os.environ.get("RUNFEED_METRICS_URLS") or os.environ.get("RUNFEED_METRICS_URL") or "").strip('"').split()]

PAT_INVALID = '{"error":"Public Access Token is invalid"}'
PAT_UNKNOWN = '{"error":"Invalid Public Access Token"}'
INVALID_KEY = '{"error":"Invalid API key"}'


def worker_pids():
    return [int((RUN_DIR / f"worker-{n}.pid").read_text().strip()) for n in range(1, WORKERS + 1)]


_PIDS_AT_START = None


@pytest.fixture(scope="module", autouse=True)
def _record_pids():
    global _PIDS_AT_START
    _PIDS_AT_START = worker_pids()
    yield


# --------------------------------------------------------------------------------------
# A canary in ANOTHER environment: it must never appear in any answer of this module.
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def canary():
    env_id, key = make_env()
    b = make_batch(env_id=env_id)
    run = make_run(env_id=env_id, tags=["canary", "x\\", "a\"],['canary"], batch_id=b.id, age="2 minutes")
    ch_sync(env_id)
    # Positive control: the canary is visible to its own environment.
    r = get(runs_list_url(), params={"tags": "canary"}, token=key)
    assert r.status_code == 200 and run.id in r.text, (r.status_code, r.text[:300])
    return {"env": env_id, "key": key, "run": run, "batch": b}


def assert_sane(r, canary=None, allowed=(200, 400), nginx_ok=()):
    """A worker answer: an allowed status, JSON, and no trace of the canary."""
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code in nginx_ok and "application/json" not in r.headers.get("content-type", ""):
        return  # nginx refused it itself (414 / 400 / 494): fine, the worker never saw it
    assert r.status_code in allowed, (r.status_code, r.text[:500])
    assert r.headers.get("content-type") == "application/json", dict(r.headers)
    json.loads(r.text)
    if canary is not None:
        assert canary["run"].id not in r.text and canary["run"].friendly_id not in r.text, r.text[:500]
        assert canary["batch"].id not in r.text


def raw(url, query, timeout=15, **hkw):
    return requests.get(url + "?" + query, headers=headers(**hkw), timeout=timeout)


def fcgi_raw(path, query, token=API_KEY, timeout=15, extra_env=None, sock=None):
    """A FastCGI GET straight to a worker socket with an arbitrary (unencoded) QUERY_STRING."""
    env = {
        "REQUEST_METHOD": "GET", "DOCUMENT_URI": path, "REQUEST_URI": path + "?" + query, "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "HTTP_X_TRIGGER_ELECTRIC_VERSION": "1.0.0-beta.1",
    }
    if token is not None:
        env["HTTP_AUTHORIZATION"] = "Bearer " + token
    env.update(extra_env or {})
    payload = _fcgi_record(FCGI_BEGIN_REQUEST, bytes([0, 1, 0, 0, 0, 0, 0, 0]))
    body = b""
    for k, v in env.items():
        kb = k.encode()
        vb = v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape")
        body += _len(len(kb)) + _len(len(vb)) + kb + vb
    for i in range(0, len(body), 65528):
        payload += _fcgi_record(FCGI_PARAMS, body[i:i + 65528])
    payload += _fcgi_record(FCGI_PARAMS, b"") + _fcgi_record(FCGI_STDIN, b"")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock or worker_sockets()[0]))
    return fcgi_exchange(s, payload, errors="replace")


def _len(n):
    return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")


ROUTES = [
    ("/realtime/v1/runs/" + DEMO_RUN, "run"),
    ("/realtime/v1/runs", "tags"),
    ("/realtime/v1/batches/" + DEMO_BATCH, "batch"),
]

# Raw query strings (as sent on the wire). None of them may hold: every `live=true` comes with a bad param.
HOSTILE_QUERIES = [
    "offset=%", "offset=%zz", "offset=%C3%28", "handle=%C3%28&offset=1_1", "tags=%C3%28", "tags=%", "cursor=%zz",
    "offset=-1&offset=5_5", "offset=5_5&offset=-1", "handle=a%20b&handle=run-x&offset=1_1",
    "offset=-1%00", "offset=%00", "handle=run-x%00&offset=1_1", "tags=a%00b", "live=true%00&offset=1_1&handle=run-x",
    "offset=-2", "offset=1_", "offset=_1", "offset=1_2_3", "offset=" + "9" * 400 + "_1", "offset=1_" + "9" * 400,
    "offset=0x10_1", "offset=%201_2", "offset=1_2%20", "offset=1%20_2", "offset=+1_2", "offset=-0_0", "offset=1e3_1",
    "offset=%EF%BC%91_1",  # fullwidth digit one
    "handle=&offset=1_1&live=maybe", "handle=" + "a" * 5000 + "&offset=1_1", "handle=run-%0A&offset=1_1",
    "handle=..%2F..%2Fetc&offset=1_1", "handle=batch_" + "9" * 60 + "_1_deadbeef&offset=1_1&live=nope",
    "live=", "live=true&live=false&offset=x", "live=%74rue&offset=-7", "live=true&offset=-1", "live=" + "t" * 3000,
    "cursor=" + "%ff" * 500 + "&offset=-1", "cursor=-1&offset=-1", "cursor=%00&offset=-1",
    "skipColumns=,,,", "skipColumns=" + ",".join(["x"] * 200), "skipColumns=%00", "skipColumns=id,id,id",
    "skipColumns=" + "%2C" * 300, "skipColumns=payload&skipColumns=output",
    "tags='", "tags=%22", "tags=%5C", "tags=%5C%5C%27", "tags=%01%02%03", "tags=%7F", "tags=a,,b", "tags=,",
    "tags=" + ",".join(f"t{i}" for i in range(1000)), "tags=" + "x" * 3000,
    "tags=canary%27%20OR%20%271%27%3D%271", "tags=x%5C%5C", "tags=a%22%5D%2C%5B%27canary",
    "tags=%27)%20OR%201%3D1%20--", "tags=canary%27))%20UNION%20SELECT%20run_id%20FROM%20trigger_dev.task_runs_v2--",
    "tags=%5Cx27", "tags=canary%00", "tags=canary&tags=x", "tags[]=canary", "tags[0]=canary",
    "createdAt=%00", "createdAt=-1h", "createdAt=1x", "createdAt=" + "9" * 40 + "d", "createdAt=1h1h",
    "createdAt=NaN", "createdAt=1e9s", "createdAt=%27%3B%20DROP%20TABLE%20x", "createdAt=0", "createdAt=-0s",
    "createdAt=2024-01-01T00:00:00Z", "createdAt=" + "1" * 20,
    "&&&", "=", "==&=x", "a", "%", "?offset=-1", "offset", "offset&handle&live",
]


def scoped(kind, q):
    """The unfiltered runs list of the demo env is large (every test adds runs; ~1.5 s per snapshot on the
    debug build): on the tag route, queries without `tags` get a narrow one put first (a raw NUL sent straight
    to a worker ends the whole QUERY_STRING there, as libfcgi hands params over as C strings)."""
    return "tags=hostile-none&" + q if kind == "tags" and "tags" not in q else q


def test_hostile_query_strings_through_nginx(canary):
    n = 0
    for q in ("&&&", "cursor=%zz", "skipColumns=,,,"):  # a few on the unfiltered feed too
        assert_sane(raw(BASE_URL + ROUTES[1][0], q), canary)
    for path, kind in ROUTES:
        for q in HOSTILE_QUERIES:
            r = raw(BASE_URL + path, scoped(kind, q))
            assert_sane(r, canary, nginx_ok=(400, 414))
            n += 1
    print(f"hostile query strings: {n} requests, 0 5xx")


def test_64kb_query_string_and_10k_skip_columns():
    """nginx may refuse these itself; sent straight to a worker they are a 200/400 (not a crash or hang)."""
    big_queries = [
        "offset=-1&x=" + "A" * 65536,
        "offset=-1&skipColumns=" + ",".join(["payload"] * 10000),
        "offset=-1&skipColumns=" + ",".join(f"c{i}" for i in range(10000)),
        "offset=-1&tags=" + ",".join(f"t{i}" for i in range(10000)),
        "offset=" + "1" * 65536 + "_1&handle=run-x",
    ]
    for path, kind in ROUTES:
        for q in big_queries:
            q = scoped(kind, q)
            r = raw(BASE_URL + path, q)
            assert r.status_code < 500, (path, q[:60], r.status_code, r.text[:300])
            assert r.status_code in (200, 400, 414), (path, q[:60], r.status_code)
            d = fcgi_raw(path, q)
            assert d.status_code in (200, 400), (path, q[:60], d.status_code, d.text[:300])
            assert d.headers.get("Content-Type") == "application/json"


def test_raw_bytes_in_params_sent_straight_to_a_worker(canary):
    """What nginx would never forward: unescaped NUL, invalid UTF-8 and CR/LF inside QUERY_STRING and headers."""
    queries = [b"offset=-1\x00", b"offset=\xc3\x28", b"tags=\xff\xfe", b"tags=a\x00b", b"tags=a\r\nb",
               b"offset=-1&handle=\x00\x00", b"skipColumns=\x00,\xff", b"createdAt=\xc0\xaf", b"\x00=\x00"]
    for path, kind in ROUTES:
        for q in queries:
            r = fcgi_raw(path, scoped(kind, q.decode("utf-8", "surrogateescape")))
            assert_sane(r, canary)
    for tok in ["\x00", "tr_dev_\xff\xfe", "a" * 70000, "x.y.z\r\nX-Evil: 1"]:
        r = fcgi_raw(ROUTES[0][0], "offset=-1", token=tok)
        assert r.status_code == 401, (repr(tok[:20]), r.status_code, r.text)


# --------------------------------------------------------------------------------------
# Injection canary: both membership resolvers
# --------------------------------------------------------------------------------------

INJECTIONS = [
    "canary' OR '1'='1", "x\\", "a\"],['canary", "') OR 1=1 --", "canary')) OR 1=1 --", "\\'", "canary\\",
    "' UNION SELECT run_id FROM trigger_dev.task_runs_v2 --", "canary\t", "'; DROP TABLE \"TaskRun\"; --",
    "]) OR hasAll(tags,['canary']) OR ([", "canary%", "%", "_", "*", "canary\\' OR 1=1 --",
]


def _injection_params():
    for t in INJECTIONS:
        yield {"tags": t}
        yield {"tags": t + ",canary"}
        yield {"tags": "canary," + t}
        yield {"tags": t, "createdAt": "1h"}


def test_injection_canary_on_the_clickhouse_resolver(canary):
    n = 0
    for params in _injection_params():
        for p in (params, dict(params, offset="-1")):
            r = get(runs_list_url(), params=p)
            assert_sane(r, canary)
            n += 1
        r = get(batch_url(DEMO_BATCH), params=params)
        assert_sane(r, canary)
    # This env's own tag feed of a batch id of the other env is not a way in either.
    r = get(batch_url(canary["batch"].friendly_id))
    assert r.status_code == 404, r.text
    print(f"injection (clickhouse resolver): {n} tag requests, canary leaked 0")


def test_injection_canary_on_the_postgres_resolver(canary):
    with ThrowawayWorker("hostile-pg", {}) as w:
        r = w.get("/realtime/v1/runs", params={"tags": "canary"}, token=canary["key"])
        assert r.status_code == 200 and canary["run"].id in r.text, "positive control failed"
        for params in _injection_params():
            r = w.get("/realtime/v1/runs", params=params)
            assert_sane(r, canary)
            r = w.get("/realtime/v1/batches/" + DEMO_BATCH, params=params)
            assert_sane(r, canary)
        assert w.proc.poll() is None
        assert requests.get(w.health_url, timeout=5).status_code == 200


def test_crafted_batch_handle_naming_another_envs_batch(canary):
    """`batch_<other env's batch internal id>_1_deadbeef` on this env's batch route starts this batch's connection."""
    b = make_batch()
    member = make_run(batch_id=b.id, age="2 minutes")
    ch_sync(ENV_ID)
    for live in (False, True):
        params = {"handle": f"batch_{canary['batch'].id}_1_deadbeef", "offset": "1_0"}
        if live:
            params.update(live="true", cursor="")
        r = get(batch_url(b.friendly_id), params=params)
        assert_sane(r, canary)
        assert r.status_code == 200
        assert r.headers["electric-handle"].startswith(f"batch_{b.id}_"), r.headers["electric-handle"]
        assert r.text == list_body([member], "insert")
    # The other env's batch by friendly id: 404, not its rows.
    r = get(batch_url(canary["batch"].friendly_id), params={"handle": f"batch_{canary['batch'].id}_1_deadbeef",
                                                             "offset": "1_0"})
    assert r.status_code == 404 and canary["run"].id not in r.text


# --------------------------------------------------------------------------------------
# Tokens (only what test_auth.py does not cover)
# --------------------------------------------------------------------------------------

def _signed(header, payload, key=API_KEY):
    import hashlib, hmac
    si = b64url(header) + "." + b64url(payload)
    return si + "." + b64url(hmac.new(key.encode(), si.encode(), hashlib.sha256).digest())


def _token_cases():
    claims = jwt_claims()
    cj = json.dumps(claims)
    good = mint_jwt(claims, API_KEY)
    h, p, s = good.split(".")
    return [
        ("rs256", mint_jwt(claims, API_KEY, header={"alg": "RS256", "typ": "JWT"}), 401, PAT_INVALID),
        ("missing-alg", mint_jwt(claims, API_KEY, header={"typ": "JWT"}), 401, PAT_INVALID),
        ("alg-null", mint_jwt(claims, API_KEY, header={"alg": None}), 401, PAT_INVALID),
        ("alg-lowercase", mint_jwt(claims, API_KEY, header={"alg": "hs256"}), 401, PAT_INVALID),
        ("header-not-json", "bm90IGpzb24." + p + "." + s, 401, PAT_INVALID),
        ("one-part", h, 401, INVALID_KEY),
        ("two-parts", h + "." + p, 401, INVALID_KEY),
        ("four-parts", good + ".AAAA", 401, INVALID_KEY),
        ("empty-sig", h + "." + p + ".", 401, PAT_INVALID),
        ("payload-not-json", h + "." + b64url("not json {") + "." + s, 401, INVALID_KEY),
        ("payload-array", _signed('{"alg":"HS256"}', "[" + cj + "]"), 401, INVALID_KEY),
        ("payload-string", _signed('{"alg":"HS256"}', json.dumps(cj)), 401, INVALID_KEY),
        ("payload-bad-b64", h + ".!!!!." + s, 401, INVALID_KEY),
        ("pub-false", mint_jwt(dict(claims, pub=False), API_KEY), 401, INVALID_KEY),
        ("pub-string", mint_jwt(dict(claims, pub="true"), API_KEY), 401, INVALID_KEY),
        ("sub-other-env-this-key", mint_jwt(dict(claims, sub=OTHER_ENV_ID), API_KEY), 401, PAT_INVALID),
        ("sub-number", mint_jwt(dict(claims, sub=5), API_KEY), 401, PAT_UNKNOWN),
        ("sub-sql", mint_jwt(dict(claims, sub="' OR 1=1 --"), API_KEY), 401, PAT_UNKNOWN),
        ("exp-string", mint_jwt(dict(claims, exp="never"), API_KEY), 401, PAT_INVALID),
        ("sig-of-other-alg-length", h + "." + p + "." + b64url(b"\0" * 64), 401, PAT_INVALID),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _token_cases()])
def test_forged_tokens(case):
    name, token, status, body = next(c for c in _token_cases() if c[0] == case)
    for url in (run_url(DEMO_RUN), runs_list_url(), batch_url(DEMO_BATCH)):
        r = get(url, token=token)
        assert (r.status_code, r.text) == (status, body), (case, url)
        assert r.headers.get("content-type") == "application/json"


def test_100kb_token():
    big_claims = dict(jwt_claims(), pad="x" * 100_000)
    for token in (mint_jwt(big_claims, API_KEY), "tr_dev_" + "a" * 100_000, "a." * 50_000 + "b"):
        r = get(run_url(DEMO_RUN), token=token)
        assert r.status_code in (400, 401, 431, 494), (r.status_code, r.text[:200])  # nginx may refuse the header
        d = fcgi_raw(ROUTES[0][0], "offset=-1", token=token)
        assert d.status_code in (200, 401), (d.status_code, d.text[:200])
        if not token.startswith("ey"):
            assert d.status_code == 401


# --------------------------------------------------------------------------------------
# Change records on Redis
# --------------------------------------------------------------------------------------

def test_hostile_change_records_do_not_wake_or_leak_across_environments():
    """Env B holds a single-run poll and a tag feed; env A holds a tag feed for the same tag. Junk records and
    records on A's channel naming B's run never wake B's polls and never deliver B's run on A. Afterwards a
    proper record on B still wakes B's polls."""
    env_a, key_a = make_env()
    env_b, key_b = make_env()
    t = unique_tag("hx")
    run_b = make_run(env_id=env_b, tags=[t], status="PENDING", age="2 minutes")
    ch_sync(env_b)
    # An env-A subscriber of B's run cannot exist: B's run is not found in A.
    r = get(run_url(run_b.friendly_id), token=key_a, params={"live": "true", "handle": run_b.handle, "offset": "1_1"})
    assert r.status_code == 404, r.text

    snap_b = get(run_url(run_b.friendly_id), token=key_b)
    list_b = tag_snapshot([t], token=key_b)
    list_a = tag_snapshot([t], token=key_a)
    assert run_b.id in list_b.text and run_b.id not in list_a.text
    polls_b = [start_live(run_b, snap_b.headers["electric-offset"], token=key_b),
               live_after(runs_list_url(), list_b, params={"tags": t}, token=key_b)]
    poll_a = live_after(runs_list_url(), list_a, params={"tags": t}, token=key_a)
    wait_until(lambda: numsub(env_a) >= 1 and numsub(env_b) >= 1, 5, what="both env channels to be subscribed")
    time.sleep(0.3)

    touch(run_b, "EXECUTING")
    junk = [
        bytes(range(256)), b"\xff" * 1000, b"{" * 10000, b"[" * 100000, b"\x00", b"",
        b'{"v":1,"runId":"' + b"x" * (1 << 20) + b'"}', b"x" * (1 << 20),
        json.dumps({"v": 1, "runId": 5, "envId": env_b}).encode(),
        json.dumps({"v": "1", "runId": [run_b.id], "envId": {}, "tags": [1, None, {}], "batchId": 7}).encode(),
        json.dumps({"v": 1, "runId": None, "envId": env_b, "tags": [t]}).encode(),
    ]
    # Wrong-typed fields on a record that does name B's run: on B's own channel such a record may wake B
    # (records are decoded leniently: a frame that is not a JSON object is a bare run id), so they are only sent on A's channel here.
    lenient = [
        json.dumps({"v": 1, "runId": run_b.id, "envId": env_b, "tags": "x"}).encode(),
        json.dumps({"v": 1, "runId": run_b.id, "envId": env_b, "updatedAtMs": "soon"}).encode(),
        json.dumps({"v": 1, "runId": run_b.id, "envId": env_b, "updatedAtMs": 1e300}).encode(),
    ]
    for j in junk:
        redis_cmd("PUBLISH", channel(env_b), j)
        redis_cmd("PUBLISH", channel(env_a), j)
    for j in lenient:
        redis_cmd("PUBLISH", channel(env_a), j)
    # Records on A's channel naming B's run (and claiming B's env or B's tags).
    for rec in ({"v": 1, "runId": run_b.id, "envId": env_b, "tags": [t], "batchId": None},
                {"v": 1, "runId": run_b.id, "envId": env_a, "tags": [t], "batchId": None},
                {"v": 1, "runId": run_b.id, "envId": env_a}):
        redis_cmd("PUBLISH", channel(env_a), json.dumps(rec))
    redis_cmd("PUBLISH", channel(env_a), run_b.id)  # a bare run id frame
    wait_pending(polls_b, 0.8)

    # B's proper record wakes B; A's feed never gets B's run.
    for j in lenient:  # now allowed to wake B: must not break anything
        redis_cmd("PUBLISH", channel(env_b), j)
    publish_until_done(polls_b, env_b, run_b.id, timeout=WAKE_GRACE, tags=[t])
    for f in polls_b:
        r = f.result()
        assert r.status_code == 200, r.text
        assert run_b.id in r.text, r.text[:300]
    ra = poll_a.result()
    assert ra.status_code == 200, ra.text
    assert run_b.id not in ra.text, "env B's run was delivered on env A's feed"


# --------------------------------------------------------------------------------------
# Survival (keep last)
# --------------------------------------------------------------------------------------

def test_zz_every_worker_survived_the_module():
    for u in HEALTH_URLS:
        r = requests.get(u, timeout=5)
        assert r.status_code == 200 and r.json()["status"] == "ok", (u, r.text)
    assert worker_pids() == _PIDS_AT_START, "a worker was restarted (crashed?) during the hostile tests"
    for s in worker_sockets():
        r = fcgi_raw(ROUTES[0][0], "offset=-1", sock=s)
        assert r.status_code == 200
