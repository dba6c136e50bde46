"""skiff's egress path with clients we did not write (openai, httpx, curl) against the
OpenAI-compatible stand-in: pass-through of completions and SSE streams, the credential injected
and the handler's stripped, W3C trace context and x-request-id sent upstream, query strings,
hop-by-hop headers, chunked request bodies, unknown routes; judged by what the upstream recorded,
what the client got, skiff's /metrics and its egress log lines."""
import json
import subprocess

import httpx
import openai
import pytest

from conftest import (TRACEPARENT, assert_no_secret, error_of, header, oai, secret_file,
                      wait_until)


@pytest.fixture
def key(uid):
    return f"sk-canary-{uid}-upstream-key"


@pytest.fixture
def proxy(skiff_factory, up, tmp_path, key):
    return skiff_factory({"openai": {"upstream": up.url + "/v1",
                                     "credential": secret_file(tmp_path, key)}})


def test_completion_key_injected_handler_key_stripped(proxy, up, key):
    c = oai(proxy, "openai", api_key="sk-handler-must-not-pass")
    r = c.chat.completions.create(model="gpt-4o-mini",
                                  messages=[{"role": "user", "content": "three word prompt"}])
    assert r.choices[0].message.content.startswith("Hello")
    assert r.usage.prompt_tokens == 3
    (seen,) = up.requests()
    assert (seen["method"], seen["path"]) == ("POST", "/v1/chat/completions")
    assert header(seen, "authorization") == [f"Bearer {key}"]
    assert "sk-handler-must-not-pass" not in json.dumps(seen)
    assert json.loads(seen["body"])["messages"][0]["content"] == "three word prompt"
    assert TRACEPARENT.match(header(seen, "traceparent")[0])

    assert proxy.metric("skiff_egress_requests_total", route="openai", code="200") == 1
    assert proxy.metric("skiff_egress_tokens_total", route="openai", type="input") == 3
    assert proxy.metric("skiff_egress_tokens_total", route="openai",
                        type="output") == r.usage.completion_tokens
    assert proxy.metric("skiff_egress_request_duration_seconds_count", route="openai") == 1
    assert proxy.metric("skiff_egress_in_flight", route="openai") == 0
    (line,) = wait_until(lambda: proxy.egress_lines(), what="the egress log line")
    assert line["route"] == "openai" and line["method"] == "POST"
    assert int(line["status"]) == 200  # numbers: JSON numbers or strings
    assert line["path"].endswith("/chat/completions")
    assert int(line["tokens_in"]) == 3
    assert int(line["tokens_out"]) == r.usage.completion_tokens
    assert int(line["retries"]) == 0
    for field in ("duration_ms", "ttfb_ms", "bytes_in", "bytes_out", "breaker", "trace_id",
                  "span_id"):
        assert field in line, field
    assert line["trace_id"] == TRACEPARENT.match(header(seen, "traceparent")[0]).group(1)
    assert_no_secret(proxy, key, "sk-handler-must-not-pass")


def test_trace_context_and_request_id_forwarded(proxy, up):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = httpx.get(proxy.url + "/openai/models",
                  headers={"traceparent": f"00-{trace_id}-{parent}-01",
                           "x-request-id": "req-egress-1"})
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "gpt-4o-mini"
    (seen,) = up.requests()
    m = TRACEPARENT.match(header(seen, "traceparent")[0])
    assert m.group(1) == trace_id, "the upstream call is in the handler's trace"
    assert m.group(2) != parent, "a CLIENT span of skiff's own is the parent"
    assert header(seen, "x-request-id") == ["req-egress-1"]


def test_query_kept_hop_by_hop_dropped_chunked_body(proxy, up, key):
    r = httpx.get(proxy.url + "/openai/models?limit=2&order=asc",
                  headers={"Proxy-Authorization": "Basic cHJveHk6Y2FuYXJ5",
                           "Keep-Alive": "timeout=5", "X-Custom": "kept"})
    assert r.status_code == 200
    body = {"model": "m", "messages": [{"role": "user", "content": "sent in chunks"}]}
    data = json.dumps(body).encode()

    def chunks():
        yield data[:10]
        yield data[10:]

    r2 = httpx.post(proxy.url + "/openai/chat/completions", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r2.status_code == 200, r2.text
    get, post = up.requests()
    assert get["path"] == "/v1/models?limit=2&order=asc"
    assert header(get, "x-custom") == ["kept"]
    assert not header(get, "proxy-authorization") and not header(get, "keep-alive")
    assert json.loads(post["body"]) == body
    assert header(post, "authorization") == [f"Bearer {key}"]
    lines = wait_until(lambda: len(proxy.egress_lines()) == 2 and proxy.egress_lines(),
                       what="two egress log lines")
    assert lines[0]["path"].endswith("/models"), "the log's path has no query"


def test_keep_alive_many_calls_one_client(proxy, up):
    with httpx.Client(base_url=proxy.url) as c:
        codes = [c.get("/openai/models").status_code for _ in range(20)]
    assert codes == [200] * 20
    assert len(up.requests()) == 20
    assert proxy.metric("skiff_egress_requests_total", route="openai", code="200") == 20


def test_sse_stream_passes_through_as_it_arrives(proxy, up):
    """The upstream holds its stream after two events until the test has read the first one
    through skiff: a proxy that buffered the whole body would never deliver it (the read
    times out). (Only the first: skiff may hold back the last bytes it has, as long as a secret
    could still be completed by the next chunk.) The usage of the last event is counted, the
    TTFB observed."""
    up.queue({"content": "alpha beta gamma", "wait_event": "rest", "wait_at": 2,
              "delay": 0.3})
    stream = oai(proxy, "openai", timeout=30).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}],
        stream=True, stream_options={"include_usage": True})
    it = iter(stream)
    first = next(it)
    assert first.choices[0].delta.role == "assistant"
    up.control(release="rest")
    rest = list(it)
    text = "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text.split() == ["alpha", "beta", "gamma"]
    usage = [c.usage for c in rest if c.usage][0]
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 3)
    wait_until(lambda: proxy.metric("skiff_egress_requests_total", route="openai",
                                    code="200") == 1, what="the stream counted")
    assert proxy.metric("skiff_egress_tokens_total", route="openai", type="input") == 2
    assert proxy.metric("skiff_egress_tokens_total", route="openai", type="output") == 3
    # The upstream waited 0.3 s before its first byte: the TTFB observed cannot be less.
    assert proxy.metric("skiff_egress_ttfb_seconds_count", route="openai") == 1
    assert proxy.metric("skiff_egress_ttfb_seconds_sum", route="openai") >= 0.3
    seen = up.requests()[0]
    assert json.loads(seen["body"])["stream"] is True


def test_sse_raw_with_httpx_is_event_stream(proxy, up):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", proxy.url + "/openai/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x]
    assert lines[-1] == "data: [DONE]"
    assert all(x.startswith("data: ") for x in lines)


def test_credential_in_named_header(skiff_factory, up, tmp_path, uid):
    key = f"canary-{uid}-x-api-key"
    s = skiff_factory({"anthropic": {"upstream": up.url, "credential_header": "x-api-key",
                                     "credential": secret_file(tmp_path, key)}})
    r = httpx.get(s.url + "/anthropic/v1/models",
                  headers={"x-api-key": "handler-x", "Authorization": "Bearer handler-y"})
    assert r.status_code == 200
    (seen,) = up.requests()
    assert seen["path"] == "/v1/models"
    assert header(seen, "x-api-key") == [key]
    assert not header(seen, "authorization")
    assert "handler-x" not in json.dumps(seen) and "handler-y" not in json.dumps(seen)
    assert_no_secret(s, key)


def test_unknown_route_404_json(proxy, up):
    r = httpx.post(proxy.url + "/nope/chat/completions", json={"model": "m"})
    assert r.status_code == 404
    err = error_of(r)
    assert err["type"] == "unknown_route" and err["route"] == "nope"
    assert "nope" in err["message"]
    with pytest.raises(openai.NotFoundError) as e:
        oai(proxy, "missing").models.list()
    assert "unknown_route" in str(e.value) or "missing" in str(e.value)
    out = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}",
                          proxy.url + "/other/x"], capture_output=True, text=True, check=True)
    body, code = out.stdout.rsplit("\n", 1)
    assert code == "404" and json.loads(body)["error"]["type"] == "unknown_route"
    assert up.requests() == []
    assert proxy.metric("skiff_egress_rejections_total", route="",
                        reason="unknown_route") == 3
    assert proxy.metric("skiff_egress_requests_total", route="", code="404") == 3


def test_curl_through_skiff(proxy, up, key):
    out = subprocess.run(["curl", "-sS", "-f", "-H", "Authorization: Bearer from-curl",
                          "-H", "Content-Type: application/json", "-d",
                          '{"model":"m","messages":[{"role":"user","content":"hi"}]}',
                          proxy.url + "/openai/chat/completions"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["object"] == "chat.completion"
    (seen,) = up.requests()
    assert header(seen, "authorization") == [f"Bearer {key}"]
    assert header(seen, "user-agent")[0].startswith("curl/")


def test_client_gone_mid_stream(proxy, up):
    """The handler drops its connection while the upstream still streams: skiff ends the
    call (nothing left in flight), logs it, and goes on serving."""
    up.queue({"content": "one two three four", "wait_event": "go", "wait_at": 2})
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", proxy.url + "/openai/chat/completions", json=body,
                      timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_lines())
    up.control(release="go")
    wait_until(lambda: proxy.metric("skiff_egress_in_flight", route="openai") == 0,
               what="the abandoned call ended")
    wait_until(lambda: proxy.egress_lines(), what="the abandoned call's log line")
    assert httpx.get(proxy.url + "/openai/models").status_code == 200
    assert proxy.proc.poll() is None
