#!/usr/bin/env python3
"""Change capture benchmark (issue 16): SQL writes → `runfeed capture` → Redis, on a running stack.

Starts its own capturer (slot and publication of its own, dropped at the end) and a Redis subscriber on a
fresh environment's channel, then:
  1. sustained: N rows inserted in transactions of 100 as fast as one psql session commits them; changes/s
     from the first commit to the last record received;
  2. lag at R changes/s (for each R): every 100 ms a transaction updates R/10 runs, setting "updatedAt" to
     clock_timestamp(); the lag of a record is its arrival time minus that stamp (the commit follows it by
     well under a millisecond);
  3. the capturer's CPU (utime + stime from /proc) over each phase;
  4. for comparison, the app publishing directly: the same rates of change records PUBLISHed straight to Redis
     (stamped when sent), so the difference in lag is what capture adds.
Bounded: every phase has a deadline. Loopback only. Usage (with the stack's demo.env exported):

    python3 bench/capture.py [--rows 50000] [--rates 1000,5000] [--seconds 10]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PSQL = "/usr/lib/postgresql/15/bin/psql" if os.path.exists("/usr/lib/postgresql/15/bin/psql") else "psql"
DB = os.environ["DATABASE_URL"]
REDIS_PORT = int(os.environ["REDIS_PORT"])
BIN = os.environ.get("RUNFEED_BIN") or os.path.join(ROOT, ".build", "debug", "runfeed")
ENV_ID = os.environ["RUNFEED_ENV_ID"]
TICK = os.sysconf("SC_CLK_TCK")


def psql(sql, timeout=600):
    p = subprocess.run([PSQL, DB, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=sql,
                       capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PGTZ="UTC"))
    if p.returncode != 0:
        sys.exit(f"psql: {p.stderr}")
    return p.stdout.split()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Subscriber:
    def __init__(self, env_id):
        self.sock = socket.create_connection(("127.0.0.1", REDIS_PORT))
        ch = ("realtime:env:{" + env_id + "}").encode()
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(ch), ch))
        self.f = self.sock.makefile("rb")
        self._read()
        self.lock = threading.Lock()
        self.arrivals = []   # (wall time, record)
        threading.Thread(target=self.loop, daemon=True).start()

    def _read(self):
        line = self.f.readline()
        t = line[:1]
        if t == b"*":
            return [self._read() for _ in range(int(line[1:]))]
        if t == b"$":
            data = self.f.read(int(line[1:]) + 2)
            return data[:-2]
        return line[1:].strip()

    def loop(self):
        while True:
            try:
                msg = self._read()
            except (OSError, ValueError):
                return
            now = time.time()
            if isinstance(msg, list) and msg[0] == b"message":
                rec = json.loads(msg[2])
                if "lsn" in rec:
                    with self.lock:
                        self.arrivals.append((now, rec))

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def take(self):
        with self.lock:
            out, self.arrivals = self.arrivals, []
        return out


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rates", default="1000,5000")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--metrics-port", type=int, default=int(os.environ.get("RUNFEED_CAPTURE_METRICS_PORT", "19500")) + 9)
    a = ap.parse_args()

    slot = "bench_capture_" + uuid.uuid4().hex[:8]
    env_id = ("cmbenchenv" + uuid.uuid4().hex + "0" * 25)[:25]
    psql(f'''INSERT INTO "RuntimeEnvironment" ("id","slug","apiKey","type","organizationId","projectId","createdAt","updatedAt")
             SELECT '{env_id}', 'bench-{env_id}', 'tr_dev_{env_id[:20]}', 'DEVELOPMENT', "organizationId", "projectId", now(), now()
             FROM "RuntimeEnvironment" WHERE id = '{ENV_ID}' ''')
    project = psql(f'''SELECT "projectId" FROM "RuntimeEnvironment" WHERE id = '{env_id}' ''')[0]
    env = dict(os.environ, RUNFEED_CAPTURE_SLOT=slot, RUNFEED_CAPTURE_PUBLICATION=slot,
               RUNFEED_CAPTURE_METRICS_PORT=str(a.metrics_port))
    log = open(os.path.join(os.environ.get("RUNFEED_STATE", "/tmp"), "log", f"{slot}.log"), "ab")
    cap = subprocess.Popen([BIN, "capture"], env=env, stdout=log, stderr=subprocess.STDOUT)
    sub = Subscriber(env_id)
    results = {}
    try:
        def active():
            try:
                import urllib.request
                return b'"active"' in urllib.request.urlopen(f"http://127.0.0.1:{a.metrics_port}/healthz", timeout=1).read()
            except OSError:
                return False
        if not wait_for(active, 30):
            sys.exit("capturer not active")

        # 1. sustained
        n = a.rows - a.rows % 100
        stmts = []
        for t in range(n // 100):
            stmts.append(f'''INSERT INTO "TaskRun" ("id","friendlyId","taskIdentifier","updatedAt","payload","runTags","runtimeEnvironmentId","projectId")
SELECT 'cb{env_id[-8:]}' || lpad(g::text, 8, '0'), 'run_cb{env_id[-8:]}' || lpad(g::text, 8, '0'), 'bench', now(), '{{}}',
       ARRAY['bench']::text[], '{env_id}', '{project}' FROM generate_series({t * 100 + 1}, {t * 100 + 100}) g;''')
        c0, t0 = cpu_seconds(cap.pid), time.time()
        psql("\n".join(stmts))
        t_written = time.time()
        ok = wait_for(lambda: sub.count() >= n, 300)
        t1, c1 = time.time(), cpu_seconds(cap.pid)
        got = sub.take()
        last = max(t for t, _ in got) if got else t1
        results["sustained"] = dict(rows=n, received=len(got), complete=ok, write_s=round(t_written - t0, 2),
                                    end_to_end_s=round(last - t0, 2), changes_per_s=round(len(got) / (last - t0)),
                                    capturer_cpu_s=round(c1 - c0, 2),
                                    capturer_cpu_pct=round(100 * (c1 - c0) / (last - t0), 1))

        # 2. lag at fixed rates: UPDATE batches of the rows above every 100 ms
        for rate in [int(r) for r in a.rates.split(",")]:
            per = max(1, rate // 10)
            ticks = int(a.seconds * 10)
            script = []
            for k in range(ticks):
                lo = (k * per) % n + 1
                script.append(f'''UPDATE "TaskRun" SET "updatedAt" = clock_timestamp() AT TIME ZONE 'UTC'
 WHERE id IN (SELECT 'cb{env_id[-8:]}' || lpad(g::text, 8, '0') FROM generate_series({lo}, {min(n, lo + per - 1)}) g);
SELECT pg_sleep(greatest(0, {(k + 1) * 0.1} - extract(epoch from clock_timestamp() - current_setting('bench.t0')::timestamptz)));''')
            # The pacing reference is the psql session's own start.
            body = "SELECT set_config('bench.t0', clock_timestamp()::text, false);\n" + "\n".join(script)
            c0, t0 = cpu_seconds(cap.pid), time.time()
            psql(body)
            t_written = time.time()
            expected = sum(min(n, (k * per) % n + per) - (k * per) % n for k in range(ticks))
            ok = wait_for(lambda: sub.count() >= expected, 120)
            t1, c1 = time.time(), cpu_seconds(cap.pid)
            got = sub.take()
            lags = [(t - r["updatedAtMs"] / 1000) * 1000 for t, r in got if r.get("updatedAtMs")]
            results[f"lag_at_{rate}"] = dict(target_per_s=rate, achieved_per_s=round(len(got) / (t_written - t0)),
                                            received=len(got), expected=expected, complete=ok,
                                            lag_ms_p50=round(pct(lags, 0.5), 1), lag_ms_p99=round(pct(lags, 0.99), 1),
                                            lag_ms_max=round(max(lags), 1) if lags else None,
                                            capturer_cpu_pct=round(100 * (c1 - c0) / (t1 - t0), 1))
        # 4. the app publishing directly, at the same rates (records stamped when sent)
        ch = ("realtime:env:{" + env_id + "}").encode()
        pub = socket.create_connection(("127.0.0.1", REDIS_PORT))
        pub_f = pub.makefile("rb")
        for rate in [int(r) for r in a.rates.split(",")]:
            per = max(1, rate // 10)
            ticks = int(a.seconds * 10)
            t0 = time.time()
            for k in range(ticks):
                buf = []
                for i in range(per):
                    rec = json.dumps(dict(v=1, runId=f"direct{k}_{i}", envId=env_id, tags=["bench"], batchId=None,
                                          updatedAtMs=int(time.time() * 1000), lsn="direct")).encode()
                    buf.append(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ch), ch, len(rec), rec))
                pub.sendall(b"".join(buf))
                for _ in range(per):
                    pub_f.readline()
                time.sleep(max(0, t0 + (k + 1) * 0.1 - time.time()))
            expected = per * ticks
            ok = wait_for(lambda: sub.count() >= expected, 60)
            got = sub.take()
            lags = [(t - r["updatedAtMs"] / 1000) * 1000 for t, r in got if r.get("updatedAtMs")]
            results[f"direct_at_{rate}"] = dict(target_per_s=rate, received=len(got), expected=expected, complete=ok,
                                               lag_ms_p50=round(pct(lags, 0.5), 1), lag_ms_p99=round(pct(lags, 0.99), 1))
        pub.close()
    finally:
        cap.kill()
        cap.wait()
        time.sleep(0.5)
        psql(f"SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION IF EXISTS {slot};")
        psql(f'''DELETE FROM "TaskRun" WHERE "runtimeEnvironmentId" = '{env_id}'; DELETE FROM "RuntimeEnvironment" WHERE id = '{env_id}';''')
    results["loadavg"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
