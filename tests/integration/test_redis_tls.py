"""Redis over TLS with an ACL user, as managed Redis services run it (OPERATIONS "Redis topologies"): a
redis-server on a TLS port only (certificate from the stack's local CA, `default` user disabled, user `runfeed`)
carries the worker's pub/sub connection, the concurrency limiter's connections and `runfeed publish`; a wrong CA,
a wrong server name, a wrong password and a plain-TCP client are refused with a clear reason."""

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import RUNFEED_BIN, STATE_DIR, make_run, parse_metrics, wait_until
from pools import pick_ports, procs  # noqa: F401 (fixture)
from test_pool import snap, start_poll, wait_held
from conftest import touch

TLS_DIR = STATE_DIR / "tls"
USER, PASSWORD = "runfeed", "tls-acl-secret"


def _start_tls_redis(auth_clients="no"):
    """redis-server with `--port 0 --tls-port P`: (port, process). Stopped by its PID (`_stop`)."""
    for f in ("ca.pem", "cert.pem", "key.pem"):
        assert (TLS_DIR / f).exists(), f"the stack's local CA and leaf ({TLS_DIR}/{f}): scripts/stack.sh writes them"
    port = pick_ports(1)[0]
    d = Path(tempfile.mkdtemp(prefix="runfeed-tls-redis-"))
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(TLS_DIR / "cert.pem"), "--tls-key-file", str(TLS_DIR / "key.pem"),
         "--tls-ca-cert-file", str(TLS_DIR / "ca.pem"), "--tls-auth-clients", auth_clients,
         "--user", "default", "off",
         "--user", USER, "on", ">" + PASSWORD, "~*", "&*", "+@all",
         "--save", "", "--appendonly", "no", "--dir", str(d), "--logfile", str(d / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    return port, proc, d


def _stop(proc):
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_redis():
    port, proc, _ = _start_tls_redis()
    try:
        wait_until(lambda: cli(port, "PING") == "PONG", 20, 0.1, "the TLS redis to answer")
        yield port
    finally:
        _stop(proc)


def cli(port, *args):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--tls", "--cacert", str(TLS_DIR / "ca.pem"),
                        "--user", USER, "--pass", PASSWORD, "--no-auth-warning", *args],
                       capture_output=True, text=True, timeout=10)
    return p.stdout.strip()


def tls_env(port, **extra):
    env = {"REDIS_PORT": str(port), "REDIS_TLS_DISABLED": "false", "RUNFEED_REDIS_TLS_CA_FILE": str(TLS_DIR / "ca.pem"),
           "REDIS_USERNAME": USER, "REDIS_PASSWORD": PASSWORD,
           "RATE_LIMIT_REDIS_PORT": str(port), "RATE_LIMIT_REDIS_TLS_DISABLED": "false"}
    env.update(extra)
    return env


def metric(pool, series, slot=1):
    return parse_metrics(requests.get(pool.metrics_url(slot), timeout=5).text).get(series, 0)


def health(pool, slot=1):
    r = requests.get(pool.health_url(slot), timeout=5)
    return r.status_code, r.json().get("redis")


def test_snapshot_and_wake_over_tls_with_an_acl_user(procs, tls_redis):
    pool = procs.pool("tls", workers=1, hold_ms=20000, env=tls_env(tls_redis))
    ng = procs.nginx({"main": [pool.port]})
    base = ng.url["main"]
    assert health(pool) == (200, "ok")
    run = make_run()
    s = snap(base, run)
    # The live poll is admitted by the concurrency limiter over TLS, then parked.
    fut = start_poll(base, run, s.headers["electric-offset"])
    wait_held(pool, 1)
    wait_until(lambda: metric(pool, "runfeed_redis_subscribed_channels") >= 1, 10, 0.05, "the channel over TLS")
    assert int(cli(tls_redis, "ZCARD", "tr:realtime:native:concurrency:{" + run.env_id + "}")) == 1
    backstops = metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}')
    ms = touch(run, "EXECUTING")
    # `runfeed publish` over TLS with the same settings as the worker.
    env = dict(os.environ, **tls_env(tls_redis))
    p = subprocess.run([RUNFEED_BIN, "publish", "--env", run.env_id, "--run", run.id], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "1 subscriber" in p.stdout, p.stdout + p.stderr
    r = fut.result()
    assert r.status_code == 200 and '"status":"EXECUTING"' in r.text, r.text
    assert int(r.headers["electric-offset"].split("_")[0]) == ms
    assert metric(pool, 'runfeed_wakes_total{kind="run",reason="backstop"}') == backstops, "woken by the record"


def _throwaway_ca(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=not the stack CA",
                    "-keyout", str(d / "k.pem"), "-out", str(d / "ca.pem")], check=True, capture_output=True, timeout=60)
    return d / "ca.pem"


@pytest.mark.parametrize("case", ["wrong_ca", "wrong_name", "wrong_password", "plain_client"])
def test_misconfigured_connections_are_refused_clearly(procs, tls_redis, tmp_path, case):
    if case == "wrong_ca":
        env, reason = tls_env(tls_redis, RUNFEED_REDIS_TLS_CA_FILE=str(_throwaway_ca(tmp_path))), "TLS certificate not trusted"
    elif case == "wrong_name":
        env, reason = tls_env(tls_redis, RUNFEED_REDIS_TLS_SERVER_NAME="redis.example.com"), "hostname mismatch"
    elif case == "wrong_password":
        env, reason = tls_env(tls_redis, REDIS_PASSWORD="not-the-password"), "AUTH refused: WRONGPASS"
    else:
        env, reason = tls_env(tls_redis, REDIS_TLS_DISABLED="true"), "redis subscriber disconnected"
    pool = procs.pool("tls-" + case, workers=1, env=env, healthy=False)
    wait_until(lambda: reason in pool.log_path.read_text(errors="replace"), 30, 0.1, f"the log to say {reason!r}")
    assert health(pool) == (503, "down")


def _client_cert(d):
    """A client certificate signed by the stack's local CA (as a private-CA deployment would issue one)."""
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=runfeed-worker",
                    "-keyout", str(d / "client-key.pem"), "-out", str(d / "client.csr")], check=True, capture_output=True, timeout=60)
    ext = d / "client.ext"
    ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(d / "client.csr"), "-CA", str(TLS_DIR / "ca.pem"),
                    "-CAkey", str(TLS_DIR / "ca-key.pem"), "-CAcreateserial", "-days", "1", "-extfile", str(ext),
                    "-out", str(d / "client.pem")], check=True, capture_output=True, timeout=60)
    return d / "client.pem", d / "client-key.pem"


def test_client_certificates_when_the_server_requires_them(procs, tmp_path):
    port, proc, _ = _start_tls_redis(auth_clients="yes")
    try:
        cert, key = _client_cert(tmp_path)
        with_cert = procs.pool("tls-client-cert", workers=1, env=tls_env(
            port, RUNFEED_REDIS_TLS_CERT_FILE=str(cert), RUNFEED_REDIS_TLS_KEY_FILE=str(key)))
        assert health(with_cert) == (200, "ok")
        without = procs.pool("tls-no-client-cert", workers=1, env=tls_env(port), healthy=False)
        wait_until(lambda: "redis subscriber disconnected" in without.log_path.read_text(errors="replace"), 30, 0.1,
                   "the worker without a client certificate to be refused")
        assert health(without) == (503, "down")
    finally:
        _stop(proc)
