"""Snapshot responses: body and headers byte-for-byte against the
reference encoding computed from the database."""

import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from conftest import (
    API_KEY, CA_CERT, COLUMNS, DEMO_RUN, ENV_ID, FULL_SCHEMA, HTTPS_URL, MODERN, ROW_CACHE_S, lit, psql,
    db_row, expected_body, get, make_run, headers, run_url, js_number, pg_array,
)

SEEDED = [
    "run_demo0001",  # PENDING, tags demo,user:42, ttl 10m, nulls
    "run_demo0002",  # metadata, realtimeStreams {"logs"}, 0.55 / 0.0025
    "run_demo0003",  # completed, output
    "run_demo0004",  # NULL runTags, jsonb error
    "run_demo0005",  # DEQUEUED, empty runTags, superjson, isTest t
    "run_demo0006",  # tag with quote, comma, backslash; delayUntil
    "run_demo0007",  # batch member
    "run_demo0009",  # created 2 days ago
    "run_demo0010",  # offloaded payload
    "run_demo0011",  # expiredAt
]


def raw_get(url, hdrs):
    """A plain HTTP/1.1 GET over a socket: (status line, [(name, value)], body bytes)."""
    u = urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    req = f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nConnection: close\r\n"
    for k, v in hdrs.items():
        req += f"{k}: {v}\r\n"
    req += "\r\n"
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    try:
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hs = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        hs.append((name.lower(), value.strip(" ")))
    return lines[0], hs, body


@pytest.mark.parametrize("fid", SEEDED)
def test_snapshot_body_matches_reference_encoding(fid):
    r = get(run_url(fid))
    row = db_row(fid)
    assert r.status_code == 200, r.text
    assert r.text == expected_body(fid, "insert", row=row)
    assert r.headers["electric-handle"] == "run-" + row["id"]
    assert r.headers["electric-offset"].split("_")[0] == str(row["updatedAtMs"])


def test_snapshot_every_header_exact():
    """The complete header set of a modern snapshot, read off the wire."""
    row = db_row(DEMO_RUN)
    status, hs, body = raw_get(run_url(DEMO_RUN), {"Authorization": "Bearer " + API_KEY,
                                                    "x-trigger-electric-version": MODERN})
    assert status == "HTTP/1.1 200 OK"
    names = [n for n, _ in hs]
    assert len(names) == len(set(names)), f"duplicate headers: {hs}"
    h = dict(hs)
    offset = h.pop("electric-offset")
    first, _, second = offset.partition("_")
    assert first == str(row["updatedAtMs"]) and second.isdigit(), offset
    for transport in ("server", "date", "connection"):
        h.pop(transport, None)
    assert h.pop("content-length") == str(len(body))
    assert h == {
        "content-type": "application/json",
        "cache-control": "no-store",
        "access-control-allow-origin": "*",
        "access-control-expose-headers": "*",
        "electric-handle": "run-" + row["id"],
        "electric-schema": FULL_SCHEMA,
        "electric-up-to-date": "",
    }
    assert body.decode("utf-8") == expected_body(DEMO_RUN, "insert", row=row)


def test_snapshot_literal_values_of_seeded_runs():
    """Spot checks written out literally (independent of the reference encoder)."""
    v6 = get(run_url("run_demo0006")).json()[0]["value"]
    assert v6["runTags"] == '{"user:7","odd,tag \\"quoted\\" \\\\ slash"}'
    assert v6["realtimeStreams"] == "{}"
    assert v6["ttl"] == "2h" and v6["isTest"] == "f" and v6["number"] == "1"
    assert v6["startedAt"] is None and v6["completedAt"] is None
    assert len(v6["delayUntil"]) == 23 and v6["delayUntil"][10] == "T" and not v6["delayUntil"].endswith("Z")

    v2 = get(run_url("run_demo0002")).json()[0]["value"]
    assert v2["costInCents"] == "0.55" and v2["baseCostInCents"] == "0.0025"
    assert v2["realtimeStreams"] == '{"logs"}'
    assert v2["usageDurationMs"] == "5400"
    assert v2["metadata"] == '{"progress":0.5,"step":"fetching"}'

    v4 = get(run_url("run_demo0004")).json()[0]["value"]
    assert v4["runTags"] is None
    assert v4["costInCents"] == "0.01" and v4["baseCostInCents"] == "0"
    # jsonb: compact (no ": " / ", "), keys in jsonb order, "\n" kept escaped.
    assert v4["error"] == ('{"name":"Error","type":"BUILT_IN_ERROR","message":"SMTP connection refused",'
                           '"stackTrace":"Error: SMTP connection refused\\n    at sendEmail (src/trigger/email.ts:18:11)"}')

    v5 = get(run_url("run_demo0005"), api_version="2025-07-16").json()[0]["value"]
    assert v5["runTags"] is None  # empty array -> null
    assert v5["isTest"] == "t" and v5["status"] == "DEQUEUED"
    assert v5["payloadType"] == "application/super+json"


def test_snapshot_of_edge_case_run():
    """A run built for the encoder's edges: NULL realtimeStreams, NULL array elements, float forms,
    JSON numbers and escapes in jsonb, control and non-ASCII characters in text."""
    error = ('{"type":"BUILT_IN_ERROR","name":"TypeError","message":"bad \\"value\\"\\ttab é ☃ 😀",'
             '"stackTrace":"line1\\nline2","extra":{"n":1.50,"big":1e3,"neg":-0.25,"list":[1,true,null,"x"]}}')
    run = make_run(status="EXECUTING", tags=["x", "b\\c", 'q"q', "spa ce", "NULL", "{brace}"],
                   realtime_streams=["a", None], error=error, cost=1e-7, base_cost=1e21,
                   payload="ctl:\x01\x1f tab:\t nl:\n quote:\" bs:\\ uni:é☃😀 del:\x7f",
                   metadata='{"k": [1, 2]}', output="plain", is_test=True, number=2147483647,
                   usage_ms=42, ttl="1h30m", started=True, completed=True)
    r = get(run_url(run.friendly_id))
    assert r.status_code == 200, r.text
    assert r.text == expected_body(run.friendly_id, "insert")
    v = r.json()[0]["value"]
    assert v["realtimeStreams"] == '{"a",NULL}'
    assert v["runTags"] == '{"x","b\\\\c","q\\"q","spa ce","NULL","{brace}"}'
    assert v["costInCents"] == "1e-7" and v["baseCostInCents"] == "1e+21"
    assert v["number"] == "2147483647" and v["isTest"] == "t"
    assert v["error"] == ('{"name":"TypeError","type":"BUILT_IN_ERROR","extra":{"n":1.5,"big":1000,"neg":-0.25,'
                          '"list":[1,true,null,"x"]},"message":"bad \\"value\\"\\ttab é ☃ 😀",'
                          '"stackTrace":"line1\\nline2"}')
    # Raw body bytes: control characters as lowercase \u00xx, non-ASCII raw UTF-8.
    assert 'ctl:\\u0001\\u001f tab:\\t nl:\\n quote:\\" bs:\\\\ uni:é☃😀 del:\x7f' in r.content.decode("utf-8")


def test_null_arrays_are_encoded_like_upstream():
    """Upstream's native serializer: a NULL realtimeStreams is the empty-array literal "{}" (not null); runTags
    is null when NULL or empty."""
    cases = [(None, None, None, "{}"), ([], [], None, "{}"), (["t"], ["s"], '{"t"}', '{"s"}')]
    for tags, streams, want_tags, want_streams in cases:
        run = make_run(tags=tags, realtime_streams=streams)
        stored = psql(f'SELECT "realtimeStreams" IS NULL, "runTags" IS NULL FROM "TaskRun" WHERE id = {lit(run.id)}')
        assert stored[0].split("|") == (["t", "t"] if tags is None else ["f", "f"]), stored
        r = get(run_url(run.friendly_id))
        assert r.status_code == 200, r.text
        assert r.text == expected_body(run.friendly_id, "insert")
        v = r.json()[0]["value"]
        assert v["runTags"] == want_tags and v["realtimeStreams"] == want_streams, (tags, streams, v)


def test_snapshot_float_forms():
    for cost, text in [(3.0, "3"), (0.1 + 0.2, "0.30000000000000004"), (1e-6, "0.000001"), (1.5e-7, "1.5e-7"),
                       (123456.789, "123456.789"), (1e20, "100000000000000000000")]:
        assert js_number(cost) == text
        run = make_run(cost=cost)
        assert get(run_url(run.friendly_id)).json()[0]["value"]["costInCents"] == text


def test_snapshot_unknown_run_is_404():
    r = get(run_url("run_doesnotexist000"))
    assert r.status_code == 404
    assert r.text == '{"error":"Not found"}'
    assert r.headers.get("x-should-retry") == "false"


def test_snapshot_over_https():
    url = run_url(DEMO_RUN, base=HTTPS_URL)
    try:
        r = requests.get(url, headers=headers(), timeout=10, verify=CA_CERT or False)
    except requests.exceptions.SSLError:
        r = requests.get(url, headers=headers(), timeout=10, verify=False)
    assert r.status_code == 200
    assert r.text == expected_body(DEMO_RUN, "insert")
    assert r.headers["electric-schema"] == FULL_SCHEMA
    assert r.headers["electric-up-to-date"] == ""


def test_explicit_offset_minus_one_and_handle_is_snapshot():
    row = db_row(DEMO_RUN)
    r = get(run_url(DEMO_RUN), params={"offset": "-1", "handle": "run-" + row["id"], "log": "full"})
    assert r.status_code == 200
    assert r.text == expected_body(DEMO_RUN, "insert", row=row)


def test_columns_constant_matches_schema():
    import json
    assert list(json.loads(FULL_SCHEMA).keys()) == COLUMNS
    assert pg_array([]) == "{}"


def test_timestamp_fraction_padding():
    """libpq drops trailing zeros ('…:05', '…:05.1'); the wire form always has three digits."""
    run = make_run()
    psql(f'''UPDATE "TaskRun" SET "startedAt" = '2026-01-02 03:04:05', "completedAt" = '2026-01-02 03:04:05.1',
             "delayUntil" = '2026-01-02 03:04:05.12', "expiredAt" = '1999-12-31 23:59:59.999',
             "queuedAt" = '2000-02-29 00:00:00.001' WHERE id = '{run.id}' ''')
    time.sleep(ROW_CACHE_S)  # a snapshot may come from a row read up to 250 ms before the UPDATE
    r = get(run_url(run.friendly_id))
    assert r.text == expected_body(run.friendly_id, "insert")
    v = r.json()[0]["value"]
    assert (v["startedAt"], v["completedAt"], v["delayUntil"], v["expiredAt"], v["queuedAt"]) == (
        "2026-01-02T03:04:05.000", "2026-01-02T03:04:05.100", "2026-01-02T03:04:05.120",
        "1999-12-31T23:59:59.999", "2000-02-29T00:00:00.001")


def test_large_payload_snapshot():
    """A multi-megabyte row (UTF-8, multi-byte) crosses the FastCGI and nginx buffers intact."""
    payload = '{"blob":"' + ("ab€😀" * 300_000) + '"}'
    run = make_run(payload=payload, output=payload[::-1])
    r = get(run_url(run.friendly_id), timeout=30)
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.text == expected_body(run.friendly_id, "insert")
    assert r.json()[0]["value"]["payload"] == payload


def test_missing_run_is_not_cached():
    """A 404 must not stick: the run created right after is found on the next request (a missing run is not cached)."""
    run_id_sfx = "cachemiss" + str(id(object()))
    fid = "run_it" + run_id_sfx
    for _ in range(2 * 2):  # reach every worker
        assert get(run_url(fid)).status_code == 404
    psql(f'''INSERT INTO "TaskRun" ("id","friendlyId","taskIdentifier","createdAt","updatedAt","payload",
             "runtimeEnvironmentId","projectId")
             SELECT {lit(("cmit" + run_id_sfx + "0" * 25)[:25])}, {lit(fid)}, 'it-task',
                    now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', '{{}}', id, "projectId"
             FROM "RuntimeEnvironment" WHERE id = {lit(ENV_ID)}''')
    for _ in range(2 * 2):
        r = get(run_url(fid))
        assert r.status_code == 200, r.text
        assert r.text == expected_body(fid, "insert")
