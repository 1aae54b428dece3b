#!/usr/bin/env python3
"""A stand-in for the trigger.dev webapp, for the local stack (scripts/stack.sh) and docker/compose.yml.

runfeed serves only the realtime runs feed (/realtime/v1/runs, /realtime/v1/runs/:id,
/realtime/v1/batches/:id). The SDK reaches everything else through the same base URL, so the nginx
in front sends every other path to the trigger.dev webapp (nginx/runfeed.conf). Locally there is no
webapp: this program plays its part for the one thing a realtime subscriber needs from it, offloaded
payloads and outputs, and answers a JSON 404 (with `x-runfeed-webapp-standin: 1`) for everything else.

What the SDK does with a run whose `payloadType` (or `outputType`) is `application/store`: `payload`
holds a file name (e.g. `run_abc/payload.json`); the SDK asks the webapp for
`GET /api/v1/packets/<file name>` with `Authorization: Bearer <secret key or public access token>`,
gets `{"presignedUrl": "..."}` back, GETs that URL without credentials, and takes the body as the
packet's data and the response's `content-type` as its type. Uploads go the same way with `PUT`
(a presigned URL for `PUT`, then a `PUT` of the data with its content type). Object keys are
`packets/<project externalRef>/<environment slug>/<file name>`; presigned URLs expire after 300 s.

Here the stand-in is the object store as well: presigned URLs point back at it
(`/objects/<key>?method=GET&expires=<unix s>&signature=<hex>`, an HMAC with a key drawn at start),
on the origin the request came through (X-Forwarded-Proto / X-Forwarded-Host / X-Forwarded-Port as
nginx sets them, else Host), unless --public-url names another. Objects are files under --objects.

Credentials are checked against the trigger.dev database like the webapp does (through `psql`):
a secret key of an environment (or a rotated one still in its grace period) or a public access token
(HS256, signed with the environment's key, the parent's for a branch environment; iss/aud/exp/nbf);
`x-trigger-branch` selects a branch environment, and a PREVIEW key without it is refused.

  webapp_standin.py serve --listen 127.0.0.1:23030 --objects DIR --database-url URL [--psql PATH]
                          [--public-url URL]
  webapp_standin.py seed-objects --objects DIR     # the demo seed's offloaded payload (run_demo0010)

Python standard library only.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

PRESIGN_TTL_S = 300
MAX_OBJECT_BYTES = 16 * 1024 * 1024
STANDIN_HEADER = "x-runfeed-webapp-standin"
TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,4096}")
HOST_CHARS = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
JWT_ISSUER = "https://id.trigger.dev"
JWT_AUDIENCE = "https://api.trigger.dev"
BRANCH_PREFIXES = ("refs/heads/", "refs/remotes/", "refs/tags/", "refs/pull/", "refs/merge/", "refs/release/")

# The demo seed (db/postgres/seed-demo.sql): run_demo0010 of the DEVELOPMENT environment (slug `dev`)
# of project proj_rfdemo00000000000001 has payloadType application/store and payload
# `run_demo0010/payload.json`.
DEMO_OBJECT_KEY = "packets/proj_rfdemo00000000000001/dev/run_demo0010/payload.json"


def demo_payload() -> bytes:
    """A deterministic JSON document of about 200 KB: above the SDK's 128 KB offload threshold."""
    rows = [{"i": i, "sku": f"sku-{i:05d}", "qty": (i * 7) % 13, "note": "x" * 40} for i in range(2500)]
    doc = {"run": "run_demo0010", "kind": "big-input", "rows": rows}
    return json.dumps(doc, separators=(",", ":")).encode()


class AuthError(Exception):
    def __init__(self, message, status=401):
        super().__init__(message)
        self.status = status


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Database:
    """Environment lookups through psql (the stand-in needs no database driver)."""

    ENV_COLUMNS = '''e.id, e.slug, e.type, p."externalRef",
        COALESCE(parent."apiKey", e."apiKey")'''
    ENV_FROM = '''"RuntimeEnvironment" e
        JOIN "Project" p ON p.id = e."projectId" AND p."deletedAt" IS NULL
        LEFT JOIN "RuntimeEnvironment" parent ON parent.id = e."parentEnvironmentId"'''

    def __init__(self, url, psql):
        self.url = url
        self.psql = psql

    def rows(self, sql, **params):
        args = [self.psql, self.url, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
        for name, value in params.items():
            args += ["-v", f"{name}={value}"]
        env = dict(os.environ, PGCONNECT_TIMEOUT="5", PGTZ="UTC")
        p = subprocess.run(args + ["-f", "-"], input=sql, capture_output=True, text=True, timeout=15, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.strip()}")
        return [line.split("\t") for line in p.stdout.splitlines() if line]

    def env_by_key(self, key):
        rows = self.rows(f'''SELECT {self.ENV_COLUMNS} FROM {self.ENV_FROM}
            WHERE e."apiKey" = :'key'
               OR e.id = (SELECT r."runtimeEnvironmentId" FROM "RevokedApiKey" r
                          WHERE r."apiKey" = :'key' AND r."expiresAt" > (now() AT TIME ZONE 'utc')
                          ORDER BY r."expiresAt" DESC LIMIT 1)
            ORDER BY (e."apiKey" = :'key') DESC LIMIT 1;''', key=key)
        return rows[0] if rows else None

    def env_by_id(self, env_id):
        rows = self.rows(f'SELECT {self.ENV_COLUMNS} FROM {self.ENV_FROM} WHERE e.id = :\'id\' LIMIT 1;', id=env_id)
        return rows[0] if rows else None

    def branch_env(self, parent_id, branch):
        rows = self.rows(f'''SELECT {self.ENV_COLUMNS} FROM {self.ENV_FROM}
            WHERE e."parentEnvironmentId" = :'parent' AND e."branchName" = :'branch' AND e."archivedAt" IS NULL
            ORDER BY e."createdAt" LIMIT 1;''', parent=parent_id, branch=branch)
        return rows[0] if rows else None


def environment(row):
    env_id, slug, env_type, project_ref, signing_key = row
    return {"id": env_id, "slug": slug, "type": env_type, "projectRef": project_ref, "signingKey": signing_key}


class StandIn:
    def __init__(self, objects, db, public_url):
        self.objects = Path(objects).resolve()
        self.types = self.objects / ".content-types"
        self.db = db
        self.public_url = public_url.rstrip("/") if public_url else None
        self.sign_key = secrets.token_bytes(32)

    # --- credentials -------------------------------------------------------------------------

    def authenticate(self, headers):
        value = headers.get("Authorization") or ""
        if not value.startswith("Bearer "):
            raise AuthError("Invalid or Missing API key")
        token = value[len("Bearer "):].strip()
        if not token:
            raise AuthError("Invalid or Missing API key")
        if not TOKEN_CHARS.fullmatch(token):
            raise AuthError("Invalid API key")
        claims = self.public_token_claims(token)
        if claims is not None:
            return self.verify_public_token(token, claims)
        row = self.db.env_by_key(token)
        if row is None:
            raise AuthError("Invalid API key")
        env = environment(row)
        return self.select_branch(env, headers.get("x-trigger-branch"))

    @staticmethod
    def public_token_claims(token):
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            claims = json.loads(b64url_decode(parts[1]))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) and claims.get("pub") is True else None

    def verify_public_token(self, token, claims):
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("Invalid Public Access Token")
        row = self.db.env_by_id(sub)
        if row is None:
            raise AuthError("Invalid Public Access Token")
        env = environment(row)
        head, payload, sig = token.split(".")
        try:
            header = json.loads(b64url_decode(head))
            signature = b64url_decode(sig)
        except ValueError:
            raise AuthError("Public Access Token is invalid")
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise AuthError("Public Access Token is invalid")
        expected = hmac.new(env["signingKey"].encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise AuthError("Public Access Token is invalid")
        now = time.time()
        if claims.get("iss") != JWT_ISSUER or claims.get("aud") != JWT_AUDIENCE:
            raise AuthError("Public Access Token is invalid")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is not None and (not isinstance(exp, (int, float)) or exp <= now):
            raise AuthError("Public Access Token is invalid")
        if nbf is not None and (not isinstance(nbf, (int, float)) or nbf > now):
            raise AuthError("Public Access Token is invalid")
        return env

    def select_branch(self, env, header):
        branch = (header or "").strip()
        for prefix in BRANCH_PREFIXES:
            if branch.startswith(prefix):
                branch = branch[len(prefix):]
                break
        else:
            if branch.startswith("refs/"):
                branch = ""
        if env["type"] == "PREVIEW":
            if not branch:
                raise AuthError("x-trigger-branch header required for preview env")
        elif env["type"] != "DEVELOPMENT" or not branch or branch == "default":
            return env
        row = self.db.branch_env(env["id"], branch)
        if row is None:
            raise AuthError("No matching branch env")
        return environment(row)

    # --- presigned URLs ----------------------------------------------------------------------

    @staticmethod
    def object_key(env, raw_filename):
        segments = [unquote(s) for s in raw_filename.split("/")]
        for s in segments:
            if s in ("", ".", "..") or "/" in s or "\\" in s or any(ord(c) < 0x20 for c in s):
                return None
        return f"packets/{env['projectRef']}/{env['slug']}/" + "/".join(segments)

    def signature(self, method, key, expires):
        return hmac.new(self.sign_key, f"{method}\n{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def presign(self, base, method, key):
        expires = int(time.time()) + PRESIGN_TTL_S
        sig = self.signature(method, key, expires)
        return f"{base}/objects/{quote(key, safe='/')}?method={method}&expires={expires}&signature={sig}"

    def check_presigned(self, method, key, query):
        q = parse_qs(query)
        want = (q.get("method") or [""])[0]
        expires = (q.get("expires") or [""])[0]
        sig = (q.get("signature") or [""])[0]
        if want != method or not expires.isdigit():
            return "this URL was not signed for " + method
        if not hmac.compare_digest(self.signature(method, key, expires), sig):
            return "signature does not match"
        if int(expires) < time.time():
            return "presigned URL expired"
        return None

    def object_path(self, key):
        path = (self.objects / key).resolve()
        if self.objects not in path.parents or self.types in path.parents or path == self.types:
            return None
        return path

    def content_type(self, key, path):
        sidecar = self.types / key
        try:
            return sidecar.read_text().strip() or "application/octet-stream"
        except OSError:
            pass
        return {".json": "application/json", ".txt": "text/plain"}.get(path.suffix, "application/octet-stream")

    def store(self, key, data, content_type):
        path = self.object_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        sidecar = self.types / key
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(content_type + "\n")


class Handler(BaseHTTPRequestHandler):
    server_version = "runfeed-webapp-standin"
    protocol_version = "HTTP/1.1"
    standin: StandIn = None  # set by serve()

    # --- plumbing ----------------------------------------------------------------------------

    def send(self, status, body=b"", content_type="application/json", headers=None, head_only=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.send_header("access-control-allow-origin", "*")
        self.send_header(STANDIN_HEADER, "1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def not_found(self, head_only=False):
        self.send(404, {"error": "Not found",
                        "detail": "the runfeed local stack's webapp stand-in serves only /api/v1/packets/<file> "
                                  "and the presigned object URLs it hands out; a trigger.dev webapp serves the rest"},
                  head_only=head_only)

    def body(self):
        """The request body (Content-Length only; at most MAX_OBJECT_BYTES), or None after answering."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self.send(411, {"error": "Content-Length required"})
            return None
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit():
            self.close_connection = True
            self.send(400, {"error": "Bad Content-Length"})
            return None
        n = int(length)
        if n > MAX_OBJECT_BYTES:
            self.close_connection = True
            self.send(413, {"error": "Payload too large"})
            return None
        return self.rfile.read(n) if n else b""

    def origin(self):
        if self.standin.public_url:
            return self.standin.public_url
        proto = (self.headers.get("X-Forwarded-Proto") or "http").split(",")[0].strip().lower()
        if proto not in ("http", "https"):
            proto = "http"
        host = (self.headers.get("X-Forwarded-Host") or "").split(",")[0].strip()
        port = (self.headers.get("X-Forwarded-Port") or "").split(",")[0].strip()
        if host and port.isdigit() and ":" not in host.rsplit("]", 1)[-1]:
            if (proto, port) not in (("http", "80"), ("https", "443")):
                host = f"{host}:{port}"
        host = host or (self.headers.get("Host") or "").strip()
        if not HOST_CHARS.fullmatch(host):
            host = "%s:%d" % self.server.server_address[:2]
        return f"{proto}://{host}"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         self.address_string(), fmt % args))

    # --- methods -----------------------------------------------------------------------------

    def do_GET(self):
        self.route("GET")

    def do_HEAD(self):
        self.route("HEAD")

    def do_PUT(self):
        self.route("PUT")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def do_OPTIONS(self):
        self.send_response(204)
        self.send_header("content-length", "0")
        self.send_header("access-control-allow-origin", "*")
        self.send_header("access-control-allow-methods", "GET,HEAD,PUT,OPTIONS")
        requested = self.headers.get("Access-Control-Request-Headers")
        if requested:
            self.send_header("access-control-allow-headers", requested)
        self.send_header("access-control-max-age", "300")
        self.send_header(STANDIN_HEADER, "1")
        self.end_headers()

    def route(self, method):
        url = urlsplit(self.path)
        path = url.path
        if method in ("POST", "PATCH", "DELETE") or (method == "PUT" and not (
                path.startswith("/api/v1/packets/") or path.startswith("/objects/"))):
            if self.body() is None:
                return
        try:
            if path == "/healthcheck" and method in ("GET", "HEAD"):
                self.send(200, {"status": "ok", "service": "trigger.dev webapp stand-in"}, head_only=method == "HEAD")
            elif path.startswith("/api/v1/packets/") and method in ("GET", "PUT"):
                self.packets(method, path[len("/api/v1/packets/"):])
            elif path.startswith("/objects/") and method in ("GET", "HEAD", "PUT"):
                self.object(method, path[len("/objects/"):], url.query)
            else:
                self.not_found(head_only=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a stand-in: report and carry on
            self.log_message("error: %r", e)
            self.close_connection = True
            self.send(500, {"error": "Internal Server Error"})

    def packets(self, method, raw_filename):
        if method == "PUT" and self.body() is None:
            return
        try:
            env = self.standin.authenticate(self.headers)
        except AuthError as e:
            self.send(e.status, {"error": str(e)})
            return
        key = self.standin.object_key(env, raw_filename)
        if key is None:
            self.send(400, {"error": "Params Error", "details": [{"path": ["*"], "message": "invalid file name"}]})
            return
        self.send(200, {"presignedUrl": self.standin.presign(self.origin(), method, key)})

    def object(self, method, raw_key, query):
        key = unquote(raw_key)
        data = None
        if method == "PUT":
            data = self.body()
            if data is None:
                return
        path = self.standin.object_path(key)
        problem = self.standin.check_presigned("GET" if method == "HEAD" else method, key, query)
        if path is None:
            problem = "invalid key"
        if problem:
            self.send(403, {"error": "AccessDenied", "detail": problem}, head_only=method == "HEAD")
            return
        if method == "PUT":
            ctype = (self.headers.get("Content-Type") or "application/octet-stream").strip()
            self.standin.store(key, data, ctype)
            self.send(200, b"", content_type="text/plain")
            return
        try:
            content = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self.send(404, {"error": "NoSuchKey", "key": key}, head_only=method == "HEAD")
            return
        self.send(200, content, content_type=self.standin.content_type(key, path), head_only=method == "HEAD")


def serve(args):
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        sys.exit(f"--listen must be HOST:PORT (got {args.listen!r})")
    psql = args.psql or shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    Path(args.objects).mkdir(parents=True, exist_ok=True)
    Handler.standin = StandIn(args.objects, Database(args.database_url, psql), args.public_url)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    sys.stderr.write(f"webapp stand-in listening on {args.listen} (objects in {args.objects})\n")
    sys.stderr.flush()
    server.serve_forever()


def seed_objects(args):
    root = Path(args.objects)
    path = root / DEMO_OBJECT_KEY
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(demo_payload())
    sidecar = root / ".content-types" / DEMO_OBJECT_KEY
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text("application/json\n")
    print(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve /api/v1/packets and the object URLs")
    s.add_argument("--listen", required=True, help="HOST:PORT")
    s.add_argument("--objects", required=True, help="directory holding the objects")
    s.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                   help="trigger.dev database (default: $DATABASE_URL)")
    s.add_argument("--psql", help="psql binary (default: psql on PATH, else PostgreSQL 15's)")
    s.add_argument("--public-url", help="origin of the presigned URLs (default: the origin the request came through)")
    o = sub.add_parser("seed-objects", help="write the demo seed's offloaded payload")
    o.add_argument("--objects", required=True)
    args = parser.parse_args()
    if args.command == "serve":
        if not args.database_url:
            parser.error("serve needs --database-url or DATABASE_URL")
        serve(args)
    else:
        seed_objects(args)


if __name__ == "__main__":
    main()
