#!/usr/bin/env python3
"""Database load of tag feeds, counted from the workers' own query counters (their /metrics).

Scenario A: --feeds initial snapshots of the same tag, all sent within about a second: how many
ClickHouse (membership) queries and Postgres hydrates do they cost per worker?
Scenario B: the same --feeds connections then go live and are held; one matching run changes and its
change record is published: how many hydrates and membership queries does the wake cost, and do all
feeds receive the change?

Loopback only; bounded by --feeds (max 5000) and --duration.
"""
import asyncio
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

from livepolls import Conn, loopback_only, psql, redis_publish, stack_arguments


def scrape(urls):
    out = {}
    for u in urls:
        loopback_only(urllib.parse.urlparse(u).hostname)
        text = urllib.request.urlopen(u, timeout=5).read().decode()
        vals = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, v = line.rpartition(" ")
                vals[name] = int(float(v))
        out[u] = vals
    return out


def delta(before, after, name):
    return {u: after[u].get(name, 0) - before[u].get(name, 0) for u in after}


MEMBERSHIP = ('runfeed_membership_queries_total{resolver="clickhouse"}', 'runfeed_membership_queries_total{resolver="postgres"}')


async def main():
    ap = stack_arguments(__doc__)
    ap.add_argument("--metrics", default=os.environ.get("RUNFEED_METRICS_URLS", ""), help="space-separated worker /metrics URLs")
    ap.add_argument("--tag", default="bench-list")
    ap.add_argument("--feeds", type=int, default=500)
    ap.add_argument("--members", type=int, default=20, help="runs carrying the tag")
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--sync", default=os.path.join(os.path.dirname(__file__), "..", "scripts", "clickhouse-sync.sh"))
    ap.add_argument("--json")
    a = ap.parse_args()
    urls = a.metrics.split()
    if not (a.key and a.env and a.database_url and urls):
        raise SystemExit("need --key, --env, --database-url and --metrics (or source .runfeed/demo.env)")
    u = urllib.parse.urlparse(a.url)
    loopback_only(u.hostname)
    a.feeds = min(a.feeds, 5000)
    deadline = time.monotonic() + a.duration

    prefix = f"cmbl{a.env[-6:]}"
    values = ",".join(
        f"('{prefix}{i:08d}','run_bl{a.env[-6:]}{i:08d}','{a.env}',(SELECT \"projectId\" FROM \"RuntimeEnvironment\" WHERE id='{a.env}'),"
        f"'bench-list','EXECUTING','{{}}',now() at time zone 'utc',now() at time zone 'utc','{{{a.tag}}}')" for i in range(a.members))
    psql(a.database_url, 'INSERT INTO "TaskRun" ("id","friendlyId","runtimeEnvironmentId","projectId","taskIdentifier","status",'
                         '"payload","createdAt","updatedAt","runTags") VALUES ' + values + " ON CONFLICT (id) DO NOTHING")
    if os.path.exists(a.sync):
        subprocess.run(["bash", a.sync], check=True, capture_output=True)
    await asyncio.sleep(1.5)  # let earlier runset cache entries expire

    headers = {"Authorization": f"Bearer {a.key}", "x-trigger-electric-version": "1.0.0-beta.1"}
    host, port = u.hostname, u.port or 80
    path = f"/realtime/v1/runs?tags={urllib.parse.quote(a.tag)}&createdAt=1h"
    conns = [Conn(host, port) for _ in range(a.feeds)]
    state = [None] * a.feeds

    # A: snapshots within about a second.
    before_a = scrape(urls)
    t0 = time.monotonic()

    async def snap(i):
        st, h, body = await conns[i].request(path + "&log=full&offset=-1", headers)
        state[i] = (st, h.get("electric-handle"), h.get("electric-offset"), len(json.loads(body)) - 1)
    await asyncio.gather(*(snap(i) for i in range(a.feeds)))
    snap_secs = time.monotonic() - t0
    after_a = scrape(urls)
    ok = sum(1 for s in state if s and s[0] == 200)

    # B: go live, wait until all are held, then one change.
    results = []

    async def live(i):
        _, handle, offset, _ = state[i]
        q = urllib.parse.urlencode({"cursor": "", "handle": handle, "live": "true", "log": "full", "offset": offset})
        st, h, body = await conns[i].request(f"/realtime/v1/runs?tags={urllib.parse.quote(a.tag)}&createdAt=1h&{q}", headers)
        results.append((time.monotonic(), st, json.loads(body)))
    tasks = [asyncio.create_task(live(i)) for i in range(a.feeds)]
    while time.monotonic() < deadline:
        held = sum(v.get('runfeed_held_polls{kind="list"}', 0) for v in scrape(urls).values())
        if held >= a.feeds:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.2)  # cold resolves done, runset cache entries expired
    before_b = scrape(urls)
    rid = f"{prefix}{0:08d}"
    psql(a.database_url, f"UPDATE \"TaskRun\" SET status='COMPLETED_SUCCESSFULLY', \"updatedAt\" = now() at time zone 'utc' WHERE id='{rid}'")
    t1 = time.monotonic()
    redis_publish(a.redis_host, a.redis_port, f"realtime:env:{{{a.env}}}",
                  json.dumps({"v": 1, "runId": rid, "envId": a.env, "tags": [a.tag], "batchId": None}))
    await asyncio.wait(tasks, timeout=max(1, deadline - time.monotonic()))
    after_b = scrape(urls)
    for c in conns:
        c.close()
    delivered = sum(1 for _, st, body in results if st == 200 and any(m.get("value", {}).get("id") == rid for m in body))
    lat = sorted((t - t1) * 1000 for t, st, body in results if any(m.get("value", {}).get("id") == rid for m in body))

    out = {
        "feeds": a.feeds, "members": a.members, "workers": len(urls),
        "A_snapshots": {
            "ok": ok, "seconds": round(snap_secs, 3), "rows_per_snapshot": state[0][3] if state[0] else None,
            "membership_queries": {k: delta(before_a, after_a, k) for k in MEMBERSHIP},
            "hydrates": delta(before_a, after_a, "runfeed_list_hydrates_total"),
            "runset": {k: delta(before_a, after_a, f'runfeed_runset_resolves_total{{result="{k}"}}') for k in ("miss", "hit", "coalesced")},
        },
        "B_one_change": {
            "delivered": delivered,
            "membership_queries": {k: delta(before_b, after_b, k) for k in MEMBERSHIP},
            "hydrates": delta(before_b, after_b, "runfeed_list_hydrates_total"),
            "postgres_statements": delta(before_b, after_b, "runfeed_postgres_queries_total"),
            "latency_ms": {"median": round(lat[len(lat) // 2], 1) if lat else None, "max": round(lat[-1], 1) if lat else None},
        },
    }
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    asyncio.run(main())
