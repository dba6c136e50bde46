"""Per-route limits: requests per minute and tokens per minute (429 with Retry-After), the
concurrency cap with its bounded wait queue (429 when full or when the wait times out). The
upstream's record shows what got through; the metrics count the refusals."""
import json
import threading

import httpx
import openai
import pytest

from conftest import error_of, oai, wait_until

CHAT = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def retry_after(r):
    v = r.headers["retry-after"]
    assert v.isdigit() and int(v) >= 1, v  # whole seconds, rounded up
    return int(v)


def test_requests_per_minute(skiff_factory, up):
    s = skiff_factory({"openai": {"upstream": up.url + "/v1", "requests_per_minute": 2}})
    codes = [httpx.post(s.url + "/openai/chat/completions", json=CHAT) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    err = error_of(codes[2])
    assert err["type"] == "rate_limited" and err["route"] == "openai"
    assert retry_after(codes[2]) <= 60
    assert len(up.requests()) == 2
    assert s.metric("skiff_egress_rejections_total", route="openai", reason="rate_limited") == 1
    # The official client surfaces it as a RateLimitError with skiff's message.
    with pytest.raises(openai.RateLimitError) as e:
        oai(s, "openai").chat.completions.create(**CHAT)
    assert "rate_limited" in str(e.value)
    assert len(up.requests()) == 2


def test_tokens_per_minute_from_reported_usage(skiff_factory, up):
    """The first call is estimated small and let through; the upstream reports 150 tokens of
    usage, which leaves the 100 tokens/min bucket in debt: the next call is refused."""
    s = skiff_factory({"openai": {"upstream": up.url + "/v1", "tokens_per_minute": 100}})
    up.queue({"usage": {"prompt_tokens": 90, "completion_tokens": 60}})
    first = httpx.post(s.url + "/openai/chat/completions", json=CHAT)
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] == 150
    assert s.metric("skiff_egress_tokens_total", route="openai", type="input") == 90
    assert s.metric("skiff_egress_tokens_total", route="openai", type="output") == 60
    second = httpx.post(s.url + "/openai/chat/completions", json=CHAT)
    assert second.status_code == 429
    assert error_of(second)["type"] == "tokens_limited"
    retry_after(second)
    assert len(up.requests()) == 1
    assert s.metric("skiff_egress_rejections_total", route="openai",
                    reason="tokens_limited") == 1


def test_tokens_per_minute_estimate_up_front(skiff_factory, up):
    """A call is charged its estimate (prompt size + max_tokens asked) when it starts: while a
    call asking for 800 tokens is held at the upstream, a call asking for 300 more does not fit
    in the 1000 tokens/min bucket and is refused without reaching the upstream; a call asking
    for more than the whole bucket is refused at once."""
    s = skiff_factory({"openai": {"upstream": up.url + "/v1", "tokens_per_minute": 1000}})
    url = s.url + "/openai/chat/completions"
    up.queue({"wait": "big", "usage": {"prompt_tokens": 3, "completion_tokens": 790}})
    results = {}
    a = post_in_thread(url, results, "a", dict(CHAT, max_tokens=800))
    wait_until(lambda: len(up.requests()) == 1, what="the big call held at the upstream")
    r = httpx.post(url, json=dict(CHAT, max_tokens=300))
    assert r.status_code == 429 and error_of(r)["type"] == "tokens_limited"
    retry_after(r)
    up.control(release="big")
    a.join(60)
    assert results["a"].status_code == 200
    r = httpx.post(url, json=dict(CHAT, max_tokens=5000))
    assert r.status_code == 429 and error_of(r)["type"] == "tokens_limited"
    assert len(up.requests()) == 1
    assert s.metric("skiff_egress_tokens_total", route="openai", type="output") == 790
    assert s.metric("skiff_egress_rejections_total", route="openai",
                    reason="tokens_limited") == 2


def post_in_thread(url, results, key, body=CHAT):
    def run():
        try:
            results[key] = httpx.post(url, json=body, timeout=60)
        except httpx.HTTPError as e:  # recorded, asserted by the test
            results[key] = e
    t = threading.Thread(target=run)
    t.start()
    return t


def test_concurrency_cap_queue_full(skiff_factory, up):
    s = skiff_factory({"openai": {"upstream": up.url + "/v1", "max_concurrent": 1,
                                  "max_queued": 1, "queue_timeout": "30s"}})
    url = s.url + "/openai/chat/completions"
    up.queue({"wait": "first"})
    results = {}
    a = post_in_thread(url, results, "a")
    wait_until(lambda: len(up.requests()) == 1, what="the first call held at the upstream")
    assert s.metric("skiff_egress_in_flight", route="openai") == 1
    b = post_in_thread(url, results, "b")
    wait_until(lambda: s.metric("skiff_egress_queued", route="openai") == 1,
               what="the second call queued")
    c = httpx.post(url, json=CHAT, timeout=30)
    assert c.status_code == 429
    assert error_of(c)["type"] == "concurrency_limited"
    assert len(up.requests()) == 1  # b waits in skiff, not at the upstream
    up.control(release="first")
    a.join(60)
    b.join(60)
    assert results["a"].status_code == 200 and results["b"].status_code == 200
    assert len(up.requests()) == 2
    assert s.metric("skiff_egress_rejections_total", route="openai",
                    reason="concurrency_limited") == 1
    assert s.metric("skiff_egress_queued", route="openai") == 0
    assert s.metric("skiff_egress_in_flight", route="openai") == 0


def test_concurrency_queue_wait_times_out(skiff_factory, up):
    s = skiff_factory({"openai": {"upstream": up.url + "/v1", "max_concurrent": 1,
                                  "max_queued": 4, "queue_timeout": "1s"}})
    url = s.url + "/openai/chat/completions"
    up.queue({"wait": "hold"})
    results = {}
    a = post_in_thread(url, results, "a")
    wait_until(lambda: len(up.requests()) == 1, what="the first call held at the upstream")
    b = httpx.post(url, json=CHAT, timeout=30)  # waits its queue_timeout, then refused
    assert b.status_code == 429 and error_of(b)["type"] == "concurrency_limited"
    up.control(release="hold")
    a.join(60)
    assert results["a"].status_code == 200
    assert len(up.requests()) == 1
    assert json.loads(up.requests()[0]["body"]) == CHAT
