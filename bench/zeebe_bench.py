#!/usr/bin/env python3
"""skiff vs peer job workers against the real Zeebe broker, side by side (Python 3 stdlib only).

Started by bench/run.sh, which builds skiff, installs the peers and starts the broker. For each
contender, one after the other, against the same broker:

  live     a fresh worker is started and idles; then the creator (bench/creator.mjs, the official
           Node client, not measured) creates N instances of a one-service-task process whose
           job type is unique to this contender and phase, at --rate instances/s; the phase
           ends when the engine has recorded N JOB COMPLETED events of that type.
  backlog  N instances are created first with no worker for their job type; then a fresh worker
           is started and drains them.

Then, once per run:

  hold     (memory) a fresh worker with max jobs active = handler capacity = H (1,000) and a
           handler that holds its tasks; H instances are created; once all H jobs are held
           (skiff: its skiff_tasks_open gauge; peers: H jobs activated in the engine's stream),
           the workers' VmRSS / VmHWM are read; then the tasks are released and complete.
  startup  K times: one job waits; a handler is started and retries connecting every 1 ms; then
           skiff is exec'd; time to /readyz 200 (polled every 1 ms), to the job's activation and
           to its completion (engine timestamps, wall clock).

skiff's own added latency per task comes from its histogram skiff_task_overhead_seconds
(phase dispatch / result), read from its /metrics at the start and the end of each skiff phase:
p50 / p99 of the difference estimated as Prometheus' histogram_quantile does (linear inside the
bucket).

Every time figure comes from the engine's record stream (devstack/records.py, records.jsonl):
job latency = JOB COMPLETED - JOB CREATED, "held" = JOB COMPLETED - JOB_BATCH ACTIVATED (time a
job spends with the worker, poll delays excluded), throughput = jobs / (last COMPLETED - first
CREATED) in the live phase and / (last COMPLETED - first ACTIVATED) in the backlog phase. CPU is
utime+stime from /proc/<pid>/stat, memory VmRSS / VmHWM from /proc/<pid>/status, ActivateJobs
calls the gateway's own counter (grpc_server_started_total on the broker's monitoring port).
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "devstack"))
import records  # noqa: E402  (devstack/records.py)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT = os.environ.get("SKIFF_ZEEBE_PORT", "26500")
MONITOR_PORT = os.environ.get("SKIFF_ZEEBE_MONITOR_PORT", "9600")
ADDRESS = "127.0.0.1:%s" % PORT
VENV_PY = BENCH / ".venv" / "bin" / "python"
# The Java peer: java binary chosen by run.sh (SKIFF_BENCH_JAVA), classes built by Maven.
JAVA = os.environ.get("SKIFF_BENCH_JAVA") or "java"
JAVA_JAR = BENCH / "java" / "target" / "skiff-bench-java.jar"
JAVA_CP = "%s:%s" % (JAVA_JAR, BENCH / "java" / "target" / "lib" / "*")

# name -> how to run it. "skiff" contenders are skiff plus an SDK handler; "client" ones a peer.
CONTENDERS = {
    "skiff-node": dict(kind="skiff", family="node", short="skiff + Node handler",
                       label="skiff + Node SDK handler (capacity 32)"),
    "sdk-node": dict(kind="client", family="node", short="@camunda8/sdk",
                     label="@camunda8/sdk worker, its defaults (pollInterval 300 ms)"),
    "sdk-node-10ms": dict(kind="client", family="node", short="@camunda8/sdk poll 10 ms",
                          label="@camunda8/sdk worker, pollInterval 10 ms"),
    "skiff-python": dict(kind="skiff", family="python", short="skiff + Python handler",
                         label="skiff + Python SDK handler (capacity 32)"),
    "pyzeebe": dict(kind="client", family="python", short="pyzeebe",
                    label="pyzeebe worker, its defaults (poll_retry_delay 5 s)"),
    "pyzeebe-10ms": dict(kind="client", family="python", short="pyzeebe retry 10 ms",
                         label="pyzeebe worker, poll_retry_delay 10 ms"),
    "java": dict(kind="client", family="java", short="Java client",
                 label="zeebe-client-java job worker, its defaults (long polling, pollInterval "
                       "100 ms, 1 handler thread; the handler completes with send().join())"),
    "java-32t": dict(kind="client", family="java", short="Java client 32 threads",
                     label="zeebe-client-java job worker, numJobWorkerExecutionThreads 32 (one "
                           "per job it may hold), defaults otherwise"),
    "java-32t-stream": dict(kind="client", family="java", short="Java client 32 threads + stream",
                            label="zeebe-client-java job worker, numJobWorkerExecutionThreads 32 "
                                  "and streamEnabled(true)"),
}
# java-32t-stream (job streaming on) only on demand: skiff runs with its defaults (long polling).
DEFAULT_CONTENDERS = [n for n in CONTENDERS if n != "java-32t-stream"]


def log(msg):
    print("bench: %s" % msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- /proc and HTTP

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    """A VmXXX field of /proc/<pid>/status, in kB."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def machine_ticks():
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - v[3] - v[4], total


def all_cpu():
    """{pid: (name, parent pid, CPU seconds)} of every process on the machine."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            out[int(d)] = (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def cpu_used(before, after):
    """[(CPU seconds, pid, name, parent pid)] used between two all_cpu() snapshots, most first."""
    used = []
    for pid, (name, ppid, cpu) in after.items():
        prev = before.get(pid)
        # Same pid and not less CPU: the same process (kernel workers change their names).
        c = cpu - prev[2] if prev and cpu >= prev[2] else cpu
        if c > 0:
            used.append((c, pid, name, ppid))
    return sorted(used, reverse=True)


def split_cpu(used, ours):
    """(kernel threads' CPU s, other processes' CPU s, {name: s} of the others) given our pids."""
    kernel = other = 0.0
    names = {}
    for c, pid, name, ppid in used:
        if pid in ours:
            continue
        if ppid == 2 or pid == 2:
            kernel += c
        else:
            other += c
            names[name] = names.get(name, 0.0) + c
    return kernel, other, names


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, ""


def gateway_calls(method):
    """Calls of a gateway method the broker has started so far (its Prometheus counter)."""
    status, text = http_get("http://127.0.0.1:%s/actuator/prometheus" % MONITOR_PORT)
    if status != 200:
        raise RuntimeError("broker metrics unavailable on port %s" % MONITOR_PORT)
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_started_total{") and 'grpc_method="%s"' % method in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


OVERHEAD_METRIC = "skiff_task_overhead_seconds"
OVERHEAD_PHASES = ("dispatch", "result")
LABELS_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def histogram(text, name, **labels):
    """Cumulative bucket counts {le: count} of a Prometheus histogram in an exposition, summed
    over the series whose labels include `labels`; None when the histogram is absent."""
    if text is None:
        return None
    prefix = name + "_bucket{"
    out = {}
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        head, value = line.rsplit(" ", 1)
        lab = dict(LABELS_RE.findall(head[len(prefix) - 1:]))
        if "le" not in lab or any(lab.get(k) != v for k, v in labels.items()):
            continue
        le = float(lab["le"])  # "+Inf" parses as inf
        out[le] = out.get(le, 0.0) + float(value)
    return out or None


def histogram_delta(after, before):
    """Bucket counts observed between two histogram() readings."""
    if after is None:
        return None
    return {le: c - (before or {}).get(le, 0.0) for le, c in after.items()}


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile on cumulative {le: count}: linear interpolation inside
    the bucket holding the rank (from 0 in the first bucket); the +Inf bucket gives the highest
    finite bound. None without observations."""
    if not buckets or math.inf not in buckets or buckets[math.inf] <= 0:
        return None
    les = sorted(buckets)
    rank = q * buckets[math.inf]
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == math.inf:
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None


def overhead_figures(text_before, text_after):
    """skiff's added latency per task over a phase, from two /metrics readings: p50 / p99 of
    each phase of skiff_task_overhead_seconds (source zeebe) and their sums, in µs; None when
    skiff does not expose the histogram."""
    deltas = {}
    for ph in OVERHEAD_PHASES:
        after = histogram(text_after, OVERHEAD_METRIC, source="zeebe", phase=ph)
        if after is None:
            return None
        deltas[ph] = histogram_delta(after, histogram(text_before, OVERHEAD_METRIC,
                                                      source="zeebe", phase=ph))
    return overhead_from_buckets(deltas)


def overhead_from_buckets(deltas):
    """overhead_figures() from the bucket counts of each phase ({phase: {le: count}})."""
    out = {}
    for ph in OVERHEAD_PHASES:
        d = deltas[ph]
        out[ph + "_n"] = d.get(math.inf, 0.0)
        top = max([le for le in d if le != math.inf] or [0.0])
        for q in (50, 99):
            v = histogram_quantile(q / 100.0, d)
            out["%s_p%d" % (ph, q)] = None if v is None else v * 1e6
            # 1 when the quantile lies in the +Inf bucket: the value is only "above the last bound"
            out["%s_p%d_over" % (ph, q)] = float(
                v is not None and d.get(top, 0.0) < q / 100.0 * d[math.inf])
    for q in (50, 99):
        parts = [out["%s_p%d" % (ph, q)] for ph in OVERHEAD_PHASES]
        out["sum_p%d" % q] = None if None in parts else sum(parts)
        out["sum_p%d_over" % q] = max(out["%s_p%d_over" % (ph, q)] for ph in OVERHEAD_PHASES)
    return out


def readyz_once(address):
    """One GET /readyz over a fresh connection, as cheaply as possible: True on 200."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as s:
            s.sendall(b"GET /readyz HTTP/1.0\r\nHost: bench\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return False
    parts = head.split(b" ", 2)
    return len(parts) > 1 and parts[1] == b"200"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))


def broker_pid():
    pidfile = Path(records.default_path()).parent / "zeebe.pid"
    return int(pidfile.read_text().strip())


# ----------------------------------------------------------------------------- processes

class Proc:
    """A child process with its output in a log file. With ready=True it prints "ready" on
    stdout once it is (after its imports); a thread copies its stdout to the log meanwhile."""

    def __init__(self, role, cmd, env, logdir, ready=True, stdin=False):
        self.role = role
        self.log_path = Path(logdir) / ("%s.log" % role)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE if ready else self.log,
                                     stderr=self.log, cwd=str(ROOT),
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self.ready = threading.Event()
        self.ready_cpu = None
        if ready:
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            if not self.ready.is_set() and line.strip() == b"ready":
                self.ready_cpu = cpu_seconds(self.pid)
                self.ready.set()
            else:
                self.log.write(line)
                self.log.flush()

    def wait_ready(self, timeout=30):
        """Waits for the "ready" line; returns the CPU seconds the process had used then."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if not self.alive():
                raise RuntimeError("%s exited before it was ready:\n%s" % (self.role, self.tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("%s not ready after %ss" % (self.role, timeout))
        return self.ready_cpu

    def cpu(self):
        return cpu_seconds(self.pid)

    def send(self, line):
        """Writes a line to the process's stdin (started with stdin=True)."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=3000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout=15):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            time.sleep(0.05)
            self.log.close()


def start_skiff(contender, cmd, env):
    """Starts skiff as the contender's first process (its CPU counted from its start: the C
    process has no import phase) and waits for its /healthz at contender.admin."""
    skiff = Proc("skiff", cmd, env, contender.workdir, ready=False)
    contender.procs.append(skiff)
    contender.cpu0["skiff"] = 0.0
    wait_until(lambda: http_get("http://%s/healthz" % contender.admin)[0] == 200
               or not skiff.alive(), 15, "skiff /healthz")
    if not skiff.alive():
        raise RuntimeError("skiff exited:\n" + skiff.tail())
    return skiff


def skiff_warnings(procs):
    """The log lines at level warn or error of the skiff processes among procs."""
    out = []
    for p in procs:
        if p.role == "skiff":
            for line in p.tail(10 ** 7).splitlines():
                if '"level":"warn"' in line or '"level":"error"' in line:
                    out.append(line)
    return out


def metric_sum(text, name, **labels):
    """The sum of the samples of metric `name` with these labels in a /metrics exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            if all('%s="%s"' % kv in head for kv in labels.items()):
                total += float(value)
    return total


class Contender:
    """One running worker: skiff + handler, or a peer client process. With hold=H, max jobs
    active and handler capacity are H and the worker holds its jobs until release()."""

    def __init__(self, name, job_type, args, workdir, hold=0):
        self.procs = []
        self.holder = None
        try:
            self._start(name, job_type, args, workdir, hold)
        except BaseException:
            self.stop()
            raise

    def _start(self, name, job_type, args, workdir, hold):
        self.name = name
        self.spec = CONTENDERS[name]
        self.procs = []
        self.cpu0 = {}
        jobs = str(hold or 32)
        self.workdir = Path(tempfile.mkdtemp(prefix=name + "-", dir=workdir))
        self.admin = None
        env = dict(os.environ)
        for k in ("ZEEBE_ADDRESS", "ZEEBE_CLIENT_ID", "ZEEBE_CLIENT_SECRET"):
            env.pop(k, None)
        t = job_type
        py = str(VENV_PY) if VENV_PY.exists() else sys.executable
        if self.spec["kind"] == "skiff":
            sock = str(self.workdir / "h.sock")
            self.admin = "127.0.0.1:%d" % free_port()
            senv = dict(env, SKIFF_ZEEBE_JOB_TYPES=t, SKIFF_HANDLER_SOCKET=sock,
                        SKIFF_ADMIN_ADDRESS=self.admin, SKIFF_ZEEBE_ADDRESS=ADDRESS,
                        SKIFF_ZEEBE_MAX_JOBS_ACTIVE=jobs, SKIFF_ZEEBE_WORKER_NAME="skiff-bench")
            start_skiff(self, [args.skiff], senv)
            henv = dict(env, SKIFF_SOCKET=sock, JOB_TYPES=t, CAPACITY=jobs)
            if name == "skiff-node":
                cmd = ["node", str(BENCH / "skiff_node_handler.mjs")]
            else:
                if hold:
                    raise RuntimeError("hold: only skiff-node's handler can hold its tasks")
                cmd = [py, str(BENCH / "skiff_py_handler.py")]
            if hold:
                henv["HOLD"] = "1"
            h = Proc("handler", cmd, henv, self.workdir, stdin=bool(hold))
            self.procs.append(h)
            self.cpu0["handler"] = h.wait_ready()
            self.holder = h
        else:
            if name.startswith("sdk-node"):
                cmd = ["node", str(BENCH / "sdk_worker.mjs"), "--address", ADDRESS, "--types", t,
                       "--max-jobs", jobs]
                if name == "sdk-node-10ms":
                    cmd += ["--poll-interval-ms", "10"]
            elif name.startswith("java"):
                cmd = [JAVA, "-cp", JAVA_CP, "dev.skiff.bench.JavaWorker", "--address", ADDRESS,
                       "--types", t, "--max-jobs", jobs]
                if name.startswith("java-32t"):
                    cmd += ["--threads", "32"]
                if name.endswith("-stream"):
                    cmd += ["--stream", "true"]
            else:
                if hold:
                    raise RuntimeError("hold: pyzeebe's worker cannot hold its jobs")
                cmd = [py, str(BENCH / "pyzeebe_worker.py"), "--address", ADDRESS, "--types", t,
                       "--max-jobs", jobs]
                if name == "pyzeebe-10ms":
                    cmd += ["--poll-retry-delay", "0.01"]
            if hold:
                cmd += ["--hold", "true"]
            c = Proc("client", cmd, env, self.workdir, stdin=bool(hold))
            self.procs.append(c)
            self.cpu0["client"] = c.wait_ready(60 if name.startswith("java") else 30)
            self.holder = c

    def wait_polling(self, calls_before, timeout=30):
        """Until the gateway has seen this worker's first ActivateJobs call."""
        if self.admin:
            wait_until(lambda: http_get("http://%s/readyz" % self.admin)[0] == 200, timeout,
                       "skiff /readyz (handler connected)")
        wait_until(lambda: gateway_calls("ActivateJobs") > calls_before, timeout,
                   "%s's first ActivateJobs call" % self.name)
        return time.monotonic() - self.procs[0].started

    def check_alive(self):
        for p in self.procs:
            if not p.alive():
                raise RuntimeError("%s (%s) exited:\n%s" % (p.role, self.name, p.tail()))

    def cpu_now(self):
        return {p.role: p.cpu() for p in self.procs}

    def rss_kb(self, key):
        return {p.role: status_kb(p.pid, key) for p in self.procs}

    def skiff_metric(self, name, **labels):
        if not self.admin:
            return None
        return metric_sum(http_get("http://%s/metrics" % self.admin)[1], name, **labels)

    def skiff_metrics_text(self):
        """skiff's /metrics exposition, or None (no skiff, or no answer)."""
        if not self.admin:
            return None
        status, text = http_get("http://%s/metrics" % self.admin)
        return text if status == 200 else None

    def release(self):
        """Lets a worker started with hold=H finish its held jobs."""
        self.holder.send("release")

    def skiff_warnings(self):
        """skiff's log lines at level warn or error."""
        return skiff_warnings(self.procs)

    def stop(self):
        # skiff first: it drains, tells the handler, and the handler leaves on its own.
        for p in self.procs:
            p.stop()


# ----------------------------------------------------------------------------- the engine side

def bpmn(process_id, job_type):
    return """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="defs-{pid}"
    targetNamespace="http://skiff.dev/bench">
  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work"/>
    <bpmn:serviceTask id="work">
      <bpmn:extensionElements><zeebe:taskDefinition type="{t}" retries="3"/></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end"/>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
""".format(pid=process_id, t=job_type)


def creator(args, *extra):
    return subprocess.Popen(["node", str(BENCH / "creator.mjs"), "--address", ADDRESS] +
                            [str(x) for x in extra], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def creator_result(p, timeout):
    out, err = p.communicate(timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("creator failed (exit %s): %s" % (p.returncode, err.decode()[-2000:]))
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("creator printed no result: %s" % out.decode()[-2000:])


class Counter:
    """Counts JOB records of one type and intent in records.jsonl, cheaply (no JSON parsing,
    so the bench's own CPU use stays small while a phase runs)."""

    def __init__(self, job_type, intent, offset):
        self.pat = b'"type":"%s"' % job_type.encode()
        self.intent = b'"intent":"%s"' % intent.encode()
        self.offset = offset
        self.rest = b""
        self.count = 0
        self.path = records.default_path()

    def poll(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        for line in data[:cut].split(b"\n"):
            if self.pat in line and self.intent in line and b'"valueType":"JOB"' in line:
                self.count += 1
        return self.count


def job_records(job_type, since_offset):
    """JOB and JOB_BATCH records of this job type from since_offset (parsed with json)."""
    pat = b'"type":"%s"' % job_type.encode()
    out = []
    with open(records.default_path(), "rb") as f:
        f.seek(since_offset)
        for line in f:
            if pat in line and line.endswith(b"\n"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def engine_figures(job_type, since_offset, phase):
    recs = job_records(job_type, since_offset)
    created, completed, activated = {}, {}, {}
    batches, batch_jobs, small, first_activation = 0, 0, 0, None
    for r in recs:
        if records.matches(r, value_type="JOB", intent="CREATED", record_type="EVENT"):
            created[r["key"]] = r["timestamp"]
        elif records.matches(r, value_type="JOB", intent="COMPLETED", record_type="EVENT"):
            completed[r["key"]] = r["timestamp"]
        elif records.matches(r, value_type="JOB_BATCH", intent="ACTIVATED", record_type="EVENT"):
            keys = r["value"].get("jobKeys") or []
            if keys:
                batches += 1
                batch_jobs += len(keys)
                small += r["value"].get("maxJobsToActivate", 99) <= 3
                if first_activation is None:
                    first_activation = r["timestamp"]
                for k in keys:
                    activated[k] = r["timestamp"]
    done = [k for k in completed if k in created]
    lat = [completed[k] - created[k] for k in done]
    held = [completed[k] - activated[k] for k in done if k in activated]
    start = min(created.values()) if phase == "live" else first_activation
    end = max(completed.values()) if completed else None
    span = (end - start) / 1000.0 if start is not None and end is not None and end > start else None
    return dict(
        jobs=len(done), created=len(created), span_s=span,
        jobs_per_s=len(done) / span if span else None,
        lat_p50=pct(lat, 50), lat_p99=pct(lat, 99), lat_max=max(lat) if lat else None,
        held_p50=pct(held, 50), held_p99=pct(held, 99),
        batches=batches, jobs_per_batch=batch_jobs / batches if batches else None,
        small_asks=small,
    )


# ----------------------------------------------------------------------------- phases

def deploy(args, workdir, process_id, job_type):
    path = Path(workdir) / (process_id + ".bpmn")
    path.write_text(bpmn(process_id, job_type))
    creator_result(creator(args, "--deploy", path), 60)


def run_phase(args, workdir, run_id, name, phase, count, tag=None, rate=None):
    job_type = "bench-%s-%s-%s" % (run_id, name, tag or phase)
    process_id = job_type
    deploy(args, workdir, process_id, job_type)
    result = dict(contender=name, phase=phase, instances=count)
    bpid = broker_pid()
    if phase == "backlog":
        mark = records.end_offset()
        counter = Counter(job_type, "CREATED", mark)
        res = creator_result(creator(args, "--process", process_id, "--count", count,
                                     "--concurrency", args.concurrency), args.phase_timeout + 60)
        wait_until(lambda: counter.poll() >= count, 60, "%d backlog jobs created" % count, 0.2)
        log("%s: %d jobs waiting (created in %.1fs); starting the worker"
            % (name, count, res["seconds"]))
    calls0 = gateway_calls("ActivateJobs")
    completes0 = gateway_calls("CompleteJob")
    if phase == "live":
        mark = records.end_offset()
    broker_cpu0 = cpu_seconds(bpid)
    ticks0, procs0 = machine_ticks(), all_cpu()
    c = Contender(name, job_type, args, workdir)
    metrics0 = None  # skiff's /metrics at the start of the phase (backlog: a fresh skiff, empty)
    try:
        if phase == "live":
            result["first_poll_s"] = c.wait_polling(calls0)
            time.sleep(1.0)  # idle
            c.check_alive()
            result["idle_rss_kb"] = c.rss_kb("VmRSS")
            cpu0 = c.cpu_now()
            broker_cpu0 = cpu_seconds(bpid)
            ticks0, procs0 = machine_ticks(), all_cpu()
            calls0 = gateway_calls("ActivateJobs")
            metrics0 = c.skiff_metrics_text()
        else:
            cpu0 = dict(c.cpu0)
        t0 = time.monotonic()
        counter = Counter(job_type, "COMPLETED", mark)
        cr = None
        if phase == "live":
            cr = creator(args, "--process", process_id, "--count", count,
                         "--concurrency", args.concurrency,
                         "--rate", args.rate if rate is None else rate)
        deadline = t0 + args.phase_timeout
        while counter.poll() < count and time.monotonic() < deadline:
            c.check_alive()
            time.sleep(0.2)
        result["wall_s"] = time.monotonic() - t0
        ticks1 = machine_ticks()
        used = cpu_used(procs0, all_cpu())
        result["top_cpu"] = [(n, pid, round(c, 2)) for c, pid, n, _ in used[:6]]
        ours = {os.getpid(), bpid} | {p.pid for p in c.procs} | ({cr.pid} if cr else set())
        result["kernel_cpu_s"], result["other_cpu_s"], result["other_cpu"] = split_cpu(used, ours)
        result["machine_busy_pct"] = 100.0 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
        result["timed_out"] = counter.count < count
        cpu1 = c.cpu_now()
        broker_cpu1 = cpu_seconds(bpid)
        result["peak_rss_kb"] = c.rss_kb("VmHWM")
        result["activate_calls"] = gateway_calls("ActivateJobs") - calls0
        result["complete_calls"] = gateway_calls("CompleteJob") - completes0
        if c.admin:
            result["skiff_activate_calls"] = c.skiff_metric(
                "skiff_zeebe_gateway_requests_total", method="ActivateJobs")
            metrics1 = c.skiff_metrics_text()
            result["overhead"] = overhead_figures(metrics0, metrics1)
            # the raw bucket counts of the phase, for --json
            result["overhead_buckets"] = {
                ph: {("+Inf" if le == math.inf else "%g" % le): n for le, n in sorted(
                    histogram_delta(histogram(metrics1, OVERHEAD_METRIC, source="zeebe", phase=ph),
                                    histogram(metrics0, OVERHEAD_METRIC, source="zeebe",
                                              phase=ph)).items())}
                for ph in OVERHEAD_PHASES} if result["overhead"] else None
        if cr is not None:
            if result["timed_out"]:
                cr.kill()
                cr.wait()
            else:
                result["creator"] = creator_result(cr, 120)
    finally:
        c.stop()
    result["skiff_warnings"] = c.skiff_warnings()
    for w in result["skiff_warnings"][:5]:
        log("skiff said (%s %s): %s" % (name, tag or phase, w))
    result["cpu_s"] = {role: cpu1[role] - cpu0[role] for role in cpu1}
    result["broker_cpu_s"] = broker_cpu1 - broker_cpu0
    time.sleep(0.3)  # let the exporter catch up before reading the stream
    result.update(engine_figures(job_type, mark, phase))
    o = result.get("overhead")
    if o:
        log("%s %s: skiff's own time per task (µs) dispatch p50 %s p99 %s, result p50 %s p99 %s"
            % (name, tag or phase, oq(o, "dispatch_p50"), oq(o, "dispatch_p99"),
               oq(o, "result_p50"), oq(o, "result_p99")))
    log("%s %s: %s jobs, %s jobs/s, latency p50 %s ms p99 %s ms, held p50 %s ms, cpu %s, "
        "%s ActivateJobs%s; machine %.0f%% busy, top CPU: %s" % (
            name, tag or phase, result["jobs"], fmt(result["jobs_per_s"], 0), result["lat_p50"],
            result["lat_p99"], result["held_p50"],
            {k: round(v, 2) for k, v in result["cpu_s"].items()}, result["activate_calls"],
            " (TIMED OUT)" if result["timed_out"] else "", result["machine_busy_pct"],
            ", ".join("%s[%d] %.2fs" % t for t in result["top_cpu"])))
    return result


class ActivatedCounter(Counter):
    """Counts the jobs of one type the engine has activated (JOB_BATCH ACTIVATED events)."""

    def __init__(self, job_type, offset):
        super().__init__(job_type, "ACTIVATED", offset)

    def poll(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        for line in data[:cut].split(b"\n"):
            if (self.pat in line and b'"valueType":"JOB_BATCH"' in line and self.intent in line
                    and b'"recordType":"EVENT"' in line):
                try:
                    self.count += len(json.loads(line)["value"].get("jobKeys") or [])
                except (ValueError, KeyError):
                    pass
        return self.count


def run_hold(args, workdir, run_id, name, count):
    """Memory with `count` jobs in flight: `count` instances are created first; then a fresh
    worker with max jobs active = handler capacity = `count` whose handler (or peer job handler)
    holds every job until told; once all are held, VmRSS / VmHWM of the worker's processes; then
    release and wait for the completions. (A backlog rather than a trickle: @camunda8/sdk asks
    for more jobs only while at most 30 % of maxJobsToActivate are active, so it never holds
    1,000 jobs that arrive one by one.)"""
    job_type = "bench-%s-%s-hold" % (run_id, name)
    deploy(args, workdir, job_type, job_type)
    result = dict(contender=name, phase="hold", instances=count)
    mark = records.end_offset()
    created = Counter(job_type, "CREATED", mark)
    creator_result(creator(args, "--process", job_type, "--count", count,
                           "--concurrency", args.concurrency), 120)
    wait_until(lambda: created.poll() >= count, 60, "%d jobs created" % count, 0.2)
    activated = ActivatedCounter(job_type, mark)
    completed = Counter(job_type, "COMPLETED", mark)
    c = Contender(name, job_type, args, workdir, hold=count)
    try:
        t0 = time.monotonic()

        def all_held():
            c.check_alive()
            if activated.poll() < count:
                return False
            if c.admin:  # skiff: every job handed to the handler
                return c.skiff_metric("skiff_tasks_open") >= count
            return True
        try:
            wait_until(all_held, args.phase_timeout + 30, "%d jobs held by %s" % (count, name), 0.1)
        finally:
            result["activated"] = activated.poll()
        result["fill_s"] = time.monotonic() - t0
        if not c.admin:
            time.sleep(1.0)  # the peer got the jobs from the gateway; let it hand them out
        result["held_rss_kb"] = c.rss_kb("VmRSS")
        result["held_hwm_kb"] = c.rss_kb("VmHWM")
        if c.admin:
            result["skiff_in_flight"] = c.skiff_metric("skiff_zeebe_jobs_in_flight")
            result["skiff_tasks_open"] = c.skiff_metric("skiff_tasks_open")
        t1 = time.monotonic()
        c.release()
        wait_until(lambda: completed.poll() >= count, 60,
                   "%d held jobs completed after release" % count, 0.1)
        result["release_s"] = time.monotonic() - t1
        result["peak_rss_kb"] = c.rss_kb("VmHWM")
    finally:
        c.stop()
    warns = c.skiff_warnings()
    busy = [w for w in warns if "RESOURCE_EXHAUSTED" in w]
    if busy:  # expected: 1,000 completions at once make the broker push back on activations
        log("skiff (%s hold) retried %d activations the broker answered with RESOURCE_EXHAUSTED "
            "(back pressure after the release)" % (name, len(busy)))
    for w in [w for w in warns if w not in busy][:5]:
        log("skiff said (%s hold): %s" % (name, w))
    log("%s hold: %d jobs held %.1fs after the worker's start; RSS %s kB (peak %s kB); "
        "released in %.1fs" % (name, result["activated"], result["fill_s"], result["held_rss_kb"],
                               result["held_hwm_kb"], result["release_s"]))
    return result


def run_startup(args, workdir, run_id, samples):
    """skiff's start-up, `samples` times: one job of a type of its own waits in the broker; a
    Node SDK handler is started and retries connecting every 1 ms; then skiff is exec'd. Times
    from just before the exec: /readyz answering 200 (polled every 1 ms over fresh
    connections), the engine activating the job and completing it (record timestamps)."""
    types = ["bench-%s-startup-%d" % (run_id, i + 1) for i in range(samples)]
    files = []
    for t in types:
        path = Path(workdir) / (t + ".bpmn")
        path.write_text(bpmn(t, t))
        files.append(str(path))
    creator_result(creator(args, "--deploy", ",".join(files)), 60)
    mark = records.end_offset()
    created = [Counter(t, "CREATED", mark) for t in types]
    creator_result(creator(args, "--process", ",".join(types), "--count", samples,
                           "--concurrency", samples), 60)
    wait_until(lambda: all(ct.poll() >= 1 for ct in created), 30, "the start-up jobs created", 0.1)
    out = []
    env = {k: v for k, v in os.environ.items()
           if k not in ("ZEEBE_ADDRESS", "ZEEBE_CLIENT_ID", "ZEEBE_CLIENT_SECRET")}
    for i, t in enumerate(types):
        sdir = Path(tempfile.mkdtemp(prefix="startup-", dir=workdir))
        sock = str(sdir / "h.sock")
        admin = "127.0.0.1:%d" % free_port()
        h = Proc("handler", ["node", str(BENCH / "skiff_node_handler.mjs")],
                 dict(env, SKIFF_SOCKET=sock, JOB_TYPES=t, CAPACITY="32", BACKOFF_MS="1"), sdir)
        sk = None
        try:
            h.wait_ready()
            time.sleep(0.2)  # the handler is now in its connect loop
            senv = dict(env, SKIFF_ZEEBE_JOB_TYPES=t, SKIFF_HANDLER_SOCKET=sock,
                        SKIFF_ADMIN_ADDRESS=admin, SKIFF_ZEEBE_ADDRESS=ADDRESS,
                        SKIFF_ZEEBE_MAX_JOBS_ACTIVE="32", SKIFF_ZEEBE_WORKER_NAME="skiff-bench")
            wall0 = time.time()
            m0 = time.monotonic()
            sk = Proc("skiff", [args.skiff], senv, sdir, ready=False)
            deadline = m0 + 10
            while not readyz_once(admin):
                if time.monotonic() > deadline or not sk.alive():
                    raise RuntimeError("skiff not ready after 10 s (start-up sample %d):\n%s"
                                       % (i + 1, sk.tail()))
                time.sleep(0.001)
            ready_ms = (time.monotonic() - m0) * 1000.0
            rss = status_kb(sk.pid, "VmRSS")
            done = Counter(t, "COMPLETED", mark)
            wait_until(lambda: done.poll() >= 1, 15, "the start-up job completed", 0.02)
            sample = dict(ready_ms=ready_ms, rss_at_ready_kb=rss)
            for r in job_records(t, mark):
                if records.matches(r, value_type="JOB_BATCH", intent="ACTIVATED",
                                   record_type="EVENT") and r["value"].get("jobKeys"):
                    sample.setdefault("activated_ms", r["timestamp"] - wall0 * 1000.0)
                elif records.matches(r, value_type="JOB", intent="COMPLETED", record_type="EVENT"):
                    sample.setdefault("completed_ms", r["timestamp"] - wall0 * 1000.0)
            out.append(sample)
        finally:
            if sk:
                sk.stop()
            h.stop()
        log("start-up sample %d: ready %.1f ms, job activated %s ms, completed %s ms (from exec)"
            % (i + 1, out[-1]["ready_ms"], fmt(out[-1].get("activated_ms"), 0),
               fmt(out[-1].get("completed_ms"), 0)))
    return out


def warm_up(args, workdir, run_id):
    """Warms the broker's JIT (not reported): N instances created as fast as it takes them
    with a worker running, then a backlog of N drained."""
    if args.warmup <= 0:
        return
    log("warm-up: %d instances flat out, then a backlog of %d (skiff + Node handler; not reported)"
        % (args.warmup, args.warmup))
    run_phase(args, workdir, run_id, "skiff-node", "live", args.warmup, tag="warmup-live", rate=0)
    run_phase(args, workdir, run_id, "skiff-node", "backlog", args.warmup, tag="warmup-backlog")


# ----------------------------------------------------------------------------- report

def rounds(names, count):
    """(round index, the contenders' order) for each of `count` rounds: the order is reversed
    every other round; each round is logged when there are several."""
    for rnd in range(count):
        order = names if rnd % 2 == 0 else names[::-1]
        if count > 1:
            log("round %d of %d: %s" % (rnd + 1, count, ", ".join(order)))
        yield rnd, order


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def merge(results):
    """One result from several rounds: the median of every figure (per key for dicts)."""
    out = dict(results[0])
    for k, v in results[0].items():
        if isinstance(v, bool):
            out[k] = any(r.get(k) for r in results)
        elif isinstance(v, (int, float)) or v is None:
            out[k] = median(r.get(k) for r in results)
        elif isinstance(v, dict) and all(isinstance(x, (int, float)) or x is None for x in v.values()):
            out[k] = {kk: median(r.get(k, {}).get(kk) for r in results) for kk in v}
    out["rounds"] = len(results)
    # skiff's added latency over several rounds: the quantiles of the pooled observations
    # (bucket counts summed), not medians of per-round quantiles
    bl = [r.get("overhead_buckets") for r in results]
    if len(results) > 1 and all(bl):
        pooled = {ph: {} for ph in OVERHEAD_PHASES}
        for b in bl:
            for ph in OVERHEAD_PHASES:
                for le, c in b[ph].items():
                    pooled[ph][le] = pooled[ph].get(le, 0.0) + c
        out["overhead_buckets"] = pooled
        out["overhead"] = overhead_from_buckets(
            {ph: {float(le): c for le, c in d.items()} for ph, d in pooled.items()})
    tput = [r["jobs_per_s"] for r in results if r.get("jobs_per_s")]
    if len(tput) > 1:
        out["jobs_per_s_range"] = (min(tput), max(tput))
    return out


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return "%.*f" % (digits, v)
    return str(v)


def mb(kb):
    return None if kb is None else kb / 1024.0


def per_k(v, jobs):
    return None if v is None or not jobs else v / jobs * 1000.0


def ratio(peer, skiff):
    if peer is None or skiff is None or skiff == 0:
        return "–"
    return "%.2f×" % (peer / skiff)


def rows_for(res):
    """Table rows: (label, value of a contender's result, digits, ratio column or not)."""
    def g(phase, f):
        return lambda name: f(res.get((name, phase))) if res.get((name, phase)) else None

    def cpu_total(r):
        return per_k(sum(r["cpu_s"].values()), r["jobs"])

    def cpu_role(role):
        return lambda r: per_k(r["cpu_s"][role], r["jobs"]) if role in r["cpu_s"] else None

    def rss_total(key):
        return lambda r: mb(sum(v for v in r[key].values() if v)) if r.get(key) else None

    def rss_role(key, role):
        return lambda r: mb(r[key].get(role)) if r.get(key) and role in r[key] else None

    rows = []
    for phase, title in (("live", "live: instances created while the worker runs"),
                         ("backlog", "backlog: N jobs waiting, then the worker starts")):
        rows.append(("**%s**" % title, None, None, False))
        rows.append(("jobs completed (of N)", g(phase, lambda r: r["jobs"]), 0, False))
        rows.append(("throughput, jobs/s" + (" (live)" if phase == "live" else " (backlog)"),
                     g(phase, lambda r: r["jobs_per_s"]), 0, True))
        if phase == "live":
            rows.append(("job latency p50, ms (COMPLETED − CREATED)",
                         g(phase, lambda r: r["lat_p50"]), 0, True))
            rows.append(("job latency p99, ms", g(phase, lambda r: r["lat_p99"]), 0, True))
        rows.append(("held by worker p50, ms (COMPLETED − ACTIVATED)",
                     g(phase, lambda r: r["held_p50"]), 0, True))
        rows.append(("held by worker p99, ms", g(phase, lambda r: r["held_p99"]), 0, True))
        rows.append(("worker CPU s / 1,000 jobs", g(phase, cpu_total), 3, True))
        rows.append(("  of which skiff", g(phase, cpu_role("skiff")), 3, False))
        rows.append(("  of which handler", g(phase, cpu_role("handler")), 3, False))
        rows.append(("broker CPU s / 1,000 jobs",
                     g(phase, lambda r: per_k(r["broker_cpu_s"], r["jobs"])), 3, True))
        rows.append(("machine CPU busy, % of all cores", g(phase, lambda r: r.get("machine_busy_pct")), 0, False))
        rows.append(("  kernel threads, CPU s (e.g. writing the record stream)", g(phase, lambda r: r.get("kernel_cpu_s")), 1, False))
        rows.append(("  other processes, CPU s (not broker, worker, creator)", g(phase, lambda r: r.get("other_cpu_s")), 1, False))
        rows.append(("worker peak RSS, MB (VmHWM)", g(phase, rss_total("peak_rss_kb")), 1, True))
        rows.append(("  of which skiff", g(phase, rss_role("peak_rss_kb", "skiff")), 1, False))
        rows.append(("  of which handler", g(phase, rss_role("peak_rss_kb", "handler")), 1, False))
        if phase == "live":
            rows.append(("worker RSS idle, MB (VmRSS, before jobs)", g(phase, rss_total("idle_rss_kb")), 1, True))
            rows.append(("  of which skiff", g(phase, rss_role("idle_rss_kb", "skiff")), 1, False))
            rows.append(("  of which handler", g(phase, rss_role("idle_rss_kb", "handler")), 1, False))
        rows.append(("ActivateJobs calls (gateway counter)", g(phase, lambda r: r["activate_calls"]), 0, True))
        rows.append(("activations that returned jobs (engine)", g(phase, lambda r: r["batches"]), 0, True))
        rows.append(("  of which asked for ≤ 3 jobs", g(phase, lambda r: r["small_asks"]), 0, False))
        rows.append(("jobs per activation that returned jobs", g(phase, lambda r: r["jobs_per_batch"]), 1, False))
        if phase == "live":
            rows.append(("start to first ActivateJobs, s", g(phase, lambda r: r.get("first_poll_s")), 2, True))
    return rows


def table(res, names):
    # Ratio columns: every peer against every skiff column ("÷ skiff" when there is one).
    skiffs = [n for n in names if CONTENDERS[n]["kind"] == "skiff"]
    pairs = [(p, k) for p in names if p not in skiffs for k in skiffs]
    head = [""] + [CONTENDERS[n]["short"] for n in names]
    head += ["%s ÷ %s" % (CONTENDERS[p]["short"], "skiff" if len(skiffs) == 1 else CONTENDERS[k]["short"])
             for p, k in pairs]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    for label, get, digits, with_ratio in rows_for(res):
        if get is None:
            lines.append("| %s |%s" % (label, " |" * (len(head) - 1)))
            continue
        vals = [get(n) for n in names]
        if all(v is None for v in vals):
            continue
        cells = [fmt(v, digits) for v in vals]
        if label.startswith("throughput"):
            phase = "live" if "live" in label else "backlog"
            for i, n in enumerate(names):
                rng = (res.get((n, phase)) or {}).get("jobs_per_s_range")
                if rng:
                    cells[i] += " (%.0f–%.0f)" % rng
        sub = label.startswith("  ")
        cells += [ratio(vals[names.index(p)], vals[names.index(k)]) if with_ratio else ""
                  for p, k in pairs]
        lines.append("| %s | %s |" % ("· " + label[2:] if sub and label.startswith("  ") else label,
                                      " | ".join(cells)))
    timed = ["%s (%s)" % (CONTENDERS[n]["short"], ph) for n in names for ph in ("live", "backlog")
             if res.get((n, ph), {}).get("timed_out")]
    lines.append("")
    lines.append("Columns: " + "; ".join("**%s** = %s" % (CONTENDERS[n]["short"], CONTENDERS[n]["label"])
                                         for n in names) + ".")
    if timed:
        lines.append("")
        lines.append("Cut at the phase timeout (figures cover the jobs completed until then): "
                     + ", ".join(timed) + ".")
    return "\n".join(lines)


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def skiff_version():
    commit = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
               "sidecar/src", "proto", "CMakeLists.txt").splitlines()
    return "commit %s%s" % (commit, " + uncommitted changes to %d of its source files" % len(dirty)
                            if dirty else "")


def cpu_model_and_ram():
    """(the CPU's model name, the RAM in kB), from /proc/cpuinfo and /proc/meminfo."""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return cpu, mem_kb


def machine(broker_version):
    cpu, mem_kb = cpu_model_and_ram()
    java = ""
    try:
        exe = os.readlink("/proc/%d/exe" % broker_pid())
        java = subprocess.run([exe, "-version"], capture_output=True, text=True).stderr.splitlines()[0]
        java += " (`%s`)" % exe
    except (OSError, IndexError, ValueError):
        pass
    pyz = sh(str(VENV_PY), "-c", "import importlib.metadata as m; print(m.version('pyzeebe'), m.version('grpcio'))") if VENV_PY.exists() else ""
    sdk = ""
    try:
        sdk = json.loads((BENCH / "node_modules/@camunda8/sdk/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        pass
    cc = sh("cc", "--version").splitlines()
    jclient = sorted(p.name[len("zeebe-client-java-"):-len(".jar")]
                     for p in (BENCH / "java" / "target" / "lib").glob("zeebe-client-java-*.jar"))
    jver = ""
    try:
        jver = subprocess.run([JAVA, "-version"], capture_output=True, text=True,
                              timeout=30).stderr.splitlines()[0]
        jver += " (`%s`)" % (shutil.which(JAVA) or JAVA)
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    rows = [
        ("CPUs (`nproc`)", sh("nproc")),
        ("CPU model", cpu),
        ("RAM", "%.1f GiB" % (mem_kb / 1048576.0)),
        ("kernel", "%s %s" % (platform.system(), platform.release())),
        ("OS", sh("sh", "-c", ". /etc/os-release; echo $PRETTY_NAME")),
        ("Zeebe", "%s (devstack broker: 1 partition, 1 CPU + 1 I/O thread, embedded gateway, "
                  "record exporter on; JIT `%s`)" % (broker_version, os.environ.get("SKIFF_ZEEBE_JIT", "fast"))),
        ("Java (broker)", java),
        ("skiff", "%s, Release build (`build-bench/`, %s)" % (skiff_version(), cc[0] if cc else "cc")),
        ("Node", sh("node", "--version") + (", @camunda8/sdk %s" % sdk if sdk else "")),
        ("Python", sh(str(VENV_PY) if VENV_PY.exists() else sys.executable, "--version") +
         (", pyzeebe %s, grpcio %s" % tuple(pyz.split()) if len(pyz.split()) == 2 else "")),
    ]
    if jclient:
        rows.append(("Java (client)", "%s, zeebe-client-java %s, JVM defaults (no flags)"
                     % (jver, jclient[-1])))
    return rows


COMPARISONS = (
    ("Node", ["skiff-node", "sdk-node", "sdk-node-10ms"]),
    ("Python", ["skiff-python", "pyzeebe", "pyzeebe-10ms"]),
    # No handler SDK in Java: the Java client's worker against skiff with either handler (the
    # skiff columns are the same phases as in the tables above, not a new run).
    ("Java", ["skiff-node", "skiff-python", "java", "java-32t", "java-32t-stream"]),
)


def us(v, over=False):
    """µs for the tables; `over`: the quantile is beyond the histogram's last finite bound."""
    if v is None:
        return "–"
    return ("> " if over else "") + ("%.1f" % v if v < 100 else "%.0f" % v)


def oq(o, key):
    """A quantile of overhead_figures() formatted, "> bound" when it is in the +Inf bucket."""
    return us(o.get(key), bool(o.get(key + "_over")))


def overhead_section(res, skiff_commit):
    """skiff's added latency per task, per skiff phase, against the design target."""
    rows = [(n, ph, res[(n, ph)]) for n in CONTENDERS for ph in ("live", "backlog")
            if CONTENDERS[n]["kind"] == "skiff" and (n, ph) in res]
    if not rows:
        return []
    out = ["", "### skiff's own added latency per task", ""]
    if all(r.get("overhead") is None for _, _, r in rows):
        out.append("Not available: the skiff under test (%s) does not expose `%s` on its "
                   "`/metrics`." % (skiff_commit, OVERHEAD_METRIC))
        return out
    out.append("From skiff's histogram `%s{source=\"zeebe\"}`, read from its `/metrics` at the "
               "start and the end of each phase: **dispatch** = job decoded off the "
               "ActivateJobs response → its task frame written to the handler socket; **result** "
               "= result frame read → CompleteJob handed to the HTTP/2 layer. p50 / p99 in µs, "
               "interpolated inside the buckets as Prometheus' `histogram_quantile` does; "
               "**sum** = dispatch quantile + result quantile (a sum of quantiles, not the "
               "quantile of the sum: an estimate on the high side). Handler round trip and "
               "gateway round trips excluded." % OVERHEAD_METRIC)
    out.append("")
    out.append("| skiff, phase | tasks | dispatch p50 | dispatch p99 | result p50 | result p99 "
               "| **sum p50** | **sum p99** |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|")
    for n, ph, r in rows:
        o = r.get("overhead")
        if o is None:
            out.append("| %s, %s | not available | | | | | | |" % (CONTENDERS[n]["short"], ph))
            continue
        out.append("| %s, %s | %s | %s | %s | %s | %s | %s | %s |" % (
            CONTENDERS[n]["short"], ph, fmt(o.get("dispatch_n"), 0),
            oq(o, "dispatch_p50"), oq(o, "dispatch_p99"), oq(o, "result_p50"),
            oq(o, "result_p99"), oq(o, "sum_p50"), oq(o, "sum_p99")))
    out.append("| target (DESIGN §10) | | | | | | < 100 | < 500 |")
    return out


def hold_section(hold, count, res):
    """Resident memory idle and with `count` jobs held, per contender."""
    names = [n for n in CONTENDERS if n in hold]
    if not names:
        return []
    k = format(count, ",")
    out = ["", "### Memory: idle and %s jobs in flight" % k, ""]
    out.append("%s instances are created first; then a fresh worker starts with max jobs active "
               "= handler capacity = %s and a handler that holds every job (does not answer) "
               "until told. Figures are read once all %s are held (skiff: its "
               "`skiff_tasks_open` gauge; peers: %s jobs activated in the engine's stream, plus "
               "1 s for the client to hand them out); then the jobs are released and complete. "
               "Idle figures are the live phase's (a fresh worker, max jobs active 32, before "
               "any job)." % (k, k, k, k))
    out.append("")
    head = [""] + [CONTENDERS[n]["short"] for n in names] + ["target (skiff)"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|" + "--:|" * (len(head) - 1))

    def role(key, r, role_name=None):
        d = r.get(key) or {}
        if role_name is None:
            vals = [v for v in d.values() if v]
            return mb(sum(vals)) if vals else None
        return mb(d.get(role_name))

    def idle(n, role_name=None):
        live = res.get((n, "live"))
        return role("idle_rss_kb", live, role_name) if live else None

    rows = [
        ("jobs activated (engine)", lambda r: r.get("activated"), 0, ""),
        ("worker start → all held, s", lambda r: r.get("fill_s"), 1, ""),
        ("RSS idle, MB (VmRSS, live phase)", lambda r: idle(r["contender"]), 1, ""),
        ("· of which skiff", lambda r: idle(r["contender"], "skiff"), 1, "< 8"),
        ("· of which handler", lambda r: idle(r["contender"], "handler"), 1, ""),
        ("RSS with all held, MB (VmRSS)", lambda r: role("held_rss_kb", r), 1, ""),
        ("· of which skiff", lambda r: role("held_rss_kb", r, "skiff"), 1, "< 32"),
        ("· of which handler", lambda r: role("held_rss_kb", r, "handler"), 1, ""),
        ("peak RSS until then, MB (VmHWM)", lambda r: role("held_hwm_kb", r), 1, ""),
        ("· of which skiff", lambda r: role("held_hwm_kb", r, "skiff"), 1, "< 32"),
        ("skiff's gauges then: jobs in flight / tasks open",
         lambda r: ("%s / %s" % (fmt(r.get("skiff_in_flight"), 0), fmt(r.get("skiff_tasks_open"), 0))
                    if "skiff_in_flight" in r else None), 0, ""),
        ("release → all completed, s", lambda r: r.get("release_s"), 1, ""),
    ]
    for label, get, digits, target in rows:
        vals = [get(hold[n]) for n in names]
        if all(v is None for v in vals):
            continue
        out.append("| %s | %s | %s |" % (label, " | ".join(fmt(v, digits) for v in vals), target))
    out.append("")
    out.append("Columns: " + "; ".join("**%s** = %s" % (CONTENDERS[n]["short"], hold_label(n, k))
                                       for n in names) + ".")
    return out


def hold_label(name, k):
    if name == "skiff-node":
        return ("skiff with `zeebe.max_jobs_active` %s + a Node SDK handler with capacity %s "
                "whose job function awaits the release" % (k, k))
    if name.startswith("sdk-node"):
        return ("@camunda8/sdk worker, maxJobsToActivate %s, its task handler awaits the release "
                "before `job.complete`" % k)
    return ("zeebe-client-java worker, maxJobsActive %s, its handler keeps the job and returns "
            "(the client counts a job as done when its handler returns; the broker still has it "
            "activated)" % k)


def startup_section(samples):
    if not samples:
        return []
    out = ["", "### Start-up to ready", ""]
    out.append("skiff exec'd with a handler (Node SDK, reconnecting every 1 ms) already waiting "
               "for its socket and one job waiting in the broker; %d samples, times from just "
               "before the exec (Python's `subprocess.Popen`, so fork + exec included). "
               "`/readyz` is 200 once the gateway connection is up and a handler has said "
               "hello; it is polled every 1 ms over fresh connections. Activation and "
               "completion are the engine's record timestamps (1 ms resolution, same clock)."
               % len(samples))
    out.append("")
    out.append("| | median | min | max | target |")
    out.append("|---|--:|--:|--:|--:|")
    for label, key, digits, target, scale in (
            ("exec → `/readyz` 200, ms", "ready_ms", 1, "< 100", 1),
            ("exec → first job activated (engine), ms", "activated_ms", 0, "", 1),
            ("exec → first job completed (engine), ms", "completed_ms", 0, "", 1),
            ("skiff VmRSS at ready, MB", "rss_at_ready_kb", 1, "", 1 / 1024.0)):
        vals = [x[key] * scale for x in samples if x.get(key) is not None]
        if not vals:
            continue
        out.append("| %s | %s | %s | %s | %s |" % (label, fmt(median(vals), digits),
                                                  fmt(min(vals), digits), fmt(max(vals), digits),
                                                  target))
    return out


def report(args, res, skipped, broker_version, started, hold=None, startup=None):
    out = []
    out.append("Run %s UTC, the measurements took %s; command: `%s`." % (
        started.strftime("%Y-%m-%d %H:%M"), "%.0f s" % (time.time() - started.timestamp()),
        args.command))
    out.append("")
    out.append("N = %d instances per phase; live phase created at %s/s (at most %d requests in "
               "flight); phase timeout %d s; warm-up %d + %d instances; max jobs active 32 and "
               "handler capacity 32 everywhere (%s in the memory phase); %s."
               % (args.instances, fmt(args.rate, 0) if args.rate else "full speed", args.concurrency,
                  args.phase_timeout, args.warmup, args.warmup, format(args.hold, ","),
                  "one round" if args.rounds == 1 else
                  "median of %d rounds (range in brackets), order reversed every other round" % args.rounds))
    out.append("")
    out.append("| machine | |")
    out.append("|---|---|")
    for k, v in machine(broker_version):
        out.append("| %s | %s |" % (k, v))
    for title, names in COMPARISONS:
        names = [n for n in names if any((n, ph) in res for ph in ("live", "backlog"))]
        if not any(CONTENDERS[n]["family"] == title.lower() for n in names):
            continue
        out.append("")
        out.append("### %s" % title)
        out.append("")
        out.append(table(res, names))
    out += overhead_section(res, skiff_version())
    out += hold_section(hold or {}, args.hold, res)
    out += startup_section(startup or [])
    others = {}
    for r in res.values():
        for name, cpu in (r.get("other_cpu") or {}).items():
            others[name] = others.get(name, 0.0) + cpu
    big = sorted(((c, n) for n, c in others.items() if c >= 0.5), reverse=True)
    if big:
        out.append("")
        out.append("Other processes on the machine during the measured phases (CPU s, summed over "
                   "the phases%s): %s." % (" and medians of the rounds" if args.rounds > 1 else "",
                                           ", ".join("%s %.1f" % (n, c) for c, n in big[:10])))
    if skipped:
        out.append("")
        for n, why in skipped.items():
            out.append("Not run: %s: %s" % (CONTENDERS[n]["label"], why))
    return "\n".join(out)


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def write_doc(path, text):
    block = "%s\n<!-- Written by bench/run.sh; everything between these markers is replaced on each run. -->\n\n%s\n\n%s" % (BEGIN, text, END)
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = "# Benchmarks\n\n%s\n" % block
    path.write_text(new)


def publish(args, text, raw, write_doc, default=None):
    """Prints the report; writes `raw` as JSON to --json (json.dumps' `default` for what JSON
    cannot hold) and the report into --doc with write_doc(path, text) unless --no-doc."""
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=default))
    if not args.no_doc:
        write_doc(Path(args.doc), text)
        log("results written to %s" % args.doc)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=2000, help="instances per phase (2000)")
    ap.add_argument("--concurrency", type=int, default=64, help="creation requests in flight (64)")
    ap.add_argument("--rate", type=float, default=100,
                    help="instances/s created in the live phase; 0: as fast as possible (100)")
    ap.add_argument("--warmup", type=int, default=2000, help="warm-up instances, not reported (2000)")
    ap.add_argument("--phase-timeout", type=int, default=30, help="seconds a phase may take (30)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every contender this many times, order reversed every other "
                         "round; the tables show medians (1)")
    ap.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                    help="comma-separated, from: %s" % ", ".join(CONTENDERS))
    ap.add_argument("--hold", type=int, default=1000,
                    help="jobs held in flight in the memory phase; 0: no memory phase (1000)")
    ap.add_argument("--hold-contenders", default="skiff-node,sdk-node,java",
                    help="contenders of the memory phase, among those selected with --contenders "
                         "(skiff-node, sdk-node, sdk-node-10ms, java, java-32t, java-32t-stream)")
    ap.add_argument("--startup-samples", type=int, default=5,
                    help="skiff start-up samples (exec to /readyz); 0: none (5)")
    ap.add_argument("--skiff", default=str(ROOT / "build-bench" / "skiff"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--json", help="also write the raw results (every round) here")
    ap.add_argument("--logs", help="keep the workers' logs in this directory")
    ap.add_argument("--command", default="bench/run.sh", help=argparse.SUPPRESS)
    ap.add_argument("--pyzeebe-missing", default="", help=argparse.SUPPRESS)
    ap.add_argument("--java-missing", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    hold_names = [n.strip() for n in args.hold_contenders.split(",") if n.strip()]
    for n in names + hold_names:
        if n not in CONTENDERS:
            ap.error("unknown contender %s" % n)
    for n in hold_names:
        if n.startswith("pyzeebe") or n == "skiff-python":
            ap.error("%s cannot hold its jobs (the memory phase takes skiff-node, sdk-node*, java*)" % n)
    started = datetime.datetime.now(datetime.timezone.utc)
    run_id = uuid.uuid4().hex[:6]
    skipped = {}
    if args.pyzeebe_missing:
        for n in names:
            if n.startswith("pyzeebe"):
                skipped[n] = args.pyzeebe_missing
        names = [n for n in names if n not in skipped]
    if args.java_missing:
        for n in names:
            if n.startswith("java"):
                skipped[n] = args.java_missing
        names = [n for n in names if n not in skipped]
    hold_names = [n for n in hold_names if n in names] if args.hold > 0 else []
    hold = {}
    startup = []
    res = {}
    runs = {}
    if args.logs:
        os.makedirs(args.logs, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skiff-bench-", dir=args.logs) as tmp:
        workdir = args.logs or tmp
        warm_up(args, workdir, run_id)
        for rnd, order in rounds(names, args.rounds):
            for n in order:
                for phase in ("live", "backlog"):
                    tag = "%s-r%d" % (phase, rnd + 1) if args.rounds > 1 else None
                    runs.setdefault((n, phase), []).append(
                        run_phase(args, workdir, run_id, n, phase, args.instances, tag=tag))
        for n in hold_names:
            hold[n] = run_hold(args, workdir, run_id, n, args.hold)
        if args.startup_samples > 0:
            startup = run_startup(args, workdir, run_id, args.startup_samples)
    res = {k: merge(v) for k, v in runs.items()}
    broker_version = "?"
    for line in open(records.default_path(), "rb"):
        m = re.search(rb'"brokerVersion":"([^"]+)"', line)
        if m:
            broker_version = m.group(1).decode()
            break
    text = report(args, res, skipped, broker_version, started, hold, startup)
    raw = {"%s/%s" % k: v for k, v in runs.items()}
    raw.update({"%s/hold" % n: r for n, r in hold.items()})
    raw["skiff/startup"] = startup
    publish(args, text, raw, write_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
