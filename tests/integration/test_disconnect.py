"""A client that goes away mid-hold: nginx closes the upstream connection and the
worker ends the poll at once, logging it, and releases what the poll held."""

import socket
from urllib.parse import urlencode, urlsplit

from conftest import (
    BASE_URL, MODERN, get, log_sizes, log_tail_since, make_env, make_run, numsub, run_url, wait_until,
)

LINGER_S = 5  # a worker keeps an env channel 5 s after its last feed leaves


def test_client_disconnect_aborts_the_held_poll_and_releases_it():
    env_id, key = make_env()  # its own channel: nothing else in the suite subscribes to it
    run = make_run(env_id=env_id)
    snap = get(run_url(run.friendly_id), token=key)
    assert snap.status_code == 200, snap.text
    sizes = log_sizes()
    assert sizes, "no worker logs found under $RUNFEED_STATE/log"

    u = urlsplit(BASE_URL)
    query = urlencode({"live": "true", "handle": run.handle, "offset": snap.headers["electric-offset"],
                       "cursor": "", "log": "full"})
    request = (f"GET /realtime/v1/runs/{run.friendly_id}?{query} HTTP/1.1\r\n"
               f"Host: {u.hostname}:{u.port}\r\n"
               f"Authorization: Bearer {key}\r\n"
               f"x-trigger-electric-version: {MODERN}\r\n\r\n")
    s = socket.create_connection((u.hostname, u.port), timeout=5)
    try:
        s.sendall(request.encode())
        wait_until(lambda: numsub(env_id) >= 1, 5, what="the held poll's worker to subscribe to its env channel")
        s.settimeout(0.5)
        try:
            early = s.recv(65536)
        except socket.timeout:
            early = b""
        assert early == b"", f"the live poll was answered instead of held: {early[:200]!r}"
    finally:
        s.close()

    needle = f"live poll aborted by client run={run.id} "
    wait_until(lambda: any(needle in t for t in log_tail_since(sizes).values()), 5, 0.1,
               f"a worker log line containing {needle!r} (is the stack running with --log-level debug?)")
    # The aborted feed no longer holds its env channel: it is unsubscribed once the linger is over.
    wait_until(lambda: numsub(env_id) == 0, LINGER_S + 5, 0.2, "the env channel to be released after the abort")
