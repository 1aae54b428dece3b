"""The demo page (demo/, served by the stack's nginx at /demo/) in a real browser.

Headless Chromium loads the page for a run and a tag of this test's own, over HTTP and over HTTPS at
once; the page subscribes with the Electric protocol (snapshot, then held live polls). The test then
changes the run in PostgreSQL, publishes its change record while the page is subscribed, and reads the
DOM until both tables of both pages show the new status.

The browser is driven over the DevTools protocol: `--remote-debugging-port=0` (the port is read back from
DevToolsActivePort) and a minimal RFC 6455 websocket client on the standard library. `--dump-dom` with a
virtual-time budget cannot be used: a held long-poll keeps the page's network busy, so virtual time never
reaches its budget.

Chromium is a dependency (scripts/deps.sh installs Debian's `chromium`): when it is missing this test fails.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (API_KEY, BASE_URL, ENV_ID, HTTPS_URL, STATE_DIR, ch_sync, jwt_claims, make_run, mint_jwt,
                      publish, touch, unique_tag, wait_until)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STEP_TIMEOUT = 10  # seconds for each observable step (page subscribed, change shown)


class DevTools:
    """A DevTools-protocol session over one websocket to the browser endpoint (flattened target sessions)."""

    def __init__(self, ws_url, timeout=10):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split(" ")[1] == "101", lines[0]
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert fields.get("sec-websocket-accept") == accept, "bad Sec-WebSocket-Accept"
        self.next_id = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _recv_message(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0xA:  # pong
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            parts.append(data)
            if b0 & 0x80:  # FIN
                return json.loads(b"".join(parts).decode())

    def call(self, method, params=None, session=None, timeout=10):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._send_frame(0x1, json.dumps(msg).encode())
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            reply = self._recv_message()  # events are skipped
            if reply.get("id") == mid:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if time.monotonic() > deadline:
                raise TimeoutError(method)

    def open_page(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.navigate", {"url": url}, session=session)
        return session

    def evaluate(self, session, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page exception: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, session, path):
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=session, timeout=20)["data"]
        Path(path).write_bytes(base64.b64decode(data))


@pytest.fixture
def browser():
    if not CHROMIUM:
        pytest.fail("chromium not found on PATH: the demo-page test needs it (scripts/deps.sh installs `chromium`)")
    profile = tempfile.mkdtemp(prefix="runfeed-chromium-")
    log = open(os.path.join(profile, "chromium.log"), "wb")
    args = [CHROMIUM, "--headless", "--disable-gpu", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            "--no-first-run", "--no-default-browser-check", "--ignore-certificate-errors", "--window-size=1200,900",
            "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    devtools = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"

        def ready():
            assert proc.poll() is None, "chromium exited: " + Path(log.name).read_text(errors="replace")[-2000:]
            return port_file.exists() and len(port_file.read_text().split("\n")) >= 2 and port_file.read_text()

        port, path = wait_until(ready, 20, 0.05, "chromium's DevToolsActivePort").split("\n")[:2]
        devtools = DevTools(f"ws://127.0.0.1:{port}{path}")
        devtools.call("Security.setIgnoreCertificateErrors", {"ignore": True})  # the stack's self-signed cert
        yield devtools
    finally:
        if devtools:
            try:
                devtools.call("Browser.close", timeout=5)
            except (OSError, RuntimeError, ConnectionError, TimeoutError):
                pass
            devtools.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def page_state(devtools, session, friendly_id):
    """What both tables of a page show for the run, plus the feeds' protocol state."""
    expr = """(() => {
      const fid = %s;
      const out = {};
      for (const name of ['run', 'tag']) {
        const panel = document.getElementById(name + '-feed');
        const tr = panel && panel.querySelector('tbody tr[data-run="' + fid + '"]');
        const feed = window.runfeedDemo && window.runfeedDemo.feeds[name];
        out[name] = {
          state: panel ? panel.dataset.state : null,
          status: tr ? tr.dataset.status : null,
          statusText: tr ? tr.querySelector('.status').textContent : null,
          updatedText: tr ? tr.querySelector('[data-col=updatedAt]').textContent : null,
          stats: feed ? feed.stats : null,
          detail: feed ? feed.detail : null,
        };
      }
      const feed = window.runfeedDemo && window.runfeedDemo.feeds.run;
      const row = feed && feed.rowsArray()[0];
      out.row = row ? {costInCents: row.costInCents, runTags: row.runTags, isTest: row.isTest,
                       number: row.number, updatedAt: row.updatedAt} : null;
      return out;
    })()""" % json.dumps(friendly_id)
    return devtools.evaluate(session, expr)


def test_demo_page_shows_a_published_change_live(browser):
    tag = unique_tag("browser")
    run = make_run(status="PENDING", tags=[tag, "browser-demo"], number=7)
    ch_sync(ENV_ID)  # tag membership comes from ClickHouse when the stack runs it
    # A public access token, as a browser would hold: this run and this tag only.
    token = mint_jwt(jwt_claims(scopes=[f"read:runs:{run.friendly_id}", f"read:tags:{tag}"]), API_KEY)
    query = urllib.parse.urlencode({"key": token, "run": run.friendly_id, "tag": tag, "createdAt": "1h"})
    pages = {"http": BASE_URL + "/demo/?" + query, "https": HTTPS_URL + "/demo/?" + query}
    sessions = {scheme: browser.open_page(url) for scheme, url in pages.items()}
    states = {}

    def shows(status):
        ok = True
        for scheme, session in sessions.items():
            st = page_state(browser, session, run.friendly_id)
            states[scheme] = st
            for feed in ("run", "tag"):
                assert st[feed]["state"] != "error", (scheme, feed, st[feed])
                ok = ok and st[feed]["state"] == "live" and st[feed]["status"] == status \
                    and st[feed]["statusText"] == status
        return ok

    try:
        # 1. Subscribed: the snapshot is shown and both feeds are in live mode (a poll is held).
        wait_until(lambda: shows("PENDING"), STEP_TIMEOUT, 0.1, "both pages to show the snapshot (PENDING)")
        before = {s: {f: dict(states[s][f]["stats"]) for f in ("run", "tag")} for s in sessions}
        for st in states.values():
            # Values were parsed with electric-schema: float8 and int4 as numbers, text[] as an array, bool.
            assert st["row"]["number"] == 7 and st["row"]["isTest"] is False, st["row"]
            assert st["row"]["runTags"] == [tag, "browser-demo"], st["row"]

        # 2. The change, made while the pages are subscribed, and its change record. Pub/sub is
        #    fire-and-forget, so the record is repeated until the pages show the change (harmless).
        t0 = time.monotonic()
        touch(run, "EXECUTING", costInCents=1.5)

        def changed():
            publish(ENV_ID, run.id, tags=[tag, "browser-demo"])
            return shows("EXECUTING")

        wait_until(changed, STEP_TIMEOUT, 0.25, "both pages to show the published change (EXECUTING)")
        latency = time.monotonic() - t0

        # 3. It arrived on the live polls (no new snapshot), and the row was merged with its new values.
        for scheme, st in states.items():
            assert st["row"]["costInCents"] == 1.5, (scheme, st["row"])
            for feed in ("run", "tag"):
                stats = st[feed]["stats"]
                assert stats["snapshots"] == before[scheme][feed]["snapshots"] == 1, (scheme, feed, stats)
                assert stats["liveResponses"] > before[scheme][feed]["liveResponses"], (scheme, feed, stats)
        print(f"change shown on both pages after {latency:.2f}s; states: {json.dumps(states)}")
    finally:
        # Kept next to the stack's logs: what the page looked like at the end (or at a failure).
        shots = STATE_DIR / "log"
        if shots.is_dir():
            for scheme, session in sessions.items():
                try:
                    browser.screenshot(session, shots / f"browser-demo-{scheme}.png")
                except (OSError, RuntimeError, ConnectionError, TimeoutError):
                    pass
