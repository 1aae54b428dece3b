#!/usr/bin/env python3
"""Writes the committed seed corpus fuzz/corpus/<target>/ (rerun after editing; files are named by content hash)."""
import base64, hashlib, hmac, json, os, shutil, struct, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
KEY = b"tr_dev_abcdefghij0123456789"  # the key fuzz/targets/auth.swift signs and verifies with
NOW = 1_760_000_000

def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def jwt(payload, header={"alg": "HS256", "typ": "JWT"}):
    inp = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + b64u(json.dumps(payload, separators=(",", ":")).encode())
    return inp + "." + b64u(hmac.new(KEY, inp.encode(), hashlib.sha256).digest())

PAYLOAD = {"sub": "env_1234", "pub": True, "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev",
           "scopes": ["read:runs:run_abc123", "read:tags:user:42", "read:batch:batch_x"], "exp": NOW + 900,
           "iat": NOW - 10, "nbf": NOW - 10, "realtime": {"skipColumns": ["payload", "output"]}}
HDR = b'{"alg":"HS256","typ":"JWT"}'

seeds = {
    "query": [
        "offset=-1", "offset=-1&handle=run-cm5q0x1y20003", "offset=1760000000123_0&handle=run-cm5q0x1y20003&live=true",
        "offset=1760000000123_4&handle=runs_1759913600000_3_deadbeef&live=true&tags=user%3A42%2Corg%3Aacme&createdAt=1d",
        "offset=-1&tags=user:42,org:acme&createdAt=2h30m&skipColumns=payload,output",
        "offset=5_5&shape_id=batch_cm5batch0001xyz_7_deadbeef&live=true&cursor=12345",
        "live=true&offset=-1", "offset=%31_2&handle=a+b", "offset=%zz&live=maybe", "=&&=x&offset",
    ],
    "handles": [
        "1760000000123_0", "0_0", "9223372036854775807_9223372036854775807", "9223372036854775808_1", "-1", "1_2_3",
        "runs_1759913600000_3_deadbeef", "batch_cm5batch0001xyz_7_deadbeef", "batch_a_b_c_0_0123abcd",
        "runs_18446744073709551615_1_00000000", "/realtime/v1/runs/run_cm5q0x1y20003", "/realtime/v1/runs",
        "/realtime/v1/runs/", "/realtime/v1/batches/batch_cm5batch0001xyz//", "/realtime/v1/runs/a/b",
        "run-cm5q0x1y20003", "a" * 201,
        "1760000000123_176000000012300000000000000000000042", "0_000000000000000000000", "1_1" + "9" * 20,
        "1_1" + "18446744073709551615", "1_1" + "0" * 19, "ff00aa:1760000000123456", "1:2:3", ":", "zz:1",
    ],
    "changerecord": [
        '{"v":1,"runId":"cm5q0x1y20003","envId":"clx9k2abc0001","tags":["user:42"],"batchId":null,"updatedAtMs":1760000000123}',
        '{"runId":"r1","envId":"e1","batchId":"b1"}', '{"v":1,"runId":"r","envId":"e","tags":[]}',
        '{"v":1,"runId":"r","envId":"e","tags":null,"updatedAtMs":1.5e12}', '{"v":1,"envId":"e"}',
        '{"runId":"\\u00e9\\ud83d\\ude00","envId":"","tags":["a",1,null,"b"],"v":9007199254740993}',
        "cm5q0x1y20003", "  cm123\n", "{not json", "[1]",
    ],
    "pgtext": [
        "{}", "{a,b}", '{"a b","c\\"d","e\\\\f",NULL,"NULL"}', "{ a , b }", "[1:2]={x,y}", "{{1,2},{3,4}}",
        "{user:42,tag-é,😀}", '{"message": "boom", "stack": [1, 2.50, -0, 1e21, {"x": null}]}',
        '  {"a" : [true,false,null, "\\u0041"]} ', "2025-10-09 08:53:20.123+00", "2025-10-09 08:53:20",
    ],
}

def window_seed(now, max_age, bucket, text):
    return struct.pack("<qqq", now, max_age, bucket) + text.encode()
seeds_bin = {
    "window": [window_seed(NOW * 1000, 30 * 86_400_000, 60_000, t) for t in
               ["24h", "1h30m", "1w2d3hr4m5s", "7d", "0s", "99999999999999999999w", "1h2h", "h", "12", "1x"]] +
              [window_seed(-2**63, 2**63 - 1, 2**63 - 1, "1s"), window_seed(2**63 - 1, -5, 0, ""),
               window_seed(NOW * 1000, 0, 1000, "user:42,org:acme,user:42")],
    "auth": [b"\x00" + jwt(PAYLOAD).encode(), b"\x00Bearer " + jwt(PAYLOAD).encode(),
             b"\x00" + jwt({**PAYLOAD, "aud": ["x", "https://api.trigger.dev"], "exp": NOW - 1}).encode(),
             b"\x00" + jwt(PAYLOAD, {"alg": "none"}).encode(), b"\x00tr_dev_abcdefghij0123456789", b"\x00pk_dev_123",
             b"\x00a.b.c", b"\x00  bearer   ",
             b"\x01" + HDR + b"\n" + json.dumps(PAYLOAD).encode(),
             b"\x01" + HDR + b'\n{"sub":5,"iss":"https://id.trigger.dev","aud":"https://api.trigger.dev","nbf":1e400}',
             b"\x01" + HDR + b'\n{"sub":"s","iss":"https://id.trigger.dev","aud":"https://api.trigger.dev","exp":1760000000.5}'],
    "jsnumber": [struct.pack("<d", x) for x in [0.0, -0.0, 1.0, 0.1, 1e21, 1e-7, 123456789012345680000.0, 5e-324,
                                                1.7976931348623157e308, -1.5e-7, 2**53 + 2]] +
                [struct.pack("<d", 0.0) + s for s in [b"1e21", b"0.000001", b"-123.456e-300"]],
}

def fcgi_record(t, rid, content, pad=0):
    return struct.pack(">BBHHBB", 1, t, rid, len(content), pad, 0) + content + b"\0" * pad
def fcgi_pairs(d):
    out = b""
    for k, v in d.items():
        for x in (k.encode(), v.encode()):
            out += bytes([len(x)]) if len(x) < 128 else struct.pack(">I", len(x) | 0x80000000)
        out += k.encode() + v.encode()
    return out
def fcgi_request(rid=1, keep=1, params=None, stdin=b""):
    params = params or {"REQUEST_METHOD": "GET", "DOCUMENT_URI": "/realtime/v1/runs/run_abc", "QUERY_STRING": "offset=-1",
                        "HTTP_AUTHORIZATION": "Bearer tr_dev_x", "HTTP_X_LONG": "y" * 300}
    b = fcgi_record(1, rid, struct.pack(">HB5x", 1, keep))
    b += fcgi_record(4, rid, fcgi_pairs(params), pad=3) + fcgi_record(4, rid, b"")
    if stdin:
        b += fcgi_record(5, rid, stdin)
    return b + fcgi_record(5, rid, b"")
seeds_bin["fastcgi"] = [b"\x07" + fcgi_request(), b"\x00" + fcgi_request(keep=0) + fcgi_request(rid=2),
                        b"\xff" + fcgi_request(stdin=b"body") + fcgi_record(2, 1, b""),
                        b"\x03" + fcgi_record(9, 0, fcgi_pairs({"FCGI_MAX_CONNS": "", "FCGI_MPXS_CONNS": ""})),
                        b"\x01" + fcgi_record(1, 1, struct.pack(">HB5x", 2, 0)), b"\x05" + fcgi_record(4, 9, b"\x85abc")]

def pg_chunks(*frames):
    return b"".join(struct.pack(">H", len(f)) + f for f in frames)
def pg_tuple(*cols):
    out = struct.pack(">h", len(cols))
    for c in cols:
        if c is None: out += b"n"
        elif c == "~": out += b"u"
        else: out += b"t" + struct.pack(">I", len(c.encode())) + c.encode()
    return out
def pg_w(msg, lsn=0x3000000):
    return b"w" + struct.pack(">QQq", lsn, lsn + 64, 0) + msg
_cols = [("id", 25), ("updatedAt", 1114), ("runTags", 1009), ("runtimeEnvironmentId", 25), ("batchId", 25)]
pg_rel = b"R" + struct.pack(">I", 16390) + b"public\0TaskRun\0d" + struct.pack(">h", len(_cols)) + b"".join(
    bytes([1 if n == "id" else 0]) + n.encode() + b"\0" + struct.pack(">Ii", oid, -1) for n, oid in _cols)
pg_begin = b"B" + struct.pack(">QqI", 0x3000100, 1000, 741)
pg_commit = b"C\0" + struct.pack(">QQq", 0x3000100, 0x3000180, 1000)
pg_ins = b"I" + struct.pack(">I", 16390) + b"N" + pg_tuple("run_1", "2026-01-02 03:04:05.678", "{a,\"b c\"}", "env_1", None)
pg_upd = b"U" + struct.pack(">I", 16390) + b"O" + pg_tuple("run_1", None, "{old}", "env_1", None) + b"N" + pg_tuple("run_1", "2026-01-02 03:04:05.679", "~", "env_1", "batch_1")
pg_del = b"D" + struct.pack(">I", 16390) + b"K" + pg_tuple("run_1", None, None, None, None)
pg_keep = b"k" + struct.pack(">Qq", 0x3000200, 5) + b"\1"
seeds_bin["pgoutput"] = [
    pg_chunks(pg_w(pg_rel), pg_w(pg_begin), pg_w(pg_ins), pg_w(pg_upd), pg_w(pg_del), pg_w(pg_commit), pg_keep),
    pg_chunks(pg_rel, pg_begin, pg_ins, pg_commit), pg_chunks(pg_keep, pg_w(b"T" + struct.pack(">IbI", 1, 0, 16390))),
    pg_chunks(pg_w(b"Y" + struct.pack(">I", 16400) + b"public\0TaskRunStatus\0"), pg_w(b"O" + struct.pack(">Q", 5) + b"origin\0")),
    pg_chunks(pg_w(pg_rel), pg_w(pg_begin), *[pg_w(pg_ins)] * 70, pg_w(pg_commit) + b"\x05"),
]

for name, items in list(seeds.items()) + list(seeds_bin.items()):
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for it in items:
        b = it.encode() if isinstance(it, str) else it
        with open(os.path.join(d, hashlib.sha1(b).hexdigest()[:16]), "wb") as f:
            f.write(b)
    print(f"{name}: {len(items)} seeds", file=sys.stderr)
