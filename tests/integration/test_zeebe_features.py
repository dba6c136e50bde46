"""Job streaming, UpdateJobTimeout (extend), the deadline `cancel` and publish_message, end to
end through the real broker, judged by the engine's records. Most tests speak the protocol
frame by frame (raw_handler.py); the last ones go through the Python SDK."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpmn import HEAD, service_task
from conftest import wait_until
from raw_handler import RawHandler
import zeebe_client

SDK_HANDLER = Path(__file__).resolve().parent / "handlers" / "sdk_features.py"


@pytest.fixture
def sdk_handler():
    """Starts handlers/sdk_features.py processes; stops them after the test."""
    procs = []

    def start(skiff, job_types, **env):
        e = dict(os.environ, SKIFF_SOCKET=skiff.socket, JOB_TYPES=",".join(job_types))
        e.update({k.upper(): str(v) for k, v in env.items()})
        log = open(skiff.tmp / "sdk-handler.log", "ab")
        procs.append((subprocess.Popen([sys.executable, str(SDK_HANDLER)], env=e, stdout=log,
                                       stderr=log), log))

    yield start
    for p, log in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


def deploy(tmp_path, pid, xml):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(xml)
    zeebe_client.deploy(str(path))


def message_catch(pid, message, job_type):
    """start -> service task (job_type) -> message catch (correlation key = orderId) -> end."""
    return HEAD.format(pid=pid) + f"""  <bpmn:message id="msg-{pid}" name="{message}">
    <bpmn:extensionElements><zeebe:subscription correlationKey="=orderId" /></bpmn:extensionElements>
  </bpmn:message>
  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="work"><bpmn:extensionElements><zeebe:taskDefinition type="{job_type}" />
      </bpmn:extensionElements><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing><bpmn:messageEventDefinition messageRef="msg-{pid}" />
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="done"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="wait" />
    <bpmn:sequenceFlow id="f3" sourceRef="wait" targetRef="done" />
  </bpmn:process>
</bpmn:definitions>
"""


def completed(stack, pik):
    return stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=pik,
                      bpmnElementType="PROCESS")


def run_one(stack, h, pid):
    """Creates an instance and completes its job; returns the instance key."""
    pik = zeebe_client.create_instance(pid)["processInstanceKey"]
    t = h.task()
    h.send({"type": "complete", "id": t["id"], "variables": {"seen": True}})
    wait_until(lambda: completed(stack, pik), what=f"instance {pik} completed")
    return pik


def test_streamed_jobs_reach_the_handler(stack, tmp_path, uid):
    """With zeebe.streaming the gateway pushes each job as it is created. The stream is
    registered with the broker shortly after skiff opens it (jobs created before that come by
    long polling), so instances are created one by one until one is streamed; from then on
    every job is."""
    job_type, pid = f"it-stream-{uid}", f"p-stream-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type], zeebe_streaming="true")
    h = RawHandler(skiff.socket, [job_type], capacity=8)
    wait_until(lambda: skiff.metric("skiff_zeebe_job_streams_open", job_type=job_type) == 1,
               what="job stream open")
    streamed = lambda: skiff.metric("skiff_zeebe_streamed_jobs_total", job_type=job_type)
    wait_until(lambda: run_one(stack, h, pid) and streamed() >= 1, what="a streamed job")
    before = streamed()
    for _ in range(5):
        run_one(stack, h, pid)
    assert streamed() == before + 5
    total = skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="activated")
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="completed") == total
    h.close()


def test_saturated_handler_closes_the_stream_and_loses_nothing(stack, tmp_path, uid):
    """A handler of capacity 1 that holds its task: skiff never gives it a second one (it pauses
    the stream and gives back what still arrives), and every job completes, none waiting for its
    timeout, once the handler works again."""
    job_type, pid = f"it-sat-{uid}", f"p-sat-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type], zeebe_streaming="true", zeebe_job_timeout="10m")
    h = RawHandler(skiff.socket, [job_type], capacity=1)
    wait_until(lambda: skiff.metric("skiff_zeebe_job_streams_open", job_type=job_type) == 1,
               what="job stream open")
    keys = [zeebe_client.create_instance(pid)["processInstanceKey"] for _ in range(4)]
    first = h.task()
    assert h.recv(2.0, types=("task",)) is None, "a second task beyond capacity 1"
    # jobs delivered beyond the free credit (stream and long poll racing) are given back
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_in_flight", job_type=job_type) == 1,
               what="only the handler's job held")
    h.send({"type": "complete", "id": first["id"]})
    for _ in range(3):
        t = h.task()
        h.send({"type": "complete", "id": t["id"]})
    for k in keys:  # well before the 10 min job timeout
        wait_until(lambda: completed(stack, k), what=f"instance {k} completed")
    yielded = skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="yielded")
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="completed") == 4
    assert len(stack.find_all("JOB", "FAILED", type=job_type)) == yielded
    h.close()


def test_extend_moves_the_deadline_in_the_engine(stack, tmp_path, uid):
    """A job with a 3 s timeout, extended to 60 s, completes after 5 s without timing out."""
    job_type, pid = f"it-extend-{uid}", f"p-extend-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type], zeebe_job_timeout="3s")
    h = RawHandler(skiff.socket, [job_type])
    assert "extend" in h.welcome.get("features", [])
    pik = zeebe_client.create_instance(pid)["processInstanceKey"]
    t = h.task()
    h.send({"type": "extend", "id": t["id"], "timeout_ms": 60000, "ref": "x1"})
    r = h.reply("x1")
    assert r["ok"], r
    assert r["result"]["deadline"] > t["deadline"] + 50000
    job_key = int(t["zeebe"]["key"])
    updated = wait_until(lambda: stack.find("JOB", "TIMEOUT_UPDATED", processInstanceKey=pik),
                         what="TIMEOUT_UPDATED record")
    assert updated["key"] == job_key
    assert h.recv(5.0, types=("task", "cancel")) is None  # 2 s past the old deadline
    h.send({"type": "complete", "id": t["id"]})
    wait_until(lambda: completed(stack, pik), what="instance completed")
    assert not stack.find("JOB", "TIMED_OUT", processInstanceKey=pik)
    assert skiff.metric("skiff_zeebe_jobs_overdue_total", job_type=job_type) == 0
    h.close()


def test_extend_of_a_gone_job_answers_not_found_and_cancels(stack, tmp_path, uid):
    """The instance is cancelled while the handler works: extend answers not_found and the
    handler is told the task is gone."""
    job_type, pid = f"it-gone-{uid}", f"p-gone-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type])
    h = RawHandler(skiff.socket, [job_type])
    pik = zeebe_client.create_instance(pid)["processInstanceKey"]
    t = h.task()
    zeebe_client.cancel_instance(pik)
    wait_until(lambda: stack.find("JOB", "CANCELED", processInstanceKey=pik), what="job cancelled")
    h.send({"type": "extend", "id": t["id"], "timeout_ms": 60000, "ref": "x2"})
    r = h.reply("x2")
    assert not r["ok"] and r["error"]["code"] == "not_found", r
    c = h.recv(5.0, types=("cancel",))
    assert c == {"type": "cancel", "id": t["id"], "reason": "job_gone"}
    # a late result for a cancelled task is ignored, the connection stays up
    h.send({"type": "complete", "id": t["id"]})
    h.send({"type": "ping", "ref": "still-there"})
    assert h.recv(5.0, types=("pong",))["ref"] == "still-there"
    assert skiff.metric("skiff_tasks_cancelled_total", reason="job_gone") == 1
    h.close()


def test_deadline_passed_cancels_the_task_and_the_job_comes_back(stack, tmp_path, uid):
    """A handler keeps a job past its 2 s timeout: skiff tells it to stop (cancel, reason
    deadline), the engine times the job out and hands it out again, and the second delivery
    completes the instance."""
    job_type, pid = f"it-late-{uid}", f"p-late-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type], zeebe_job_timeout="2s")
    h = RawHandler(skiff.socket, [job_type])
    pik = zeebe_client.create_instance(pid)["processInstanceKey"]
    first = h.task()
    c = h.recv(10.0, types=("cancel",))
    assert c == {"type": "cancel", "id": first["id"], "reason": "deadline"}
    again = h.task(timeout=30.0)
    assert again["id"] == first["id"]  # the same job, activated a second time
    h.send({"type": "complete", "id": again["id"]})
    wait_until(lambda: completed(stack, pik), what="instance completed")
    assert stack.find("JOB", "TIMED_OUT", processInstanceKey=pik)
    assert skiff.metric("skiff_zeebe_jobs_overdue_total", job_type=job_type) == 1
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="timed_out") == 1
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="completed") == 1
    h.close()


def test_publish_message_correlates_to_a_waiting_instance(stack, tmp_path, uid):
    """The handler of the first task publishes the message its own instance then waits for."""
    job_type, pid, message = f"it-pub-{uid}", f"p-pub-{uid}", f"paid-{uid}"
    deploy(tmp_path, pid, message_catch(pid, message, job_type))
    skiff = stack.skiff([job_type])
    h = RawHandler(skiff.socket, [job_type])
    assert "publish_message" in h.welcome.get("methods", [])
    order = f"order-{uid}"
    pik = zeebe_client.create_instance(pid, {"orderId": order})["processInstanceKey"]
    t = h.task()
    h.send({"type": "complete", "id": t["id"]})
    wait_until(lambda: stack.find("PROCESS_MESSAGE_SUBSCRIPTION", "CREATED",
                                  processInstanceKey=pik), what="message subscription")
    r = h.call("publish_message", {"name": message, "correlation_key": order,
                                   "variables": {"amount": 42}, "time_to_live_ms": 60000,
                                   "message_id": f"m-{uid}"}, ref="p1")
    assert r["ok"], r
    published = stack.find("MESSAGE", "PUBLISHED", name=message)
    assert published and str(published["key"]) == r["result"]["key"]
    wait_until(lambda: completed(stack, pik), what="instance completed after the message")
    assert stack.find("VARIABLE", "CREATED", processInstanceKey=pik, name="amount")["value"][
        "value"] == "42"
    # the same message id again: the engine refuses it, skiff says so
    r = h.call("publish_message", {"name": message, "correlation_key": order,
                                   "time_to_live_ms": 60000, "message_id": f"m-{uid}"}, ref="p2")
    assert not r["ok"] and r["error"]["code"] == "already_exists", r
    # bad params never reach the gateway
    r = h.call("publish_message", {"name": "", "correlation_key": order}, ref="p3")
    assert not r["ok"] and r["error"]["code"] == "invalid_params", r
    r = h.call("publish_message", {"name": message, "variables": [1]}, ref="p4")
    assert not r["ok"] and r["error"]["code"] == "invalid_params", r
    assert skiff.metric("skiff_zeebe_gateway_requests_total", method="PublishMessage") == 2
    h.close()


def test_sdk_handler_slower_than_the_job_timeout_extends_and_completes(stack, sdk_handler,
                                                                       tmp_path, uid):
    """A handler that needs 4 s for jobs with a 2 s timeout extends them first: each job is
    completed once, none times out, no other worker could have taken them."""
    job_type, pid = f"it-sdkext-{uid}", f"p-sdkext-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type], zeebe_job_timeout="2s")
    sdk_handler(skiff, [job_type], feature="extend", extend_ms=30000, sleep=4)
    piks = [zeebe_client.create_instance(pid)["processInstanceKey"] for _ in range(2)]
    for pik in piks:
        wait_until(lambda: completed(stack, pik), timeout=60, what=f"instance {pik} completed")
        assert stack.find("JOB", "TIMEOUT_UPDATED", processInstanceKey=pik)
        assert not stack.find("JOB", "TIMED_OUT", processInstanceKey=pik)
        assert len(stack.find_all("JOB", "COMPLETED", processInstanceKey=pik)) == 1
    assert skiff.metric("skiff_zeebe_jobs_overdue_total", job_type=job_type) == 0


def test_sdk_handler_told_to_stop_when_the_deadline_passes(stack, sdk_handler, tmp_path, uid):
    """An SDK handler that never finishes: its task is cancelled at the job deadline, its credit
    comes back, and the engine hands the job out again (here: to the same handler, again)."""
    job_type, pid = f"it-sdkcancel-{uid}", f"p-sdkcancel-{uid}"
    deploy(tmp_path, pid, service_task(pid, job_type))
    skiff = stack.skiff([job_type], zeebe_job_timeout="2s")
    log = tmp_path / "cancelled.log"
    sdk_handler(skiff, [job_type], feature="cancel", capacity=1, log=log)
    pik = zeebe_client.create_instance(pid)["processInstanceKey"]
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, timeout=60,
               what="two cancellations")
    job_key = stack.find("JOB", "CREATED", processInstanceKey=pik)["key"]
    assert log.read_text().splitlines()[:2] == [f"z-{job_key} deadline"] * 2
    wait_until(lambda: len(stack.find_all("JOB", "TIMED_OUT", processInstanceKey=pik)) >= 2,
               what="the engine timed the job out twice")
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="timed_out") >= 2
    zeebe_client.cancel_instance(pik)


def test_sdk_handler_publishes_a_message(stack, sdk_handler, tmp_path, uid):
    job_type, pid, message = f"it-sdkpub-{uid}", f"p-sdkpub-{uid}", f"paid-{uid}"
    deploy(tmp_path, pid, message_catch(pid, message, job_type))
    skiff = stack.skiff([job_type])
    sdk_handler(skiff, [job_type], feature="publish", message=message)
    pik = zeebe_client.create_instance(pid, {"orderId": f"o-{uid}"})["processInstanceKey"]
    wait_until(lambda: completed(stack, pik), timeout=60, what="instance completed")
    assert stack.find("PROCESS_MESSAGE_SUBSCRIPTION", "CORRELATED", processInstanceKey=pik)
    assert stack.find("VARIABLE", "CREATED", processInstanceKey=pik, name="paid")
