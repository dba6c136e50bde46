"""The stand-in itself (devstack/llm_upstream.py), checked with the official clients of what it
imitates: the `openai` Python client parses its completions, streams and errors, and httpx sees
the wire details the egress tests rely on (chunked SSE, Retry-After, reset mid-stream, HTTPS)."""
import json
import ssl

import httpx
import openai
import pytest

from conftest import header, wait_until


def client(u, **kw):
    return openai.OpenAI(base_url=u.url + "/v1", api_key="sk-standin-check", max_retries=0, **kw)


def test_openai_client_completion_and_models(up):
    c = client(up)
    r = c.chat.completions.create(model="gpt-4o-mini",
                                  messages=[{"role": "user", "content": "say hello please"}])
    assert r.choices[0].message.content.startswith("Hello")
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert [m.id for m in c.models.list()] == ["gpt-4o-mini", "skiff-test-model"]
    seen = up.requests()
    assert [(s["method"], s["path"]) for s in seen] == [("POST", "/v1/chat/completions"),
                                                        ("GET", "/v1/models")]
    assert header(seen[0], "authorization") == ["Bearer sk-standin-check"]
    assert json.loads(seen[0]["body"])["messages"][0]["content"] == "say hello please"


def test_openai_client_stream_with_usage(up):
    up.queue({"content": "one two three", "echo": "canary-echo"})
    stream = client(up).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text.split() == ["one", "two", "three", "canary-echo"]
    assert usage.completion_tokens == 4 and usage.prompt_tokens == 1


def test_echo_split_across_events(up):
    """echo_events: the openai client reassembles the echo; the raw stream never holds it."""
    up.queue({"content": "a b", "echo": "canary-echo-events"})
    up.queue({"content": "a b", "echo": "canary-echo-events", "echo_events": True})
    stream = client(up).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True)
    whole = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with client(up).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
            stream=True) as r:
        raw = b"".join(r.iter_bytes())
    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in raw.decode().split("\n\n")
                   if line.startswith("data: {") and json.loads(line[6:])["choices"])
    assert whole == text == "a b canary-echo-events "
    assert b"canary-echo-events" not in raw and b'"canary-ec"' in raw


def test_openai_client_sees_errors(up):
    up.queue({"status": 429, "headers": {"Retry-After": "7"}},
             {"status": 503, "body": {"error": {"message": "overloaded", "type": "x"}}})
    with pytest.raises(openai.RateLimitError) as e:
        client(up).models.list()
    assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError, match="overloaded"):
        client(up).models.list()


def test_httpx_stream_is_chunked_sse_and_reset(up):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", up.url + "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(e[6:]) for e in events[:-1])  # not asked for
    up.queue({"reset_after": 2})
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", up.url + "/v1/chat/completions", json=body) as r:
            for _ in r.iter_bytes():
                pass


def test_httpx_slow_first_byte_and_hang(up):
    up.queue({"delay": 0.3}, {"hang": True})
    assert httpx.get(up.url + "/v1/models", timeout=5).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(up.url + "/v1/models", timeout=httpx.Timeout(5, read=0.5))
    assert len(up.requests()) == 2


def test_https_with_the_devstack_ca(tup, certs):
    ca = ssl.create_default_context(cafile=certs / "ca.pem")
    c = openai.OpenAI(base_url=tup.url + "/v1", api_key="sk-x", max_retries=0,
                      http_client=httpx.Client(verify=ca))
    assert c.models.list().data[0].id == "gpt-4o-mini"
    assert tup.requests()[0]["tls"] is True
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=tup.url + "/v1", api_key="sk-x", max_retries=0,
                      http_client=httpx.Client(verify=ssl.create_default_context(
                          cafile=certs / "other-ca.pem"))).models.list()


def test_gates_hold_answers_and_stream_events(up):
    import threading
    up.queue({"wait": "g1"},
             {"wait_event": "g2", "wait_at": 2, "content": "a b", "echo": "SECRETX",
              "echo_split": True})
    got = {}
    t = threading.Thread(target=lambda: got.update(r=httpx.get(up.url + "/v1/models",
                                                                timeout=30)))
    t.start()
    wait_until(lambda: len(up.requests()) == 1, what="the held request recorded")
    assert "r" not in got
    up.control(release="g1")
    t.join(30)
    assert got["r"].status_code == 200
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", up.url + "/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        first = [next(lines) for _ in range(4)]  # two events held back are not needed
        assert first[0].startswith("data: ") and first[2].startswith("data: ")
        up.control(release="g2")
        rest = list(lines)
    deltas = [json.loads(x[6:])["choices"][0]["delta"].get("content", "")
              for x in first + rest if x.startswith("data: {") and '"choices": [{' in x]
    assert deltas[-2:] == ["SECRETX ", ""]  # whole once reassembled (sent in two writes)
