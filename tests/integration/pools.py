"""Worker pools and a private nginx for integration tests that need processes of their own.

`Pool`: `runfeed serve --workers N` (the debug binary, `RUNFEED_BIN`) on a free 127.0.0.1 TCP port, with
its own metrics ports; `Nginx`: a private nginx whose config is generated in a temp dir (one `server` per
upstream; `least_conn` unless told otherwise, `fastcgi_next_upstream error; fastcgi_next_upstream_tries
2; fastcgi_read_timeout 60s;` as in nginx/local.conf.template); `procs`: a fixture that starts them on
demand and always stops every one (by PID). They use the test stack's PostgreSQL and Redis from demo.env;
the stack's own nginx and workers are not used.

Used by test_pool.py, test_lost_updates.py and test_convergence.py (import the fixture: `from pools
import procs`).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import DATABASE_URL, REDIS_HOST, REDIS_PORT, RUNFEED_BIN, STATE_DIR, parse_metrics, wait_until

HELD_RUN = 'runfeed_held_polls{kind="run"}'
HELD_LIST = 'runfeed_held_polls{kind="list"}'
# Kept upstream connections, as the shipped nginx configurations (RUNFEED_TEST_FASTCGI_KEEPALIVE=0: none).
KEEPALIVE = int(os.environ.get("RUNFEED_TEST_FASTCGI_KEEPALIVE", "4096") or 0)
HOLD_MS = 4000                   # the pools' live-poll hold (±15 %), as the test stack's workers
NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"
FASTCGI_PARAMS = "/etc/nginx/fastcgi_params"

# --------------------------------------------------------------------------------------
# Ports and processes
# --------------------------------------------------------------------------------------

_reserved = set()


def _port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(count=1, lo=21000, hi=21999):
    """`count` consecutive free ports in [lo, hi] (below the ephemeral range), never handed out twice."""
    for _ in range(500):
        base = random.randint(lo, hi - count + 1)
        ports = list(range(base, base + count))
        if any(p in _reserved for p in ports):
            continue
        if all(_port_free(p) for p in ports):
            _reserved.update(ports)
            return ports
    raise AssertionError(f"no {count} consecutive free ports in {lo}-{hi}")


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid):
    s = _state(pid)
    return s is not None and s != "Z"


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and _ppid(int(d)) == pid:
            out.append(int(d))
    return sorted(out)


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Pool:
    """`runfeed serve --workers N --listen 127.0.0.1:<port> --metrics-listen 127.0.0.1:<mbase>`: a
    supervisor and its workers (worker i serves /metrics and /healthz on mbase + i)."""

    def __init__(self, name, tmp, workers=2, hold_ms=HOLD_MS, env=None, listen_sock=None, listen_fd=3,
                 ready_timeout=30, healthy=True):
        if not os.access(RUNFEED_BIN, os.X_OK):
            pytest.fail(f"runfeed binary not found at {RUNFEED_BIN} (set RUNFEED_BIN; make test builds it)")
        self.name = name
        self.workers = workers
        # listen_sock: a listening socket held by the test (as systemd's socket unit holds one), handed
        # to the supervisor as fd `listen_fd` (systemd: 3, spawn-fcgi: 0) with `--listen-fd`; otherwise
        # the supervisor opens 127.0.0.1:<port> itself.
        self.port = listen_sock.getsockname()[1] if listen_sock else pick_ports(1)[0]
        self.mbase = pick_ports(workers + 1)[0]
        self.addr = ("127.0.0.1", self.port)
        penv = dict(os.environ)
        for k in ("REALTIME_BACKEND_NATIVE_CLICKHOUSE_URL", "CLICKHOUSE_URL", "RUNFEED_LISTEN",
                  "RUNFEED_METRICS_LISTEN", "LISTEN_FDS", "LISTEN_PID"):
            penv.pop(k, None)
        penv.update({"DATABASE_URL": DATABASE_URL, "REDIS_HOST": REDIS_HOST, "REDIS_PORT": str(REDIS_PORT),
                     "PGTZ": "UTC"})
        penv.update(env or {})
        (STATE_DIR / "log").mkdir(parents=True, exist_ok=True)
        self.log_path = STATE_DIR / "log" / f"pool-{name}-{self.port}.log"
        self.log = open(self.log_path, "ab")
        self.seen = set()
        # healthy=False: ready once the workers run and accept (for pools whose dependencies are meant to fail).
        self.require_health = healthy
        cmd = [RUNFEED_BIN, "serve", "--workers", str(workers),
               *(["--listen-fd", str(listen_fd)] if listen_sock else ["--listen", f"127.0.0.1:{self.port}"]),
               "--metrics-listen", f"127.0.0.1:{self.mbase}", "--hold-ms", str(hold_ms), "--log-level", "debug"]
        stdin, pass_fds = subprocess.DEVNULL, ()
        if listen_sock and listen_fd == 0:
            stdin = listen_sock.fileno()
        elif listen_sock:
            # bash moves the socket to fd `listen_fd`, then execs the supervisor (same pid).
            fd = listen_sock.fileno()
            move = "" if fd == listen_fd else f"exec {listen_fd}<&{fd}-; "
            cmd = ["bash", "-c", move + 'exec "$@"', "bash", *cmd]
            pass_fds = (fd,)
        self.proc = subprocess.Popen(cmd, env=penv, stdout=self.log, stderr=subprocess.STDOUT, stdin=stdin,
                                     start_new_session=True, pass_fds=pass_fds)
        self.pid = self.proc.pid
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def __repr__(self):
        return f"Pool({self.name}, :{self.port}, pid {self.pid})"

    # --- processes

    def worker_pids(self):
        """Live workers: children of the supervisor (zombies not counted)."""
        pids = [p for p in children(self.pid) if alive(p)]
        self.seen.update(pids)
        return pids

    def slot_of(self, pid):
        args = _cmdline(pid)
        for i, a in enumerate(args):
            if a == b"--worker-index" and i + 1 < len(args):
                return int(args[i + 1])
        return None

    def metrics_url(self, slot):
        return f"http://127.0.0.1:{self.mbase + slot}/metrics"

    def health_url(self, slot):
        return f"http://127.0.0.1:{self.mbase + slot}/healthz"

    def healthy(self, slot):
        try:
            r = requests.get(self.health_url(slot), timeout=2)
            return r.status_code == 200 and r.json().get("status") == "ok"
        except (requests.RequestException, ValueError):
            return False

    def accepts(self):
        try:
            socket.create_connection(self.addr, timeout=1).close()
            return True
        except OSError:
            return False

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"supervisor {self} exited ({self.proc.returncode}); log: {self.log_path}")
        pids = self.worker_pids()
        return (len(pids) == self.workers
                and (not self.require_health or all(self.healthy(i) for i in range(1, self.workers + 1)))
                and self.accepts())

    def wait_ready(self, timeout=30):
        wait_until(self.ready, timeout, 0.1, f"{self} to run {self.workers} healthy workers (log: {self.log_path})")

    def metrics(self):
        out = []
        for i in range(1, self.workers + 1):
            try:
                r = requests.get(self.metrics_url(i), timeout=3)
                out.append(parse_metrics(r.text) if r.status_code == 200 else {})
            except requests.RequestException:
                out.append({})
        return out

    def held(self, kind="run"):
        """Held live polls per worker (`kind`: "run" or "list")."""
        name = HELD_RUN if kind == "run" else HELD_LIST
        return [m.get(name, 0.0) for m in self.metrics()]

    def signal(self, sig):
        _kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _mine(self, pid):
        """A worker of this pool (its command line names this pool's metrics ports)."""
        args = _cmdline(pid)
        return b"--worker-index" in args and any(
            a == f"127.0.0.1:{self.mbase + i}".encode() for a in args for i in range(1, self.workers + 1))

    def stop(self):
        """SIGTERM (drain), bounded; then SIGKILL the supervisor and any of its workers still alive."""
        if self.proc.poll() is None:
            self.worker_pids()
            self.signal(signal.SIGTERM)
            if not self.wait_exit(30):
                _kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in self.seen:
            if alive(pid) and self._mine(pid):
                _kill(pid, signal.SIGKILL)
        if not self.log.closed:
            self.log.close()


class Nginx:
    """A private nginx (own config, pid, logs and temp dirs in `tmp`): one `server` per upstream, each on
    its own free port. `upstreams` maps a name to the TCP ports of its servers; `balance` is the upstreams'
    load-balancing directive ("least_conn", or "" for round-robin); `keepalive` the idle upstream connections
    kept per nginx worker (`fastcgi_keep_conn on`, as the shipped configs), 0 for a connection per request."""

    def __init__(self, tmp, upstreams, balance="least_conn", keepalive=KEEPALIVE):
        if not os.access(NGINX_BIN, os.X_OK):
            pytest.fail("nginx not installed (scripts/deps.sh installs it)")
        self.dir = Path(tmp) / f"nginx-{pick_ports(1)[0]}"
        for d in ("tmp/client_body", "tmp/fastcgi", "tmp/proxy", "tmp/uwsgi", "tmp/scgi"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        self.ports = {name: pick_ports(1)[0] for name in upstreams}
        self.url = {name: f"http://127.0.0.1:{p}" for name, p in self.ports.items()}
        d = self.dir
        blocks, servers = [], []
        for name, ports in upstreams.items():
            lines = "\n".join(f"        server 127.0.0.1:{p};" for p in ports)
            method = f"        {balance};\n" if balance else ""
            keep = f"\n        keepalive {keepalive};\n        keepalive_timeout 60s;" if keepalive else ""
            blocks.append(f"    upstream up_{name} {{\n{method}{lines}{keep}\n    }}\n")
            servers.append(f"""
    server {{
        listen 127.0.0.1:{self.ports[name]};
        server_name localhost;
        location /realtime/v1/ {{
            fastcgi_pass up_{name};
            include      {FASTCGI_PARAMS};
            fastcgi_param HTTP_PROXY "";
            fastcgi_read_timeout    60s;
            fastcgi_send_timeout    10s;
            fastcgi_connect_timeout 2s;
            fastcgi_next_upstream       error;
            fastcgi_next_upstream_tries 2;
            fastcgi_buffering on;
            fastcgi_keep_conn {"on" if keepalive else "off"};
            fastcgi_ignore_client_abort off;
            fastcgi_intercept_errors    off;
            error_page 502 503 504 = @unavailable;
        }}
        location @unavailable {{
            default_type application/json;
            add_header cache-control "no-store" always;
            return 503 '{{"error":"Service Unavailable"}}';
        }}
        location / {{ return 404; }}
    }}
""")
        self.conf = d / "nginx.conf"
        self.conf.write_text(f"""# generated by tests/integration/pools.py
user root;
daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/client_body;
    fastcgi_temp_path     {d}/tmp/fastcgi;
    proxy_temp_path       {d}/tmp/proxy;
    uwsgi_temp_path       {d}/tmp/uwsgi;
    scgi_temp_path        {d}/tmp/scgi;
    keepalive_timeout 75s;
{"".join(blocks)}{"".join(servers)}
}}
""")
        self.err = d / "error.log"
        self.proc = subprocess.Popen([NGINX_BIN, "-e", str(self.err), "-p", str(d), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "ab"),
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}): {(d / 'stderr.log').read_text()}"
                                     f"{self.err.read_text() if self.err.exists() else ''}")
            for p in self.ports.values():
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                except OSError:
                    return False
            return True

        try:
            wait_until(up, 15, 0.05, "the test nginx to listen")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            kids = children(self.pid)
            _kill(self.pid, signal.SIGTERM)  # fast shutdown: open client connections are closed
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            for k in kids:
                if alive(k) and _cmdline(k)[:1] and b"nginx" in _cmdline(k)[0]:
                    _kill(k, signal.SIGKILL)


class Procs:
    """Starts pools and nginx on demand (`pool(...)`, `nginx(...)`); `close()` stops every one of them
    (by PID), newest first, and returns the errors met on the way."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="runfeed-pool-")
        self.started = []

    def pool(self, name, **kw):
        p = Pool(name, self.tmp, **kw)
        self.started.append(p)
        return p

    def nginx(self, upstreams, **kw):
        n = Nginx(self.tmp, upstreams, **kw)
        self.started.append(n)
        return n

    def close(self):
        errors = []
        for p in reversed(self.started):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                errors.append(repr(e))
        self.started = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        return errors


@pytest.fixture
def procs():
    """Starts pools and nginx on demand; always stops every one of them (by PID) at the end."""
    p = Procs()
    try:
        yield p
    finally:
        errors = p.close()
        assert not errors, errors
