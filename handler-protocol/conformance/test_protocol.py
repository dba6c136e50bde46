"""Conformance scenarios written as code: the ones whose timing or state does not fit a
recorded scenario (scenarios/*.json, run by test_recorded.py). Each runs once per
registered SDK against its conformance handler (CONTRACT.md).
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from suite import level
from fake_skiff import Closed, FakeSkiff, encode, make_kafka_task, make_task

JOB_TYPES = {"conf-complete", "conf-none", "conf-raise", "conf-bpmn", "conf-jobfailed",
             "conf-async", "conf-sleep", "conf-big", "conf-extend", "conf-wait-cancel",
             "conf-publish", "conf-produce"}
LEVEL2_JOB_TYPES = {"conf-echo"}
LEVEL3_JOB_TYPES = {"conf-secret", "conf-token"}
TOPICS = {"conf.seen", "conf.ok", "conf.raise", "conf.retry", "conf.retry-default", "conf.dlq",
          "conf.async", "conf.extend", "conf.wait-cancel"}


def now_ms() -> int:
    return int(time.time() * 1000)


def drain_and_exit(conn, proc) -> None:
    conn.send({"type": "drain", "deadline": now_ms() + 10000})
    assert conn.wait_closed(10) == []
    assert proc.wait() == 0, proc.stderr()


def features(reg) -> list:
    """The features a handler of this registration's contract level lists in its hello."""
    return ["cancel", "batch"] if reg["level"] >= 4 else ["cancel"]


def job_types(reg) -> set:
    """The job types a handler of this registration's contract level serves."""
    return (JOB_TYPES | (LEVEL2_JOB_TYPES if reg["level"] >= 2 else set())
            | (LEVEL3_JOB_TYPES if reg["level"] >= 3 else set()))


def test_hello(skiff, spawn, sdk, reg):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    hello = conn.handshake()
    assert hello["version"] == 1
    assert hello["name"] == f"conformance-{sdk}"
    assert hello["capacity"] == 2
    assert isinstance(hello["job_types"], list)
    assert set(hello["job_types"]) == job_types(reg)
    assert isinstance(hello["topics"], list)
    assert set(hello["topics"]) == TOPICS
    assert hello["features"] == features(reg)
    drain_and_exit(conn, proc)


def test_hello_zeebe_only_is_unchanged(skiff, spawn, sdk, reg):
    """A handler without topics sends exactly the v1.1 hello: no topics member."""
    proc = spawn(skiff.path, capacity=3, mode="zeebe")
    conn = skiff.accept()
    hello = conn.handshake()
    assert list(hello) == ["type", "version", "name", "capacity", "job_types", "features"]
    assert hello == {"type": "hello", "version": 1, "name": f"conformance-{sdk}",
                     "capacity": 3, "job_types": hello["job_types"], "features": features(reg)}
    assert set(hello["job_types"]) == job_types(reg)
    drain_and_exit(conn, proc)


def test_hello_topics_only(skiff, spawn, sdk, reg):
    proc = spawn(skiff.path, capacity=2, mode="kafka")
    conn = skiff.accept()
    hello = conn.handshake()
    assert list(hello) == ["type", "version", "name", "capacity", "topics", "features"]
    assert set(hello["topics"]) == TOPICS
    assert hello["features"] == features(reg)
    task = make_kafka_task("conf.ok", {"a": 1})
    assert conn.run_tasks([task])[task["id"]] == {"type": "ack", "id": task["id"]}
    drain_and_exit(conn, proc)


def test_ignores_unknown_members_and_frame_types(skiff, spawn):
    proc = spawn(skiff.path)
    conn = skiff.accept()
    conn.handshake(features=[], future_member={"x": 1})
    conn.send({"type": "future_frame", "payload": 1}, validate=False)
    task = make_task("conf-async", future_member=[1, 2])
    task["zeebe"]["future_member"] = "y"
    r = conn.run_tasks([task])
    assert r[task["id"]]["type"] == "complete"
    drain_and_exit(conn, proc)


def test_frames_split_and_coalesced(skiff, spawn):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    conn.handshake()
    a, b, c = (make_task("conf-complete", {"n": i}) for i in range(3))
    data = encode(a)
    for i in range(0, len(data), 7):  # one frame in many small writes
        conn.send_raw(data[i:i + 7])
        time.sleep(0.001)
    assert conn.expect("complete")["variables"]["doubled"] == 0
    conn.send_raw(encode(b) + encode(c))  # two frames in one write
    got = {f["id"]: f for f in (conn.expect("complete"), conn.expect("complete"))}
    assert got[b["id"]]["variables"]["doubled"] == 2
    assert got[c["id"]]["variables"]["doubled"] == 4
    drain_and_exit(conn, proc)


def test_concurrency_up_to_capacity_and_ping_while_busy(skiff, spawn):
    capacity = 3
    proc = spawn(skiff.path, capacity=capacity)
    conn = skiff.accept()
    conn.handshake()
    pending = [make_task("conf-sleep", {"ms": 400}) for _ in range(3 * capacity)]
    open_ids = set()
    for _ in range(capacity):
        t = pending.pop(0)
        open_ids.add(t["id"])
        conn.send(t)
    conn.send({"type": "ping", "ref": "busy-1"})
    first = conn.recv(timeout=5)
    assert first == {"type": "pong", "ref": "busy-1"}, "pong must not wait for running tasks"

    results = []
    while open_ids:
        f = conn.recv(timeout=10)
        assert f["type"] == "complete", f
        open_ids.remove(f["id"])
        results.append(f["variables"])
        if pending:
            t = pending.pop(0)
            open_ids.add(t["id"])
            conn.send(t)
    assert len(results) == 3 * capacity
    assert all(v["active_at_start"] <= capacity for v in results)
    assert max(v["max_active"] for v in results) == capacity
    drain_and_exit(conn, proc)


def test_drain_finishes_in_flight_then_closes(skiff, spawn):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    conn.handshake()
    tasks = [make_task("conf-sleep", {"ms": 400}) for _ in range(2)]
    for t in tasks:
        conn.send(t)
    conn.send({"type": "drain", "deadline": now_ms() + 10000})
    conn.send({"type": "ping", "ref": "draining"})
    frames = conn.wait_closed(10)
    assert frames[0] == {"type": "pong", "ref": "draining"}
    assert sorted(f["id"] for f in frames[1:]) == sorted(t["id"] for t in tasks)
    assert all(f["type"] == "complete" for f in frames[1:])
    assert proc.wait() == 0, proc.stderr()


def test_drain_when_idle_closes_at_once(skiff, spawn):
    proc = spawn(skiff.path)
    conn = skiff.accept()
    conn.handshake()
    drain_and_exit(conn, proc)


def test_starts_before_skiff_logs_errors_and_reconnects(spawn):
    tmp = tempfile.mkdtemp(prefix="skiff-")
    path = os.path.join(tmp, "late.sock")
    proc = spawn(path)
    time.sleep(0.5)
    assert proc.proc.poll() is None, "handler must wait for skiff, not exit"
    with FakeSkiff(path) as skiff:
        conn = skiff.accept()
        conn.handshake(session="s-1")
        conn.send({"type": "error", "code": "protocol", "message": "conformance test error"})
        conn.close()
        conn = skiff.accept()
        conn.handshake(session="s-2")
        task = make_task("conf-async")
        assert conn.run_tasks([task])[task["id"]]["type"] == "complete"
        drain_and_exit(conn, proc)
    os.rmdir(tmp)
    assert "conformance test error" in proc.stderr()


def test_refused_hello_exits_with_error(skiff, spawn):
    proc = spawn(skiff.path)
    conn = skiff.accept()
    conn.expect("hello")
    conn.send({"type": "error", "code": "unsupported_version", "message": "only v9 here"})
    conn.close()
    assert proc.wait() != 0
    assert "unsupported_version" in proc.stderr()


def test_result_larger_than_max_frame_becomes_fail(spawn):
    with FakeSkiff(max_frame=2000) as skiff:
        proc = spawn(skiff.path, capacity=1)
        conn = skiff.accept()
        conn.handshake()
        task = make_task("conf-big", {"size": 5000})
        result = conn.run_tasks([task])[task["id"]]
        assert result["type"] == "fail"
        assert "max_frame" in result["message"]
        drain_and_exit(conn, proc)


def test_closed_connection_is_seen(skiff, spawn):
    """Sanity check of the fake itself: a killed handler reads as Closed."""
    proc = spawn(skiff.path)
    conn = skiff.accept()
    conn.handshake()
    proc.proc.kill()
    with pytest.raises(Closed):
        conn.recv(timeout=5)


def assert_silent(conn, seconds: float = 0.5) -> None:
    """The handler sends nothing for a while (e.g. no result for a cancelled task)."""
    with pytest.raises(TimeoutError):
        frame = conn.recv(timeout=seconds)
        pytest.fail(f"unexpected frame {frame}")


def test_cancel_stops_task_and_frees_its_slot(skiff, spawn):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    a = make_task("conf-wait-cancel", {"ms": 10000})
    conn.send(a)
    conn.send({"type": "cancel", "id": a["id"], "reason": "deadline"})
    call = conn.expect("call")
    assert call["method"] == "publish_message"
    assert call["params"]["name"] == "cancelled" and call["params"]["correlation_key"] == a["id"]
    # the job saw the cancel and its reason; an extend afterwards fails locally (none is sent)
    assert call["params"]["variables"] == {"cancelled": True, "reason": "deadline",
                                           "extend_error": "cancelled"}
    # a's function still runs (it waits for this reply), yet capacity 1 takes a new task
    b = make_task("conf-complete", {"n": 1})
    conn.send(b)
    assert conn.expect("complete", timeout=5)["id"] == b["id"]
    conn.reply(call["ref"], {"key": "2251799813685400", "tenant_id": "<default>"})
    assert_silent(conn)  # a's function returned: its result must not be sent
    drain_and_exit(conn, proc)


def test_cancel_while_extend_waits(skiff, spawn):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    task = make_task("conf-extend", {"ms": 60000})
    conn.send(task)
    conn.expect("extend")
    # skiff ignores an extend of a task it cancelled: the SDK must not wait for its reply
    conn.send({"type": "cancel", "id": task["id"], "reason": "job_gone"})
    assert_silent(conn)
    drain_and_exit(conn, proc)  # exits only once the job function has returned


PUBLISH_FULL = {"name": "paid", "correlation_key": "order-42", "variables": {"amount": 3},
                "time_to_live_ms": 5000, "message_id": "m-1", "tenant_id": "t-1"}


@pytest.mark.parametrize("via,params,sent", [
    ("task", {"name": "paid"}, {"name": "paid", "correlation_key": "", "time_to_live_ms": 0}),
    ("task", PUBLISH_FULL, PUBLISH_FULL),
    ("handler", PUBLISH_FULL, PUBLISH_FULL),
])
def test_publish_message(skiff, spawn, via, params, sent):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    task = make_task("conf-publish", {"params": params, "via": via})
    conn.send(task)
    call = conn.expect("call")
    assert call["method"] == "publish_message" and call["params"] == sent
    result = {"key": "2251799813685400", "tenant_id": sent.get("tenant_id", "<default>")}
    conn.reply(call["ref"], result)
    assert conn.expect("complete")["variables"] == {"result": result}
    drain_and_exit(conn, proc)


def test_concurrent_calls_with_replies_out_of_order(skiff, spawn):
    proc = spawn(skiff.path, capacity=4)
    conn = skiff.accept()
    conn.handshake()
    pubs = [make_task("conf-publish", {"params": {"name": f"m{i}"}}) for i in range(3)]
    ext = make_task("conf-extend", {"ms": 1000})
    for t in pubs + [ext]:
        conn.send(t)
    requests = [conn.recv() for _ in range(4)]
    assert sorted(f["type"] for f in requests) == ["call", "call", "call", "extend"]
    assert len({f["ref"] for f in requests}) == 4, "refs must be unique"
    for f in reversed(requests):
        if f["type"] == "extend":
            conn.reply(f["ref"], {"deadline": 1732400060000})
        else:
            conn.reply(f["ref"], {"key": f["params"]["name"][1:], "tenant_id": "<default>"})
    results = {f["id"]: f for f in (conn.expect("complete") for _ in range(4))}
    for i, t in enumerate(pubs):
        assert results[t["id"]]["variables"]["result"]["key"] == str(i)
    assert results[ext["id"]]["variables"]["deadline"] == 1732400060000
    drain_and_exit(conn, proc)


def test_fake_skiff_answers_calls_in_run_tasks(skiff, spawn):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    conn.handshake()
    pub = make_task("conf-publish", {"params": {"name": "paid"}, "via": "handler"})
    ext = make_task("conf-extend", {"ms": 60000})
    r = conn.run_tasks([pub, ext])
    assert sorted(f["type"] for f in conn.others) == ["call", "extend"]
    assert r[pub["id"]]["variables"]["result"]["tenant_id"] == "<default>"
    assert r[ext["id"]]["variables"]["deadline"] >= now_ms() + 50000
    drain_and_exit(conn, proc)


@pytest.mark.parametrize("features,methods", [(None, None), (["cancel", "extend"], ["produce"])],
                         ids=["skiff-1.0", "no-publish"])
def test_unsupported_when_welcome_does_not_list_it(skiff, spawn, features, methods):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    conn.handshake(features=features, methods=methods)
    pub = make_task("conf-publish", {"params": {"name": "paid"}})
    ext = make_task("conf-extend", {"ms": 1000})
    r = conn.run_tasks([pub, ext])
    assert r[pub["id"]]["variables"]["error"]["code"] == "unsupported"
    if features is None:
        assert r[ext["id"]]["variables"]["error"]["code"] == "unsupported"
        assert conn.others == [], "nothing may be sent for an unsupported request"
    else:
        assert [f["type"] for f in conn.others] == ["extend"]
    drain_and_exit(conn, proc)


def seen_by_function(task):
    """What conf.seen reports (by producing it) for a Kafka task frame."""
    k = task["kafka"]
    return {
        "id": task["id"], "source": "kafka", "topic": task["topic"], "value": task["value"],
        "attempt": task["attempt"], "deadline": task["deadline"],
        "traceparent": task["traceparent"],
        "record": {"topic": k["topic"], "partition": k["partition"], "offset": k["offset"],
                   "key": k["key"], "key_base64": k.get("key_base64"), "headers": k["headers"],
                   "headers_base64": k.get("headers_base64", {}),
                   "timestamp": k.get("timestamp"), "schema_id": k["schema_id"]},
    }


KAFKA_VALUE = {"policyId": "P-1", "premium": "1200.50", "city": "Zürich \U0001F680",
               "bytes": "\u0000\u00ff", "lines": [{"n": 1, "ok": True, "note": None}],
               "ratio": 0.25, "count": 9007199254740991, "issued": "2024-01-02T03:04:05.123Z"}


def test_kafka_task_reaches_the_function_intact(skiff, spawn):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    full = make_kafka_task("conf.seen", KAFKA_VALUE, key="P-1", attempt=2,
                           headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                                    "city": "Zürich"})
    binary = make_kafka_task("conf.seen", None, key=None)
    binary["kafka"].update(key_base64="/w==", headers_base64={"bin": "AP8="})
    del binary["kafka"]["timestamp"]
    for task in (full, binary):
        conn.send(task)
        call = conn.expect("call")
        assert call["method"] == "produce"
        params = {"topic": "conf.seen.out", "value": seen_by_function(task),
                  "headers": {"seen-by": "conformance"}}
        if task["kafka"]["key"] is not None:
            params["key"] = task["kafka"]["key"]
        assert call["params"] == params
        conn.reply(call["ref"], {"topic": "conf.seen.out", "partition": 0, "offset": 88,
                                 "schema_id": 9})
        assert conn.expect("ack") == {"type": "ack", "id": task["id"]}
    drain_and_exit(conn, proc)


def test_kafka_cancel_sends_no_ack(skiff, spawn):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    a = make_kafka_task("conf.wait-cancel", {"ms": 10000})
    conn.send(a)
    conn.send({"type": "cancel", "id": a["id"], "reason": "deadline"})
    call = conn.expect("call")
    assert call["method"] == "produce" and call["params"] == {
        "topic": "conf.cancelled", "value": {"cancelled": True, "reason": "deadline"}}
    b = make_kafka_task("conf.ok", {})  # the slot is free while a's function still runs
    conn.send(b)
    assert conn.expect("ack", timeout=5)["id"] == b["id"]
    conn.reply(call["ref"], {"topic": "conf.cancelled", "partition": 0, "offset": 1,
                             "schema_id": 1})
    assert_silent(conn)  # a's function returned: its ack must not be sent
    drain_and_exit(conn, proc)


def test_kafka_and_zeebe_tasks_on_one_connection(skiff, spawn):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    conn.handshake()
    z = make_task("conf-async")
    k = make_kafka_task("conf.async", {})
    r = conn.run_tasks([z, k, make_task("conf-none"), make_kafka_task("conf.ok", 1)])
    assert r[z["id"]]["type"] == "complete" and r[k["id"]] == {"type": "ack", "id": k["id"]}
    drain_and_exit(conn, proc)


PRODUCE_FULL = {"topic": "business.policy.indexed.v1", "value": {"policyId": "P-1", "n": None},
                "key": "P-1", "headers": {"source": "conformance", "city": "Zürich"}}
PRODUCE_RESULT = {"topic": "business.policy.indexed.v1", "partition": 2, "offset": 88,
                  "schema_id": 9}


@pytest.mark.parametrize("via,params", [
    ("task", {"topic": "t.v1", "value": None}),
    ("task", {"topic": "t.v1", "value": [1, "two", {"3": 3.5}]}),
    ("task", PRODUCE_FULL),
    ("handler", PRODUCE_FULL),
])
def test_produce(skiff, spawn, via, params):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    task = make_task("conf-produce", {"params": params, "via": via})
    conn.send(task)
    call = conn.expect("call")
    assert call["method"] == "produce" and call["params"] == params
    conn.reply(call["ref"], PRODUCE_RESULT)
    assert conn.expect("complete")["variables"] == {"result": PRODUCE_RESULT}
    drain_and_exit(conn, proc)


def test_produce_unsupported_without_producer(skiff, spawn):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake(methods=["publish_message"])  # skiff without a Kafka producer
    task = make_task("conf-produce", {"params": {"topic": "t.v1", "value": 1}})
    r = conn.run_tasks([task])
    assert r[task["id"]]["variables"]["error"]["code"] == "unsupported"
    assert conn.others == [], "nothing may be sent for an unsupported call"
    drain_and_exit(conn, proc)


def test_fake_skiff_answers_produce_in_run_tasks(skiff, spawn):
    proc = spawn(skiff.path, capacity=2)
    conn = skiff.accept()
    conn.handshake()
    rec = make_kafka_task("conf.seen", {"a": 1})
    job = make_task("conf-produce", {"params": {"topic": "t.v1", "value": 1}, "via": "handler"})
    r = conn.run_tasks([rec, job])
    assert r[rec["id"]] == {"type": "ack", "id": rec["id"]}
    assert r[job["id"]]["variables"]["result"]["topic"] == "t.v1"
    assert sorted(f["params"]["topic"] for f in conn.others) == ["conf.seen.out", "t.v1"]
    drain_and_exit(conn, proc)


@level(2)
def test_structured_error_has_a_stack_into_the_handler(skiff, spawn):
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    task = make_task("conf-raise", {"msg": "deep"})
    error = conn.run_tasks([task])[task["id"]]["error"]
    assert isinstance(error["type"], str) and "boom deep" in error["message"]
    stack = error["stack"]
    assert isinstance(stack, list) and stack, error
    for frame in stack:
        assert set(frame) >= {"file", "line", "function"}, frame
        assert isinstance(frame["file"], str) and isinstance(frame["function"], str), frame
        assert isinstance(frame["line"], int) and not isinstance(frame["line"], bool), frame
        assert frame["line"] >= 0, frame
    assert any("conformance" in f["file"].lower() for f in stack), stack
    drain_and_exit(conn, proc)


def test_reconnects_after_skiff_restarts(spawn):
    """skiff goes away (socket closed and removed) with a task in flight, and comes back
    on the same path: the handler reconnects and serves the new session."""
    tmp = tempfile.mkdtemp(prefix="skiff-")
    path = os.path.join(tmp, "restart.sock")
    skiff = FakeSkiff(path)
    proc = spawn(path, capacity=2)
    conn = skiff.accept()
    conn.handshake(session="before")
    conn.send(make_task("conf-sleep", {"ms": 300}))
    conn.close()
    skiff.close()  # skiff is gone: the socket file too
    time.sleep(0.3)
    assert proc.alive(), "the handler must outlive skiff: " + proc.stderr()
    with FakeSkiff(path) as skiff:
        conn = skiff.accept()
        conn.handshake(session="after")
        a, b = make_task("conf-complete", {"n": 1}), make_kafka_task("conf.ok", {})
        r = conn.run_tasks([a, b])
        assert r[a["id"]]["variables"]["doubled"] == 2 and r[b["id"]]["type"] == "ack"
        drain_and_exit(conn, proc)
    os.rmdir(tmp)


@pytest.mark.parametrize("length", [0, 5 * 1024 * 1024])
def test_broken_framing_closes_and_reconnects(skiff, spawn, length):
    """A length of 0 or above max_frame loses the framing: the SDK closes (it does not
    crash) and comes back on a new connection."""
    proc = spawn(skiff.path, capacity=1)
    conn = skiff.accept()
    conn.handshake()
    conn.send_raw(length.to_bytes(4, "big") + b"{}")
    assert conn.wait_closed(10) == []
    assert proc.alive(), proc.stderr()
    conn = skiff.accept()
    conn.handshake()
    task = make_task("conf-none")
    assert conn.run_tasks([task])[task["id"]]["type"] == "complete"
    drain_and_exit(conn, proc)


@level(4)
def test_batch_tasks_frame_answered_per_item(skiff, spawn):
    """1.4: the tasks of a tasks frame run as if each had come alone (ack, nack, complete,
    an unregistered topic nacked); a bad item (no id) is skipped, the others go on; results
    come alone or in results frames (the fake skiff checks and unpacks them)."""
    proc = spawn(skiff.path, capacity=8)
    conn = skiff.accept()
    hello = conn.handshake()
    assert "batch" in hello["features"]
    ok = [make_kafka_task("conf.ok", {"n": i}) for i in range(4)]
    retry = make_kafka_task("conf.retry", {"ms": 700})
    job = make_task("conf-complete", {"n": 5})
    nope = make_kafka_task("conf.nope", {})
    no_id = {k: v for k, v in make_kafka_task("conf.ok", {}).items() if k != "id"}
    conn.send_tasks(ok[:2] + [no_id, retry, job] + ok[2:] + [nope], validate=False)
    got = {}
    for _ in range(7):
        f = conn.recv(timeout=10)
        assert f["id"] not in got, f"two results for one task: {f}"
        got[f["id"]] = f
    for t in ok:
        assert got[t["id"]] == {"type": "ack", "id": t["id"]}
    assert got[retry["id"]]["type"] == "nack" and got[retry["id"]]["retry_backoff_ms"] == 700
    assert got[job["id"]]["type"] == "complete"
    assert got[job["id"]]["variables"]["doubled"] == 10
    assert got[nope["id"]]["type"] == "nack" and not got[nope["id"]].get("dead_letter")
    conn.send({"type": "ping", "ref": "after-batch"})
    assert conn.recv(timeout=5) == {"type": "pong", "ref": "after-batch"}
    drain_and_exit(conn, proc)


@level(4)
def test_batch_results_only_when_welcome_lists_batch(skiff, spawn):
    """A skiff whose welcome does not list batch never gets a results frame (the fake skiff
    fails on one), even for tasks that finish together."""
    proc = spawn(skiff.path, capacity=8)
    conn = skiff.accept()
    conn.handshake(features=["cancel", "extend"])
    tasks = [make_kafka_task("conf.ok", {"n": i}) for i in range(8)]
    for t in tasks:
        conn.send(t)
    got = {conn.recv(timeout=10)["id"] for _ in tasks}
    assert got == {t["id"] for t in tasks}
    assert conn.results_frames == 0
    drain_and_exit(conn, proc)


@level(4)
def test_batch_results_skiff_refuses_an_item(skiff, spawn):
    """An error frame with an index (a results item skiff refused) does not end the session:
    the handler logs it and goes on serving."""
    proc = spawn(skiff.path, capacity=4)
    conn = skiff.accept()
    conn.handshake()
    conn.send({"type": "error", "code": "unknown_task", "message": "results item: no open "
               "task \"k-9\" on this connection", "id": "k-9", "index": 1})
    tasks = [make_kafka_task("conf.ok", {"n": i}) for i in range(4)]
    r = conn.run_tasks(tasks)
    assert {t["id"]: r[t["id"]]["type"] for t in tasks} == {t["id"]: "ack" for t in tasks}
    drain_and_exit(conn, proc)
