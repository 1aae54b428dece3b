"""Redis Cluster (OPERATIONS "Redis topologies"): 3 masters and 3 replicas on loopback (scripts/redis-cluster.sh).
Sharded pub/sub (upstream's default in cluster mode: SPUBLISH / SSUBSCRIBE) wakes polls of environments on
different shards; classic pub/sub (…_SHARDED_ENABLED=0) too; the concurrency sets live on the cluster; a slot
that migrates to another master is followed; and when the master of a subscribed environment's slot dies, its
replica is promoted, the worker follows, and every change published is received."""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, RUNFEED_BIN, make_env, make_run, parse_metrics, touch, wait_until
from pools import pick_ports, procs  # noqa: F401 (fixture)
from test_pool import snap, start_poll, wait_held

SCRIPT = REPO_ROOT / "scripts" / "redis-cluster.sh"


@pytest.fixture(scope="module")
def cluster():
    first = pick_ports(12)[0]       # 6 nodes, then their 6 cluster bus ports
    d = Path(tempfile.mkdtemp(prefix="runfeed-redis-cluster-"))
    p = subprocess.run(["bash", str(SCRIPT), "start", str(d), str(first)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        yield first, d
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], capture_output=True, timeout=60)


def cli(port, *args):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return p.stdout.strip()


def master_of(first, key):
    """The port of the master serving `key`'s slot."""
    slot = int(cli(first, "CLUSTER", "KEYSLOT", key))
    for line in cli(first, "CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "master" not in parts[2] or "fail" in parts[2]:
            continue
        for rng in parts[8:]:
            lo, _, hi = rng.partition("-")
            if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                return int(parts[1].split("@")[0].rsplit(":", 1)[1])
    return None


def masters(first):
    """Ports of the masters that are up."""
    out = []
    for line in cli(first, "CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "master" in parts[2] and "fail" not in parts[2]:
            out.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
    return sorted(out)


def channel(env_id):
    return "realtime:env:{" + env_id + "}"


def cluster_env(first, **extra):
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(first), "REDIS_TLS_DISABLED": "true",
           "REDIS_CLUSTER_MODE_ENABLED": "1", "RATE_LIMIT_REDIS_PORT": str(first),
           "RATE_LIMIT_REDIS_CLUSTER_MODE_ENABLED": "1",
           "RUNFEED_REDIS_PING_INTERVAL_MS": "1000", "RUNFEED_REDIS_PING_TIMEOUT_MS": "1000"}
    env.update(extra)
    return env


def publish(first, run, **extra):
    """`runfeed publish` with the workers' Redis settings (SPUBLISH unless …_SHARDED_ENABLED=0)."""
    env = dict(os.environ, **cluster_env(first, **extra))
    return subprocess.run([RUNFEED_BIN, "publish", "--env", run.env_id, "--run", run.id], env=env,
                          capture_output=True, text=True, timeout=30)


def metric(pool, series, slot=1):
    return parse_metrics(requests.get(pool.metrics_url(slot), timeout=5).text).get(series, 0)


def envs_on_two_shards(first):
    """Two fresh environments (id, key) whose channels live on different masters."""
    a = make_env()
    while True:
        b = make_env()
        if master_of(first, channel(b[0])) != master_of(first, channel(a[0])):
            return a, b


@pytest.mark.parametrize("sharded", ["1", "0"])
def test_wakes_environments_on_two_shards(procs, cluster, sharded):
    first, _ = cluster
    pool = procs.pool("cluster-" + sharded, workers=1, hold_ms=20000,
                      env=cluster_env(first, REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED=sharded))
    base = procs.nginx({"main": [pool.port]}).url["main"]
    envs = envs_on_two_shards(first)
    runs = [make_run(env) for env, _ in envs]
    futs = [start_poll(base, r, snap(base, r, key=k).headers["electric-offset"], key=k) for r, (_, k) in zip(runs, envs)]
    wait_held(pool, 2)
    wait_until(lambda: metric(pool, "runfeed_redis_subscribed_channels") >= 2, 15, 0.05, "both channels to be subscribed")
    # The concurrency sets live on the cluster, each in its environment's slot.
    for r in runs:
        key = "tr:realtime:native:concurrency:{" + r.env_id + "}"
        assert cli(master_of(first, key), "ZCARD", key) == "1"
    backstops = metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}')
    for r in runs:
        ms = touch(r, "EXECUTING")
        p = publish(first, r, REALTIME_BACKEND_NATIVE_PUBSUB_REDIS_SHARDED_ENABLED=sharded)
        assert p.returncode == 0 and "1 subscriber" in p.stdout, p.stdout + p.stderr
        r.ms = ms
    for r, f in zip(runs, futs):
        resp = f.result()
        assert resp.status_code == 200 and '"status":"EXECUTING"' in resp.text, resp.text
        assert int(resp.headers["electric-offset"].split("_")[0]) == r.ms
    assert metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}') == backstops, "woken by the records"


def migrate_slot(first, slot, src, dst):
    """Moves `slot` (and its keys) from master `src` to master `dst` the way redis-cli --cluster reshard does."""
    src_id, dst_id = cli(src, "CLUSTER", "MYID"), cli(dst, "CLUSTER", "MYID")
    assert cli(dst, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id) == "OK"
    assert cli(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id) == "OK"
    keys = [k for k in cli(src, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").splitlines() if k]
    if keys:
        out = cli(src, "MIGRATE", "127.0.0.1", str(dst), "", "0", "5000", "KEYS", *keys)
        assert out in ("OK", "NOKEY"), out
    for port in range(first, first + 6):
        cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)


def test_slot_migration_is_followed(procs, cluster):
    """The slot of a subscribed environment moves to another master: the old master ends the sharded subscription
    (its `sunsubscribe`), the worker reads the slot map again and subscribes on the new master, and the change
    published there reaches the poll held across the move."""
    first, _ = cluster
    pool = procs.pool("cluster-migrate", workers=1, hold_ms=20000, env=cluster_env(first))
    base = procs.nginx({"main": [pool.port]}).url["main"]
    env, key = make_env()
    src = master_of(first, channel(env))
    dst = next(p for p in masters(first) if p != src)
    run = make_run(env)
    fut = start_poll(base, run, snap(base, run, key=key).headers["electric-offset"], key=key)
    wait_held(pool, 1)
    wait_until(lambda: metric(pool, "runfeed_redis_subscribed_channels") >= 1, 15, 0.05, "the channel to be subscribed")
    assert cli(src, "PUBSUB", "SHARDNUMSUB", channel(env)).splitlines()[-1] == "1"

    migrate_slot(first, int(cli(first, "CLUSTER", "KEYSLOT", channel(env))), src, dst)
    assert master_of(first, channel(env)) == dst
    wait_until(lambda: cli(dst, "PUBSUB", "SHARDNUMSUB", channel(env)).splitlines()[-1] == "1", 15, 0.1,
               "the worker to subscribe on the slot's new master")
    assert cli(src, "PUBSUB", "SHARDNUMSUB", channel(env)).splitlines()[-1] == "0"

    backstops = metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}')
    ms = touch(run, "EXECUTING")
    p = publish(first, run)
    assert p.returncode == 0 and "1 subscriber" in p.stdout, p.stdout + p.stderr
    r = fut.result()
    assert r.status_code == 200 and '"status":"EXECUTING"' in r.text, r.text
    assert int(r.headers["electric-offset"].split("_")[0]) == ms
    assert metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}') == backstops


def test_failover_of_a_subscribed_master(procs, cluster):
    first, d = cluster
    pool = procs.pool("cluster-failover", workers=1, hold_ms=20000, env=cluster_env(first))
    base = procs.nginx({"main": [pool.port]}).url["main"]
    env, key = make_env()
    master = master_of(first, channel(env))
    run = make_run(env)
    fut = start_poll(base, run, snap(base, run, key=key).headers["electric-offset"], key=key)
    wait_held(pool, 1)
    wait_until(lambda: metric(pool, "runfeed_redis_subscribed_channels") >= 1, 15, 0.05, "the channel to be subscribed")

    # The master of the environment's slot dies; its replica takes over after the node timeout.
    pid = int((d / str(master) / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    other = next(p for p in range(first, first + 6) if p != master)
    wait_until(lambda: master_of(other, channel(env)) not in (None, master), 30, 0.2, "a replica to be promoted")

    # Changes published after the failover: every one reaches its held poll (the first poll was held across it).
    seed = first if first != master else other
    published = received = 0
    f = fut
    for n in range(3):
        if n:
            f = start_poll(base, run, offset, key=key)
            wait_held(pool, 1)
        ms = touch(run, "EXECUTING", metadata='{"n":%d}' % n)
        wait_until(lambda: publish(seed, run).returncode == 0, 30, 0.5, "runfeed publish to succeed on the cluster")
        published += 1
        resp = f.result()
        assert resp.status_code == 200, resp.text
        if '"n":%d' % n in resp.text.replace("\\", "") and int(resp.headers["electric-offset"].split("_")[0]) == ms:
            received += 1
        offset = resp.headers["electric-offset"]
    assert received == published
    assert metric(pool, "runfeed_redis_reconnects_total") >= 1
    h = requests.get(pool.health_url(1), timeout=5)
    assert h.status_code == 200 and h.json()["redis"] == "ok", h.text
