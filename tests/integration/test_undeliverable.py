"""Job content skiff must deliver as it is, and job content it cannot deliver, on the real
broker, judged by the engine's record stream.

U+0000 in a string variable is valid JSON (RFC 8259): the job reaches the SDK handler, which
echoes the variables back, and the engine records the very same strings. (A BPMN model cannot
hold U+0000 in a custom header, XML 1.0 forbids the character: the unit tests cover that.)

A job whose task frame would exceed handler.max_frame never reaches a handler: skiff fails it
with a message that names the problem, logs it with the job key and counts it; once its
retries are spent the engine raises an incident carrying that message."""
import json

from bpmn import service_task
from conftest import wait_until
import zeebe_client

NUL_VARIABLES = {
    "s": "a\u0000b",
    "only": "\u0000",
    "edges": "\u0000x\u0000",
    "nested": {"list": ["p\u0000q", 1, {"t": "\u0000\u0000"}]},
    "plain": "no nul here",
}


def deploy(tmp_path, pid, job_type, **kw):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type, **kw))
    zeebe_client.deploy(str(path))


def test_nul_in_variables_round_trips(stack, tmp_path, uid):
    job_type, pid = f"it-nul-{uid}", f"p-nul-{uid}"
    deploy(tmp_path, pid, job_type)
    skiff = stack.skiff([job_type])
    stack.handler(skiff, [job_type], behave="echo")
    result = zeebe_client.create_instance_with_result(pid, NUL_VARIABLES, timeout_s=30)
    key = result["processInstanceKey"]
    assert result["variables"]["echo"] == NUL_VARIABLES, json.dumps(result["variables"])
    # The engine's own records: the job completed with the echo, and the variable it holds.
    done = wait_until(lambda: stack.find("JOB", "COMPLETED", processInstanceKey=key),
                      what="job completed")
    assert done["value"]["variables"]["echo"] == NUL_VARIABLES, json.dumps(done["value"])
    echo = wait_until(lambda: stack.find("VARIABLE", "CREATED", processInstanceKey=key,
                                         name="echo"), what="variable echo created")
    assert json.loads(echo["value"]["value"]) == NUL_VARIABLES, echo["value"]["value"]
    assert skiff.metric("skiff_zeebe_jobs_total", job_type=job_type, outcome="completed") == 1
    assert skiff.metric("skiff_tasks_undeliverable_total") == 0
    assert not stack.find_all("JOB", "FAILED", processInstanceKey=key)


def test_oversized_job_fails_to_incident(stack, tmp_path, uid):
    job_type, pid = f"it-big-{uid}", f"p-big-{uid}"
    deploy(tmp_path, pid, job_type, retries=2)
    skiff = stack.skiff([job_type], handler_max_frame="1KiB")
    handler_log = tmp_path / "seen.log"
    stack.handler(skiff, [job_type], log=str(handler_log))
    key = zeebe_client.create_instance(pid, {"blob": "x" * 4000})["processInstanceKey"]
    incident = wait_until(lambda: stack.find("INCIDENT", "CREATED", processInstanceKey=key),
                          timeout=60, what="incident")
    message = incident["value"]["errorMessage"]
    assert "exceeds handler.max_frame (1024 bytes)" in message, message
    failed = stack.find_all("JOB", "FAILED", processInstanceKey=key)
    assert [r["value"]["retries"] for r in failed] == [1, 0]
    assert not handler_log.exists() or not handler_log.read_text().strip(), "job delivered"
    job_key = str(failed[0]["key"])
    lines = [json.loads(line) for line in skiff.logs().splitlines() if line.startswith("{")]
    warned = [e for e in lines if e.get("job_key") == job_key and e.get("level") == "warn"
              and e.get("reason") == "too_large"]
    assert len(warned) == 2, skiff.logs()[-3000:]
    assert skiff.metric("skiff_tasks_undeliverable_total", source="zeebe", route=job_type,
                        reason="too_large") == 2
    wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=job_type,
                                    outcome="undeliverable") == 2, what="fails acknowledged")
