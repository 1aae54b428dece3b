#!/usr/bin/env python3
"""runfeed benchmark suite: capacity, fan-out (vs nchan), tag churn, database load (vs naive
polling), snapshot throughput (vs nginx static) and a CPU profile of the worst scenario.

Run by `make bench` (scripts/bench.sh), which starts a dedicated stack (its own ports and state
directory, nginx with nchan and a static location, limits set by scripts/stack.sh), runs this
script and stops the stack. The load comes from bench/load (`runfeed-load`), one epoll loop per
process, at most 9,500 connections per process. Every scenario is bounded in count and time and
targets loopback only. Results are written as tables between the `<!-- bench:… -->` markers of
docs/BENCHMARKS.md and as JSON next to the stack's state.
"""
import argparse
import collections
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, ".build", "release", "runfeed-load")
PER_PROCESS = 9500
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loopback_only(host):
    import ipaddress
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise SystemExit(f"refusing non-loopback target {host}")


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def ms(us):
    return None if us is None else us / 1000.0


def fmt_ms(v):
    return "–" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def fmt_int(v):
    return "–" if v is None else f"{v:,}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"


# --- processes -----------------------------------------------------------------------------------

def proc_sample(pid):
    out = {"pid": pid}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "VmRSS":
                out["rss_kb"] = int(v.split()[0])
            elif k == "Threads":
                out["threads"] = int(v)
    fields = stat_fields(pid)
    out["cpu_ticks"] = int(fields[11]) + int(fields[12])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def stat_fields(pid):
    """/proc/<pid>/stat after the command name: fields[1] is the parent, [11]/[12] user/system CPU
    ticks, [13]/[14] those of reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(stat_fields(d)[1]) == pid:
                    kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def postgres_cpu_ticks(pids):
    """CPU of every PostgreSQL process: the live ones, plus what the postmaster has reaped from
    backends that already exited (their time moves to its cutime/cstime)."""
    total = cpu_ticks(pids)
    if pids:
        try:
            fields = stat_fields(pids[0])
            total += int(fields[13]) + int(fields[14])
        except OSError:
            pass
    return total


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            fields = stat_fields(p)
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


# --- the stack -----------------------------------------------------------------------------------

class Stack:
    def __init__(self):
        e = os.environ
        need = ["RUNFEED_HTTP_PORT", "RUNFEED_API_KEY", "RUNFEED_ENV_ID", "DATABASE_URL", "REDIS_PORT",
                "RUNFEED_METRICS_URLS", "RUNFEED_RUN_DIR", "RUNFEED_STATE", "RUNFEED_WORKERS"]
        missing = [k for k in need if not e.get(k)]
        if missing:
            raise SystemExit(f"missing {missing}: run through scripts/bench.sh (make bench)")
        self.port = int(e["RUNFEED_HTTP_PORT"])
        self.key = e["RUNFEED_API_KEY"]
        self.env = e["RUNFEED_ENV_ID"]
        self.db = e["DATABASE_URL"]
        self.redis_port = int(e["REDIS_PORT"])
        self.metrics = e["RUNFEED_METRICS_URLS"].split()
        self.run_dir = e["RUNFEED_RUN_DIR"]
        self.state = e["RUNFEED_STATE"]
        self.workers = int(e["RUNFEED_WORKERS"])
        for u in self.metrics:
            loopback_only(urllib.parse.urlparse(u).hostname)
        if "127.0.0.1" not in self.db and "localhost" not in self.db:
            raise SystemExit("DATABASE_URL must be on loopback")

    def worker_pids(self):
        pids = []
        for n in range(1, self.workers + 1):
            with open(os.path.join(self.run_dir, f"worker-{n}.pid")) as f:
                pids.append(int(f.read().strip()))
        return pids

    def nginx_pids(self):
        with open(os.path.join(self.state, "nginx", "nginx.pid")) as f:
            master = int(f.read().strip())
        return master, children(master)

    def postgres_pids(self):
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "postgres" in cmd and " -D " in cmd and self.state in cmd:
                pids.append(int(d))
        if not pids:
            return []
        return pids + children(pids[0])

    def scrape(self):
        out = []
        for u in self.metrics:
            vals = {}
            text = urllib.request.urlopen(u, timeout=5).read().decode()
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, v = line.rpartition(" ")
                    try:
                        vals[name] = float(v)
                    except ValueError:
                        pass
            out.append(vals)
        return out

    def metric(self, name, scraped=None):
        """The sum over workers of a series; a bare family name (no labels) sums all its label sets, so
        `runfeed_postgres_queries_total` counts primary and replica statements alike."""
        total = 0.0
        for v in (scraped or self.scrape()):
            if "{" in name:
                total += v.get(name, 0)
            else:
                total += sum(x for k, x in v.items() if k == name or k.startswith(name + "{"))
        return total

    def held(self, kind):
        return int(self.metric(f'runfeed_held_polls{{kind="{kind}"}}'))

    def restart_workers(self):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "stack.sh"), "restart-workers"], check=True,
                       stdout=subprocess.DEVNULL)
        self.wait_for_workers()

    def wait_for_workers(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("workers did not come back")

    def set_keepalive(self, n):
        """nginx keeps `n` idle upstream connections per worker (`fastcgi_keep_conn on`), 0: one per request.
        `stack.sh start` renders nginx.conf anew, reloads nginx and restarts the workers."""
        env = dict(os.environ, RUNFEED_FASTCGI_KEEPALIVE=str(n))
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "stack.sh"), "start"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        self.keepalive = n
        self.wait_for_workers()

    def wait_until(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        log(f"timed out waiting for {what}")
        return False


class Psql:
    """One persistent psql session: statements run in order, each confirmed before returning."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        self.n = 0

    def run(self, sql):
        self.n += 1
        marker = f"__bench_done_{self.n}"
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + marker + "\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("psql exited: " + sql[:200])
            line = line.rstrip("\n")
            if line == marker:
                return out
            out.append(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def publish(self, channel, payload):
        parts = [b"PUBLISH", channel.encode(), payload.encode()]
        msg = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        t = time.monotonic_ns() // 1000
        self.s.sendall(msg)
        self.f.readline()
        return t


# --- load generator processes --------------------------------------------------------------------

class Generator:
    """`runfeed-load http` processes (≤ PER_PROCESS connections each) and their event lines."""

    def __init__(self, proto, port, paths, connections, headers=(), duration=600, ramp=2000, quiet=False,
                 warmup=1, tmpdir="/tmp"):
        self.procs, self.threads = [], []
        self.lines = []          # (process index, line) for non-R lines
        self.responses = []      # (global conn, t_us, status, bytes, kind, tag)
        self.by_tag = collections.Counter()
        self.held = []
        self.quiet = quiet
        self.lock = threading.Lock()
        nproc = max(1, -(-connections // PER_PROCESS))
        base = 0
        for p in range(nproc):
            count = connections // nproc + (1 if p < connections % nproc else 0)
            pf = os.path.join(tmpdir, f"bench-paths-{os.getpid()}-{p}.txt")
            with open(pf, "w") as f:
                for i in range(base, base + count):
                    f.write(paths[i % len(paths)] + "\n")
            # `ramp` is the total rate of new connections, shared by the processes: offering more than
            # nginx and the workers accept overflows listen backlogs, and dropped SYNs come back only
            # after the kernel's retransmission back-off (seconds).
            # Two processes (≤ 19,000 connections) per loopback source address: each address has ~28,000
            # ephemeral ports towards nginx's one port, so 50,000 connections need several.
            cmd = [LOAD, "http", "--protocol", proto, "--port", str(port), "--paths-file", pf,
                   "--source", f"127.0.0.{1 + p // 2}",
                   "--connections", str(count), "--duration", str(duration), "--ramp-per-sec", str(max(1, ramp // nproc)),
                   "--warmup", str(warmup)]
            for h in headers:
                cmd += ["--header", h]
            if quiet:
                cmd.append("--quiet")
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1 << 16)
            self.procs.append(proc)
            self.held.append(0)
            t = threading.Thread(target=self._read, args=(p, proc, base), daemon=True)
            t.start()
            self.threads.append(t)
            base += count

    def _read(self, p, proc, base):
        for line in proc.stdout:
            if line.startswith("R "):
                f = line.split()
                conn, t_us, status, size, kind, tag = base + int(f[1]), int(f[2]), int(f[3]), int(f[4]), f[5], f[6]
                self.responses.append((conn, t_us, status, size, kind, tag))
                if kind in ("l", "n"):
                    self.by_tag[tag.split("_", 1)[0]] += 1
            elif line.startswith("H "):
                m = re.search(r"held=(\d+)", line)
                if m:
                    self.held[p] = int(m.group(1))
                self.lines.append((p, line.rstrip()))
            else:
                self.lines.append((p, line.rstrip()))

    def total_held(self):
        return sum(self.held)

    def errors(self):
        return [l for _, l in self.lines if l.startswith("E ")]

    def summaries(self, prefix):
        return [l for _, l in self.lines if l.startswith(prefix)]

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in self.threads:
            t.join(timeout=10)


def parse_kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=([\w.\-]+)", line)}


# --- the benchmark data ------------------------------------------------------------------------------

class Data:
    """Runs created for the suite in the bench stack's (fresh) database, synced to ClickHouse."""

    RUNS = 1000       # runs with one of TAGS tags each, plus the tag bench-all
    TAGS = 100

    def __init__(self, stack, psql):
        self.stack, self.psql = stack, psql
        env = stack.env
        self.ids = [f"cmbench{i:08d}" for i in range(self.RUNS)]
        self.friendly = [f"run_bench{i:08d}" for i in range(self.RUNS)]
        self.tag_of = [f"bench-t{i % self.TAGS:03d}" for i in range(self.RUNS)]
        values = ",".join(
            f"('{rid}','{self.friendly[i]}','{env}',(SELECT \"projectId\" FROM \"RuntimeEnvironment\" WHERE id='{env}'),"
            f"'bench-task','EXECUTING','{{\"bench\":true}}',now() at time zone 'utc',now() at time zone 'utc',"
            f"'{{{self.tag_of[i]},bench-all}}')" for i, rid in enumerate(self.ids))
        psql.run('INSERT INTO "TaskRun" ("id","friendlyId","runtimeEnvironmentId","projectId","taskIdentifier","status",'
                 '"payload","createdAt","updatedAt","runTags") VALUES ' + values +
                 ' ON CONFLICT (id) DO UPDATE SET "createdAt" = EXCLUDED."createdAt", "updatedAt" = EXCLUDED."updatedAt"')
        sync = os.path.join(ROOT, "scripts", "clickhouse-sync.sh")
        subprocess.run(["bash", sync, "--env", env, "--quiet"], check=True)
        self.last_ms = 0

    def touch(self, i):
        """Moves run i's updatedAt to a fresh, strictly increasing millisecond; returns it."""
        t = max(int(time.time() * 1000), self.last_ms + 1)
        self.last_ms = t
        self.psql.run(f"UPDATE \"TaskRun\" SET \"updatedAt\" = timestamp 'epoch' + {t} * interval '1 millisecond' "
                      f"WHERE id = '{self.ids[i]}'")
        return t

    def record(self, i):
        return json.dumps({"v": 1, "runId": self.ids[i], "envId": self.stack.env,
                           "tags": [self.tag_of[i], "bench-all"], "batchId": None})

    @property
    def channel(self):
        return f"realtime:env:{{{self.stack.env}}}"


# --- scenarios -----------------------------------------------------------------------------------------

def auth(stack):
    return [f"Authorization: Bearer {stack.key}"]


def capacity(stack, data, sizes, kinds):
    rows = []
    for kind in kinds:
        for n in sizes:
            stack.restart_workers()
            time.sleep(1.0)
            pids = stack.worker_pids()
            base = {p: proc_sample(p) for p in pids}
            if kind == "run":
                paths = [f"/realtime/v1/runs/{f}" for f in data.friendly]
            else:
                paths = [f"/realtime/v1/runs?tags=bench-t{t:03d}&createdAt=1h" for t in range(data.TAGS)]
            metric_kind = "run" if kind == "run" else "list"
            log(f"capacity: {n} held {kind} feeds")
            t0 = time.monotonic()
            gen = Generator("electric", stack.port, paths, n, auth(stack), duration=120, ramp=3000, quiet=True)
            ok = stack.wait_until(f"{n} held polls", lambda: stack.held(metric_kind) >= n, 60)
            ramp_s = time.monotonic() - t0
            time.sleep(1.0)
            held = stack.held(metric_kind)
            pg0 = stack.metric("runfeed_postgres_queries_total")
            s1 = {p: proc_sample(p) for p in pids}
            _, nginx_workers = stack.nginx_pids()
            ng1 = cpu_ticks(nginx_workers)
            time.sleep(5.0)
            s2 = {p: proc_sample(p) for p in pids}
            ng2 = cpu_ticks(nginx_workers)
            pg1 = stack.metric("runfeed_postgres_queries_total")
            per_worker = []
            scraped = stack.scrape()
            for idx, p in enumerate(pids):
                hw = int(scraped[idx].get(f'runfeed_held_polls{{kind="{metric_kind}"}}', 0))
                per_worker.append({
                    "held": hw,
                    "rss_idle_kb": base[p]["rss_kb"], "rss_held_kb": s1[p]["rss_kb"],
                    "kb_per_poll": (s1[p]["rss_kb"] - base[p]["rss_kb"]) / hw if hw else None,
                    "threads": s1[p]["threads"], "fds": s1[p]["fds"],
                    "cpu_pct_5s": 100.0 * (s2[p]["cpu_ticks"] - s1[p]["cpu_ticks"]) / CLK_TCK / 5.0,
                })
            cycle = None
            if n == max(sizes):
                # A whole hold cycle (17-23 s): every poll is answered up-to-date once and re-arms, as
                # real clients do; the steady cost of holding n polls with no changes.
                c0 = {p: proc_sample(p) for p in pids}
                n0, q0 = cpu_ticks(nginx_workers), stack.metric("runfeed_postgres_queries_total")
                r0 = len(gen.responses) if not gen.quiet else None
                time.sleep(23.0)
                c1 = {p: proc_sample(p) for p in pids}
                n1, q1 = cpu_ticks(nginx_workers), stack.metric("runfeed_postgres_queries_total")
                cycle = {"seconds": 23.0,
                         "worker_cpu_pct": [100.0 * (c1[p]["cpu_ticks"] - c0[p]["cpu_ticks"]) / CLK_TCK / 23.0 for p in pids],
                         "nginx_cpu_pct": 100.0 * (n1 - n0) / CLK_TCK / 23.0,
                         "pg_qps": (q1 - q0) / 23.0,
                         "held_after": stack.held(metric_kind),
                         # Worker RSS after every poll was answered once and re-armed, per poll held then.
                         "kb_per_poll_after": [(c1[p]["rss_kb"] - base[p]["rss_kb"]) / max(1, w["held"])
                                               for p, w in zip(pids, per_worker)]}
                log(f"  over a hold cycle: workers {', '.join(f'{c:.1f}%' for c in cycle['worker_cpu_pct'])} CPU, "
                    f"nginx {cycle['nginx_cpu_pct']:.1f}%, {cycle['pg_qps']:.1f} Postgres queries/s; RSS per poll after it "
                    + ", ".join(f"{k:.2f} KB" for k in cycle["kb_per_poll_after"]))
            gen.stop()
            errors = len(gen.errors())
            stack.wait_until("held polls to drain", lambda: stack.held(metric_kind) == 0, 30)
            rows.append({"kind": kind, "target": n, "held": held, "reached": ok, "ramp_s": round(ramp_s, 1),
                         "workers": per_worker, "nginx_cpu_pct_5s": 100.0 * (ng2 - ng1) / CLK_TCK / 5.0,
                         "pg_queries_5s": pg1 - pg0, "errors": errors, "cycle": cycle})
            log(f"  held {held}/{n} in {ramp_s:.1f}s; " + "; ".join(
                f"w{i + 1}: {w['held']} held, {w['rss_held_kb'] / 1024:.1f} MB, "
                f"{(w['kb_per_poll'] or 0):.2f} KB/poll, {w['threads']} thr, {w['cpu_pct_5s']:.1f}% cpu"
                for i, w in enumerate(per_worker)))
    return rows


def fanout_runfeed(stack, data, psql, redis, k, rounds, profile_to=None):
    run = 0
    paths = [f"/realtime/v1/runs/{data.friendly[run]}"]
    gen = Generator("electric", stack.port, paths, k, auth(stack), duration=300, ramp=2500, quiet=False)
    stack.wait_until(f"{k} held", lambda: stack.held("run") >= k, 60)
    time.sleep(1.0)
    m0 = stack.scrape()
    perf = None
    if profile_to:
        perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", profile_to, "--", "sleep", "3600"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    results = []
    for r in range(rounds):
        t_ms = data.touch(run)
        t_pub = redis.publish(data.channel, data.record(run))
        key = str(t_ms)
        deadline = time.monotonic() + 10
        while gen.by_tag[key] < k and time.monotonic() < deadline:
            time.sleep(0.002)
        results.append((key, t_pub))
        # Let every subscriber re-arm before the next round.
        stack.wait_until("re-armed", lambda: stack.held("run") >= k, 10)
        time.sleep(0.3)
    if perf:
        perf.send_signal(2)
        perf.wait(timeout=60)
    m1 = stack.scrape()
    time.sleep(0.2)
    gen.stop()
    sizes = [size for (_, _, st, size, kind, _) in gen.responses if kind == "l" and st == 200 and size > 100]
    out = summarize_rounds(gen, results, k)
    out["pg_queries_per_change"] = (stack.metric("runfeed_postgres_queries_total", m1) - stack.metric("runfeed_postgres_queries_total", m0)) / rounds
    out["row_reads_per_change"] = (stack.metric("runfeed_run_row_reads_total", m1) - stack.metric("runfeed_run_row_reads_total", m0)) / rounds
    out["body_bytes"] = int(statistics.median(sizes)) if sizes else 0
    out["errors"] = len(gen.errors())
    stack.wait_until("drain", lambda: stack.held("run") == 0, 30)
    return out


def fanout_nchan(stack, k, rounds, body_bytes):
    channel = f"fan{k}"
    gen = Generator("nchan", stack.port, [f"/bench/nchan/sub/{channel}"], k, (), duration=300, ramp=2500)
    deadline = time.monotonic() + 60
    while gen.total_held() < k and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    results = []
    for r in range(rounds):
        key = f"r{r}-{int(time.time() * 1000)}"
        body = (key + " ").encode()
        body += b"x" * max(0, body_bytes - len(body))
        t_pub = time.monotonic_ns() // 1000
        conn.request("POST", f"/bench/nchan/pub/{channel}", body=body, headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        resp.read()
        if resp.status // 100 != 2:
            raise SystemExit(f"nchan publish failed: {resp.status}")
        deadline = time.monotonic() + 10
        while gen.by_tag[key] < k and time.monotonic() < deadline:
            time.sleep(0.002)
        results.append((key, t_pub))
        deadline = time.monotonic() + 10
        while gen.total_held() < k and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.3)  # the generator reports `held` once a second
    conn.close()
    gen.stop()
    out = summarize_rounds(gen, results, k)
    out["body_bytes"] = body_bytes
    out["errors"] = len(gen.errors())
    return out


def summarize_rounds(gen, results, k):
    arrivals = collections.defaultdict(list)
    for (_, t_us, st, _, kind, tag) in gen.responses:
        if kind in ("l", "n") and st == 200:
            arrivals[tag.split("_", 1)[0]].append(t_us)
    firsts, lasts, every, delivered = [], [], [], 0
    for key, t_pub in results:
        lat = [t - t_pub for t in arrivals.get(key, [])]
        delivered += len(lat)
        if lat:
            firsts.append(min(lat))
            lasts.append(max(lat))
            every.extend(lat)
    return {"k": k, "rounds": len(results), "delivered": delivered, "expected": k * len(results),
            "first_p50_ms": ms(pct(firsts, 50)), "last_p50_ms": ms(pct(lasts, 50)), "last_max_ms": ms(max(lasts) if lasts else None),
            "p50_ms": ms(pct(every, 50)), "p99_ms": ms(pct(every, 99)), "max_ms": ms(max(every) if every else None)}


def churn(stack, data, psql, redis, feeds, rate, seconds):
    paths = [f"/realtime/v1/runs?tags=bench-t{t:03d}&createdAt=1h" for t in range(data.TAGS)]
    gen = Generator("electric", stack.port, paths, feeds, auth(stack), duration=seconds + 120, ramp=2500)
    stack.wait_until(f"{feeds} held", lambda: stack.held("list") >= feeds, 60)
    time.sleep(1.5)
    m0 = stack.scrape()
    changes = []
    t_start = time.monotonic()
    interval = 1.0 / rate
    n = 0
    while time.monotonic() - t_start < seconds:
        i = random.randrange(data.RUNS)
        t_ms = data.touch(i)
        t_pub = redis.publish(data.channel, data.record(i))
        changes.append((i % data.TAGS, t_ms, t_pub))
        n += 1
        sleep = t_start + n * interval - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    elapsed = time.monotonic() - t_start
    time.sleep(2.0)
    m1 = stack.scrape()
    gen.stop()
    # Per connection: its live responses as (t_us, offset ms), in arrival order.
    per_conn = collections.defaultdict(list)
    for (conn, t_us, st, _, kind, tag) in gen.responses:
        if kind == "l" and st == 200 and "_" in tag:
            per_conn[conn].append((t_us, int(tag.split("_", 1)[0])))
    conns_of_tag = collections.defaultdict(list)
    for c in range(feeds):
        conns_of_tag[c % data.TAGS].append(c)
    lags, missed = [], 0
    import bisect
    times = {c: [t for t, _ in v] for c, v in per_conn.items()}
    for tag, t_ms, t_pub in changes:
        for c in conns_of_tag[tag]:
            rs = per_conn.get(c, [])
            j = bisect.bisect_left(times.get(c, []), t_pub)
            found = None
            while j < len(rs):
                if rs[j][1] >= t_ms:
                    found = rs[j][0]
                    break
                j += 1
            if found is None:
                missed += 1
            else:
                lags.append(found - t_pub)

    def d(name):
        return stack.metric(name, m1) - stack.metric(name, m0)
    nchg = len(changes)
    stack.wait_until("drain", lambda: stack.held("list") == 0, 30)
    return {"feeds": feeds, "tags": data.TAGS, "rate": rate, "seconds": round(elapsed, 1), "changes": nchg,
            "deliveries": len(lags), "missed": missed,
            "lag_p50_ms": ms(pct(lags, 50)), "lag_p99_ms": ms(pct(lags, 99)), "lag_max_ms": ms(max(lags) if lags else None),
            "pg_per_change": d("runfeed_postgres_queries_total") / nchg,
            "hydrates_per_change": d("runfeed_list_hydrates_total") / nchg,
            "ch_per_change": d('runfeed_membership_queries_total{resolver="clickhouse"}') / nchg,
            # Answers and body bytes by where the client's view came from: this worker (no hop), the shared
            # store (after a hop), unknown (every member re-sent).
            "answers": {v: d(f'runfeed_list_answers_total{{view="{v}"}}') for v in ("local", "shared", "unknown")},
            "answer_bytes": {v: d(f'runfeed_list_answer_bytes_total{{view="{v}"}}') for v in ("local", "shared", "unknown")},
            # The shared working-set store's cost.
            "view_cmds_per_change": sum(d(f'runfeed_shared_view_commands_total{{op="{o}"}}')
                                        for o in ("load", "save", "save_whole", "touch")) / nchg,
            "view_bytes_per_change": d("runfeed_shared_view_bytes_written_total") / nchg,
            "errors": len(gen.errors())}


def db_load(stack, data, psql, redis, k, seconds, change_rate):
    """runfeed: k held single-run polls over the bench runs for `seconds` (a whole hold cycle, so the
    backstop re-reads are included) while `change_rate` runs change per second."""
    paths = [f"/realtime/v1/runs/{f}" for f in data.friendly]
    gen = Generator("electric", stack.port, paths, k, auth(stack), duration=seconds + 120, ramp=2500, quiet=True)
    stack.wait_until(f"{k} held", lambda: stack.held("run") >= k, 60)
    time.sleep(1.0)
    s0 = stack.scrape()
    m0 = stack.metric("runfeed_postgres_queries_total", s0)
    r0 = stack.metric("runfeed_run_row_reads_total", s0)
    c0 = postgres_cpu_ticks(stack.postgres_pids())
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        i = random.randrange(data.RUNS)
        data.touch(i)
        redis.publish(data.channel, data.record(i))
        n += 1
        sleep = t0 + n / change_rate - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    elapsed = time.monotonic() - t0
    s1 = stack.scrape()
    m1 = stack.metric("runfeed_postgres_queries_total", s1)
    r1 = stack.metric("runfeed_run_row_reads_total", s1)
    c1 = postgres_cpu_ticks(stack.postgres_pids())
    gen.stop()
    stack.wait_until("drain", lambda: stack.held("run") == 0, 30)
    return {"k": k, "seconds": round(elapsed, 1), "changes": n, "queries": m1 - m0,
            "qps": (m1 - m0) / elapsed, "row_reads_qps": (r1 - r0) / elapsed,
            "pg_cpu_pct": 100.0 * (c1 - c0) / CLK_TCK / elapsed}


def naive(stack, data, k, seconds):
    runs_file = os.path.join(stack.state, "bench-naive-runs.txt")
    with open(runs_file, "w") as f:
        for rid in data.ids:
            f.write(f"{rid} {stack.env}\n")
    c0 = postgres_cpu_ticks(stack.postgres_pids())
    t0 = time.monotonic()
    out = subprocess.run([LOAD, "naive-postgres", "--database-url", stack.db, "--runs-file", runs_file,
                          "--subscribers", str(k), "--connections", "8", "--duration", str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - t0
    c1 = postgres_cpu_ticks(stack.postgres_pids())
    line = next(l for l in out.splitlines() if l.startswith("NAIVE "))
    kv = parse_kv(line)
    return {"k": k, "qps": float(kv["qps"]), "queries": int(kv["queries"]), "seconds": float(kv["seconds"]),
            "p99_ms": int(kv["p99_us"]) / 1000, "max_backlog": int(kv["max_backlog"]),
            "pg_cpu_pct": 100.0 * (c1 - c0) / CLK_TCK / elapsed}


def snapshots(stack, data, seconds, connections, profile_to=None, runfeed_only=False):
    static_dir = os.path.join(stack.state, "bench-static")
    os.makedirs(static_dir, exist_ok=True)
    cases = [("single run", f"/realtime/v1/runs/{data.friendly[1]}?offset=-1", "run.json"),
             ("tag list, 1,000 runs", "/realtime/v1/runs?tags=bench-all&createdAt=1h&offset=-1", "list.json")]
    rows = []
    for label, path, static in cases:
        req = urllib.request.Request(f"http://127.0.0.1:{stack.port}{path}", headers={"Authorization": f"Bearer {stack.key}"})
        body = urllib.request.urlopen(req, timeout=30).read()
        with open(os.path.join(static_dir, static), "wb") as f:
            f.write(body)
        rowcount = sum(1 for m in json.loads(body) if "value" in m)
        systems = [("runfeed", path, auth(stack))] + ([] if runfeed_only else [("nginx static", f"/bench/static/{static}", [])])
        for system, p, hdrs in systems:
            gen = Generator("rate", stack.port, [p], connections, hdrs, duration=seconds + 1, warmup=1, quiet=True)
            perf = None
            if profile_to and system == "runfeed" and static == "list.json":
                perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", profile_to, "--", "sleep", "3600"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pr in gen.procs:
                pr.wait(timeout=seconds + 30)
            if perf:
                perf.send_signal(2)
                perf.wait(timeout=60)
            gen.stop()
            kv = parse_kv(gen.summaries("RATE ")[0])
            rows.append({"case": label, "system": system, "rows": rowcount, "body_bytes": len(body),
                         "rps": float(kv["rps"]), "p50_ms": int(kv["p50_us"]) / 1000, "p99_ms": int(kv["p99_us"]) / 1000,
                         "errors": len(gen.errors())})
            log(f"snapshots: {label} via {system}: {float(kv['rps']):.0f} req/s")
    return rows


def profile_report(perf_data, worker_comm_pids):
    """Shares per process (comm) and the top symbols inside the runfeed workers."""
    if not os.path.exists(perf_data):
        return None
    by_comm = subprocess.run(["perf", "report", "-i", perf_data, "--no-children", "--sort", "comm", "--stdio",
                              "--percent-limit", "1"], capture_output=True, text=True).stdout
    comms = []
    for line in by_comm.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(.+?)\s*$", line)
        if m:
            comms.append((float(m.group(1)), m.group(2)))
    pids = ",".join(str(p) for p in worker_comm_pids)
    # Inclusive time of runfeed's own functions (children included), entry points and thunks left out.
    by_sym = subprocess.run(["perf", "report", "-i", perf_data, "--children", "--pid", pids, "--sort", "dso,symbol",
                             "--stdio", "--percent-limit", "1", "-g", "none"], capture_output=True, text=True).stdout
    raw = []
    for line in by_sym.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(.+?)\s*$", line)
        if m and m.group(3) == "runfeed":
            raw.append((float(m.group(1)), float(m.group(2)), re.split(r"\s{2,}", m.group(4).strip())[0]))
    if raw and shutil.which("swift-demangle"):
        dem = subprocess.run(["swift-demangle", "--simplified", "--compact"], input="\n".join(r[2] for r in raw),
                             capture_output=True, text=True).stdout.splitlines()
        if len(dem) == len(raw):
            raw = [(c, sf, n) for (c, sf, _), n in zip(raw, dem)]
    skip = re.compile(r"^(partial apply|thunk|reabstraction|protocol witness|runfeed_main|main$|.*\.run\(\)|"
                      r"Server\.runLoop|EventLoop\.run|closure #1 in closure #1 in LoopDatabase)")
    syms = [(c, sf, re.split(r"\s{2,}", n.strip())[0]) for c, sf, n in raw
            if not skip.match(n) and "startThread" not in n]
    return {"by_comm": comms[:12], "worker_symbols": syms[:18]}


# --- report --------------------------------------------------------------------------------------------

def versions():
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {
        "machine": f"{os.cpu_count()} vCPU {cpu}, {mem_gb:.0f} GiB, Linux {platform.release()}",
        "swift": first_line(["swift", "--version"]),
        "nginx": first_line(["nginx", "-v"]),
        "nchan": first_line(["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-nchan"]),
        "postgres": first_line(["psql", "--version"]),
        "redis": first_line(["redis-server", "--version"]),
        "clickhouse": first_line(["clickhouse-client", "--version"]).replace("ClickHouse client version", "ClickHouse").rstrip("."),
        "ulimit_n": first_line(["bash", "-c", "ulimit -Hn"]),
    }


def write_sections(doc_path, sections):
    text = open(doc_path).read() if os.path.exists(doc_path) else "# Benchmarks\n"
    for name, body in sections.items():
        begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
        block = f"{begin}\n{body.rstrip()}\n{end}"
        if begin in text and end in text:
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip() + f"\n\n{block}\n"
    with open(doc_path + ".new", "w") as f:
        f.write(text)
    os.replace(doc_path + ".new", doc_path)


def render(res):
    s = {}
    v = res["versions"]
    s["machine"] = "\n".join([
        f"Generated by `{res['command']}` on {res['date']} in {res['duration_s'] / 60:.1f} minutes.",
        "",
        f"- Machine: {v['machine']}; hard `ulimit -n` {v['ulimit_n']}. Load generator, nginx, the workers, "
        "PostgreSQL, Redis and ClickHouse all share these cores.",
        f"- {v['swift']} (release build); {v['nginx']} with {res['nginx_workers']} worker processes and nchan {v['nchan']}; "
        f"{v['postgres']}; {v['redis'].split(' sha=')[0]}; {v['clickhouse']}.",
        f"- runfeed: {res['workers']} worker processes (`runfeed serve --workers 0` each, behind nginx `least_conn`).",
    ])
    if "capacity" in res:
        lines = ["| feeds | held / target | ramp-up | worker | held on worker | RSS idle → held | RSS per held poll | threads | fds | worker CPU, 5 s held, no changes | nginx CPU (all workers) | Postgres queries in those 5 s | errors |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["capacity"]:
            for i, w in enumerate(r["workers"]):
                first = i == 0
                lines.append("| " + " | ".join([
                    ("single-run" if r["kind"] == "run" else "tag") if first else "",
                    f"{fmt_int(r['held'])} / {fmt_int(r['target'])}" if first else "",
                    f"{r['ramp_s']} s" if first else "",
                    f"{i + 1}", fmt_int(w["held"]),
                    f"{w['rss_idle_kb'] / 1024:.1f} → {w['rss_held_kb'] / 1024:.1f} MB",
                    "–" if w["kb_per_poll"] is None else f"{w['kb_per_poll']:.2f} KB",
                    str(w["threads"]), fmt_int(w["fds"]), f"{w['cpu_pct_5s']:.1f} %",
                    f"{r['nginx_cpu_pct_5s']:.1f} %" if first else "",
                    fmt_int(int(r["pg_queries_5s"])) if first else "",
                    str(r["errors"]) if first else ""]) + " |")
        cyc = [r for r in res["capacity"] if r.get("cycle")]
        if cyc:
            lines += ["", "Holding the largest count through a whole hold cycle (23 s, no changes: every poll is answered "
                      "up-to-date once at its 17–23 s deadline, after a backstop read, and re-arms, as real clients do):", "",
                      "| feeds | held | worker CPU | nginx CPU (all workers) | Postgres queries/s (backstop reads) | still held after |",
                      "|---|---|---|---|---|---|"]
            for r in cyc:
                c = r["cycle"]
                lines.append(f"| {'single-run' if r['kind'] == 'run' else 'tag'} | {fmt_int(r['held'])} | "
                             f"{' and '.join(f'{x:.1f} %' for x in c['worker_cpu_pct'])} | {c['nginx_cpu_pct']:.1f} % | "
                             f"{c['pg_qps']:.1f} | {fmt_int(c['held_after'])} |")
        s["capacity"] = "\n".join(lines)
    if "fanout" in res:
        lines = ["| subscribers | system | rounds | delivered | first response p50 | last response p50 | last response max | all responses p50 | p99 | max | Postgres queries per change |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in res["fanout"]:
            for name in ("runfeed", "nchan"):
                r = f[name]
                lines.append(f"| {fmt_int(f['k'])} | {name} | {r['rounds']} | {fmt_int(r['delivered'])} / {fmt_int(r['expected'])} | "
                             f"{fmt_ms(r['first_p50_ms'])} ms | {fmt_ms(r['last_p50_ms'])} ms | {fmt_ms(r['last_max_ms'])} ms | "
                             f"{fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['p99_ms'])} ms | {fmt_ms(r['max_ms'])} ms | "
                             f"{r['pg_queries_per_change']:.2f} |" if name == "runfeed" else
                             f"| | nchan | {r['rounds']} | {fmt_int(r['delivered'])} / {fmt_int(r['expected'])} | "
                             f"{fmt_ms(r['first_p50_ms'])} ms | {fmt_ms(r['last_p50_ms'])} ms | {fmt_ms(r['last_max_ms'])} ms | "
                             f"{fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['p99_ms'])} ms | {fmt_ms(r['max_ms'])} ms | – |")
            if f.get("runfeed_no_keepalive"):
                r = f["runfeed_no_keepalive"]
                lines.append(f"| | runfeed, keep-alive off (before) | {r['rounds']} | {fmt_int(r['delivered'])} / {fmt_int(r['expected'])} | "
                             f"{fmt_ms(r['first_p50_ms'])} ms | {fmt_ms(r['last_p50_ms'])} ms | {fmt_ms(r['last_max_ms'])} ms | "
                             f"{fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['p99_ms'])} ms | {fmt_ms(r['max_ms'])} ms | "
                             f"{r['pg_queries_per_change']:.2f} |")
                b0 = f["nchan"]
                lines.append(f"| | runfeed keep-alive off ÷ nchan | | | | | | | {ratio(r['p99_ms'], b0['p99_ms'])} | | |")
            a, b = f["runfeed"], f["nchan"]
            lines.append(f"| | **runfeed ÷ nchan** | | | {ratio(a['first_p50_ms'], b['first_p50_ms'])} | "
                         f"{ratio(a['last_p50_ms'], b['last_p50_ms'])} | {ratio(a['last_max_ms'], b['last_max_ms'])} | "
                         f"{ratio(a['p50_ms'], b['p50_ms'])} | **{ratio(a['p99_ms'], b['p99_ms'])}** | {ratio(a['max_ms'], b['max_ms'])} | |")
        lines.append("")
        lines.append(f"Message size: runfeed's live response body {fmt_int(res['fanout'][-1]['runfeed']['body_bytes'])} bytes; "
                     "each nchan message padded to the same size.")
        s["fanout"] = "\n".join(lines)
    if "churn" in res:
        c = res["churn"]
        s["churn"] = "\n".join([
            "| feeds | tags | changes/s | seconds | changes | deliveries (missed) | lag p50 | lag p99 | lag max | Postgres queries per change | of which hydrates | ClickHouse queries per change | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {fmt_int(c['feeds'])} | {c['tags']} | {c['rate']} | {c['seconds']} | {fmt_int(c['changes'])} | "
            f"{fmt_int(c['deliveries'])} ({c['missed']}) | {fmt_ms(c['lag_p50_ms'])} ms | {fmt_ms(c['lag_p99_ms'])} ms | "
            f"{fmt_ms(c['lag_max_ms'])} ms | {c['pg_per_change']:.2f} | {c['hydrates_per_change']:.2f} | {c['ch_per_change']:.3f} | {c['errors']} |",
            "",
            "| client's view came from | answers | bytes per answer | Redis commands per change (shared views) | bytes written to Redis per change |",
            "|---|---|---|---|---|",
        ] + [
            f"| {label} | {fmt_int(round(c['answers'][v]))} | {fmt_int(round(c['answer_bytes'][v] / c['answers'][v])) if c['answers'][v] else '–'} | "
            + (f"{c['view_cmds_per_change']:.2f} | {fmt_int(round(c['view_bytes_per_change']))} |" if v == "local" else "| |")
            for v, label in (("local", "this worker (no hop)"), ("shared", "the shared store (a hop)"),
                             ("unknown", "unknown (all members re-sent)"))])
    if "dbload" in res:
        lines = ["| subscribers | naive polling: queries/s | naive: Postgres CPU | runfeed: queries/s | of which row reads/s | runfeed: Postgres CPU | naive ÷ runfeed queries |",
                 "|---|---|---|---|---|---|---|"]
        for d in res["dbload"]:
            n, r = d["naive"], d["runfeed"]
            lines.append(f"| {fmt_int(d['k'])} | {n['qps']:,.0f} (target {fmt_int(d['k'])}; due→done p99 {fmt_ms(n['p99_ms'])} ms) | {n['pg_cpu_pct']:.0f} % | "
                         f"{r['qps']:,.1f} | {r['row_reads_qps']:,.1f} | {r['pg_cpu_pct']:.0f} % | "
                         f"{ratio(n['qps'], r['qps'])} |")
        lines.append("")
        lines.append(f"runfeed: the subscribers hold live polls spread over {Data.RUNS:,} runs for {res['dbload'][0]['runfeed']['seconds']} s "
                     f"(a whole 20 s hold, so every backstop re-read is counted) while {res['dbload_change_rate']} runs change per second; "
                     "queries from the workers' `runfeed_postgres_queries_total`. Naive: `runfeed-load naive-postgres` (8 connections), "
                     "the same row query per subscriber per second. Postgres CPU: all its processes, % of one core.")
        s["dbload"] = "\n".join(lines)
    if "snapshots" in res:
        lines = ["| snapshot | system | body | requests/s | latency p50 | p99 | runfeed ÷ nginx static | errors |",
                 "|---|---|---|---|---|---|---|---|"]
        rows = res["snapshots"]
        for r in rows:
            peer = next((x for x in rows if x["case"] == r["case"] and x["system"] == "nginx static"), None)
            rat = ratio(r["rps"], peer["rps"]) if r["system"].startswith("runfeed") and peer else ""
            lines.append(f"| {r['case']} ({fmt_int(r['rows'])} row{'' if r['rows'] == 1 else 's'}) | {r['system']} | {fmt_int(r['body_bytes'])} B | {r['rps']:,.0f} | "
                         f"{fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['p99_ms'])} ms | {rat} | {r['errors']} |")
        lines.append("")
        lines.append(f"{res['snapshot_connections']} keep-alive connections, {res['snapshot_seconds']} s each after 1 s of warm-up; "
                     "the static files are the very bodies runfeed returned.")
        s["snapshots"] = "\n".join(lines)
    profiles = []
    if res.get("profile"):
        profiles.append(("profile", res["profile"],
                         f"System-wide `perf record -a -g -F 499` during the {fmt_int(res['profile_k'])}-subscriber runfeed fan-out rounds."))
    if res.get("profile_snapshots"):
        profiles.append(("profile_snapshots", res["profile_snapshots"],
                         "System-wide `perf record -a -g -F 499` while runfeed answers 1,000-run tag-list snapshots (the "
                         "weakest ratio to its nginx peer)."))
    for section, p, title in profiles:
        lines = [title, "",
                 "CPU samples by process (thread name):", "", "| share | process |", "|---|---|"]
        lines += [f"| {pc:.1f} % | `{c}` |" for pc, c in p["by_comm"]]
        lines += ["", "Where the workers spend it: runfeed's own functions by inclusive time (callees included; "
                  "share of all samples of the machine):", "",
                  "| inclusive | self | function |", "|---|---|---|"]
        lines += [f"| {c:.2f} % | {sf:.2f} % | `{sym[:110]}` |" for c, sf, sym in p["worker_symbols"]]
        s[section] = "\n".join(lines)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run of every scenario)")
    ap.add_argument("--only", default="capacity,fanout,churn,dbload,snapshots",
                    help="comma-separated scenarios to run")
    ap.add_argument("--capacity-sizes", default="1000,5000,10000,20000")
    ap.add_argument("--capacity-kinds", default="run,tag")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--no-doc", action="store_true", help="print the tables, do not rewrite the document")
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--keepalive", type=int, default=4096,
                    help="idle upstream connections nginx keeps per worker during the runs (RUNFEED_FASTCGI_KEEPALIVE)")
    ap.add_argument("--no-keepalive-compare", dest="keepalive_compare", action="store_false",
                    help="skip the keep-alive-off (before) runs of fan-out and snapshots")
    a = ap.parse_args()
    if not os.access(LOAD, os.X_OK):
        raise SystemExit(f"{LOAD} missing: swift build -c release")
    stack = Stack()
    loopback_only("127.0.0.1")
    stack.set_keepalive(a.keepalive)
    only = set(a.only.split(","))
    t_begin = time.monotonic()
    psql = Psql(stack.db)
    redis = Redis(stack.redis_port)
    log("creating bench runs and syncing them to ClickHouse")
    data = Data(stack, psql)
    res = {"versions": versions(), "command": a.command, "date": time.strftime("%Y-%m-%d"),
           "workers": stack.workers, "nginx_workers": len(stack.nginx_pids()[1])}
    q = a.quick
    if "capacity" in only:
        sizes = [200, 1000] if q else [int(x) for x in a.capacity_sizes.split(",")]
        res["capacity"] = capacity(stack, data, sizes, a.capacity_kinds.split(","))
    if "fanout" in only:
        res["fanout"] = []
        sizes = [(100, 5), (1000, 5)] if q else [(100, 20), (1000, 20), (10000, 10)]
        stack.restart_workers()
        for k, rounds in sizes:
            prof = os.path.join(stack.state, "perf-fanout.data") if k == sizes[-1][0] and shutil.which("perf") else None
            log(f"fan-out: {k} subscribers, {rounds} rounds, runfeed" + (" (profiled)" if prof else ""))
            rf = fanout_runfeed(stack, data, psql, redis, k, rounds, profile_to=prof)
            log(f"  runfeed: delivered {rf['delivered']}/{rf['expected']}, last p50 {fmt_ms(rf['last_p50_ms'])} ms, p99 {fmt_ms(rf['p99_ms'])} ms, "
                f"{rf['pg_queries_per_change']:.2f} queries and {rf['row_reads_per_change']:.2f} row reads per change")
            if prof:
                res["profile"] = profile_report(prof, stack.worker_pids())
                res["profile_k"] = k
            off = None
            if a.keepalive_compare:
                log(f"fan-out: {k} subscribers, {rounds} rounds, runfeed with keep-alive off (before)")
                stack.set_keepalive(0)
                off = fanout_runfeed(stack, data, psql, redis, k, rounds)
                stack.set_keepalive(a.keepalive)
                log(f"  keep-alive off: delivered {off['delivered']}/{off['expected']}, p99 {fmt_ms(off['p99_ms'])} ms")
            log(f"fan-out: {k} subscribers, {rounds} rounds, nchan")
            nc = fanout_nchan(stack, k, rounds, rf["body_bytes"] or 1000)
            log(f"  nchan: delivered {nc['delivered']}/{nc['expected']}, last p50 {fmt_ms(nc['last_p50_ms'])} ms, p99 {fmt_ms(nc['p99_ms'])} ms")
            res["fanout"].append({"k": k, "runfeed": rf, "nchan": nc, **({"runfeed_no_keepalive": off} if off else {})})
    if "churn" in only:
        feeds, rate, secs = (200, 10, 10) if q else (2000, 20, 60)
        log(f"tag churn: {feeds} feeds over {Data.TAGS} tags, {rate} changes/s for {secs} s")
        res["churn"] = churn(stack, data, psql, redis, feeds, rate, secs)
        log(f"  lag p50 {fmt_ms(res['churn']['lag_p50_ms'])} ms p99 {fmt_ms(res['churn']['lag_p99_ms'])} ms, "
            f"{res['churn']['pg_per_change']:.2f} pg/change")
    if "dbload" in only:
        res["dbload"] = []
        res["dbload_change_rate"] = 10
        for k in ([200, 1000] if q else [1000, 10000]):
            log(f"database load: {k} subscribers, naive polling")
            nv = naive(stack, data, k, 5 if q else 10)
            log(f"database load: {k} subscribers, runfeed")
            rf = db_load(stack, data, psql, redis, k, 8 if q else 22, res["dbload_change_rate"])
            log(f"  naive {nv['qps']:.0f} q/s, runfeed {rf['qps']:.1f} q/s")
            res["dbload"].append({"k": k, "naive": nv, "runfeed": rf})
    if "snapshots" in only:
        res["snapshot_connections"], res["snapshot_seconds"] = 16, (3 if q else 10)
        prof = os.path.join(stack.state, "perf-snapshots.data") if shutil.which("perf") else None
        res["snapshots"] = snapshots(stack, data, res["snapshot_seconds"], res["snapshot_connections"], profile_to=prof)
        if a.keepalive_compare:
            stack.set_keepalive(0)
            before = snapshots(stack, data, res["snapshot_seconds"], res["snapshot_connections"], runfeed_only=True)
            stack.set_keepalive(a.keepalive)
            for r in before:
                r["system"] = "runfeed, keep-alive off (before)"
            res["snapshots"] += before
        if prof:
            res["profile_snapshots"] = profile_report(prof, stack.worker_pids())
    psql.close()
    res["duration_s"] = time.monotonic() - t_begin
    with open(os.path.join(stack.state, "bench-results.json"), "w") as f:
        json.dump(res, f, indent=2)
    sections = render(res)
    for name, body in sections.items():
        print(f"\n## {name}\n{body}")
    if not a.no_doc:
        write_sections(a.doc, sections)
        log(f"tables written to {a.doc}")
    log(f"done in {res['duration_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
