#!/usr/bin/env python3
"""skiff's Kafka path against a plain confluent-kafka consumer, side by side, on a real broker.

    devstack/kafka.sh python bench/kafka_bench.py [--records N] [--rate R] [--rounds K] ...

(bench/run.sh runs it after the Zeebe benchmark; any python3 works too: the script re-runs
itself with devstack's Kafka clients venv, confluent-kafka + fastavro, when they are missing.)

It starts its own Kafka broker (devstack/kafka.sh, KRaft, port 29192) and Schema Registry
(devstack/schema-registry.sh: Apicurio Registry, ports 28181-28182) unless --bootstrap and
--registry name running ones, and stops what it started at the end. Then, with the official clients:

  pre-load  one topic (--partitions 6) gets --records N Avro records of a business event
            (OrderPlaced: 10 fields incl. a uuid, an enum, a decimal, a timestamp-millis, a
            nested record and an optional field), written with the official AvroSerializer
            (acks=all, idempotent, zstd); each carries its produce time in a header.

For each contender, one after the other (never two at once), with a fresh consumer group:

  live      a fresh, empty topic; the consumer starts and joins; its idle RSS is read; 100
            primer records go through; then the bench produces at --rate records/s for
            --live-seconds seconds (linger.ms 0); latency per record = the time the decoded
            record reaches the code that handles it - the time just before produce(), both
            from this machine's wall clock.
  backlog   the consumer starts on the pre-loaded topic and processes all N records:
            throughput = N / (last record handled - first record handled), both seen by the
            consumer process; CPU and peak memory over the phase.

Contenders (bench/kafka_contenders.py): skiff (Release build) + a handler written with skiff's
Python SDK that acks every record (bench/kafka_py_handler.py), with kafka.ordering `key`
(skiff's default) and `none`; and the peer, bench/kafka_py_consumer.py: confluent-kafka's
Consumer + AvroDeserializer, poll() one record at a time, enable.auto.commit=false, an
asynchronous commit every 1,000 records. Both decode every record into a Python dict and do
the same trivial work. The same in Node: skiff + a handler written with skiff's Node SDK
(`skiff-node`, bench/kafka_node_handler.mjs) against `node`, bench/kafka_node_consumer.mjs:
a kafkajs Consumer + @kafkajs/confluent-schema-registry (avsc), eachMessage, a commit every
1,000 records (kafkajs' autoCommitThreshold); packages from bench/package-lock.json (`npm ci`
when bench/node_modules is missing). A peer's ratios are shown against the skiff contenders
whose handler is written in its language.

Measurements: CPU = utime + stime from /proc/<pid>/stat (skiff from its start, the Python
processes from the moment they printed "ready", after their imports; live: over the timed
production only); memory = VmRSS / VmHWM from /proc/<pid>/status; skiff's own time per record
from its histogram skiff_task_overhead_seconds{source="kafka"} (read from /metrics at the start
and the end of each phase); the broker's CPU from its pid; the whole machine's and the other
processes' from every process's /proc/<pid>/stat.

Modules: bench/kafka_records.py (the records, the broker and registry, producing),
bench/kafka_contenders.py (the contenders, the processes and the phases), bench/kafka_report.py
(the table and docs/benchmarks.md's results block); the processes' line protocol:
bench/kafka_common.py (Python) and bench/kafka_node_common.mjs (Node).
"""
from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

BENCH = Path(__file__).resolve().parent
KAFKA_SH = BENCH.parent / "devstack" / "kafka.sh"


def ensure_clients() -> None:
    """Re-runs this script with the Kafka clients venv's python if confluent-kafka is missing."""
    try:
        import confluent_kafka  # noqa: F401
        import fastavro  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("SKIFF_KAFKA_BENCH_REEXEC"):
        sys.exit("kafka_bench: confluent-kafka / fastavro missing even in the venv")
    os.environ["SKIFF_KAFKA_BENCH_REEXEC"] = "1"
    os.execv(str(KAFKA_SH), [str(KAFKA_SH), "python", str(Path(__file__).resolve())] +
             sys.argv[1:])


if __name__ == "__main__":
    ensure_clients()

sys.path.insert(0, str(BENCH))
# The modules of this benchmark (they import confluent-kafka: after ensure_clients()).
from kafka_contenders import (CONTENDERS, DEFAULT_CONTENDERS, PRIMERS,  # noqa: E402,F401
                              Contender, lang, node_modules, run_backlog, run_live)
from kafka_records import ROOT, Kafka, Stack, order_event  # noqa: E402
from kafka_report import machine, num, report, write_doc  # noqa: E402,F401
from zeebe_bench import log, mb, publish, rounds  # noqa: E402


# ----------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20000,
                    help="records pre-loaded for the backlog phase (20000)")
    ap.add_argument("--partitions", type=int, default=6, help="partitions per topic (6)")
    ap.add_argument("--rate", type=float, default=500, help="live phase: records/s (500)")
    ap.add_argument("--live-seconds", type=float, default=20,
                    help="live phase: seconds of production (20)")
    ap.add_argument("--capacity", type=int, default=64, help="the skiff handler's capacity (64)")
    ap.add_argument("--commit-every", type=int, default=1000,
                    help="the peer's asynchronous commit, every N records (1000)")
    ap.add_argument("--warmup", type=int, default=5000,
                    help="warm-up, not reported: a live phase of up to 5 s and a backlog of this "
                         "many records (a topic of their own), for the first skiff and the "
                         "first peer contender of each language (Python, Node); 0: none (5000)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every contender this many times, order reversed every other "
                         "round; the table shows medians and ranges (1)")
    ap.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                    help="comma-separated, from: %s" % ", ".join(CONTENDERS))
    ap.add_argument("--phases", default="live,backlog", help="live,backlog (both)")
    ap.add_argument("--phase-timeout", type=float, default=300,
                    help="seconds a backlog phase may take; a live phase gets this much more "
                         "than its production (300)")
    ap.add_argument("--bootstrap", help="use this running broker (with --registry) instead of "
                                        "starting one")
    ap.add_argument("--registry", help="the schema registry URL that goes with --bootstrap")
    ap.add_argument("--kafka-port", type=int,
                    default=int(os.environ.get("SKIFF_BENCH_KAFKA_PORT", "29192")),
                    help="port of the bench's own broker ($SKIFF_BENCH_KAFKA_PORT, 29192; the "
                         "controller gets the next one)")
    ap.add_argument("--registry-port", type=int,
                    default=int(os.environ.get("SKIFF_BENCH_REGISTRY_PORT", "28181")),
                    help="port of the bench's own registry ($SKIFF_BENCH_REGISTRY_PORT, 28181)")
    ap.add_argument("--skiff", default=str(ROOT / "build-bench" / "skiff"))
    ap.add_argument("--skiff-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra skiff setting (e.g. kafka.max_buffered=100); repeatable")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--json", help="also write the raw results (every round) here")
    ap.add_argument("--logs", help="keep the processes' logs in this directory")
    ap.add_argument("--command", default="devstack/kafka.sh python bench/kafka_bench.py",
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    for n in names:
        if n not in CONTENDERS:
            ap.error("unknown contender %s" % n)
    if any(p not in ("live", "backlog") for p in phases):
        ap.error("--phases: live, backlog")
    if any("=" not in kv for kv in args.skiff_set):
        ap.error("--skiff-set takes KEY=VALUE")
    if bool(args.bootstrap) != bool(args.registry):
        ap.error("--bootstrap and --registry go together")
    if not os.access(args.skiff, os.X_OK):
        ap.error("no skiff binary at %s (cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release "
                 "&& cmake --build build-bench --target skiff)" % args.skiff)

    if any(lang(n) == "node" for n in names):
        node_modules()
    started = datetime.datetime.now(datetime.timezone.utc)
    run_id = uuid.uuid4().hex[:6]
    prefix = "business.bench.order-placed-%s" % run_id
    runs: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    if args.logs:
        os.makedirs(args.logs, exist_ok=True)
    stack = Stack(args)
    kafka = None
    preload_s = 0.0
    try:
        mach = machine(stack, args, node=any(lang(n) == "node" for n in names))
        kafka = Kafka(stack)
        with tempfile.TemporaryDirectory(prefix="skiff-kafka-bench-", dir=args.logs) as tmp:
            workdir = Path(args.logs or tmp)
            rng = random.Random(1)
            backlog_topic = prefix + ".v1"
            if "backlog" in phases:
                kafka.create_topic(backlog_topic, args.partitions)
                recs = kafka.serialize(backlog_topic,
                                       [order_event(i, rng) for i in range(args.records)])
                log("pre-loading %d records into %s" % (args.records, backlog_topic))
                preload_s = Kafka.send(kafka.producer(linger_ms=5), backlog_topic, recs,
                                       stamp=True)
                log("pre-loaded in %.1f s (%.0f records/s)"
                    % (preload_s, args.records / preload_s))
            if args.warmup > 0:
                # Not reported: the broker's fetch and produce paths, the page cache, the
                # registry's answers. A short live phase and a backlog of --warmup records
                # for the first skiff and the first peer contender of each language.
                warm = prefix + ".warmup.v1"
                kafka.create_topic(warm, args.partitions)
                Kafka.send(kafka.producer(linger_ms=5), warm, kafka.serialize(
                    warm, [order_event(i, rng) for i in range(args.warmup)]), stamp=True)
                firsts = {(CONTENDERS[n]["kind"], lang(n)): n for n in reversed(names)}
                for n in [n for n in names if n in firsts.values()]:
                    run_live(args, stack, kafka, "%s.warmup-live-%s.v1" % (prefix, n), n,
                             "bench-%s-warmup-live-%s" % (run_id, n), workdir, seed=7,
                             seconds=min(5.0, args.live_seconds))
                    r = run_backlog(args, stack, warm, args.warmup, n,
                                    "bench-%s-warmup-%s" % (run_id, n), workdir)
                    log("warm-up %s: %s records/s" % (n, num(r.get("records_per_s"), 0)))
            for rnd, order in rounds(names, args.rounds):
                for n in order:
                    tag = "%s-r%d" % (n, rnd + 1)
                    if "live" in phases:
                        r = run_live(args, stack, kafka, "%s.live-%s.v1" % (prefix, tag), n,
                                     "bench-%s-live-%s" % (run_id, tag), workdir,
                                     seed=1000 + rnd, seconds=args.live_seconds)
                        runs.setdefault((n, "live"), []).append(r)
                        log("%s live: p50 %s ms, p99 %s ms, %d/%d records" % (
                            n, num(r["lat_p50"], 1), num(r["lat_p99"], 1), r["handled"],
                            r["records"]))
                    if "backlog" in phases:
                        r = run_backlog(args, stack, backlog_topic, args.records, n,
                                        "bench-%s-backlog-%s" % (run_id, tag), workdir)
                        runs.setdefault((n, "backlog"), []).append(r)
                        log("%s backlog: %s records/s, peak RSS %s MB" % (
                            n, num(r.get("records_per_s"), 0), ", ".join(
                                "%s %s" % (role, num(mb(kb), 1))
                                for role, kb in r["peak_rss_kb"].items())))
    finally:
        if kafka is not None:
            kafka.delete_topics()
            kafka = None
        stack.close()
    text = report(args, runs, names, mach, started, preload_s)
    publish(args, text, {"%s/%s" % k: v for k, v in runs.items()}, write_doc, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
