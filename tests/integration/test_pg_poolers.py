"""PostgreSQL as operators run it in front of runfeed: PgBouncer in transaction mode, and TLS.

PgBouncer: a pgbouncer of this test's own (Debian's package, `pool_mode = transaction`, ONE server connection)
in front of the stack's PostgreSQL, and a worker pool whose DATABASE_URL goes through it. Everything the pool
does — credential and run lookups, row reads, tag snapshots (Postgres resolver), record wakes, backstops — is
multiplexed over that one server connection, transaction by transaction. Afterwards a psql session through the
same pgbouncer (so on the same server connection) finds no session state left by runfeed (`statement_timeout`
and `TimeZone` at the server's defaults) and no named prepared statement (`pg_prepared_statements` empty).

TLS: workers with `sslmode=verify-full` (the stack's local CA) and `sslmode=require` in DATABASE_URL serve
feeds, and PostgreSQL reports their connections as encrypted (`pg_stat_ssl`); a CA that did not sign the
server's certificate is refused (`/healthz` says postgres down).
"""

import concurrent.futures
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import (
    API_KEY, CA_CERT, DATABASE_URL, ENV_ID, PSQL, ThrowawayWorker, expected_body, get, make_run, psql, publish,
    run_url, runs_list_url, touch, unique_tag, wait_until,
)
from pools import pick_ports, procs  # noqa: F401 (fixture)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
_bg = concurrent.futures.ThreadPoolExecutor(max_workers=4)
PG_PORT = int(os.environ.get("RUNFEED_PG_PORT", "0") or 0)


class PgBouncer:
    """pgbouncer -d with its own ini in a temp dir, run as the postgres user (pgbouncer refuses root); stopped
    by the pid it writes."""

    def __init__(self, pool_size=1):
        if not os.access(PGBOUNCER, os.X_OK):
            pytest.fail("pgbouncer not installed (scripts/deps.sh installs it)")
        self.port = pick_ports(1)[0]
        self.dir = tempfile.mkdtemp(prefix="runfeed-pgb-")
        pg = pwd.getpwnam("postgres")
        with open(os.path.join(self.dir, "pgbouncer.ini"), "w") as f:
            f.write(f"""[databases]
runfeed = host=127.0.0.1 port={PG_PORT} dbname=runfeed

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
pool_mode = transaction
auth_type = scram-sha-256
auth_file = {self.dir}/userlist.txt
default_pool_size = {pool_size}
min_pool_size = 0
max_client_conn = 500
server_reset_query =
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write('"runfeed" "runfeed"\n')
        for name in os.listdir(self.dir):
            os.chown(os.path.join(self.dir, name), pg.pw_uid, pg.pw_gid)
        os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        p = subprocess.run(["runuser", "-u", "postgres", "--", PGBOUNCER, "-d", os.path.join(self.dir, "pgbouncer.ini")],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (p.stdout, p.stderr, self.log())
        self.url = f"postgresql://runfeed:runfeed@127.0.0.1:{self.port}/runfeed"
        wait_until(lambda: subprocess.run([PSQL, self.url, "-X", "-qAt", "-c", "SELECT 1"], capture_output=True).returncode == 0,
                   15, 0.1, "pgbouncer to accept connections")

    def log(self):
        try:
            with open(os.path.join(self.dir, "pgbouncer.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def psql(self, sql):
        p = subprocess.run([PSQL, self.url, "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    def stop(self):
        try:
            with open(os.path.join(self.dir, "pgbouncer.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 15)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def test_through_pgbouncer_in_transaction_mode(procs):
    bouncer = PgBouncer(pool_size=1)
    try:
        pool = procs.pool("pgbouncer", workers=2, env={"DATABASE_URL": bouncer.url})
        ng = procs.nginx({"pool": [pool.port]})
        base = ng.url["pool"]
        tag = unique_tag("pgb")
        run = make_run(tags=[tag])
        r = get(run_url(run.friendly_id, base=base))
        assert r.status_code == 200 and r.text == expected_body(run.friendly_id, "insert"), (r.status_code, r.text[:300])
        t = get(runs_list_url(base=base), params={"tags": tag})
        assert t.status_code == 200 and run.id in t.text, t.text[:300]
        # A record wakes a held poll; the row is read through pgbouncer.
        params = {"live": "true", "handle": run.handle, "offset": r.headers["electric-offset"], "cursor": "", "log": "full"}
        fut = _bg.submit(get, run_url(run.friendly_id, base=base), params=params, timeout=30)
        time.sleep(0.3)
        touch(run, "EXECUTING")
        publish(ENV_ID, run.id)
        woken = fut.result(timeout=30)
        assert woken.status_code == 200 and woken.text == expected_body(run.friendly_id, "update"), woken.text[:300]
        # Many lookups and reads at once over the one server connection.
        runs = [make_run() for _ in range(10)]
        for x in runs:
            assert get(run_url(x.friendly_id, base=base)).status_code == 200
        # What runfeed left on the server connection it shared: nothing.
        assert bouncer.psql("SHOW statement_timeout") == "0"
        assert bouncer.psql("SELECT count(*) FROM pg_prepared_statements") == "0"
        errors = [line for line in bouncer.log().splitlines() if "prepared statement" in line or "ERROR" in line]
        assert not errors, errors[:5]
    finally:
        bouncer.stop()


def test_sslmode_verify_full_and_require(procs):
    assert CA_CERT and os.path.exists(CA_CERT), "the stack's local CA (RUNFEED_CA_CERT)"
    run = make_run()
    sep = "&" if "?" in DATABASE_URL else "?"
    for mode in (f"sslmode=verify-full&sslrootcert={CA_CERT}", "sslmode=require"):
        with ThrowawayWorker("pgtls", {"DATABASE_URL": DATABASE_URL + sep + mode}) as w:
            r = w.get("/realtime/v1/runs/" + run.friendly_id)
            assert r.status_code == 200, (mode, r.status_code, r.text[:200])
            encrypted = psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                             "WHERE a.application_name = 'runfeed' AND s.ssl")
            assert int(encrypted[0]) >= 1, mode
    # A CA that did not sign the server's certificate: refused, and /healthz says so.
    wrong_ca = "/etc/ssl/certs/ca-certificates.crt"
    with ThrowawayWorker("pgtlsbad", {"DATABASE_URL": DATABASE_URL + sep + f"sslmode=verify-full&sslrootcert={wrong_ca}"}) as w:
        wait_until(lambda: requests.get(w.health_url, timeout=2).json()["postgres"] == "down", 20, 0.2,
                   "/healthz to report postgres down")
