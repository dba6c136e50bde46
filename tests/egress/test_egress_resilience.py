"""Retries (429/503 with Retry-After honoured, only for retryable requests, never once the
response streams), the circuit breaker (open: fast 503 without calling the upstream; half-open
probe; closed again), and the upstream failures skiff names: timeout (504), connect error and a
wrong TLS certificate (502), a connection reset mid-stream."""
import json
import socket

import httpx
import pytest

from conftest import assert_no_secret, error_of, header, oai, secret_file, wait_until

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def route(up, **settings):
    return {"openai": dict({"upstream": up.url + "/v1", "retry_backoff": "50ms"}, **settings)}


def test_retry_on_429_honours_retry_after(skiff_factory, up):
    s = skiff_factory(route(up))
    up.queue({"status": 429, "headers": {"Retry-After": "1"}})
    r = httpx.get(s.url + "/openai/models", timeout=30)
    assert r.status_code == 200
    first, second = up.requests()
    # Retry-After: 1, not the route's 50 ms backoff (a timer may fire a little early against
    # the upstream's wall clock: 0.9 s still tells the two apart).
    assert second["time"] - first["time"] >= 0.9, "Retry-After: 1 was not waited for"
    assert s.metric("skiff_egress_retries_total", route="openai") == 1
    assert s.metric("skiff_egress_requests_total", route="openai", code="200") == 1
    (line,) = wait_until(lambda: s.egress_lines(), what="the egress log line")
    assert int(line["retries"]) == 1


def test_retry_post_with_idempotency_key_on_503(skiff_factory, up):
    s = skiff_factory(route(up))
    up.queue({"status": 503}, {"status": 503})
    r = oai(s, "openai").chat.completions.with_raw_response.create(
        **CHAT, extra_headers={"Idempotency-Key": "idem-42"})
    assert r.http_response.status_code == 200
    seen = up.requests()
    assert len(seen) == 3
    assert [header(x, "idempotency-key") for x in seen] == [["idem-42"]] * 3
    assert all(json.loads(x["body"]) == CHAT for x in seen)
    assert s.metric("skiff_egress_retries_total", route="openai") == 2


def test_plain_post_not_retried(skiff_factory, up):
    s = skiff_factory(route(up))
    up.queue({"status": 503, "body": {"error": {"message": "upstream busy", "type": "x"}}})
    r = httpx.post(s.url + "/openai/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "upstream busy"  # the upstream's own answer
    assert len(up.requests()) == 1
    assert s.metric("skiff_egress_retries_total", route="openai") == 0
    assert s.metric("skiff_egress_requests_total", route="openai", code="503") == 1


def test_retries_exhausted_and_4xx_not_retried(skiff_factory, up):
    s = skiff_factory(route(up, retries=2))
    up.queue({"status": 502}, {"status": 504}, {"status": 503}, {"status": 400})
    r = httpx.get(s.url + "/openai/models", timeout=30)
    assert r.status_code == 503 and len(up.requests()) == 3
    r = httpx.get(s.url + "/openai/models", timeout=30)
    assert r.status_code == 400 and len(up.requests()) == 4


def test_no_retry_once_streaming_started(skiff_factory, up):
    s = skiff_factory(route(up, retry_post="true"))
    up.queue({"reset_after": 2, "content": "a b c d e f"})
    body = dict(CHAT, stream=True)
    got = b""
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", s.url + "/openai/chat/completions", json=body,
                          timeout=30) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                got += chunk
    assert b"[DONE]" not in got
    assert len(up.requests()) == 1
    assert s.metric("skiff_egress_retries_total", route="openai") == 0
    # skiff itself is unaffected.
    assert httpx.get(s.url + "/openai/models", timeout=30).status_code == 200


def test_breaker_opens_fails_fast_half_opens_and_closes(skiff_factory, up):
    s = skiff_factory(route(up, retries=0, breaker_consecutive_failures=3,
                            breaker_open_time="1s"))
    url = s.url + "/openai/models"
    up.control(default={"status": 500})
    assert [httpx.get(url).status_code for _ in range(3)] == [500, 500, 500]
    r = httpx.get(url)
    assert r.status_code == 503
    err = error_of(r)
    assert err["type"] == "circuit_open" and err["route"] == "openai"
    assert int(r.headers["retry-after"]) >= 1
    assert len(up.requests()) == 3, "an open breaker does not call the upstream"
    assert s.metric("skiff_egress_breaker_state", route="openai") == 1
    assert s.metric("skiff_egress_breaker_transitions_total", route="openai", to="open") == 1
    assert s.metric("skiff_egress_rejections_total", route="openai", reason="circuit_open") == 1

    # After open_time one probe goes through; it fails: open again at once.
    wait_until(lambda: httpx.get(url).status_code == 500, timeout=30,
               what="the half-open probe reaching the failing upstream")
    assert len(up.requests()) == 4
    assert s.metric("skiff_egress_breaker_transitions_total", route="openai",
                    to="half_open") >= 1
    assert s.metric("skiff_egress_breaker_transitions_total", route="openai", to="open") == 2
    r = httpx.get(url)
    assert r.status_code == 503 and error_of(r)["type"] == "circuit_open"

    # The upstream recovers: the next probe succeeds and the breaker closes.
    up.control(default=None)
    wait_until(lambda: httpx.get(url).status_code == 200, timeout=30,
               what="a successful probe")
    assert s.metric("skiff_egress_breaker_state", route="openai") == 0
    assert s.metric("skiff_egress_breaker_transitions_total", route="openai", to="closed") == 1
    assert [httpx.get(url).status_code for _ in range(3)] == [200, 200, 200]
    _, ready = s.admin("/readyz")
    assert "openai" in ready  # breaker state in readiness details


def test_breaker_ignores_4xx_and_429(skiff_factory, up):
    s = skiff_factory(route(up, retries=0, breaker_consecutive_failures=2))
    up.queue(*[{"status": 404}, {"status": 429}, {"status": 400}] * 2)
    codes = [httpx.get(s.url + "/openai/models").status_code for _ in range(6)]
    assert codes == [404, 429, 400] * 2
    assert httpx.get(s.url + "/openai/models").status_code == 200
    assert s.metric("skiff_egress_breaker_state", route="openai") == 0


def test_upstream_hang_is_504(skiff_factory, up, tmp_path, uid):
    key = f"sk-canary-{uid}-hang"
    s = skiff_factory(route(up, retries=0, ttfb_timeout="1s",
                            credential=secret_file(tmp_path, key)))
    up.queue({"hang": True})
    r = httpx.get(s.url + "/openai/models", timeout=30)
    assert r.status_code == 504
    err = error_of(r)
    assert err["type"] == "upstream_timeout" and err["route"] == "openai"
    assert s.metric("skiff_egress_requests_total", route="openai", code="504") == 1
    assert httpx.get(s.url + "/openai/models", timeout=30).status_code == 200
    line = wait_until(lambda: [x for x in s.egress_lines() if int(x["status"]) == 504],
                      what="the 504's log line")[0]
    assert line["level"] == "warn", "5xx calls are logged at WARN"
    assert_no_secret(s, key, extra=[r.text, str(r.headers)])


def test_upstream_unreachable_is_502(skiff_factory):
    with socket.socket() as hole:  # bound, never listening: connection refused
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
        s = skiff_factory({"openai": {"upstream": f"http://127.0.0.1:{port}/v1", "retries": 1,
                                      "retry_backoff": "50ms"}})
        r = httpx.get(s.url + "/openai/models", timeout=30)
    assert r.status_code == 502
    assert error_of(r)["type"] == "upstream_unreachable"
    assert s.metric("skiff_egress_retries_total", route="openai") == 1


def test_upstream_tls_verified_and_wrong_certificate(skiff_factory, tup, certs, tmp_path, uid):
    key = f"sk-canary-{uid}-tls"
    s = skiff_factory({
        "good": {"upstream": tup.url + "/v1", "ca_file": str(certs / "ca.pem")},
        "bad": {"upstream": tup.url + "/v1", "ca_file": str(certs / "other-ca.pem"),
                "retries": 0, "credential": secret_file(tmp_path, key)}})
    r = oai(s, "good").chat.completions.create(**CHAT)
    assert r.choices[0].message.content
    assert [x["tls"] for x in tup.requests()] == [True]
    chunks = list(oai(s, "good").chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens > 0  # SSE over TLS, usage event included
    tup.reset()
    # Same upstream address, another CA: the connection the good route verified and keeps
    # open must not serve the bad route (its CA does not trust that certificate).
    bad = httpx.get(s.url + "/bad/models", timeout=30)
    assert bad.status_code == 502, "a connection verified with another route's CA was reused"
    err = error_of(bad)
    assert err["type"] == "upstream_unreachable" and err["route"] == "bad"
    assert "certificate" in err["message"].lower(), err["message"]
    assert tup.requests() == [], "nothing sent over an unverified connection"
    assert s.metric("skiff_egress_requests_total", route="bad", code="502") == 1
    assert_no_secret(s, key, extra=[bad.text])
