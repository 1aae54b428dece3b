"""Metrics an operator can alert on (docs/OPERATIONS.md, "Health and metrics"): every series exists at 0
on a fresh worker, requests are counted and timed by route, mode and status, base units only, and
every metric the shipped Grafana dashboard and Prometheus alert rules use exists on a worker."""

import json
import re
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from conftest import (
    DEMO_BATCH, DEMO_RUN, METRICS_URLS, REPO_ROOT, ThrowawayWorker, _fcgi_params, _fcgi_record,
    FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_STDIN, fcgi_exchange, headers, wait_until,
)

DEPLOY = REPO_ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
RULE_FILES = sorted(p for p in (DEPLOY / "prometheus").glob("*.yml") if not p.name.endswith(".test.yml"))
# The capturer's rules use its own metrics (tests/integration/test_capture.py checks those on a capturer).
CAPTURE_RULE_FILE = DEPLOY / "prometheus" / "runfeed-capture-alerts.yml"
WORKER_RULE_FILES = [p for p in RULE_FILES if p != CAPTURE_RULE_FILE]
RULE_TESTS = sorted((DEPLOY / "prometheus").glob("*.test.yml"))

ROUTES = ["run", "runs", "batch", "other"]
STATUSES = ["200", "400", "401", "403", "404", "405", "429", "499", "500", "503"]
SUFFIXES = ("_bucket", "_sum", "_count")

# Families a fresh worker must expose, with their type.
EXPECTED_FAMILIES = {
    "runfeed_requests_total": "counter",
    "runfeed_request_duration_seconds": "histogram",
    "runfeed_held_polls": "gauge",
    "runfeed_env_held_polls_max": "gauge",
    "runfeed_live_limit": "gauge",
    "runfeed_wakes_total": "counter",
    "runfeed_backstop_deliveries_total": "counter",
    "runfeed_live_rejections_total": "counter",
    "runfeed_delivery_lag_seconds": "histogram",
    "runfeed_change_records_total": "counter",
    "runfeed_redis_reconnects_total": "counter",
    "runfeed_redis_connected": "gauge",
    "runfeed_redis_subscribed_channels": "gauge",
    "runfeed_cold_resolves_total": "counter",
    "runfeed_gap_reads_total": "counter",
    "runfeed_list_views_total": "counter",
    "runfeed_list_view_store_failures_total": "counter",
    "runfeed_list_answers_total": "counter",
    "runfeed_list_answer_bytes_total": "counter",
    "runfeed_shared_view_commands_total": "counter",
    "runfeed_shared_view_bytes_written_total": "counter",
    "runfeed_confirming_reads_total": "counter",
    "runfeed_runset_resolves_total": "counter",
    "runfeed_runset_truncated_total": "counter",
    "runfeed_list_hydrates_total": "counter",
    "runfeed_membership_queries_total": "counter",
    "runfeed_run_row_reads_total": "counter",
    "runfeed_postgres_queries_total": "counter",
    "runfeed_postgres_errors_total": "counter",
    "runfeed_postgres_query_seconds": "histogram",
    "runfeed_postgres_timeouts_total": "counter",
    "runfeed_postgres_dropped_total": "counter",
    "runfeed_postgres_statements": "gauge",
    "runfeed_postgres_stalled": "gauge",
    "runfeed_postgres_queue_limit": "gauge",
    "runfeed_request_timeouts_total": "counter",
    "runfeed_replica_configured": "gauge",
    "runfeed_replica_up": "gauge",
    "runfeed_replica_lag_seconds": "gauge",
    "runfeed_replica_gate_wait_seconds": "histogram",
    "runfeed_replica_routes_total": "counter",
    "runfeed_replica_fallbacks_total": "counter",
    "runfeed_replica_position_samples_total": "counter",
    "runfeed_clickhouse_queries_total": "counter",
    "runfeed_clickhouse_errors_total": "counter",
    "runfeed_clickhouse_query_seconds": "histogram",
    "runfeed_build_info": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}

# Labelled series whose label values are all known at start-up.
EXPECTED_SERIES = (
    [f'runfeed_requests_total{{route="{r}",mode="{m}",status="{s}"}}' for r in ROUTES for m in ("snapshot", "live")
     for s in STATUSES]
    + [f'runfeed_requests_total{{route="{r}",mode="preflight",status="200"}}' for r in ROUTES]
    + [f'runfeed_request_duration_seconds_count{{route="{r}",mode="{m}"}}' for r in ROUTES
       for m in ("snapshot", "live", "preflight")]
    + [f'runfeed_wakes_total{{kind="{k}",reason="{r}"}}' for k in ("run", "list") for r in ("notify", "backstop", "abort")]
    + [f'runfeed_backstop_deliveries_total{{kind="{k}"}}' for k in ("run", "list")]
    + [f'runfeed_held_polls{{kind="{k}"}}' for k in ("run", "list")]
    + [f'runfeed_live_rejections_total{{reason="{r}"}}' for r in ("limit", "lookup_failed")]
    + [f'runfeed_change_records_total{{result="{r}"}}' for r in ("accepted", "rejected")]
    + [f'runfeed_list_views_total{{source="{s}"}}' for s in ("local", "shared", "unknown")]
    + [f'runfeed_list_answers_total{{view="{v}"}}' for v in ("snapshot", "local", "shared", "unknown", "none")]
    + [f'runfeed_list_answer_bytes_total{{view="{v}"}}' for v in ("snapshot", "local", "shared", "unknown", "none")]
    + [f'runfeed_shared_view_commands_total{{op="{o}"}}' for o in ("load", "save", "save_whole", "touch")]
    + [f'runfeed_runset_resolves_total{{result="{r}"}}' for r in ("hit", "miss", "coalesced")]
    + [f'runfeed_membership_queries_total{{resolver="{r}"}}' for r in ("clickhouse", "postgres")]
    + ['runfeed_gap_reads_total{kind="list",source="cache"}', "runfeed_delivery_lag_seconds_count",
       "runfeed_clickhouse_query_seconds_count", "runfeed_request_timeouts_total", "runfeed_replica_gate_wait_seconds_count"]
    + [f'runfeed_postgres_{m}{{target="{t}"}}' for t in ("primary", "replica")
       for m in ("queries_total", "errors_total", "timeouts_total", "query_seconds_count")]
    + [f'runfeed_postgres_dropped_total{{target="{t}",reason="{r}"}}' for t in ("primary", "replica")
       for r in ("deadline", "client_gone", "queue_full")]
    + [f'runfeed_replica_routes_total{{route="{r}"}}' for r in
       ("replica", "replica_after_wait", "primary_down", "primary_lagging", "primary_timed_out", "primary_gate_off",
        "primary_positions_unknown")]
    + [f'runfeed_replica_fallbacks_total{{reason="{r}"}}' for r in ("miss", "stale", "error", "moving")]
    + [f'runfeed_replica_position_samples_total{{target="{t}"}}' for t in ("primary", "replica")]
)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def exposition(text):
    """(families {name: type}, helps {name}, samples [(name, {labels}, value)]) of a /metrics body."""
    types, helps, samples = {}, set(), []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            samples.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return types, helps, samples


def flat(samples):
    """{'name{a="x",b="y"}': value}, labels in exposition order (as conftest.parse_metrics keys them)."""
    return {name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""): value
            for name, labels, value in samples}


def scrape(url):
    r = requests.get(url, timeout=5)
    assert r.status_code == 200, (url, r.status_code)
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return r.text


def family_of(name, types):
    """The family a sample or a PromQL name belongs to: itself, or a histogram's _bucket/_sum/_count."""
    if name in types:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


# --------------------------------------------------------------------------------------
# A fresh worker
# --------------------------------------------------------------------------------------

def test_a_fresh_worker_exposes_every_series_at_start():
    with ThrowawayWorker("metrics-fresh", {}) as w:
        types, helps, samples = exposition(scrape(w.metrics_url))
    values = flat(samples)

    for name, kind in EXPECTED_FAMILIES.items():
        assert types.get(name) == kind, (name, types.get(name))
    missing = [s for s in EXPECTED_SERIES if s not in values]
    assert not missing, missing
    # No traffic yet: every request, wake and database counter is 0.
    for s in EXPECTED_SERIES:
        if not s.startswith(("runfeed_held_polls", "runfeed_postgres_query_seconds_count")):
            assert values[s] == 0, (s, values[s])

    # Conventions: a HELP and a TYPE line per family, counters end in _total, base units only.
    for name, kind in types.items():
        assert name in helps, f"{name} has no HELP line"
        if kind == "counter":
            assert name.endswith("_total"), name
        assert not re.search(r"_(ms|milliseconds|us|kb|mb)(_|$)", name), f"{name}: not a base unit"
    for name, _, _ in samples:
        assert family_of(name, types), f"sample {name} belongs to no TYPE'd family"

    info = [labels for name, labels, v in samples if name == "runfeed_build_info"]
    assert len(info) == 1 and set(info[0]) == {"version", "revision"}, info
    assert re.fullmatch(r"\d+\.\d+\.\d+", info[0]["version"]) and info[0]["revision"], info
    assert values[f'runfeed_build_info{{version="{info[0]["version"]}",revision="{info[0]["revision"]}"}}'] == 1

    assert values["runfeed_live_limit"] == 100000  # REALTIME_BACKEND_NATIVE_DEFAULT_CONCURRENCY_LIMIT's default
    assert values["runfeed_env_held_polls_max"] == 0
    assert values["process_resident_memory_bytes"] > 1 << 20
    assert values["process_virtual_memory_bytes"] >= values["process_resident_memory_bytes"]
    assert 3 <= values["process_open_fds"] <= values["process_max_fds"]
    assert values["process_start_time_seconds"] > 1.6e9
    assert values["process_cpu_seconds_total"] >= 0


def test_the_limit_gauge_is_zero_without_a_limiter():
    with ThrowawayWorker("metrics-nolimit", {"RUNFEED_CONCURRENCY_LIMIT_ENABLED": "0"}) as w:
        assert w.metrics()["runfeed_live_limit"] == 0


# --------------------------------------------------------------------------------------
# Requests by route, mode and status
# --------------------------------------------------------------------------------------

def fcgi_request(addr, method, path, params=None, **hkw):
    """A FastCGI request as nginx sends it, with any method; returns (payload, FcgiResponse-reader)."""
    query = urllib.parse.urlencode(params or {})
    env = {
        "REQUEST_METHOD": method, "DOCUMENT_URI": path, "REQUEST_URI": path + ("?" + query if query else ""),
        "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
    }
    for k, v in headers(**hkw).items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    payload = _fcgi_record(FCGI_BEGIN_REQUEST, bytes([0, 1, 0, 0, 0, 0, 0, 0]))
    payload += _fcgi_record(FCGI_PARAMS, _fcgi_params(env)) + _fcgi_record(FCGI_PARAMS, b"") + _fcgi_record(FCGI_STDIN, b"")
    s = socket.create_connection(addr, timeout=30)
    return s, payload


def call(addr, method, path, params=None, **hkw):
    s, payload = fcgi_request(addr, method, path, params, **hkw)
    return fcgi_exchange(s, payload)


def requests_counted(values, route, mode, status):
    return values[f'runfeed_requests_total{{route="{route}",mode="{mode}",status="{status}"}}']


def durations(samples, route, mode):
    """(count, buckets [(le, cumulative count)]) of runfeed_request_duration_seconds{route,mode}."""
    count = [v for n, l, v in samples if n == "runfeed_request_duration_seconds_count" and l == {"route": route, "mode": mode}]
    buckets = [(l["le"], v) for n, l, v in samples
               if n == "runfeed_request_duration_seconds_bucket" and l.get("route") == route and l.get("mode") == mode]
    return count[0], buckets


def test_requests_are_counted_and_timed_by_route_mode_and_status():
    """A throwaway worker (no other traffic) answers one request of each kind; each lands in its own series."""
    with ThrowawayWorker("metrics-requests", {}) as w:
        snap = call(w.addr, "GET", f"/realtime/v1/runs/{DEMO_RUN}")
        assert snap.status_code == 200, snap.text
        # A live poll with the snapshot's offset: held until the hold (4 s here) ends, then up-to-date.
        live = call(w.addr, "GET", f"/realtime/v1/runs/{DEMO_RUN}",
                    {"live": "true", "handle": snap.headers["electric-handle"],
                     "offset": snap.headers["electric-offset"], "cursor": "", "log": "full"})
        assert live.status_code == 200, live.text
        assert call(w.addr, "GET", f"/realtime/v1/runs/{DEMO_RUN}", token="tr_dev_NoSuchKey000000000000").status_code == 401
        assert call(w.addr, "GET", f"/realtime/v1/runs/{DEMO_RUN}", {"live": "true"}).status_code == 400
        assert call(w.addr, "GET", "/realtime/v1/runs", {"tags": "metrics-none"}).status_code == 200
        assert call(w.addr, "GET", "/realtime/v1/batches/batch_doesnotexist00").status_code == 404
        assert call(w.addr, "GET", "/realtime/v1/nothing-here").status_code == 404
        assert call(w.addr, "OPTIONS", f"/realtime/v1/batches/{DEMO_BATCH}",
                    extra={"origin": "https://app.example", "access-control-request-method": "GET"}).status_code == 200
        assert call(w.addr, "POST", f"/realtime/v1/runs/{DEMO_RUN}").status_code == 405

        # A client that leaves mid-hold: its poll is answered into a closed connection and counted as 499.
        s, payload = fcgi_request(w.addr, "GET", f"/realtime/v1/runs/{DEMO_RUN}",
                                  {"live": "true", "handle": snap.headers["electric-handle"],
                                   "offset": snap.headers["electric-offset"], "cursor": "", "log": "full"})
        s.sendall(payload)
        wait_until(lambda: w.metrics()['runfeed_held_polls{kind="run"}'] == 1, 10, what="the poll to be held")
        s.close()
        wait_until(lambda: w.metrics()['runfeed_requests_total{route="run",mode="live",status="499"}'] == 1, 10,
                   what="the abandoned poll to be counted as 499")
        _, _, samples = exposition(scrape(w.metrics_url))

    values = flat(samples)
    expected = {
        ("run", "snapshot", "200"): 1, ("run", "live", "200"): 1, ("run", "snapshot", "401"): 1,
        ("run", "live", "400"): 1, ("runs", "snapshot", "200"): 1, ("batch", "snapshot", "404"): 1,
        ("other", "snapshot", "404"): 1, ("batch", "preflight", "200"): 1, ("run", "snapshot", "405"): 1,
        ("run", "live", "499"): 1,
    }
    counted = {(l["route"], l["mode"], l["status"]): v for n, l, v in samples if n == "runfeed_requests_total" and v}
    assert counted == expected, counted
    assert values['runfeed_wakes_total{kind="run",reason="abort"}'] == 1
    assert values['runfeed_wakes_total{kind="run",reason="backstop"}'] == 1
    assert values['runfeed_held_polls{kind="run"}'] == 0

    # Each request is timed in its route and mode; a histogram is cumulative and ends at its count.
    for route in ROUTES:
        for mode in ("snapshot", "live", "preflight"):
            want = sum(v for (r, m, _), v in expected.items() if (r, m) == (route, mode))
            count, buckets = durations(samples, route, mode)
            assert count == want, (route, mode, count)
            assert buckets[-1] == ("+Inf", count), buckets
            assert [v for _, v in buckets] == sorted(v for _, v in buckets), buckets
            assert any(le != "+Inf" and float(le) >= 30 for le, _ in buckets), "live holds need buckets past 30 s"
    # The database histograms moved too, in seconds.
    count = sum(values[f'runfeed_postgres_query_seconds_count{{target="{t}"}}'] for t in ("primary", "replica"))
    total = sum(values[f'runfeed_postgres_query_seconds_sum{{target="{t}"}}'] for t in ("primary", "replica"))
    assert count > 0
    assert 0 < total / count < 5


# --------------------------------------------------------------------------------------
# The shipped dashboard and alert rules
# --------------------------------------------------------------------------------------

PROMQL_NAME = re.compile(r"\b((?:runfeed|process)_[a-zA-Z0-9_]+)\b")
SELECTOR = re.compile(r"\b((?:runfeed|process)_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def dashboard_exprs(node):
    """Every PromQL expression of a Grafana dashboard: panel targets and templating queries."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                out.append(v)
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                out.append(v["query"])
            else:
                out.extend(dashboard_exprs(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(dashboard_exprs(v))
    return out


def rule_exprs(path):
    doc = yaml.safe_load(path.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def all_deploy_exprs():
    exprs = []
    for p in DASHBOARDS:
        exprs += [(p.name, e) for e in dashboard_exprs(json.loads(p.read_text()))]
    for p in WORKER_RULE_FILES:
        exprs += [(p.name, e) for e in rule_exprs(p)]
    return exprs


def test_deploy_files_are_there_and_well_formed():
    assert [p.name for p in DASHBOARDS] == ["runfeed-dashboard.json"]
    assert [p.name for p in RULE_FILES] == ["runfeed-alerts.yml", "runfeed-capture-alerts.yml"]
    assert [p.name for p in RULE_TESTS] == ["runfeed-alerts.test.yml", "runfeed-capture-alerts.test.yml"]
    dash = json.loads(DASHBOARDS[0].read_text())
    assert dash["title"] and dash["uid"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
    names = {r["alert"] for g in yaml.safe_load(WORKER_RULE_FILES[0].read_text())["groups"] for r in g["rules"]}
    # The alerts the operator asked for (docs/OPERATIONS.md lists them).
    assert {"RunfeedNoLiveWakes", "RunfeedBackstopOnlyDelivery", "RunfeedRedisReconnecting", "RunfeedHigh5xxRate",
            "RunfeedHeldPollsNearLimit"} <= names, names
    capture = {r["alert"] for g in yaml.safe_load(CAPTURE_RULE_FILE.read_text())["groups"] for r in g["rules"]}
    # docs/OPERATIONS.md, "Change capture": no capturer streaming, the slot's WAL, the lag, Redis failing.
    assert capture == {"RunfeedCaptureNotStreaming", "RunfeedCaptureSlotHoldsWAL", "RunfeedCaptureLagging",
                       "RunfeedCaptureRedisFailing"}, capture


def test_every_metric_the_dashboard_and_alerts_use_exists_on_a_worker():
    assert METRICS_URLS, "RUNFEED_METRICS_URLS is not set"
    types, _, samples = exposition(scrape(METRICS_URLS[0]))
    labels_of = {}
    for name, labels, _ in samples:
        fam = family_of(name, types)
        for k, v in labels.items():
            labels_of.setdefault(fam, {}).setdefault(k, set()).add(v)
    exprs = all_deploy_exprs()
    assert len(exprs) > 20
    used = set()
    for source, expr in exprs:
        for name in PROMQL_NAME.findall(expr):
            fam = family_of(name, types)
            assert fam, f"{source}: {name} is not exposed by a worker (in: {expr})"
            used.add(fam)
        # Label matchers name labels the family has, and `=` values it takes.
        for name, body in SELECTOR.findall(expr):
            fam = family_of(name, types)
            for label, op, value in MATCHER.findall(body):
                if label in ("job", "instance"):   # added by Prometheus at scrape time
                    continue
                if label == "le" and name.endswith("_bucket"):
                    continue
                assert label in labels_of.get(fam, {}), f"{source}: {fam} has no label {label} (in: {expr})"
                if op == "=" and "$" not in value:
                    assert value in labels_of[fam][label], f"{source}: {fam}{{{label}={value!r}}} never exists"
    # The dashboard shows the families an operator needs.
    for fam in ("runfeed_requests_total", "runfeed_request_duration_seconds", "runfeed_held_polls", "runfeed_wakes_total",
                "runfeed_backstop_deliveries_total", "runfeed_redis_reconnects_total", "runfeed_postgres_query_seconds",
                "runfeed_clickhouse_query_seconds", "process_resident_memory_bytes", "process_open_fds",
                "runfeed_postgres_queries_total", "runfeed_postgres_statements", "runfeed_postgres_stalled",
                "runfeed_replica_lag_seconds", "runfeed_replica_routes_total",
                "process_cpu_seconds_total"):
        assert fam in used, fam


def promtool():
    for candidate in (shutil.which("promtool"), REPO_ROOT / ".runfeed" / "tools" / "promtool"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("promtool is neither on PATH nor in .runfeed/tools/: scripts/deps.sh puts it there")


def test_alert_rules_pass_promtool_and_their_unit_tests():
    tool = promtool()
    for p in RULE_FILES:
        r = subprocess.run([tool, "check", "rules", str(p)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    assert RULE_TESTS, "deploy/prometheus has no rule unit tests"
    for p in RULE_TESTS:
        r = subprocess.run([tool, "test", "rules", p.name], cwd=p.parent, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Each dashboard expression, with Grafana's variables filled in, as a recording rule for promtool to parse."""
    tool = promtool()
    exprs = [e for p in DASHBOARDS for e in dashboard_exprs(json.loads(p.read_text()))]
    filled = []
    for e in exprs:
        if e.startswith("label_values("):   # a Grafana templating function, not PromQL: check its selector
            e = re.sub(r"^label_values\((.*),\s*[a-z_]+\)$", r"\1", e)
        e = e.replace("$__rate_interval", "5m").replace("$job", "runfeed").replace("$instance", ".*")
        filled.append(e)
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr_{i}", "expr": e}
                                                        for i, e in enumerate(filled)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
