"""Drives the skiff demo (run it through devstack/demo.sh, which builds skiff first).

One skiff serves three handlers: the risk scorer (Python) and the policy issuer (Node) work the
underwriting process's jobs on the real Zeebe broker; the issuer announces every issued policy
on Kafka (business.policy.issued.v1, Avro), and the policy notifier (Python) consumes those
events, all through skiff (the Kafka step: demo_kafka.py). With --secure every connection of
skiff's is TLS and authenticated, OAuth to the gateway, security.plaintext=refuse
(demo_secure.py)."""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ZEEBE_SH = HERE / "zeebe.sh"
JOB_TYPES = ["risk-score", "issue-policy"]
ENDS = {"policy-issued": "policy issued", "manual-review": "sent to manual review",
        "policy-rejected": "rejected by BPMN error POLICY_REJECTED"}


def say(msg=""):
    print(msg, flush=True)


def admin_port():
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 9464)) != 0:
            return 9464
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out waiting for {what}")


def application(i, rng):
    if i % 20 == 19:  # incomplete application: the risk scorer cannot work without an amount
        return {"applicant": {"age": 30}}
    return {"amount": rng.randrange(50_000, 900_000, 5_000),
            "applicant": {"age": rng.randint(19, 78), "priorClaims": rng.choice([0, 0, 0, 1, 2, 3])}}


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_broker():
    running = subprocess.run([str(ZEEBE_SH), "status"], capture_output=True).returncode == 0
    if not running:
        subprocess.run([str(ZEEBE_SH), "start"], check=True)
    env = subprocess.run([str(ZEEBE_SH), "env"], check=True, capture_output=True, text=True)
    for line in env.stdout.splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        os.environ[k] = v.strip("'\"")
    return not running


def metric_sum(text, name, label=""):
    """Sum of the samples of a metric family (optionally those whose labels contain `label`)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def overhead_quantile(text, phase, q):
    """Quantile q of skiff_task_overhead_seconds{phase=...}, interpolated inside its bucket as
    Prometheus' histogram_quantile does, as (seconds, over): over is True when the quantile
    lies past the last finite bucket, whose bound is then all that is known (a lower bound)."""
    buckets = []
    for line in text.splitlines():
        if line.startswith("skiff_task_overhead_seconds_bucket{") and f'phase="{phase}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le),
                            float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan"), False
    rank, lo, below = q * buckets[-1][1], 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lo, True
            return lo + (le - lo) * (rank - below) / max(count - below, 1e-9), False
        lo, below = le, count
    return lo, False


def duration(seconds, over=False):
    """A short duration for the report: "42 us", "3.1 ms", "1 s", "> 1 s" when over."""
    if seconds != seconds:  # NaN: no observations
        return "-"
    if seconds < 0.001:
        text = f"{seconds * 1e6:.0f} us"
    elif seconds < 1:
        text = f"{seconds * 1e3:.3g} ms"
    else:
        text = f"{seconds:.3g} s"
    return ("> " if over else "") + text


def outcome_of(keys, records):
    """End event reached (or "incident") per process instance key, from the engine's records."""
    out = {}
    for r in records.records(value_type="INCIDENT", intent="CREATED"):
        k = r["value"]["processInstanceKey"]
        if k in keys:
            out[k] = "incident"
    for r in records.records(value_type="PROCESS_INSTANCE", intent="ELEMENT_COMPLETED",
                             bpmnElementType="END_EVENT"):
        k = r["value"]["processInstanceKey"]
        if k in keys:
            out[k] = r["value"]["elementId"]
    return out


def job_latencies(keys, records):
    """Per job, in engine time (ms): JOB CREATED -> completed or BPMN error, and JOB_BATCH
    ACTIVATED (handed to skiff) -> completed or BPMN error."""
    created, activated, done = {}, {}, {}
    for r in records.records(value_type="JOB", intent="CREATED"):
        if r["value"]["processInstanceKey"] in keys:
            created[r["key"]] = r["timestamp"]
    for r in records.records(value_type="JOB_BATCH", intent="ACTIVATED"):
        for k in r["value"]["jobKeys"]:
            activated.setdefault(k, r["timestamp"])
    for r in records.records(value_type="JOB", intent=("COMPLETED", "ERROR_THROWN")):
        if r["key"] in created:
            done[r["key"]] = r["timestamp"]
    return ([done[k] - created[k] for k in done],
            [done[k] - activated[k] for k in done if k in activated])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instances", type=int, default=60)
    ap.add_argument("--secure", action="store_true",
                    help="TLS/mTLS to every peer, OAuth to the gateway, security.plaintext=refuse")
    ap.add_argument("--trace", action="store_true",
                    help="skiff's spans through the OpenTelemetry Collector to Jaeger; prints "
                         "trace ids and one trace as a tree")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import records
    import zeebe_client
    from demo_kafka import NOTIFIER, KafkaStep
    from demo_secure import SecureStep
    from demo_trace import TraceStep

    say("== skiff demo: underwriting with a Python and a Node handler, and a Kafka event" +
        (", every connection TLS and authenticated ==" if args.secure else " =="))
    run = Path(tempfile.mkdtemp(prefix="skiff-demo-"))
    secure = SecureStep(run, say) if args.secure else None
    tracing = TraceStep(say) if args.trace else None
    if secure:
        secure.prepare()
    started_broker = start_broker()
    kafka = KafkaStep(run, say, secure.kafka_tls() if secure else None)
    procs = []
    zc = zeebe_client
    try:
        if tracing:
            tracing.start()
        kafka.start()
        if secure:
            secure.start(os.environ["ZEEBE_ADDRESS"])
            zc = secure.zeebe(os.environ["ZEEBE_ADDRESS"])
        zc.deploy(str(ROOT / "examples" / "underwriting" / "underwriting.bpmn"))
        say("deployed examples/underwriting/underwriting.bpmn")
        port = admin_port()
        sock = str(run / "handler.sock")
        env = dict(os.environ, SKIFF_HANDLER_SOCKET=sock, SKIFF_ADMIN_ADDRESS=f"127.0.0.1:{port}",
                   SKIFF_ZEEBE_JOB_TYPES=",".join(JOB_TYPES), SKIFF_SERVICE_NAME="skiff-demo",
                   SKIFF_ZEEBE_STREAMING="true", SKIFF_SOCKET=sock, **kafka.handler_env(),
                   **(tracing.skiff_env() if tracing else {}))
        t0 = time.monotonic()
        extra = secure.skiff_args() if secure else []
        skiff = subprocess.Popen([str(ROOT / "build" / "skiff")] + kafka.skiff_args() + extra,
                                 env=env,
                                 stderr=open(run / "skiff.log", "wb"))
        procs.append(("skiff", skiff))
        for name, cmd in (("risk-scorer", [sys.executable, "examples/python/risk_scorer.py"]),
                          ("policy-issuer", ["node", "examples/node/policy_issuer.mjs"]),
                          ("policy-notifier", [sys.executable] + NOTIFIER)):
            procs.append((Path(cmd[-1]).name, subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=open(run / f"{name}.log", "wb"),
                stderr=subprocess.STDOUT)))
        wait(lambda: http(port, "/readyz")[0] == 200 or skiff.poll() is not None, 60,
             "skiff to be ready")
        if skiff.poll() is not None:
            raise SystemExit(f"demo: skiff exited ({skiff.returncode}); see {run}/skiff.log")
        say(f"skiff ready in {time.monotonic() - t0:.2f}s: Zeebe gateway reachable, Kafka "
            f"partitions assigned, the three handlers connected (logs in {run})")

        rng = random.Random(7)
        apps = [application(i, rng) for i in range(args.instances)]
        if tracing:
            apps = [dict(a, **tracing.variables(i)) for i, a in enumerate(apps)]
        t0, since_ms = time.monotonic(), int(time.time() * 1000)
        with ThreadPoolExecutor(8) as pool:
            keys = list(pool.map(lambda v: zc.create_instance("underwriting", v)
                                 ["processInstanceKey"], apps))
        keyset = set(keys)
        say(f"created {len(keys)} process instances")
        wait(lambda: len(outcome_of(keyset, records)) == len(keys), 120,
             "every instance to end or raise an incident")
        elapsed = time.monotonic() - t0
        outcomes = outcome_of(keyset, records)
        lat, held = job_latencies(keyset, records)

        say(f"\nall {len(keys)} instances settled in {elapsed:.1f}s:")
        for end, label in ENDS.items():
            say(f"  {sum(1 for o in outcomes.values() if o == end):4d}  {label}")
        say(f"  {sum(1 for o in outcomes.values() if o == 'incident'):4d}  incident "
            "(incomplete application: the risk scorer failed the job with retries=0)")
        say(f"\njob latency in the engine (created -> completed), {len(lat)} jobs: "
            f"p50 {percentile(lat, 50):.0f} ms, p95 {percentile(lat, 95):.0f} ms")
        say(f"  of which with skiff and the handlers (activated -> completed): "
            f"p50 {percentile(held, 50):.0f} ms, p95 {percentile(held, 95):.0f} ms;")
        say("  the rest is the burst waiting for handler capacity and the broker "
            "(a cold JVM right after start)")
        metrics = http(port, "/metrics")[1]
        streamed = metric_sum(metrics, "skiff_zeebe_streamed_jobs_total")
        activated = metric_sum(metrics, "skiff_zeebe_jobs_total", 'outcome="activated"')
        polled = activated - streamed
        say(f"  {streamed:.0f} of the {activated:.0f} jobs were pushed on the job streams "
            "(zeebe.streaming)" + (f", the other {polled:.0f} came by long polling"
                                   if polled > 0 else ""))
        for phase in ("dispatch", "result"):
            say(f"  skiff's own time per task, {phase}: p50 "
                f"{duration(*overhead_quantile(metrics, phase, 0.5))}, p99 "
                f"{duration(*overhead_quantile(metrics, phase, 0.99))} "
                "(skiff_task_overhead_seconds)")
        kafka.report(outcomes, since_ms, lambda: http(port, "/metrics")[1], wait)
        if tracing:
            tracing.report(keys, outcomes, wait)
        metrics = http(port, "/metrics")[1]
        if secure:
            secure.report(metrics, kafka.bootstrap, kafka.registry_url)
        say("\nhandler results seen by skiff:")
        for line in metrics.splitlines():
            if line.startswith("skiff_handler_results_total{"):
                say("  " + line)
        say(f"\nPrometheus metrics: http://127.0.0.1:{port}/metrics "
            f"({sum(1 for l in metrics.splitlines() if l.startswith('# TYPE'))} families), "
            f"probes /healthz /readyz")
    finally:
        say("\nshutting down: SIGTERM to skiff (handlers drain and exit)")
        for _, p in procs[:1]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs:
            try:
                rc = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            say(f"  {name:>20}: exit {rc}")
        if secure:
            secure.stop()
        if tracing:
            tracing.stop()
        if started_broker:
            subprocess.run([str(ZEEBE_SH), "stop"], check=False)
            say("  zeebe broker stopped")
        kafka.stop()


if __name__ == "__main__":
    main()
