"""The tracing step of the demo (devstack/demo.sh --trace): the real OpenTelemetry Collector
(devstack/otel.sh) receives skiff's spans over OTLP and exports them to Jaeger all-in-one
(devstack/jaeger.sh, memory storage). Each process instance is created with a `traceparent`
variable whose root span ("create underwriting instance", service demo-client) the demo
exports itself (OTLP/HTTP JSON), so an instance's jobs, their gateway commands and the Kafka
event it leads to form one trace. At the end the demo prints the trace ids of a few instances
and one trace as a tree, read from Jaeger's query API (a Go build of Jaeger has no UI assets)."""
import json
import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"client": "CLIENT", "server": "SERVER", "producer": "PRODUCER", "consumer": "CONSUMER",
         "internal": "INTERNAL"}


def _env_of(script, env):
    out = subprocess.run([str(HERE / script), "env"], env=env, check=True, capture_output=True,
                         text=True).stdout
    vals = {}
    for line in out.splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        vals[k] = v.strip("'\"")
    return vals


class TraceStep:
    def __init__(self, say):
        self.say = say
        self.env = dict(os.environ)
        self.roots = {}  # instance index -> (trace id, span id, start ns)
        self.started = []

    def start(self):
        self.say("tracing: starting Jaeger (devstack/jaeger.sh; built once, ~5 min) and the "
                 "OpenTelemetry Collector exporting to it")
        subprocess.run([str(HERE / "jaeger.sh"), "start"], env=self.env, check=True)
        self.started.append("jaeger.sh")
        self.jaeger = _env_of("jaeger.sh", self.env)
        self.env["SKIFF_OTEL_JAEGER_ENDPOINT"] = self.jaeger["SKIFF_JAEGER_OTLP_GRPC"]
        subprocess.run([str(HERE / "otel.sh"), "start"], env=self.env, check=True)
        self.started.append("otel.sh")
        self.otlp = _env_of("otel.sh", self.env)["OTEL_EXPORTER_OTLP_ENDPOINT"]

    def skiff_env(self):
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp, "OTEL_BSP_SCHEDULE_DELAY": "500"}

    def variables(self, i):
        """The variable that puts instance i in its own trace, under the demo's root span."""
        tid, sid = secrets.token_hex(16), secrets.token_hex(8)
        self.roots[i] = (tid, sid, time.time_ns())
        return {"traceparent": f"00-{tid}-{sid}-01"}

    def export_roots(self, keys):
        """The demo's own root spans (one per instance), posted to the Collector as OTLP JSON."""
        spans = [{"traceId": tid, "spanId": sid, "name": "create underwriting instance",
                  "kind": 3, "startTimeUnixNano": str(start),
                  "endTimeUnixNano": str(start + 1_000_000),
                  "attributes": [{"key": "zeebe.process_instance.key",
                                  "value": {"stringValue": str(keys[i])}}]}
                 for i, (tid, sid, start) in self.roots.items()]
        body = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "demo-client"}}]},
            "scopeSpans": [{"scope": {"name": "devstack/demo"}, "spans": spans}]}]}
        req = urllib.request.Request(self.otlp + "/v1/traces", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    def _trace(self, tid):
        url = f"{self.jaeger['SKIFF_JAEGER_QUERY_URL']}/api/traces/{tid}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                data = json.load(r).get("data") or []
        except OSError:
            return None
        return data[0] if data else None

    def report(self, keys, outcomes, wait):
        self.export_roots(keys)
        self.say("\ntraces (Jaeger query API "
                 f"{self.jaeger['SKIFF_JAEGER_QUERY_URL']}/api/traces/<trace id>; "
                 "no UI in a Go build of Jaeger):")
        shown = sorted(self.roots)[:4]
        for i in shown:
            self.say(f"  instance {keys[i]} ({outcomes.get(keys[i], '?')}): trace "
                     f"{self.roots[i][0]}")
        # the first instance that issued a policy: its trace crosses Zeebe and Kafka
        pick = next((i for i in sorted(self.roots) if outcomes.get(keys[i]) == "policy-issued"),
                    shown[0])
        tid = self.roots[pick][0]
        state = {"n": -1, "since": time.monotonic()}

        def settled():
            t = self._trace(tid)
            n = len(t["spans"]) if t else 0
            if n != state["n"]:
                state.update(n=n, since=time.monotonic())
            return n > 1 and time.monotonic() - state["since"] > 2
        wait(settled, 60, f"trace {tid} in Jaeger")
        self.say(f"\ntrace {tid} of instance {keys[pick]}, from Jaeger:")
        for line in tree(self._trace(tid)):
            self.say("  " + line)

    def stop(self):
        for script in reversed(self.started):
            subprocess.run([str(HERE / script), "stop"], env=self.env, check=False)


def tree(trace):
    """Lines of a Jaeger trace as an indented tree: service, operation, kind, duration."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    procs = trace.get("processes", {})
    children = {}
    for s in spans.values():
        parent = next((r["spanID"] for r in s.get("references", [])
                       if r.get("refType") == "CHILD_OF" and r["spanID"] in spans), None)
        children.setdefault(parent, []).append(s)
    lines = []

    def walk(parent, depth):
        for s in sorted(children.get(parent, []), key=lambda x: x["startTime"]):
            tags = {t["key"]: t["value"] for t in s.get("tags", [])}
            kind = KINDS.get(str(tags.get("span.kind", "")), "")
            err = f" error.type={tags['error.type']}" if "error.type" in tags else ""
            svc = procs.get(s["processID"], {}).get("serviceName", "?")
            lines.append(f"{'  ' * depth}{svc}: {s['operationName']} [{kind}] "
                         f"{s['duration'] / 1000:.1f} ms{err}")
            walk(s["spanID"], depth + 1)
    walk(None, 0)
    return lines
