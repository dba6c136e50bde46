#!/usr/bin/env python3
"""What tracing costs skiff: the same Kafka benchmark (bench/kafka_bench.py: a live phase at a
fixed rate with end-to-end latency, a backlog phase with skiff's CPU per record) for skiff with
tracing off and with tracing on, same broker, same run, rounds alternating the order.

    devstack/kafka.sh python bench/trace_bench.py [--records N] [--rounds K] [kafka_bench args]

Tracing on: every record gets its CONSUMER span (sampler parentbased_traceidratio, ratio 1.0:
the records carry no traceparent, so every span is a sampled root), plus the CLIENT spans of
the registry lookups, exported over OTLP/HTTP protobuf to the real OpenTelemetry Collector
(devstack/otel.sh, started and stopped here on SKIFF_OTEL_HTTP_PORT) with the default batch
processor settings. Tracing off: no exporter (spans still get ids: the task frame's traceparent
is always there). Both with kafka.ordering=none and the same Python SDK handler. Figures:
skiff's CPU per 1,000 records (utime + stime), skiff's own time per record
(skiff_task_overhead_seconds, dispatch and result), end-to-end latency p50/p99 in the live
phase. Target: at most 1.1x the CPU and +20 us at p50. Writes the Tracing section of
docs/benchmarks.md between its markers."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import kafka_bench as kb  # noqa: E402  (re-runs itself in the clients venv when needed)
from devstack_env import shell_env  # noqa: E402

OTEL_SH = ROOT / "devstack" / "otel.sh"
BEGIN, END = "<!-- trace-results:begin -->", "<!-- trace-results:end -->"
NAMES = ["skiff-untraced", "skiff-traced"]

kb.CONTENDERS["skiff-untraced"] = dict(
    kind="skiff", ordering="none", short="tracing off",
    label="skiff + a Python SDK handler (capacity {capacity}) that acks every record, "
          "`kafka.ordering=none`, no OTLP exporter")
kb.CONTENDERS["skiff-traced"] = dict(
    kind="skiff", ordering="none", short="tracing on",
    label="the same exporting every span (ratio 1.0) over OTLP/HTTP to the real OpenTelemetry "
          "Collector", settings={})


DROPPED = {"queue_full": 0.0, "export_failed": 0.0}
_stop = kb.Contender.stop


def stop_counting_drops(self):
    """Contender.stop, reading first what the traced skiff dropped (its /metrics)."""
    if self.name == "skiff-traced" and self.admin:
        for reason in DROPPED:
            DROPPED[reason] += self.skiff_metric("skiff_trace_spans_dropped_total",
                                                 reason=reason) or 0
    _stop(self)


kb.Contender.stop = stop_counting_drops


def collector_spans(spans_file):
    """CONSUMER spans (the records' task spans) the Collector received, from its file exporter:
    checks that the traced runs really exported what they measured. The last skiff's spans
    leave at its shutdown and pass the Collector's batch processor and file flush: counted once
    the count has stopped growing for 2 s (20 s at most)."""
    last, deadline = -1, time.monotonic() + 20
    while True:
        n = spans_in(spans_file)
        if n == last or time.monotonic() > deadline:
            return n
        last = n
        time.sleep(2)


def spans_in(spans_file):
    n = 0
    with open(spans_file, encoding="utf-8") as f:
        for line in f:
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    n += sum(1 for s in ss.get("spans", []) if s.get("kind") == 5)
    return n


def write_doc(path, text):
    """Replaces the tracing results block of docs/benchmarks.md (appends a `## Tracing`
    section with one when the file has none)."""
    block = ("%s\n<!-- Written by bench/trace_bench.py; everything between these markers is "
             "replaced on each run. -->\n\n%s\n\n%s" % (BEGIN, text, END))
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## Tracing: skiff with tracing on vs off\n\n%s\n" % block
    path.write_text(new)


def main():
    env = dict(os.environ)
    subprocess.run([str(OTEL_SH), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        otlp = shell_env([str(OTEL_SH), "env"], env)["OTEL_EXPORTER_OTLP_ENDPOINT"]
        kb.CONTENDERS["skiff-traced"]["settings"] = {
            "otlp.endpoint": otlp, "trace.sampler": "parentbased_traceidratio",
            "trace.sampler_arg": "1.0"}
        spans_file = shell_env([str(OTEL_SH), "env"], env)["SKIFF_OTEL_SPANS_FILE"]
        publish = kb.publish

        def publish_checked(args, text, raw, write, default=None):
            # every record the traced skiff handled, the live phases' primers included
            traced = sum((r.get("handled") or 0) + (kb.PRIMERS if phase == "live" else 0)
                         for key, rs in raw.items() for r in rs
                         for name, phase in [key.split("/")] if name == "skiff-traced")
            text += ("\n\nThe Collector received %s record spans (CONSUMER) from the traced "
                     "runs, which handled %s records (the live phases' %d primers included); "
                     "the traced skiff counted %s spans dropped because its queue was full and "
                     "%s because an export failed (`skiff_trace_spans_dropped_total`, read "
                     "before each stop)."
                     % (kb.num(collector_spans(spans_file), 0), kb.num(traced, 0), kb.PRIMERS,
                        kb.num(DROPPED["queue_full"], 0), kb.num(DROPPED["export_failed"], 0)))
            publish(args, text, raw, write, default)
        kb.publish = publish_checked
        kb.write_doc = write_doc
        argv = sys.argv[1:]
        if not any(a.startswith("--contenders") for a in argv):
            argv = ["--contenders", ",".join(NAMES)] + argv
        sys.argv = [sys.argv[0]] + argv + [
            "--command", "devstack/kafka.sh python bench/trace_bench.py " + " ".join(argv)]
        return kb.main()
    finally:
        subprocess.run([str(OTEL_SH), "stop"], env=env, check=False)


if __name__ == "__main__":
    sys.exit(main())
