"""The dashboards, the alert rules and the exemplars against a real Prometheus (Debian's) that
scrapes a real skiff doing real work: Kafka records (the devstack broker and registry) and Zeebe
jobs (the devstack broker), handled by SDK handlers.

- every panel query of charts/agent/dashboards/*.json, its variables substituted, is valid
  PromQL and returns data over the run, except the queries whose metrics this run cannot
  produce: EXCUSED below names each metric with the reason (no blanket skip);
- the namespace/pod variables' label_values queries return the scraped pod;
- Prometheus scrapes skiff in OpenMetrics (it asks for it with exemplar storage on) without
  error, and /api/v1/query_exemplars returns the trace ids of the tasks: for Kafka records,
  the traceparent the handler received; for skiff_zeebe_job_latency_seconds, the job's task
  span;
- Prometheus loads charts/agent/alerts/skiff-rules.yaml and evaluates every rule without error.

Run by tests/observability.sh (in the Kafka clients' venv); Prometheus listens on
127.0.0.1:$OBS_PROM_PORT (19500), skiff's admin server on $OBS_SKIFF_PORT (19510)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "agent" / "dashboards"
RULES = ROOT / "charts" / "agent" / "alerts" / "skiff-rules.yaml"
PROM_PORT = int(os.environ.get("OBS_PROM_PORT", "19500"))
SKIFF_PORT = int(os.environ.get("OBS_SKIFF_PORT", "19510"))
NAMESPACE, POD = "obs-test", "skiff-obs-0"
SCRAPE_S = 1

sys.path.insert(0, str(ROOT / "devstack"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from devstack_env import shell_env, terminate  # noqa: E402
import zeebe_client  # noqa: E402
from bpmn import service_task  # noqa: E402


def _load_kafka_fixtures():
    """tests/kafka/conftest.py (KafkaStack, Skiff, HandlerProc), under its own module name."""
    spec = importlib.util.spec_from_file_location("kafka_fixtures",
                                                  ROOT / "tests" / "kafka" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


kf = _load_kafka_fixtures()

# Metrics this run cannot produce, with the reason. A query is excused from returning data only
# when every metric it reads is here; it must still be valid PromQL.
EXCUSED = {
    "skiff_kafka_client_errors_total": "the broker stays healthy during the run",
    "skiff_http_client_request_duration_seconds": "the HTTP peers' latency metrics come with "
                                                  "the obs-trace work, not in every build",
    "skiff_http_client_ttfb_seconds": "as skiff_http_client_request_duration_seconds",
    "skiff_tls_certificate_expiry_seconds": "the devstack peers are plaintext in this run",
    "skiff_tls_reloads_total": "the devstack peers are plaintext in this run",
    "skiff_oauth_token_valid": "no OAuth token service in this run (tests/oauth.sh)",
    "skiff_oauth_token_requests_total": "no OAuth token service in this run (tests/oauth.sh)",
    "skiff_vault_token_valid": "no Vault in this run (tests/vault.sh)",
    "skiff_vault_logins_total": "no Vault in this run (tests/vault.sh)",
    "skiff_vault_secret_reads_total": "no Vault in this run (tests/vault.sh)",
    "skiff_egress_request_duration_seconds": "no egress route configured in this run",
    "skiff_egress_ttfb_seconds": "no egress route configured in this run",
    "skiff_egress_breaker_state": "no egress route configured in this run",
}
# Excuses that depend on the branches merged into the build (their metrics may or may not
# exist); every other excuse must be needed by some query, or it is stale.
BUILD_DEPENDENT = {"skiff_http_client_request_duration_seconds", "skiff_http_client_ttfb_seconds",
                   "skiff_egress_request_duration_seconds", "skiff_egress_ttfb_seconds",
                   "skiff_egress_breaker_state"}

METRIC = re.compile(r"\b(skiff_[a-z0-9_]+?)(?:_bucket)?\{")


def metrics_of(expr: str) -> set:
    return set(METRIC.findall(expr))


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """What Grafana sends for the dashboard's variables with one namespace and pod chosen."""
    return (expr.replace("$namespace", NAMESPACE).replace("$pod", POD)
            .replace("$__rate_interval", rate_interval))


def panel_queries():
    """(dashboard, panel title, refId, expr) of every target of every dashboard."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(path.read_text())
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((path.stem, p["title"], t["refId"], t["expr"]))
    return out


def api(path: str, **params):
    url = f"http://127.0.0.1:{PROM_PORT}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
    return body


# ---- the run: Prometheus, skiff, handlers, work ---------------------------------------------

class Prometheus:
    def __init__(self, tmp: Path):
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{
                "job_name": "skiff", "scrape_timeout": f"{SCRAPE_S}s",
                "static_configs": [{"targets": [f"127.0.0.1:{SKIFF_PORT}"],
                                    "labels": {"namespace": NAMESPACE, "pod": POD}}],
            }],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config))
        self.log = open(self.dir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{PROM_PORT}", "--enable-feature=exemplar-storage",
             "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        if os.environ.get("OBS_PROM_PIDFILE"):  # tests/observability.sh stops it whatever happens
            Path(os.environ["OBS_PROM_PIDFILE"]).write_text(str(self.proc.pid))
        kf.wait_until(self.ready, timeout=60, what="Prometheus ready",
                      on_timeout=self.tail)

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"Prometheus exited:\n{self.tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PROM_PORT}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")[-4000:]

    def stop(self):
        terminate(self.proc, timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Prometheus scraping skiff while skiff handles Kafka records and Zeebe jobs; yields the
    run's facts once the work is done and scraped. Everything started is stopped at the end,
    also on failure."""
    tmp = tmp_path_factory.mktemp("obs")
    uid = uuid.uuid4().hex[:8]
    os.environ.update(shell_env([str(ROOT / "devstack" / "zeebe.sh"), "env"]))
    kenv = shell_env([str(kf.KAFKA_SH), "env"])
    renv = shell_env([str(kf.REGISTRY_SH), "env"])
    kafka = kf.KafkaStack(kenv["KAFKA_BOOTSTRAP"], renv["SCHEMA_REGISTRY_URL"])
    topic, ok_type, fail_type = f"obs.orders.{uid}", f"obs-ok-{uid}", f"obs-fail-{uid}"
    slow_type = f"obs-slow-{uid}"
    kafka.create_topic(topic, partitions=2)
    kafka.register(f"{topic}-value", kf.CMD_SCHEMA)
    for pid, job_type in ((f"obs-ok-{uid}", ok_type), (f"obs-fail-{uid}", fail_type),
                          (f"obs-slow-{uid}", slow_type)):
        path = tmp / f"{pid}.bpmn"
        path.write_text(service_task(pid, job_type, retries=2))
        zeebe_client.deploy(str(path))

    started = []
    prom = Prometheus(tmp)
    started.append(prom.stop)
    try:
        kf.free_port = lambda: SKIFF_PORT  # skiff's admin server on the port Prometheus scrapes
        skiff = kf.Skiff(tmp, kafka, [topic], f"obs-{uid}", socket_path=str(tmp / "h.sock"),
                         zeebe__address=os.environ["ZEEBE_ADDRESS"],
                         zeebe__job_types=f"{ok_type},{fail_type},{slow_type}",
                         zeebe__streaming="true", kafka__task_timeout="1s")
        started.append(skiff.stop)
        recorder = kf.HandlerProc(skiff, [topic], capacity=4)
        started.append(recorder.stop)
        behave = ROOT / "tests" / "integration" / "handlers" / "behave.py"

        def zeebe_handler(job_type, how, **extra):
            env = dict(os.environ, SKIFF_SOCKET=skiff.socket, JOB_TYPES=job_type, BEHAVE=how,
                       NAME=f"obs-{how}", **extra)
            log = open(tmp / f"behave-{how}.log", "ab")
            proc = subprocess.Popen([sys.executable, str(behave)], env=env, stdout=log,
                                    stderr=log, stdin=subprocess.DEVNULL)
            started.append(lambda p=proc, f=log: (terminate(p, timeout=10), f.close()))
            return proc

        zeebe_handler(ok_type, "complete")
        zeebe_handler(fail_type, "fail")
        # Jobs of slow_type are held by a handler that is killed: skiff gives them back
        # (abandoned), a new handler takes them, and is killed in turn.
        sleeper = zeebe_handler(slow_type, "sleep", SLEEP="600")
        skiff.wait_ready()
        t0 = time.time()

        # The work is spread over many scrapes: Prometheus' rate() sees the increments
        # between two scrapes of a series, not the first value of a new one.
        # Kafka: records acked, some nacked once then acked, some dead-lettered by the handler,
        # some not Avro at all (undeliverable, dead-lettered by skiff), some slower than
        # kafka.task_timeout (cancelled under the handler, then dead-lettered). Zeebe: jobs completed,
        # and jobs failed until their retries run out.
        # Every third round writes with a new version of the schema (one more field with a
        # default), which skiff fetches from the registry.
        rounds = 8
        schema, extra = kf.CMD_SCHEMA, {}
        for n in range(rounds):
            if n % 3 == 0 and n:
                extra = dict(extra, **{f"v{n}": n})
                schema = dict(schema, fields=schema["fields"] + [
                    {"name": f"v{n}", "type": "int", "default": 0}])
            records = [(f"k{n}.{i}", kf.cmd(f"r{n}.{i}", sleep_ms=3 * i, **extra), None)
                       for i in range(5)]
            if n % 3 == 0:
                records += [(f"kf{n}", kf.cmd(f"fail-once-{n}", fail=1, **extra), None),
                            (f"kp{n}", kf.cmd(f"poison-{n}", poison=True, **extra), None),
                            (f"ks{n}", kf.cmd(f"slow-{n}", sleep_ms=1500, **extra), None)]
            kafka.produce(topic, records, schema=schema)
            if n % 3 == 0:
                kafka.produce(topic, [(f"kx{n}", b"not avro", None)])
            for i in range(4):
                zeebe_client.create_instance(f"obs-ok-{uid}", {"x": i})
            if n % 2 == 0:
                zeebe_client.create_instance(f"obs-fail-{uid}", {"x": n})
            if n == 0:
                zeebe_client.create_instance(f"obs-slow-{uid}", {"x": n})
            if n in (2, 5):
                before = skiff.metric("skiff_tasks_abandoned_total", source="zeebe")
                kf.wait_until(lambda: skiff.metric("skiff_zeebe_jobs_in_flight",
                                                   job_type=slow_type) >= 1,
                              what="a slow job held by its handler", on_timeout=skiff.tail)
                sleeper.kill()
                kf.wait_until(lambda: skiff.metric("skiff_tasks_abandoned_total",
                                                   source="zeebe") > before,
                              what="the slow job abandoned", on_timeout=skiff.tail)
                sleeper = zeebe_handler(slow_type, "sleep", SLEEP="600")
            time.sleep(1.5 * SCRAPE_S)
        sleeper.kill()  # nothing holds a task at skiff's shutdown
        sent = rounds * 5 + 4 * ((rounds + 2) // 3)

        kf.wait_until(lambda: skiff.metric("skiff_kafka_records_processed_total", topic=topic)
                      >= sent, what="the Kafka records processed", on_timeout=skiff.tail)
        kf.wait_until(lambda: skiff.metric("skiff_zeebe_jobs_total", job_type=ok_type,
                                           outcome="completed") >= 4 * rounds
                      and skiff.metric("skiff_zeebe_jobs_total", job_type=fail_type,
                                       outcome="failed") >= 2 * ((rounds + 1) // 2),
                      what="the Zeebe jobs completed and failed", on_timeout=skiff.tail)
        # Enough scrapes after the work for every rate window to see it.
        time.sleep(5 * SCRAPE_S)
        t1 = time.time()
        traceparents = {e["traceparent"] for e in recorder.events("start")}
        yield {"t0": t0, "t1": t1, "topic": topic, "traceparents": traceparents}
        stop_ok = skiff.stop()
        assert stop_ok == 0, skiff.tail()
        assert skiff.sanitizer_report() is None, skiff.sanitizer_report()
    finally:
        for stop in reversed(started):
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - stop the rest anyway
                print(f"stopping: {e}")


def query_range(expr: str, run) -> dict:
    return api("/api/v1/query_range", query=expr, start=f"{run['t0'] - 5:.3f}",
               end=f"{run['t1']:.3f}", step="1")


def has_data(result: dict) -> bool:
    """A series with at least one number (histogram_quantile over no observations is NaN)."""
    for series in result["data"]["result"]:
        for _, v in series["values"]:
            if v not in ("NaN", "+Inf", "-Inf"):
                return True
    return False


# ---- the tests -------------------------------------------------------------------------------

def test_every_panel_query_is_valid_and_returns_data(run):
    queries = panel_queries()
    assert len(queries) > 40, f"only {len(queries)} panel queries found in {DASHBOARDS}"
    invalid, empty, excused, needed = [], [], [], set()
    for dash, title, ref, expr in queries:
        q = substitute(expr)
        assert "$" not in q, f"{dash} / {title} / {ref}: a variable left in {q}"
        res = query_range(q, run)
        if res.get("status") != "success":
            invalid.append(f"{dash} / {title} / {ref}: {res.get('error')}\n  {q}")
        elif not has_data(res):
            names = metrics_of(expr)
            if names and names <= EXCUSED.keys():
                excused.append(f"{dash} / {title} / {ref}")
                needed |= names
            else:
                empty.append(f"{dash} / {title} / {ref} ({sorted(names - EXCUSED.keys())})\n  {q}")
    assert not invalid, "invalid PromQL:\n" + "\n".join(invalid)
    assert not empty, "queries without data:\n" + "\n".join(empty)
    stale = EXCUSED.keys() - needed - BUILD_DEPENDENT
    assert not stale, f"excuses no query needed in this run (remove them): {sorted(stale)}"
    used = set().union(*(metrics_of(e) for _, _, _, e in queries))
    assert EXCUSED.keys() <= used, f"excused metrics no panel reads: {EXCUSED.keys() - used}"
    unique = {q for _, _, _, q in queries}
    print(f"{len(queries)} queries ({len(unique)} distinct): {len(queries) - len(excused)} with "
          f"data, {len(excused)} excused ({sorted(needed)})")


def test_variables_list_the_scraped_pod(run):
    for path in DASHBOARDS.glob("*.json"):
        variables = {v["name"]: v for v in json.loads(path.read_text())["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        for name in ("namespace", "pod"):
            m = re.fullmatch(r"label_values\((.*), (\w+)\)", variables[name]["definition"])
            assert m and m.group(2) == name, variables[name]
            res = api(f"/api/v1/label/{name}/values", **{"match[]": substitute(m.group(1))})
            assert res["status"] == "success", res
            assert (NAMESPACE if name == "namespace" else POD) in res["data"], res


def test_openmetrics_scrape_and_exemplars(run):
    targets = api("/api/v1/targets")["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    assert targets[0]["lastError"] == "", targets
    res = api("/api/v1/query_exemplars", query="skiff_handler_duration_seconds_bucket",
              start=f"{run['t0'] - 5:.3f}", end=f"{run['t1']:.3f}")
    assert res["status"] == "success", res
    by_source = {}
    for series in res["data"]:
        for ex in series["exemplars"]:
            assert re.fullmatch(r"[0-9a-f]{32}", ex["labels"]["trace_id"]), ex
            assert re.fullmatch(r"[0-9a-f]{16}", ex["labels"]["span_id"]), ex
            by_source.setdefault(series["seriesLabels"]["source"], []).append(ex["labels"])
    assert by_source.keys() == {"kafka", "zeebe"}, res
    # A Kafka exemplar is the span of a record the handler received (its task's traceparent).
    received = {(tp.split("-")[1], tp.split("-")[2]) for tp in run["traceparents"] if tp}
    for labels in by_source["kafka"]:
        assert (labels["trace_id"], labels["span_id"]) in received, (labels, received)
    res = api("/api/v1/query_exemplars", query="skiff_task_overhead_seconds_bucket",
              start=f"{run['t0'] - 5:.3f}", end=f"{run['t1']:.3f}")
    phases = {s["seriesLabels"]["phase"] for s in res["data"] if s["exemplars"]}
    assert phases == {"dispatch", "result"}, res
    # A job's latency (activation to its acknowledged result) leads to the job's task span.
    res = api("/api/v1/query_exemplars", query="skiff_zeebe_job_latency_seconds_bucket",
              start=f"{run['t0'] - 5:.3f}", end=f"{run['t1']:.3f}")
    job_exemplars = [ex["labels"] for s in res["data"] for ex in s["exemplars"]]
    assert job_exemplars, res
    zeebe_tasks = {(ex["trace_id"], ex["span_id"]) for ex in by_source["zeebe"]}
    for labels in job_exemplars:
        assert re.fullmatch(r"[0-9a-f]{32}", labels["trace_id"]), labels
        assert re.fullmatch(r"[0-9a-f]{16}", labels["span_id"]), labels
    # the same task spans as the handler-duration exemplars of Zeebe tasks, where both kept one
    assert {(ex["trace_id"], ex["span_id"]) for ex in job_exemplars} & zeebe_tasks, \
        (job_exemplars, zeebe_tasks)


def test_rules_load_and_evaluate(run):
    groups = api("/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == RULES.read_text().count("- alert: "), rules
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
