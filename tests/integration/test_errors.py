"""Errors, query validation, CORS on errors and the OPTIONS preflight."""

import json

import pytest
import requests

from conftest import (
    API_KEY, BASE_URL, DEMO_RUN, UP_TO_DATE_BODY, expected_body, get, headers, jwt_claims, make_run, mint_jwt, run_url,
)

ORIGIN = "https://app.example.com"


def raw_query(run_fid, query, **kw):
    return requests.get(run_url(run_fid) + "?" + query, headers=headers(**kw), timeout=10)


def assert_query_error(r, param):
    assert r.status_code == 400, r.text
    assert r.headers.get("content-type") == "application/json"
    body = r.json()
    assert body["error"] == "Query Error"
    assert isinstance(body["details"], list) and body["details"]
    assert any(param in d.get("path", []) for d in body["details"]), body
    assert "electric-handle" not in r.headers


# nginx sends only runfeed's routes (/realtime/v1/runs[/…], /realtime/v1/batches[/…]) to runfeed; other paths
# reach the webapp (test_webapp_front.py).
@pytest.mark.parametrize("path", ["/realtime/v1/batches", "/realtime/v1/runs/a/b", "/realtime/v1/batches/a/b",
                                  "/realtime/v1/runs/run%20x"])
def test_unknown_route_is_json_404(path):
    r = requests.get(BASE_URL + path, headers=headers(), timeout=10)
    assert r.status_code == 404
    assert r.text == '{"error":"Not found"}'
    assert r.headers.get("content-type") == "application/json"


@pytest.mark.parametrize("offset", ["abc", "1_", "_1", "1", "1_2_3", "1.5_2", "99999999999999999999_1"])
def test_malformed_offset(offset):
    r = get(run_url(DEMO_RUN), params={"offset": offset, "handle": "run-x"})
    assert_query_error(r, "offset")


@pytest.mark.parametrize("handle", ["run-abc!x", "run x", "run/x", "run-é", "h" * 201, 'run-"x"'])
def test_malformed_handle(handle):
    r = get(run_url(DEMO_RUN), params={"offset": "1_1", "handle": handle})
    assert_query_error(r, "handle")


@pytest.mark.parametrize("value", ["maybe", "TRUE", "1", "yes"])
def test_malformed_live(value):
    r = get(run_url(DEMO_RUN), params={"offset": "1_1", "handle": "run-x", "live": value})
    assert_query_error(r, "live")


def test_several_bad_params_are_all_reported():
    r = get(run_url(DEMO_RUN), params={"offset": "abc", "handle": "a b", "live": "maybe"})
    assert r.status_code == 400
    paths = {p for d in r.json()["details"] for p in d["path"]}
    assert {"offset", "handle", "live"} <= paths


def test_authentication_comes_before_query_validation():
    r = get(run_url(DEMO_RUN), params={"offset": "abc"}, token=None)
    assert (r.status_code, r.text) == (401, '{"error":"Invalid or Missing API key"}')


def test_query_validation_comes_before_the_run_lookup():
    r = get(run_url("run_doesnotexist000"), params={"offset": "abc"})
    assert_query_error(r, "offset")


def test_unknown_and_ignored_params():
    r = raw_query(DEMO_RUN, "log=full&expired_handle=x&cursor=5&foo=bar&table=secrets&where=1%3D1&columns=id")
    assert r.status_code == 200, r.text
    assert r.text == expected_body(DEMO_RUN, "insert")


def test_ignored_params_on_catch_up():
    run = make_run()
    snap = get(run_url(run.friendly_id))
    r = get(run_url(run.friendly_id), params={"offset": snap.headers["electric-offset"], "handle": run.handle,
                                               "log": "full", "expired_handle": "old", "cursor": "12"})
    assert r.status_code == 200
    assert r.text == UP_TO_DATE_BODY


def test_first_occurrence_of_a_param_wins():
    run = make_run()
    snap = get(run_url(run.friendly_id))
    r = raw_query(run.friendly_id, f"offset={snap.headers['electric-offset']}&handle={run.handle}&offset=abc")
    assert r.status_code == 200
    assert r.text == UP_TO_DATE_BODY


# ---- CORS on errors -----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["401", "404", "400", "403", "route"])
def test_errors_echo_origin_with_vary(case):
    extra = {"Origin": ORIGIN}
    if case == "401":
        r = get(run_url(DEMO_RUN), token="tr_dev_NotAKey0123456789abc", extra=extra)
    elif case == "404":
        r = get(run_url("run_doesnotexist000"), extra=extra)
    elif case == "400":
        r = get(run_url(DEMO_RUN), params={"offset": "abc"}, extra=extra)
    elif case == "403":
        r = get(run_url(DEMO_RUN), token=mint_jwt(jwt_claims(scopes=[]), API_KEY), extra=extra)
    else:
        r = requests.get(BASE_URL + "/realtime/v1/runs/a/b", headers=headers(extra=extra), timeout=10)
    assert r.status_code >= 400
    assert r.headers.get("access-control-allow-origin") == ORIGIN
    assert r.headers.get("vary") == "Origin"
    assert r.headers.get("access-control-expose-headers") == "x-trigger-jwt,x-trigger-jwt-claims"
    json.loads(r.text)


def test_errors_without_origin_carry_no_cors_headers():
    r = get(run_url("run_doesnotexist000"))
    assert r.status_code == 404
    for h in ("access-control-allow-origin", "vary", "access-control-expose-headers"):
        assert h not in r.headers, h


def test_success_responses_use_the_wildcard_even_with_an_origin():
    r = get(run_url(DEMO_RUN), extra={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-expose-headers"] == "*"


@pytest.mark.parametrize("bad_origin", ["https://app.example.com\x0b", "https://\x0bapp.example.com", "https://app.example.com/path",
                                        "https://a.example, https://b.example", "https://app\x01.example"])
def test_invalid_origin_is_not_echoed(bad_origin):
    """Only a syntactically valid origin (scheme://host[:port], printable ASCII, or `null`) is echoed; anything
    else (here through nginx) gets no CORS allow-origin header at all."""
    r = get(run_url("run_doesnotexist000"), extra={"Origin": bad_origin})
    assert r.status_code == 404
    for h in ("access-control-allow-origin", "vary", "access-control-expose-headers"):
        assert h not in r.headers, (h, r.headers.get(h))
    p = requests.options(run_url(DEMO_RUN), timeout=10, headers={
        "Origin": bad_origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert p.status_code == 200 and p.text == "{}"
    assert not [h for h in p.headers if h.lower().startswith("access-control-")], dict(p.headers)


def test_null_origin_is_echoed():
    r = get(run_url("run_doesnotexist000"), extra={"Origin": "null"})
    assert r.status_code == 404
    assert r.headers.get("access-control-allow-origin") == "null"
    assert r.headers.get("vary") == "Origin"


# ---- OPTIONS --------------------------------------------------------------------------------

def test_options_preflight_needs_no_auth():
    req_headers = "authorization,x-trigger-electric-version,x-trigger-branch"
    r = requests.options(run_url(DEMO_RUN), timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": req_headers})
    assert r.status_code == 200
    assert r.text == "{}"
    assert r.headers["access-control-allow-methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
    assert r.headers["access-control-allow-headers"] == req_headers
    assert r.headers["access-control-max-age"] == "300"
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in [v.strip() for v in r.headers["vary"].split(",")]


def test_options_without_origin_answers_without_cors_headers():
    # With no Origin there are no CORS headers at all; the preflight still answers 200 {}.
    r = requests.options(run_url(DEMO_RUN), timeout=10, headers={"Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 200
    assert r.text == "{}"
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]


def test_options_without_origin_sends_no_allow_origin():
    r = requests.options(run_url(DEMO_RUN), timeout=10)
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    assert "vary" not in r.headers


@pytest.mark.parametrize("path", ["/realtime/v1/runs/run_doesnotexist000", "/realtime/v1/runs", "/realtime/v1/batches/batch_x"])
def test_options_on_any_realtime_route(path):
    r = requests.options(BASE_URL + path, timeout=10, headers={"Origin": ORIGIN, "Authorization": "Bearer nonsense"})
    assert r.status_code == 200
    assert r.text == "{}"
    assert r.headers["access-control-allow-methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
    assert r.headers["access-control-max-age"] == "300"
