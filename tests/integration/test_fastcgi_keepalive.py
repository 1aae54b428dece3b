"""Kept FastCGI connections (nginx `fastcgi_keep_conn on` + upstream `keepalive`): the worker reads the next
request on the connection it answered (FCGI_KEEP_CONN), closes it after the answer without that flag, never
serves a second request before the first is answered, survives a held poll's client leaving, and closes idle
kept connections at a drain while nginx carries on on the other workers."""

import json
import os
import signal
import socket

import requests

from conftest import (
    DEMO_RUN, FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_STDIN, _fcgi_params, _fcgi_record,
    expected_body, fcgi_read_answer, headers, make_run, parse_metrics, run_url, wait_until, worker_sockets,
)
from pools import procs  # noqa: F401 (fixture)
from test_pool import change, snap, start_poll, wait_held


def request_bytes(path, query="offset=-1", keep=True, request_id=1):
    env = {"REQUEST_METHOD": "GET", "DOCUMENT_URI": path, "REQUEST_URI": path + "?" + query, "QUERY_STRING": query,
           "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
    for k, v in headers().items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    return (_fcgi_record(FCGI_BEGIN_REQUEST, bytes([0, 1, 1 if keep else 0, 0, 0, 0, 0, 0]), request_id)
            + _fcgi_record(FCGI_PARAMS, _fcgi_params(env), request_id) + _fcgi_record(FCGI_PARAMS, b"", request_id)
            + _fcgi_record(FCGI_STDIN, b"", request_id))


def read_answer(f):
    out = fcgi_read_answer(f)
    return None if out is None else out.decode()


def connect_worker():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(worker_sockets()[0]))
    return s


def body(answer):
    return answer.partition("\r\n\r\n")[2]


def test_requests_one_after_another_on_a_kept_connection():
    s = connect_worker()
    try:
        f = s.makefile("rb")
        for _ in range(5):
            s.sendall(request_bytes("/realtime/v1/runs/" + DEMO_RUN))
            answer = read_answer(f)
            assert answer is not None, "the worker closed a connection the request asked to keep"
            assert answer.startswith("Status: 200") and body(answer) == expected_body(DEMO_RUN, "insert")
    finally:
        s.close()


def test_without_keep_conn_the_connection_is_closed_after_the_answer():
    s = connect_worker()
    try:
        f = s.makefile("rb")
        s.sendall(request_bytes("/realtime/v1/runs/" + DEMO_RUN, keep=False))
        assert read_answer(f).startswith("Status: 200")
        assert f.read(1) == b"", "the connection stays open without FCGI_KEEP_CONN"
    finally:
        s.close()


def test_a_second_request_before_the_first_is_answered_closes_the_connection():
    """No multiplexing and no pipelining (nginx does neither): the connection is dropped, not mixed up."""
    s = connect_worker()
    try:
        f = s.makefile("rb")
        run = make_run()
        first = snap_offset(run)
        s.sendall(request_bytes("/realtime/v1/runs/" + run.friendly_id, f"offset={first}&handle={run.handle}&live=true")
                  + request_bytes("/realtime/v1/runs/" + DEMO_RUN))
        assert read_answer(f) is None
    finally:
        s.close()


def snap_offset(run):
    r = requests.get(run_url(run.friendly_id), headers=headers(), timeout=10)
    assert r.status_code == 200
    return r.headers["electric-offset"]


def test_held_poll_on_a_kept_connection_then_the_next_request(procs):
    """Through nginx with kept connections: polls are answered by a change, their connections are reused by the
    next requests (the worker counts them), and a client that leaves mid-hold releases its poll."""
    pool = procs.pool("keep", workers=1, hold_ms=20000)
    base = procs.nginx({"main": [pool.port]}, keepalive=64).url["main"]
    run = make_run()
    offset = snap(base, run).headers["electric-offset"]
    for n in range(3):
        f = start_poll(base, run, offset)
        wait_held(pool, 1)
        change(run.env_id, run, n)
        r = f.result()
        assert r.status_code == 200 and json.loads(r.text)[0]["value"]["metadata"] == json.dumps({"n": n})
        offset = r.headers["electric-offset"]
    m = pool.metrics()[0]
    accepted = m["runfeed_fastcgi_connections_accepted_total"]
    reused = m["runfeed_fastcgi_kept_connection_requests_total"]
    assert reused >= 3 and accepted <= 2, (accepted, reused)

    # A client that leaves mid-hold: nginx closes that upstream connection; the poll is released at once.
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10)
    sock.sendall((f"GET /realtime/v1/runs/{run.friendly_id}?live=true&handle={run.handle}&offset={offset} HTTP/1.1\r\n"
                  f"Host: localhost\r\nAuthorization: {headers()['Authorization']}\r\n\r\n").encode())
    wait_held(pool, 1)
    sock.close()
    wait_until(lambda: sum(pool.held()) == 0, 10, 0.05, "the abandoned poll to be released")


def test_drain_closes_idle_kept_connections_and_nothing_is_lost(procs):
    pool = procs.pool("keep-drain", workers=2, hold_ms=20000)
    base = procs.nginx({"main": [pool.port]}, keepalive=64).url["main"]
    run = make_run()
    for _ in range(6):
        snap(base, run)          # leaves idle kept connections to the workers in nginx's pool
    idle = sum(m.get('runfeed_fastcgi_connections{state="idle"}', 0) for m in pool.metrics())
    assert idle >= 1, pool.metrics()
    victim = pool.worker_pids()[0]
    pool_slot = pool.slot_of(victim)
    os.kill(victim, signal.SIGTERM)
    wait_until(lambda: victim not in pool.worker_pids() and len(pool.worker_pids()) == 2 and pool.healthy(pool_slot),
               20, 0.1, "the drained worker to be replaced")
    # Every request after the drain is answered: nginx finds its kept connections to the drained worker closed
    # and uses (or opens) others.
    for _ in range(10):
        assert snap(base, run).status_code == 200
