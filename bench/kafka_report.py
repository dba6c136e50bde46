"""The Kafka benchmark's report (bench/kafka_bench.py): the machine, the table of both phases
(medians and ranges over the rounds, ratios peer / skiff), skiff's own time per record, and
the results block of docs/benchmarks.md."""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import confluent_kafka
import fastavro

from kafka_contenders import CONTENDERS, OVERHEAD_METRIC, OVERHEAD_PHASES, lang
from kafka_records import ROOT, Stack
from zeebe_bench import cpu_model_and_ram, fmt, mb, median, overhead_from_buckets, sh

def per_k(v: Optional[float], records: Optional[float]) -> Optional[float]:
    return None if v is None or not records else v / records * 1000.0


def role_sum(d: Optional[Dict[str, Optional[float]]], role: Optional[str] = None
             ) -> Optional[float]:
    if not d:
        return None
    if role is not None:
        return d.get(role)
    vals = [v for v in d.values() if v is not None]
    return sum(vals) if vals else None


def spread(values: List[Optional[float]], digits: int) -> str:
    """The median of the rounds, with their range when there are several."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    m = median(vals)
    if len(values) == 1 or len(vals) == 1:
        return num(m, digits)
    return "%s (%s–%s)" % (num(m, digits), num(min(vals), digits), num(max(vals), digits))


def num(v: Optional[float], digits: int) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return format(int(round(v)), ",")
    return fmt(float(v), digits)


def ratio(peer: Optional[float], skiff: Optional[float]) -> str:
    if peer is None or skiff is None or skiff == 0:
        return ""
    return "%.2f×" % (peer / skiff)


def overhead_of(results: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """skiff's added time per record over the rounds: quantiles of the pooled bucket counts."""
    bl = [r.get("overhead_buckets") for r in results]
    if not bl or not all(bl):
        return None
    pooled: Dict[str, Dict[float, float]] = {ph: {} for ph in OVERHEAD_PHASES}
    for b in bl:
        for ph in OVERHEAD_PHASES:
            for le, c in b[ph].items():
                pooled[ph][le] = pooled[ph].get(le, 0.0) + c
    return overhead_from_buckets(pooled)


Row = Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int, bool]


def cpu_rows(n: Callable[[Dict[str, Any]], Optional[float]], others: str) -> List[Row]:
    """The CPU rows both phases show; n: records handled in a round's result."""
    return [
        ("**consumer CPU s / 1,000 records**", lambda r: per_k(role_sum(r["cpu_s"]), n(r)), 3,
         True),
        ("· of which skiff", lambda r: per_k(role_sum(r["cpu_s"], "skiff"), n(r)), 3, False),
        ("· of which handler", lambda r: per_k(role_sum(r["cpu_s"], "handler"), n(r)), 3,
         False),
        ("broker CPU s / 1,000 records", lambda r: per_k(r.get("broker_cpu_s"), n(r)), 3,
         False),
        ("machine CPU busy, % of all cores", lambda r: r.get("machine_busy_pct"), 0, False),
        (f"· other processes, CPU s ({others})", lambda r: r.get("other_cpu_s"), 1, False),
    ]


def rows_backlog() -> List[Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int, bool]]:
    """(label, value of one round's result, digits, show the spread and a ratio)."""
    n = lambda r: r.get("handled")  # noqa: E731
    return [
        ("records handled (of N)", n, 0, False),
        ("**throughput, records/s** (first → last record handled)",
         lambda r: r.get("records_per_s"), 0, True),
        ("consumer ready → all N handled, s (group join included)",
         lambda r: r.get("ready_to_all_s"), 2, True),
        *cpu_rows(n, "not ours: broker, registry, consumer, bench"),
        ("**peak RSS, MB** (VmHWM, end of phase)", lambda r: mb(role_sum(r["peak_rss_kb"])), 1,
         True),
        ("· of which skiff", lambda r: mb(role_sum(r["peak_rss_kb"], "skiff")), 1, True),
        ("· of which handler", lambda r: mb(role_sum(r["peak_rss_kb"], "handler")), 1, False),
    ]


def rows_live() -> List[Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int, bool]]:
    n = lambda r: r.get("handled")  # noqa: E731
    return [
        ("records handled (of N)", n, 0, False),
        ("**latency p50, ms** (produce() → decoded record in the handling code)",
         lambda r: r.get("lat_p50"), 1, True),
        ("latency p90, ms", lambda r: r.get("lat_p90"), 1, True),
        ("**latency p99, ms**", lambda r: r.get("lat_p99"), 1, True),
        ("latency max, ms", lambda r: r.get("lat_max"), 1, True),
        *cpu_rows(n, "not ours"),
        ("**RSS idle, MB** (VmRSS: joined, partitions assigned, no record yet)",
         lambda r: mb(role_sum(r["idle_rss_kb"])), 1, True),
        ("· of which skiff", lambda r: mb(role_sum(r["idle_rss_kb"], "skiff")), 1, True),
        ("· of which handler", lambda r: mb(role_sum(r["idle_rss_kb"], "handler")), 1, False),
        ("peak RSS, MB (VmHWM, end of phase)", lambda r: mb(role_sum(r["peak_rss_kb"])), 1,
         False),
        ("· of which skiff", lambda r: mb(role_sum(r["peak_rss_kb"], "skiff")), 1, False),
    ]


def table(runs: Dict[Tuple[str, str], List[Dict[str, Any]]], names: List[str],
          args: argparse.Namespace) -> List[str]:
    skiffs = [n for n in names if CONTENDERS[n]["kind"] == "skiff"]
    peers = [n for n in names if CONTENDERS[n]["kind"] == "peer"]
    pairs = [(p, s) for p in peers for s in skiffs if lang(p) == lang(s)]
    head = [""] + [CONTENDERS[n]["short"] for n in names] + [
        "%s ÷ %s" % (CONTENDERS[p]["short"], CONTENDERS[s]["short"]) for p, s in pairs]
    out = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    sections = (
        ("live", "**live: %s records/s for %s s (N = %s) into an empty topic**" % (
            num(args.rate, 0), num(args.live_seconds, 0),
            num(args.rate * args.live_seconds, 0)), rows_live()),
        ("backlog", "**backlog: N = %s records waiting, fresh consumer group**"
         % num(args.records, 0), rows_backlog()),
    )
    for phase, title, rows in sections:
        if not any((n, phase) in runs for n in names):
            continue
        out.append("| %s |%s" % (title, " |" * (len(head) - 1)))
        for label, get, digits, show in rows:
            cells, medians = [], {}
            for n in names:
                rs = runs.get((n, phase), [])
                vals = [get(r) for r in rs]
                medians[n] = median(vals)
                cells.append(spread(vals, digits) if show else num(medians[n], digits))
            if all(c == "–" for c in cells):
                continue
            ratios = [ratio(medians[p], medians[s]) if show else "" for p, s in pairs]
            out.append("| %s | %s |" % (label, " | ".join(cells + ratios)))
    return out


def overhead_section(runs: Dict[Tuple[str, str], List[Dict[str, Any]]], names: List[str]
                     ) -> List[str]:
    rows = [(n, ph, overhead_of(runs[(n, ph)])) for n in names
            if CONTENDERS[n]["kind"] == "skiff" for ph in ("live", "backlog") if (n, ph) in runs]
    if not rows:
        return []
    out = ["", "#### skiff's own time per record", ""]
    if all(o is None for _, _, o in rows):
        return out + ["Not available: this skiff does not expose `%s{source=\"kafka\"}`."
                      % OVERHEAD_METRIC]
    out.append("From skiff's histogram `%s{source=\"kafka\"}` (its `/metrics` at the start and "
               "the end of each phase; with several rounds the bucket counts are added up): "
               "**dispatch** = from the record read off librdkafka, its Avro decoding to JSON "
               "included, to its task frame written to the handler socket (waits for a free "
               "handler credit or for an earlier record of the same key excluded); **result** "
               "= from the ack frame read to the record marked processed. p50 / p99 in µs, "
               "interpolated inside the buckets like Prometheus' `histogram_quantile`; sum = "
               "the two quantiles added (an estimate on the high side)." % OVERHEAD_METRIC)
    out.append("")
    out.append("| skiff, phase | records | dispatch p50 | dispatch p99 | result p50 | result p99 "
               "| **sum p50** | **sum p99** |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|")

    def q(o: Dict[str, Any], key: str) -> str:
        v = o.get(key)
        if v is None:
            return "–"
        s = "%.0f" % v if v >= 100 else "%.1f" % v
        return "> " + s if o.get(key + "_over") else s

    for n, ph, o in rows:
        if o is None:
            out.append("| %s, %s | not available | | | | | | |" % (CONTENDERS[n]["short"], ph))
            continue
        out.append("| %s, %s | %s | %s | %s | %s | %s | %s | %s |" % (
            CONTENDERS[n]["short"], ph, num(o.get("dispatch_n"), 0), q(o, "dispatch_p50"),
            q(o, "dispatch_p99"), q(o, "result_p50"), q(o, "result_p99"), q(o, "sum_p50"),
            q(o, "sum_p99")))
    out.append("| target (DESIGN §10) | | | | | | < 100 | < 500 |")
    return out


def skiff_commit() -> str:
    """The commit the working tree is on, read from .git (no git command); in a linked worktree
    .git is a file naming its git directory, whose refs live in the common one."""
    git = ROOT / ".git"
    try:
        if git.is_file():
            git = Path(git.read_text().split("gitdir:", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        common = git / (git / "commondir").read_text().strip() \
            if (git / "commondir").is_file() else git
        for d in (git, common):
            if (d / ref).is_file():
                return (d / ref).read_text().strip()[:7]
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:7]
    except (OSError, IndexError):
        pass
    return "?"


def linked_rdkafka(skiff: str) -> str:
    """The librdkafka the skiff binary was linked with: the static one of SKIFF_RDKAFKA_DIR in
    its build directory's CMakeCache.txt (docs/adr/0016-rdkafka-current.md), its header's
    version; Debian's package version for an older build linked to the shared library."""
    cache = Path(skiff).resolve().parent / "CMakeCache.txt"
    try:
        for line in cache.read_text().splitlines():
            if line.startswith("SKIFF_RDKAFKA_DIR:"):
                header = Path(line.split("=", 1)[1]) / "include" / "librdkafka" / "rdkafka.h"
                for h in header.read_text().splitlines():
                    if h.startswith("#define RD_KAFKA_VERSION "):
                        v = int(h.split()[2], 16)
                        return "%d.%d.%d (static, from the rdkafka-sys crate)" % (
                            v >> 24, (v >> 16) & 255, (v >> 8) & 255)
    except (OSError, ValueError, IndexError):
        pass
    deb = sh("dpkg-query", "-W", "-f=${Version}", "librdkafka1")
    return "%s (Debian)" % deb if deb else "?"


def machine(stack: Stack, args: argparse.Namespace, node: bool = False) -> List[Tuple[str, str]]:
    cpu, mem_kb = cpu_model_and_ram()
    java = ""
    if stack.broker_pid:
        try:
            exe = os.readlink("/proc/%d/exe" % stack.broker_pid)
            java = subprocess.run([exe, "-version"], capture_output=True,
                                  text=True).stderr.splitlines()[0]
        except (OSError, IndexError):
            pass
    rdkafka = linked_rdkafka(args.skiff)
    cc = sh("cc", "--version").splitlines()
    return [
        ("CPUs (`nproc`)", "%s, shared by the broker, the registry, skiff, the handler, the "
         "peer and the bench's producer (and by whatever else runs: see \"other processes\")"
         % sh("nproc")),
        ("CPU model", cpu),
        ("RAM", "%.1f GiB" % (mem_kb / 1048576.0)),
        ("kernel", "%s %s" % (platform.system(), platform.release())),
        ("OS", sh("sh", "-c", ". /etc/os-release; echo $PRETTY_NAME")),
        ("Kafka", "%s (devstack broker: KRaft, one node, %s; JIT `%s`; %s)" % (
            stack.kafka_version, stack.bootstrap, os.environ.get("SKIFF_KAFKA_JIT", "fast"),
            java or "java ?") if stack.own else "%s (given with --bootstrap)" % stack.bootstrap),
        ("schema registry", "Apicurio Registry (`devstack/apicurio.sh`), %s" % stack.registry
         if "/apis/ccompat/" in stack.registry else "%s" % stack.registry),
        ("skiff", "commit %s, Release build (`%s`, %s), librdkafka %s" % (
            skiff_commit(), os.path.relpath(args.skiff, ROOT), cc[0] if cc else "cc",
            rdkafka or "?")),
        ("Python", "%s; skiff's handler SDK (`handler-protocol/python`); peer: confluent-kafka "
         "%s (librdkafka %s), fastavro %s" % (
             platform.python_version(), importlib.metadata.version("confluent-kafka"),
             confluent_kafka.libversion()[0], fastavro.__version__)),
    ] + ([("Node", node_versions())] if node else [])


def node_versions() -> str:
    """Node's version and the Node peer's packages (bench/node_modules)."""
    def pkg(name: str) -> str:
        try:
            path = ROOT / "bench" / "node_modules" / name / "package.json"
            return json.loads(path.read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"
    return ("%s; skiff's handler SDK (`handler-protocol/node`); peer: kafkajs %s, "
            "@kafkajs/confluent-schema-registry %s, avsc %s" % (
                sh("node", "--version"), pkg("kafkajs"), pkg("@kafkajs/confluent-schema-registry"),
                pkg("avsc")))


def report(args: argparse.Namespace, runs: Dict[Tuple[str, str], List[Dict[str, Any]]],
           names: List[str], mach: List[Tuple[str, str]], started: datetime.datetime,
           preload_s: float) -> str:
    out = ["Run %s UTC, the measurements took %.0f s; command: `%s`." % (
        started.strftime("%Y-%m-%d %H:%M"), time.time() - started.timestamp(), args.command)]
    out.append("")
    out.append("N = %s records pre-loaded into %d partitions (written in %.1f s); live: %s "
               "records/s for %s s; handler capacity %d; peer commits every %s records; "
               "warm-up (not reported) %s per contender family; %s." % (
                   num(args.records, 0), args.partitions, preload_s, num(args.rate, 0),
                   num(args.live_seconds, 0), args.capacity, num(args.commit_every, 0),
                   "a %s s live phase and a backlog of %s records" % (
                       num(min(5.0, args.live_seconds), 0), num(args.warmup, 0))
                   if args.warmup > 0 else "none",
                   "one round" if args.rounds == 1 else
                   "%d rounds, order reversed every other round: median (range)" % args.rounds))
    out.append("")
    out.append("| machine | |")
    out.append("|---|---|")
    for k, v in mach:
        out.append("| %s | %s |" % (k, v))
    out.append("")
    out += table(runs, names, args)
    out.append("")
    labels = ["**%s** = %s" % (CONTENDERS[n]["short"], CONTENDERS[n]["label"].format(
        capacity=args.capacity, commit_every=num(args.commit_every, 0))) for n in names]
    out.append("Columns: " + "; ".join(labels) + ".")
    cut = sorted({"%s (%s)" % (CONTENDERS[n]["short"], ph) for (n, ph), rs in runs.items()
                  for r in rs if r.get("timed_out")})
    if cut:
        out.append("")
        out.append("Cut at the phase timeout (figures cover the records handled until then): "
                   "%s." % ", ".join(cut))
    redelivered = sum(r.get("skiff_redelivered") or 0 for rs in runs.values() for r in rs)
    if redelivered:
        out.append("")
        out.append("skiff redelivered %d records (nack, deadline or handler lost)."
                   % redelivered)
    warns = [w for rs in runs.values() for r in rs for w in r.get("skiff_warnings") or []]
    if warns:
        out.append("")
        out.append("skiff logged warnings or errors during the phases; the first: `%s`"
                   % warns[0][:300])
    out += overhead_section(runs, names)
    others: Dict[str, float] = {}
    for rs in runs.values():
        for r in rs:
            for name, c in (r.get("other_cpu") or {}).items():
                others[name] = others.get(name, 0.0) + c
    big = sorted(((c, n) for n, c in others.items() if c >= 0.5), reverse=True)
    if big:
        out.append("")
        out.append("Other processes on the machine during the measured phases (CPU s, summed "
                   "over every phase and round): %s." % ", ".join("%s %.1f" % (n, c)
                                                                  for c, n in big[:10]))
    return "\n".join(out)


BEGIN, END = "<!-- kafka-results:begin -->", "<!-- kafka-results:end -->"


def write_doc(path: Path, text: str) -> None:
    """Replaces the Kafka results block of docs/benchmarks.md (appends a `## Kafka` section
    with one when the file has none)."""
    block = ("%s\n<!-- Written by bench/kafka_bench.py; everything between these markers is "
             "replaced on each run. -->\n\n%s\n\n%s" % (BEGIN, text, END))
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## Kafka\n\n### Results (Kafka)\n\n%s\n" % block
    path.write_text(new)
