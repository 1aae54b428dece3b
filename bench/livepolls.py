#!/usr/bin/env python3
"""Held live polls and publish-to-response latency through nginx, on loopback only.

Plays the client sequence of @electric-sql/client: a snapshot (offset=-1), then live=true polls with the
returned handle, offset and cursor, re-issued as soon as each response arrives. It holds --polls
concurrent live polls spread over --runs bench runs (created in Postgres), then, --publishes times,
moves one run (UPDATE "updatedAt") and publishes its change record, timing from the PUBLISH to each
live response that carries the new row. It also reads the worker's RSS and thread count while the
polls are held.

Every run is bounded: --polls, --publishes and --duration cap the work; targets must be loopback.
"""
import argparse
import asyncio
import ipaddress
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse


def loopback_only(host):
    try:
        if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            raise SystemExit(f"refusing non-loopback target {host}")
    except socket.gaierror:
        raise SystemExit(f"cannot resolve {host}")


class Conn:
    """One keep-alive HTTP/1.1 connection to nginx (plain HTTP port)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, path, headers):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode())
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        hdrs = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        body = await self.reader.readexactly(n) if n else b""
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, body

    def close(self):
        if self.writer:
            self.writer.close()
        self.reader = self.writer = None


def psql(db_url, sql):
    out = subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def redis_publish(host, port, channel, payload):
    with socket.create_connection((host, port), timeout=2) as s:
        parts = [b"PUBLISH", channel.encode(), payload.encode()]
        msg = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        s.sendall(msg)
        s.recv(64)


def proc_stats(pid):
    stats = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                stats[k] = v.strip()
    stats["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return stats


def stack_arguments(doc):
    """The arguments every benchmark takes: where the stack is (defaults from .runfeed/demo.env)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("RUNFEED_HTTP_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--key", default=os.environ.get("RUNFEED_API_KEY"))
    ap.add_argument("--env", default=os.environ.get("RUNFEED_ENV_ID"))
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--redis-host", default=os.environ.get("REDIS_HOST", "127.0.0.1"))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    return ap


async def main():
    ap = stack_arguments(__doc__)
    ap.add_argument("--polls", type=int, default=1000, help="concurrent live polls (max 20000)")
    ap.add_argument("--runs", type=int, default=100, help="bench runs the polls are spread over")
    ap.add_argument("--publishes", type=int, default=100, help="changes to publish (max 10000)")
    ap.add_argument("--interval-ms", type=int, default=100, help="pause between publishes")
    ap.add_argument("--duration", type=float, default=120, help="hard stop, seconds")
    ap.add_argument("--worker-pid", type=int, action="append", default=[], help="worker pid(s) to sample")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--publisher", choices=["resp", "cli"], default="resp",
                    help="resp: PUBLISH the record over a socket; cli: run `runfeed publish` (adds process start-up)")
    ap.add_argument("--runfeed-bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "runfeed"))
    a = ap.parse_args()
    if not (a.key and a.env and a.database_url):
        raise SystemExit("need --key, --env and --database-url (or source .runfeed/demo.env)")
    u = urllib.parse.urlparse(a.url)
    loopback_only(u.hostname)
    loopback_only(a.redis_host)
    a.polls = min(a.polls, 20000)
    a.publishes = min(a.publishes, 10000)
    deadline = time.monotonic() + a.duration

    # Bench runs: created once, reused by later runs of the benchmark.
    ids = [f"cmbench{a.env[-8:]}{i:010d}" for i in range(a.runs)]
    values = ",".join(
        f"('{rid}','run_bench{a.env[-8:]}{i:010d}','{a.env}',(SELECT \"projectId\" FROM \"RuntimeEnvironment\" WHERE id='{a.env}'),"
        f"'bench-task','EXECUTING','{{}}',now() at time zone 'utc',now() at time zone 'utc','{{bench}}')"
        for i, rid in enumerate(ids))
    psql(a.database_url, 'INSERT INTO "TaskRun" ("id","friendlyId","runtimeEnvironmentId","projectId","taskIdentifier","status",'
                         '"payload","createdAt","updatedAt","runTags") VALUES ' + values + " ON CONFLICT (id) DO NOTHING")
    friendly = {rid: f"run_bench{a.env[-8:]}{i:010d}" for i, rid in enumerate(ids)}

    headers = {"Authorization": f"Bearer {a.key}", "x-trigger-electric-version": "1.0.0-beta.1"}
    host, port = u.hostname, u.port or 80
    published = {}          # runId -> (publish time, updatedAtMs)
    latencies = []
    responses = {"live": 0, "changed": 0, "errors": 0}
    held = [0]
    stop = asyncio.Event()

    async def subscriber(i):
        rid = ids[i % len(ids)]
        conn = Conn(host, port)
        path = f"/realtime/v1/runs/{friendly[rid]}"
        try:
            st, h, _ = await conn.request(path + "?log=full&offset=-1", headers)
            if st != 200:
                responses["errors"] += 1
                return
            handle, offset, cursor = h["electric-handle"], h["electric-offset"], ""
            while not stop.is_set() and time.monotonic() < deadline:
                q = urllib.parse.urlencode({"cursor": cursor, "handle": handle, "live": "true", "log": "full", "offset": offset})
                held[0] += 1
                try:
                    st, h, body = await conn.request(f"{path}?{q}", headers)
                finally:
                    held[0] -= 1
                now = time.monotonic()
                if st != 200:
                    responses["errors"] += 1
                    await asyncio.sleep(0.1)
                    continue
                responses["live"] += 1
                offset, cursor = h["electric-offset"], h.get("electric-cursor", "")
                msgs = json.loads(body)
                if any("value" in m for m in msgs):
                    responses["changed"] += 1
                    row = next(m for m in msgs if "value" in m)
                    pub = published.get(rid)
                    if pub and row["value"]["updatedAt"] >= pub[1]:
                        latencies.append((now - pub[0]) * 1000)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            responses["errors"] += 1
        finally:
            conn.close()

    baseline = {pid: proc_stats(pid) for pid in a.worker_pid}
    tasks = []
    for i in range(a.polls):
        tasks.append(asyncio.create_task(subscriber(i)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    t0 = time.monotonic()
    while held[0] < a.polls * 0.99 and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    samples = {pid: proc_stats(pid) for pid in a.worker_pid}
    held_at_sample = held[0]

    for n in range(a.publishes):
        if time.monotonic() >= deadline:
            break
        rid = random.choice(ids)
        ts = psql(a.database_url, f'UPDATE "TaskRun" SET "updatedAt" = now() at time zone \'utc\' WHERE id = \'{rid}\' '
                                  'RETURNING to_char("updatedAt", \'YYYY-MM-DD"T"HH24:MI:SS.MS\')')
        published[rid] = (time.monotonic(), ts)
        if a.publisher == "cli":
            await (await asyncio.create_subprocess_exec(
                a.runfeed_bin, "publish", "--env", a.env, "--run", rid, "--tags", "bench",
                env={**os.environ, "REDIS_HOST": a.redis_host, "REDIS_PORT": str(a.redis_port)},
                stdout=subprocess.DEVNULL)).wait()
        else:
            redis_publish(a.redis_host, a.redis_port, f"realtime:env:{{{a.env}}}",
                          json.dumps({"v": 1, "runId": rid, "envId": a.env, "tags": ["bench"], "batchId": None}))
        await asyncio.sleep(a.interval_ms / 1000)
    await asyncio.sleep(1)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    lat = sorted(latencies)
    result = {
        "polls": a.polls, "runs": a.runs, "held_at_sample": held_at_sample, "publishes": len(published) and a.publishes,
        "deliveries": len(lat), "responses": responses,
        "latency_ms": {
            "median": round(statistics.median(lat), 2) if lat else None,
            "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
            "max": round(lat[-1], 2) if lat else None,
        },
        "workers": samples,
        "workers_before": baseline,
        "publisher": a.publisher,
    }
    print(json.dumps(result, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    asyncio.run(main())
