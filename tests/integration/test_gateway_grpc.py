"""skiff's own gRPC client (sidecar/src/grpc) against the Zeebe gateway itself (grpc-java).

The conformance suite in sidecar/tests/grpc runs the client against grpcio and grpc-js; this
module runs it against the server skiff really talks to. Each test runs one case of the C probe
sidecar/tests/grpc/gateway_probe (built with skiff, same sanitizers) and judges it by what the
engine did, read from its record stream, and by Camunda's own client (zbctl), not only by what
the probe printed.
"""
import json
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bpmn import service_task
from conftest import SKIFF_BIN
import records as zrecords
import zeebe_client

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def _find_probe() -> Path:
    """gateway_probe from the build that made $SKIFF_BIN (CMake puts it in
    <build>/sidecar/tests/grpc/); $SKIFF_GATEWAY_PROBE overrides."""
    explicit = os.environ.get("SKIFF_GATEWAY_PROBE")
    if explicit:
        return Path(explicit)
    build = Path(SKIFF_BIN).resolve().parent
    for cand in (build / "sidecar" / "tests" / "grpc" / "gateway_probe",
                 build / "gateway_probe"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return build / "sidecar" / "tests" / "grpc" / "gateway_probe"


PROBE = _find_probe()


@pytest.fixture(scope="module")
def probe_bin():
    if not (PROBE.is_file() and os.access(PROBE, os.X_OK)):
        pytest.fail(f"{PROBE} not found: build the gateway_probe target in the build directory "
                    f"of SKIFF_BIN ({SKIFF_BIN}), or set SKIFF_GATEWAY_PROBE")
    return PROBE


def _command(broker, case, args):
    return [str(PROBE), "--target", broker["ZEEBE_ADDRESS"], "--case", case,
            *[str(a) for a in args]]


def _result(case, rc, out, err):
    for mark in SANITIZER_MARKS:
        assert mark not in err, f"sanitizer report from gateway_probe ({case}):\n{err[-4000:]}"
    assert rc == 0, f"gateway_probe {case} exited {rc}\nstdout: {out}\nstderr: {err[-4000:]}"
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"gateway_probe {case}: expected one JSON line, got:\n{out}"
    return json.loads(lines[0])


def probe(broker, case, *args, timeout=90):
    """Runs one probe case to the end; returns its JSON result."""
    p = subprocess.run(_command(broker, case, args), capture_output=True, text=True,
                       timeout=timeout)
    return _result(case, p.returncode, p.stdout, p.stderr)


class BackgroundProbe:
    """A probe case running while the test drives the engine; its stderr notes
    ("gateway_probe: cancelled", ...) say when the moment has come."""

    def __init__(self, broker, case, *args):
        self.case = case
        self.proc = subprocess.Popen(_command(broker, case, args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.err = []
        self.lines = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_note(self, note, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"gateway_probe {self.case}: no '{note}' within {timeout}s")
            if line is None:
                raise AssertionError(f"gateway_probe {self.case} ended before '{note}':\n"
                                     + "".join(self.err))
            if line == f"gateway_probe: {note}":
                return

    def result(self, timeout=90):
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        self.pump.join(timeout=10)
        self.proc.stderr.close()
        return _result(self.case, rc, out, "".join(self.err))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def background(broker):
    started = []

    def start(case, *args):
        bp = BackgroundProbe(broker, case, *args)
        started.append(bp)
        return bp

    yield start
    for bp in started:
        bp.stop()


def deploy(tmp_path, pid, job_type):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type))
    zeebe_client.deploy(str(path))


def create_job(pid, variables, since):
    """Starts an instance; returns the engine's JOB CREATED record for its service task."""
    pik = zeebe_client.create_instance(pid, variables)["processInstanceKey"]
    return zrecords.wait_for(value_type="JOB", intent="CREATED", processInstanceKey=pik,
                             since_offset=since, timeout=15)


def activations(job_type, worker, since=0):
    """The engine's JOB_BATCH ACTIVATED events for this type and worker."""
    return zrecords.records(value_type="JOB_BATCH", intent="ACTIVATED", type=job_type,
                            worker=worker, since_offset=since)


def compact_json_len(value):
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# ---- unary ----

def test_topology(broker, probe_bin):
    r = probe(broker, "topology")
    assert r["code"] == "OK" and r["message"] == "" and r["messages"] == 1
    assert r["connects"] == 1
    topo = r["topology"]
    # The same facts as Camunda's own client (zbctl, grpc-go) sees.
    status = zeebe_client.status()
    assert f"Gateway version: {topo['gatewayVersion']}\n" in status
    assert f"Cluster size: {topo['clusterSize']}\n" in status
    assert f"Partitions count: {topo['partitionsCount']}\n" in status
    assert f"Replication factor: {topo['replicationFactor']}\n" in status
    assert len(topo["brokers"]) == topo["clusterSize"] == 1
    b = topo["brokers"][0]
    assert f"Broker {b['nodeId']} - {b['host']}:{b['port']}\n" in status
    assert f"    Version: {b['version']}\n" in status
    assert b["partitions"] == topo["partitionsCount"]
    assert topo["gatewayVersion"] == b["version"]


def test_complete_unknown_job_is_not_found_trailers_only(broker, probe_bin):
    """The gateway's rejection comes as a trailers-only response (one HEADERS frame with
    END_STREAM carrying grpc-status and grpc-message); the message is the engine's rejection."""
    mark = zrecords.end_offset()
    # Key 1 belongs to partition 0 (key >> 51), which never exists: the gateway itself answers
    # UNAVAILABLE and the broker never sees the command.
    r1 = probe(broker, "not_found", "--job-key", 1)
    assert r1["code"] == "UNAVAILABLE", r1
    assert "partition 0" in r1["message"]
    # A key on partition 1 that no job has: the engine rejects the command.
    key = (1 << 52) - 1
    r = probe(broker, "not_found", "--job-key", key)
    assert r["code"] == "NOT_FOUND", r
    assert r["messages"] == 0
    rej = zrecords.wait_for(value_type="JOB", intent="COMPLETE", record_type="COMMAND_REJECTION",
                            key=key, since_offset=mark, timeout=15)
    assert rej["rejectionType"] == "NOT_FOUND"
    assert r["message"] == (f"Command 'COMPLETE' rejected with code 'NOT_FOUND': "
                            f"{rej['rejectionReason']}")
    # Records are exported in order: nothing for key 1 came before that rejection.
    assert not zrecords.records(value_type="JOB", key=1, since_offset=mark)


# ---- server streaming: ActivateJobs ----

def test_activate_returns_the_engines_jobs(broker, probe_bin, tmp_path, uid):
    job_type, pid, worker = f"gw-act-{uid}", f"p-gw-act-{uid}", f"gw-act-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    sent = {}
    for i in range(3):
        variables = {"i": i, "text": "x" * (10 * i), "nested": {"list": [1, 2, i]}}
        created = create_job(pid, variables, mark)
        sent[created["key"]] = (created, variables)
    r = probe(broker, "activate", "--type", job_type, "--worker", worker, "--max-jobs", 3,
              "--job-timeout-ms", 60000)
    assert r["code"] == "OK", r
    assert r["messages"] >= 1
    jobs = {j["key"]: j for j in r["jobs"]}
    assert len(r["jobs"]) == 3 and set(jobs) == set(sent)
    for key, job in jobs.items():
        created, variables = sent[key]
        assert job["type"] == job_type and job["worker"] == worker
        assert job["processInstanceKey"] == created["value"]["processInstanceKey"]
        assert job["elementId"] == created["value"]["elementId"] == "work"
        assert job["bpmnProcessId"] == pid
        assert job["retries"] == created["value"]["retries"] == 3
        assert job["variables"] == variables
        assert job["variables_len"] == compact_json_len(variables)
    # The engine activated exactly these jobs for this worker, with these deadlines.
    batches = [b for b in activations(job_type, worker, mark) if b["value"]["jobKeys"]]
    assert len(batches) == 1
    value = batches[0]["value"]
    assert set(value["jobKeys"]) == set(sent)
    for key, rec_job in zip(value["jobKeys"], value["jobs"]):
        assert jobs[key]["deadline"] == rec_job["deadline"]
        assert rec_job["worker"] == worker


def test_long_poll_delivers_a_job_created_later(broker, probe_bin, background, tmp_path, uid):
    """Control for the cancel/deadline tests: a parked long poll does take a job that appears
    while it waits, so a poll that failed to go away would have swallowed the job there."""
    job_type, pid, worker = f"gw-poll-{uid}", f"p-gw-poll-{uid}", f"gw-poll-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    bp = background("activate", "--type", job_type, "--worker", worker,
                    "--request-timeout-ms", 20000)
    # The poll reached the engine (an empty batch) and is now parked in the gateway.
    zrecords.wait_for(value_type="JOB_BATCH", intent="ACTIVATED", type=job_type, worker=worker,
                      since_offset=mark, timeout=15)
    t0 = time.monotonic()
    created = create_job(pid, {"late": True}, mark)
    r = bp.result(timeout=60)
    assert r["code"] == "OK", r
    assert [j["key"] for j in r["jobs"]] == [created["key"]]
    assert r["jobs"][0]["variables"] == {"late": True}
    assert time.monotonic() - t0 < 15, "answered at requestTimeout, not when the job appeared"
    batches = [b["value"]["jobKeys"] for b in activations(job_type, worker, mark)]
    assert batches[0] == [] and [k for k in batches if k] == [[created["key"]]], batches


@pytest.mark.parametrize("case,note", [("cancel", "cancelled"),
                                       ("deadline", "closed DEADLINE_EXCEEDED")])
def test_abandoned_long_poll_does_not_take_jobs(broker, probe_bin, background, tmp_path, uid,
                                                case, note):
    """A long poll we cancel (RST_STREAM CANCEL, no on_close) or whose deadline passes
    (DEADLINE_EXCEEDED, RST_STREAM CANCEL) is dropped by the gateway: a job created while the
    probe keeps its connection open goes to the next poll, not to the abandoned one."""
    job_type, pid = f"gw-{case}-{uid}", f"p-gw-{case}-{uid}"
    dead_worker, check_worker = f"gw-{case}-dead-{uid}", f"gw-{case}-check-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    # requestTimeout: cancel 20 s, deadline 10 s (call timeout 300 ms); linger keeps the
    # connection open after the cancel / deadline while the job is created and taken.
    bp = background(case, "--type", job_type, "--worker", dead_worker, "--linger-ms", 6000)
    zrecords.wait_for(value_type="JOB_BATCH", intent="ACTIVATED", type=job_type,
                      worker=dead_worker, since_offset=mark, timeout=15)
    bp.wait_note(note)
    created = create_job(pid, {"case": case}, mark)
    time.sleep(1.0)  # a live parked poll takes a new job within tens of ms (see the control)
    check = probe(broker, "activate", "--type", job_type, "--worker", check_worker,
                  "--request-timeout-ms", 2000)
    assert check["code"] == "OK", check
    assert [j["key"] for j in check["jobs"]] == [created["key"]]
    r = bp.result(timeout=60)
    assert r["messages"] == 0 and r["jobs"] == []
    if case == "cancel":
        assert r["cancelled"] is True
        assert r["code"] is None  # no on_close after sk_grpc_call_cancel
        assert r["closes_after_cancel"] == 0
        assert 250 <= r["elapsed_ms"] < 2000
    else:
        assert r["code"] == "DEADLINE_EXCEEDED", r
        assert 250 <= r["elapsed_ms"] < 2000, r  # our 300 ms, not the 10 s requestTimeout
    # The channel kept its one connection through it all and still works.
    assert r["after"]["code"] == "OK" and r["after"]["gatewayVersion"]
    assert r["connects"] == 1
    # The engine: the abandoned poll only ever got empty batches (from before the cancel).
    dead = [b["value"]["jobKeys"] for b in activations(job_type, dead_worker, mark)]
    assert dead and all(keys == [] for keys in dead), dead
    assert [b["value"]["jobKeys"] for b in activations(job_type, check_worker, mark)] == \
        [[created["key"]]]


def test_deadline_is_deadline_exceeded_whoever_resets_first(broker, probe_bin, uid):
    """The gateway enforces our grpc-timeout itself and then sends RST_STREAM CANCEL (no
    grpc-status), within a millisecond of our own deadline timer: in about a third of the runs
    its reset arrives first. Either way the call must end DEADLINE_EXCEEDED, not CANCELLED.
    Ten runs take both paths with near certainty."""
    seen = []
    for i in range(10):
        r = probe(broker, "deadline", "--type", f"gw-race-{uid}-{i}")
        seen.append((r["code"], r["message"]))
        assert r["code"] == "DEADLINE_EXCEEDED", seen
        assert 250 <= r["elapsed_ms"] < 2000, r
        assert r["after"]["code"] == "OK" and r["connects"] == 1


def test_message_over_limit_is_refused_and_the_job_times_out(broker, probe_bin, tmp_path, uid):
    """max_message_bytes 2048 against a job with ~20 KB of variables: RESOURCE_EXHAUSTED from
    the 5-byte prefix, the channel stays usable, and since the engine did activate the job for
    the refused response, it comes back only after its (short) timeout."""
    job_type, pid = f"gw-size-{uid}", f"p-gw-size-{uid}"
    refused_worker, next_worker = f"gw-size-refused-{uid}", f"gw-size-next-{uid}"
    deploy(tmp_path, pid, job_type)
    mark = zrecords.end_offset()
    blob = "x" * 20000
    created = create_job(pid, {"blob": blob}, mark)
    key = created["key"]
    r = probe(broker, "size_limit", "--type", job_type, "--worker", refused_worker,
              "--max-message", 2048, "--job-timeout-ms", 2000)
    assert r["code"] == "RESOURCE_EXHAUSTED", r
    assert r["messages"] == 0 and r["jobs"] == []
    m = re.search(r"\((\d+) vs\. 2048\)", r["message"])
    assert m and int(m.group(1)) > 20000, r["message"]
    # Same channel, same connection: a following unary call succeeds.
    assert r["after"]["code"] == "OK" and r["after"]["gatewayVersion"]
    assert r["connects"] == 1
    # The engine activated the job for the response we refused ...
    batch = zrecords.wait_for(value_type="JOB_BATCH", intent="ACTIVATED", type=job_type,
                              worker=refused_worker, since_offset=mark,
                              pred=lambda rec: rec["value"]["jobKeys"], timeout=15)
    assert batch["value"]["jobKeys"] == [key]
    # ... so it is back only after the 2 s job timeout,
    timed_out = zrecords.wait_for(value_type="JOB", intent="TIMED_OUT", key=key,
                                  since_offset=mark, timeout=30)
    assert timed_out["value"]["worker"] == refused_worker
    assert timed_out["timestamp"] - batch["timestamp"] >= 2000
    # then it is activatable again, and the default limit takes the whole 20 KB.
    again = probe(broker, "activate", "--type", job_type, "--worker", next_worker)
    assert again["code"] == "OK", again
    assert [j["key"] for j in again["jobs"]] == [key]
    assert again["jobs"][0]["variables"] == {"blob": blob}
    assert again["jobs"][0]["variables_len"] == compact_json_len({"blob": blob})
    # Nobody else got it in between.
    assert [b["value"]["jobKeys"] for b in zrecords.records(
        value_type="JOB_BATCH", intent="ACTIVATED", type=job_type, since_offset=mark)
        if b["value"]["jobKeys"]] == [[key], [key]]
