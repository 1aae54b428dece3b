"""nginx in front of the trigger.dev webapp (nginx/runfeed.conf, and the local stack's nginx, which has the
same routing): runfeed's three routes go to the workers, every other path to the webapp — locally the
stand-in scripts/webapp_standin.py, which serves what an SDK subscriber needs from the webapp:
GET /api/v1/packets/<file> → {"presignedUrl"} for a payload or output offloaded to object storage, and the
presigned URL itself.

Also: the shipped nginx/runfeed.conf and nginx/runfeed-standalone.conf pass `nginx -t` and route as they
say when run (with the placeholders pointed at this stack)."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from conftest import (
    API_KEY, BASE_URL, CA_CERT, DEMO_BATCH, DEMO_RUN, DEMO_TAG, ENV_ID, HTTPS_URL, MODERN, OTHER_API_KEY,
    PREVIEW_API_KEY, REPO_ROOT, STATE_DIR, WORKERS, jwt_claims, lit, make_env, mint_jwt, psql, wait_until,
)
from pools import FASTCGI_PARAMS, NGINX_BIN, pick_ports

WEBAPP_URL = os.environ.get("RUNFEED_WEBAPP_URL", "").rstrip("/")
WEBAPP_OBJECTS = Path(os.environ.get("RUNFEED_WEBAPP_OBJECTS") or (STATE_DIR / "webapp" / "objects"))
RUN_DIR = Path(os.environ.get("RUNFEED_RUN_DIR") or (STATE_DIR / "run"))
STANDIN = "x-runfeed-webapp-standin"
OFFLOADED_RUN = "run_demo0010"
NOT_FOUND = '{"error":"Not found"}'


@pytest.fixture(scope="module", autouse=True)
def webapp_configured():
    if not (WEBAPP_URL and HTTPS_URL and CA_CERT):
        pytest.fail("RUNFEED_WEBAPP_URL, RUNFEED_URL and RUNFEED_CA_CERT must be set (demo.env of scripts/stack.sh)")


def https(method, path, token=None, base=None, **kw):
    h = kw.pop("headers", {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    return requests.request(method, (base or HTTPS_URL) + path, headers=h, verify=CA_CERT, timeout=15, **kw)


def env_object_prefix(env_id):
    ref, slug = psql(f'''SELECT p."externalRef", e.slug FROM "RuntimeEnvironment" e
                         JOIN "Project" p ON p.id = e."projectId" WHERE e.id = {lit(env_id)}''')[0].split("|")
    return f"packets/{ref}/{slug}/"


def presigned_url(filename, token, method="GET", base=None, **kw):
    r = https(method, "/api/v1/packets/" + filename, token=token, base=base, **kw)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get(STANDIN) == "1"
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["presignedUrl"], body
    return body["presignedUrl"]


def snapshot_value(friendly_id, base=None):
    r = https("GET", f"/realtime/v1/runs/{friendly_id}", token=API_KEY, base=base,
              headers={"x-trigger-electric-version": MODERN})
    assert r.status_code == 200, r.text
    assert STANDIN not in r.headers
    rows = [m["value"] for m in r.json() if "value" in m]
    assert len(rows) == 1
    return rows[0]


# ---- offloaded payloads: the SDK's path -------------------------------------------------------

def test_offloaded_payload_downloads_through_nginx_https():
    """What the SDK does for a run whose payload is offloaded: the run's row (from runfeed) names a file;
    /api/v1/packets/<file> (from the webapp) gives a presigned URL on the same origin; that URL, fetched
    without credentials, is the payload, and its content-type becomes the packet's type."""
    value = snapshot_value(OFFLOADED_RUN)
    assert value["payloadType"] == "application/store"
    filename = value["payload"]
    assert filename == f"{OFFLOADED_RUN}/payload.json"

    url = presigned_url(filename, API_KEY)
    key = env_object_prefix(ENV_ID) + filename
    assert url.startswith(f"{HTTPS_URL}/objects/{key}?"), url

    r = requests.get(url, verify=CA_CERT, timeout=15)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.content == (WEBAPP_OBJECTS / key).read_bytes()
    doc = r.json()
    assert doc["run"] == OFFLOADED_RUN and len(doc["rows"]) == 2500
    assert len(r.content) > 128 * 1024     # above the SDK's own offload threshold


def test_public_access_token_gets_a_presigned_url():
    token = mint_jwt(jwt_claims(scopes=[f"read:runs:{OFFLOADED_RUN}"]), API_KEY)
    url = presigned_url(f"{OFFLOADED_RUN}/payload.json", token)
    r = requests.get(url, verify=CA_CERT, timeout=15)
    assert r.status_code == 200 and r.json()["run"] == OFFLOADED_RUN


def test_a_key_created_after_start_is_looked_up_in_the_database():
    env_id, key = make_env()
    url = presigned_url("run_x/payload.json", key)
    assert f"/objects/{env_object_prefix(env_id)}run_x/payload.json?" in url


@pytest.mark.parametrize("case", ["none", "basic", "empty", "unknown key", "bad signature", "expired token",
                                  "wrong audience"])
def test_packets_need_valid_credentials(case):
    h = {}
    expected = {"none": "Invalid or Missing API key", "basic": "Invalid or Missing API key",
                "empty": "Invalid or Missing API key", "unknown key": "Invalid API key"}.get(
        case, "Public Access Token is invalid")
    if case == "basic":
        h["Authorization"] = "Basic " + API_KEY
    elif case == "empty":
        h["Authorization"] = "Bearer "
    elif case == "unknown key":
        h["Authorization"] = "Bearer tr_dev_NotAKey0123456789abc"
    elif case == "bad signature":
        h["Authorization"] = "Bearer " + mint_jwt(jwt_claims(), OTHER_API_KEY)
    elif case == "expired token":
        h["Authorization"] = "Bearer " + mint_jwt(jwt_claims(ttl=-60), API_KEY)
    elif case == "wrong audience":
        h["Authorization"] = "Bearer " + mint_jwt(jwt_claims(aud="https://example.com"), API_KEY)
    r = https("GET", f"/api/v1/packets/{OFFLOADED_RUN}/payload.json", headers=h)
    assert (r.status_code, r.json()) == (401, {"error": expected})
    assert r.headers.get(STANDIN) == "1"


def test_presigned_urls_are_scoped_to_the_callers_environment():
    """The production key's URL for the same file name is another object (its own project/slug prefix)."""
    url = presigned_url(f"{OFFLOADED_RUN}/payload.json", OTHER_API_KEY)
    assert "/objects/" + env_object_prefix("cmdemoenv0000000000000002") in url
    r = requests.get(url, verify=CA_CERT, timeout=15)
    assert r.status_code == 404 and r.json()["error"] == "NoSuchKey"


def test_preview_key_needs_a_branch():
    r = https("GET", "/api/v1/packets/f.json", token=PREVIEW_API_KEY)
    assert (r.status_code, r.json()) == (401, {"error": "x-trigger-branch header required for preview env"})
    r = https("GET", "/api/v1/packets/f.json", token=PREVIEW_API_KEY, headers={"x-trigger-branch": "no-such"})
    assert (r.status_code, r.json()) == (401, {"error": "No matching branch env"})
    url = presigned_url("f.json", PREVIEW_API_KEY, headers={"x-trigger-branch": "refs/heads/feature-x"})
    assert "/objects/" + env_object_prefix("cmdemoenv0000000000000004") + "f.json?" in url


@pytest.mark.parametrize("name", ["../x.json", "a/../../x.json", "a//x.json", "a/%2E%2E/x.json", "a%2Fb.json"])
def test_file_names_cannot_leave_the_environment(name):
    r = https("GET", "/api/v1/packets/" + name, token=API_KEY)
    if r.status_code == 200:
        # nginx normalised the path before proxying: the result must still be inside the env's prefix.
        key = urlsplit(r.json()["presignedUrl"]).path[len("/objects/"):]
        assert key.startswith(env_object_prefix(ENV_ID)) and ".." not in key.split("/"), key
    else:
        assert r.status_code in (400, 404), (r.status_code, r.text)


def test_tampered_presigned_urls_are_refused():
    url = presigned_url(f"{OFFLOADED_RUN}/payload.json", API_KEY)
    u = urlsplit(url)
    sig = re.search(r"signature=([0-9a-f]+)", u.query).group(1)
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    other_key = u.path.replace(OFFLOADED_RUN, "run_demo0001")
    for bad in (urlunsplit(u._replace(query=u.query.replace(sig, flipped))),
                urlunsplit(u._replace(query=u.query.replace("method=GET", "method=PUT"))),
                urlunsplit(u._replace(path=other_key))):
        r = requests.get(bad, verify=CA_CERT, timeout=15)
        assert r.status_code == 403 and r.json()["error"] == "AccessDenied", (bad, r.text)
    # A URL signed for GET does not allow a PUT.
    r = requests.put(url, data=b"{}", headers={"content-type": "application/json"}, verify=CA_CERT, timeout=15)
    assert r.status_code == 403
    assert requests.get(url, verify=CA_CERT, timeout=15).json()["run"] == OFFLOADED_RUN


def test_upload_then_download_like_the_sdk():
    """The SDK's offload of a large output: PUT /api/v1/packets/<file> for a presigned PUT URL, PUT the data
    with its content type; a subscriber later downloads it with that content type."""
    filename = f"run_it{uuid.uuid4().hex[:12]}/output.json"
    data = json.dumps({"json": {"big": "y" * 200_000}}).encode()
    put_url = presigned_url(filename, API_KEY, method="PUT")
    r = requests.put(put_url, data=data, headers={"content-type": "application/super+json"},
                     verify=CA_CERT, timeout=15)
    assert r.status_code == 200, r.text
    try:
        get_url = presigned_url(filename, API_KEY)
        r = requests.get(get_url, verify=CA_CERT, timeout=15)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/super+json"
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    finally:
        key = env_object_prefix(ENV_ID) + filename
        for p in (WEBAPP_OBJECTS / key, WEBAPP_OBJECTS / ".content-types" / key):
            p.unlink(missing_ok=True)


# ---- routing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("base_name", ["https", "http"])
@pytest.mark.parametrize("path", ["/", "/api/v1/nope", "/api/v3/runs/run_demo0001",
                                  "/realtime/v1/streams/run_demo0001/default", "/realtime/v1/nope",
                                  "/realtime/v1/", "/realtime/v2/streams/run_demo0001/x", "/realtime/v1/runsx"])
def test_other_paths_reach_the_webapp(path, base_name):
    base = HTTPS_URL if base_name == "https" else BASE_URL
    r = requests.get(base + path, headers={"Authorization": "Bearer " + API_KEY}, verify=CA_CERT, timeout=15)
    assert r.status_code == 404
    assert r.headers.get(STANDIN) == "1", dict(r.headers)
    assert r.json()["error"] == "Not found"


def test_request_bodies_reach_the_webapp():
    """Triggers are POSTs with JSON bodies well above nginx's default 1 MB limit."""
    body = json.dumps({"payload": "z" * 3_000_000}).encode()
    r = https("POST", "/api/v1/tasks/it-task/trigger", token=API_KEY, data=body,
              headers={"content-type": "application/json"})
    assert r.status_code == 404 and r.headers.get(STANDIN) == "1", (r.status_code, r.text[:200])


@pytest.mark.parametrize("path", [f"/realtime/v1/runs/{DEMO_RUN}", f"/realtime/v1/runs?tags={DEMO_TAG}",
                                  "/realtime/v1/runs", "/realtime/v1/runs/", f"/realtime/v1/batches/{DEMO_BATCH}",
                                  f"/realtime/v1/batches/{DEMO_BATCH}/"])
def test_runfeed_routes_reach_runfeed(path):
    for base in (HTTPS_URL, BASE_URL):
        r = requests.get(base + path, headers={"Authorization": "Bearer " + API_KEY,
                                               "x-trigger-electric-version": MODERN}, verify=CA_CERT, timeout=15)
        assert r.status_code == 200, (base, r.text)
        assert STANDIN not in r.headers
        assert r.headers["electric-handle"] and r.headers["electric-offset"]
        assert r.json()[-1] == {"headers": {"control": "up-to-date"}}


@pytest.mark.parametrize("path", ["/realtime/v1/runs/a/b", "/realtime/v1/batches", "/realtime/v1/batches/",
                                  "/realtime/v1/batches/a/b"])
def test_unknown_paths_under_runfeeds_routes_get_runfeeds_404(path):
    r = requests.get(BASE_URL + path, headers={"Authorization": "Bearer " + API_KEY}, timeout=15)
    assert (r.status_code, r.text) == (404, NOT_FOUND)
    assert STANDIN not in r.headers


def test_runfeed_routes_still_refuse_writes():
    """runfeed's location keeps its `limit_except GET OPTIONS`: a POST is nginx's 403, not the webapp's."""
    r = https("POST", f"/realtime/v1/runs/{DEMO_RUN}", token=API_KEY, data=b"{}")
    assert r.status_code == 403 and STANDIN not in r.headers


# ---- the shipped configurations -----------------------------------------------------------------

def _replace_once(text, old, new):
    assert text.count(old) == 1, f"expected exactly one {old!r} in the shipped config"
    return text.replace(old, new)


def render_shipped(name, tmp, https_port, dead_workers=False):
    """nginx/<name> with its placeholders pointed at this stack, included in a minimal nginx.conf the way its
    header says (inside `http {}`). Returns the path of that nginx.conf. `dead_workers`: the upstream names a
    socket nobody listens on."""
    text = (REPO_ROOT / "nginx" / name).read_text()
    workers = "\n".join(f"    server unix:{RUN_DIR}/worker-{n}.sock max_fails=3 fail_timeout=10s;"
                        for n in range(1, WORKERS + 1))
    if dead_workers:
        workers = f"    server unix:{tmp}/nobody-listens.sock max_fails=3 fail_timeout=10s;"
    text = _replace_once(text, "    server unix:/run/runfeed/runfeed.sock max_fails=3 fail_timeout=10s;", workers)
    if "upstream trigger_webapp" in text:
        port = urlsplit(WEBAPP_URL).port
        text = _replace_once(text, "server 127.0.0.1:3030 max_fails=3", f"server 127.0.0.1:{port} max_fails=3")
    text = _replace_once(text, "    listen 443 ssl http2;", f"    listen 127.0.0.1:{https_port} ssl http2;")
    text = _replace_once(text, "    listen [::]:443 ssl http2;\n", "")
    tls = STATE_DIR / "tls"
    text = _replace_once(text, "/etc/ssl/runfeed/fullchain.pem", str(tls / "cert.pem"))
    text = _replace_once(text, "/etc/ssl/runfeed/privkey.pem", str(tls / "key.pem"))
    text = _replace_once(text, "/var/log/nginx/runfeed.access.log", str(tmp / "access.log"))
    text = _replace_once(text, "/var/log/nginx/runfeed.error.log", str(tmp / "error.log"))
    (tmp / name).write_text(text)
    shutil.copy(FASTCGI_PARAMS, tmp / "fastcgi_params")   # `include fastcgi_params;` is relative to the conf dir
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / "tmp" / d).mkdir(parents=True, exist_ok=True)
    main = tmp / "nginx.conf"
    main.write_text(f"""# test wrapper: the main context of nginx.conf, with nginx/{name} in http {{}}
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {tmp}/tmp/client_body;
    proxy_temp_path       {tmp}/tmp/proxy;
    fastcgi_temp_path     {tmp}/tmp/fastcgi;
    uwsgi_temp_path       {tmp}/tmp/uwsgi;
    scgi_temp_path        {tmp}/tmp/scgi;
    include {tmp}/{name};
}}
""")
    return main


def nginx_t(conf):
    if not os.access(NGINX_BIN, os.X_OK):
        pytest.fail("nginx not installed (scripts/deps.sh installs it)")
    return subprocess.run([NGINX_BIN, "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", ["runfeed.conf", "runfeed-standalone.conf"])
def test_shipped_config_passes_nginx_t(name, tmp_path):
    conf = render_shipped(name, tmp_path, pick_ports(1)[0])
    p = nginx_t(conf)
    assert p.returncode == 0, p.stderr
    assert "syntax is ok" in p.stderr and "test is successful" in p.stderr, p.stderr


class RunningNginx:
    def __init__(self, conf, port):
        self.port = port
        self.base = f"https://127.0.0.1:{port}"
        self.proc = subprocess.Popen([NGINX_BIN, "-p", str(conf.parent), "-c", str(conf),
                                      "-e", str(conf.parent / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            assert self.proc.poll() is None, (conf.parent / "error.log").read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(up, 15, 0.1, "the shipped config's nginx to listen")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def shipped_nginx(tmp_path):
    started = []

    def start(name, **kw):
        port = pick_ports(1)[0]
        conf = render_shipped(name, tmp_path, port, **kw)
        p = nginx_t(conf)
        assert p.returncode == 0, p.stderr
        n = RunningNginx(conf, port)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def test_shipped_primary_config_fronts_the_webapp(shipped_nginx):
    n = shipped_nginx("runfeed.conf")
    # runfeed's routes: the workers.
    value = snapshot_value(OFFLOADED_RUN, base=n.base)
    assert value["payloadType"] == "application/store"
    r = https("GET", f"/realtime/v1/runs?tags={DEMO_TAG}", token=API_KEY, base=n.base,
              headers={"x-trigger-electric-version": MODERN})
    assert r.status_code == 200 and "electric-handle" in r.headers and STANDIN not in r.headers
    # The offloaded payload through the webapp, with a presigned URL on this server's origin.
    url = presigned_url(value["payload"], API_KEY, base=n.base)
    assert url.startswith(n.base + "/objects/"), url
    r = requests.get(url, verify=CA_CERT, timeout=15)
    assert r.status_code == 200 and r.json()["run"] == OFFLOADED_RUN
    # Everything else, streams included: the webapp.
    for path in ("/realtime/v1/streams/run_demo0001/default", "/api/v1/nope", "/"):
        r = https("GET", path, token=API_KEY, base=n.base)
        assert r.status_code == 404 and r.headers.get(STANDIN) == "1", (path, r.status_code, r.text[:200])
    r = https("POST", "/api/v1/tasks/it-task/trigger", token=API_KEY, base=n.base,
              data=json.dumps({"payload": "z" * 3_000_000}).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 404 and r.headers.get(STANDIN) == "1", (r.status_code, r.text[:200])
    r = https("GET", "/realtime/v1/runs/a/b", token=API_KEY, base=n.base)
    assert (r.status_code, r.text) == (404, NOT_FOUND) and STANDIN not in r.headers


def test_shipped_standalone_config_answers_only_runfeed(shipped_nginx):
    n = shipped_nginx("runfeed-standalone.conf")
    assert snapshot_value(DEMO_RUN, base=n.base)["friendlyId"] == DEMO_RUN
    r = https("GET", "/realtime/v1/nope", token=API_KEY, base=n.base)
    assert (r.status_code, r.text) == (404, NOT_FOUND)       # runfeed's own 404
    r = https("GET", f"/api/v1/packets/{OFFLOADED_RUN}/payload.json", token=API_KEY, base=n.base)
    assert r.status_code == 404 and STANDIN not in r.headers  # nginx's: no webapp behind this variant


@pytest.mark.parametrize("name", ["runfeed.conf", "runfeed-standalone.conf"])
def test_shipped_configs_own_503_carries_retry_after(shipped_nginx, name):
    """No worker answers: nginx's own 503 page is retryable like runfeed's (JSON body, Retry-After)."""
    n = shipped_nginx(name, dead_workers=True)
    r = https("GET", f"/realtime/v1/runs/{DEMO_RUN}", token=API_KEY, base=n.base)
    assert r.status_code == 503, (r.status_code, r.text[:200])
    assert r.text == '{"error":"Service Unavailable"}' and r.headers.get("retry-after") == "1", (r.headers, r.text)
