"""Handler SDKs side by side: tasks/s, CPU per 1,000 tasks and memory of each SDK's handler.

A fake skiff (this script, no broker, no skiff) sends trivial tasks (job type
``conf-none``: complete without variables) to each SDK's conformance handler as fast as its
credits allow, so what is measured is the SDK's own cost: reading a task frame, running a
function, writing the result. Every SDK registered in
``handler-protocol/conformance/sdks/*.json`` is run the same way, one after the other, in
the same run (its ``build`` first). Per SDK:

- idle: RSS of the handler's process tree 2 s after the handshake;
- a warm-up of ``--warmup`` tasks (not reported), then ``--tasks`` tasks: wall time, tasks/s,
  the handler's CPU seconds (user + system, its process tree) per 1,000 tasks, and its RSS
  at the end; the fake skiff's own CPU share is printed, to show it was not the limit.

The handler gets ``CONF_CAPACITY`` = ``--capacity``; results are counted by their frames'
type (``complete``) without parsing the JSON. With ``--rounds N`` every SDK runs N times
(order reversed every other round) and the table shows medians. The table replaces the block
between the ``sdk-results`` markers in docs/benchmarks.md (``--no-doc``: print only)::

    /usr/bin/python3 bench/sdk_bench.py [--sdks go,python] [--tasks 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "handler-protocol", "conformance"))
sys.path.insert(0, os.path.join(ROOT, "handler-protocol", "tests"))

from suite import REGISTRATIONS, _run_build, argv  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(pid: int) -> List[int]:
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total / 1e6


def frame(obj: Dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class Feeder:
    """The fake skiff's fast path: pre-encoded tasks, results counted by their length
    prefixes and type."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        deadline = int(time.time() * 1000) + 3600_000
        head = (b'{"type":"task","source":"zeebe","job_type":"conf-none","deadline":'
                + str(deadline).encode() + b',"variables":{},"headers":{},"zeebe":'
                b'{"key":"2251799813685321","process_instance_key":"2251799813685310",'
                b'"bpmn_process_id":"bench","process_definition_version":1,'
                b'"element_id":"bench","retries":3,"worker":"bench"},"id":"z-')
        self.head = head
        self.next_id = 0

    def tasks(self, n: int) -> bytes:
        out = []
        for _ in range(n):
            self.next_id += 1
            body = self.head + str(self.next_id).encode() + b'"}'
            out.append(struct.pack(">I", len(body)) + body)
        return b"".join(out)

    def results(self) -> int:
        """Reads what is there (blocking for at least one frame); returns the results."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("handler closed the connection")
        self.buf += chunk
        done, pos, buf = 0, 0, self.buf
        while len(buf) - pos >= 4:
            (n,) = struct.unpack_from(">I", buf, pos)
            if len(buf) - pos < 4 + n:
                break
            body = buf[pos + 4:pos + 4 + n]
            if b'"type":"complete"' not in body and b'"type": "complete"' not in body:
                raise AssertionError(f"not a complete: {body[:200]!r}")
            done += 1
            pos += 4 + n
        self.buf = buf[pos:]
        return done

    def run(self, n: int, capacity: int) -> None:
        """Sends n tasks, never more than capacity open, refilling as results arrive."""
        sent = min(n, capacity)
        self.sock.sendall(self.tasks(sent))
        answered = 0
        while answered < n:
            got = self.results()
            answered += got
            more = min(got, n - sent)
            if more:
                self.sock.sendall(self.tasks(more))
                sent += more


def handshake(conn: socket.socket) -> Dict[str, Any]:
    def recv_exact(k: int) -> bytes:
        data = b""
        while len(data) < k:
            chunk = conn.recv(k - len(data))
            if not chunk:
                raise ConnectionError("closed during handshake")
            data += chunk
        return data

    (n,) = struct.unpack(">I", recv_exact(4))
    hello = json.loads(recv_exact(n))
    conn.sendall(frame({"type": "welcome", "version": 1, "session": "bench",
                        "max_frame": 4194304, "features": ["cancel", "extend"],
                        "methods": ["publish_message", "produce"]}))
    return hello


def bench_sdk(sdk_id: str, tasks: int, warmup: int, capacity: int) -> Dict[str, Any]:
    reg = REGISTRATIONS[sdk_id]
    failure = _run_build(reg)
    if failure:
        return {"sdk": sdk_id, "error": failure.splitlines()[0]}
    tmp = tempfile.mkdtemp(prefix="skiff-bench-")
    path = os.path.join(tmp, "h.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    env = dict(os.environ, **reg["env"], SKIFF_SOCKET=path, CONF_NAME=f"bench-{sdk_id}",
               CONF_CAPACITY=str(capacity), CONF_MODE="zeebe")
    proc = subprocess.Popen(argv(reg), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lsock.settimeout(60)
        conn, _ = lsock.accept()
        conn.settimeout(60)
        handshake(conn)
        time.sleep(2)
        idle = rss_mb(proc.pid)
        feeder = Feeder(conn)
        feeder.run(warmup, capacity)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        feeder.run(tasks, capacity)
        wall = time.monotonic() - wall0
        cpu = cpu_seconds(proc.pid) - cpu0
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        loaded = rss_mb(proc.pid)
        conn.sendall(frame({"type": "drain", "deadline": int(time.time() * 1000) + 5000}))
        conn.close()
        return {"sdk": sdk_id, "language": reg["language"], "tasks": tasks,
                "tasks_per_s": tasks / wall, "cpu_s_per_1000": cpu / tasks * 1000,
                "cpu_share": cpu / wall, "feeder_share": own / wall,
                "rss_idle_mb": idle, "rss_loaded_mb": loaded}
    finally:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        lsock.close()
        os.unlink(path)
        os.rmdir(tmp)


def table(rows: List[Dict[str, Any]]) -> str:
    out = ["| SDK | tasks/s | handler CPU s / 1,000 tasks | handler CPU share | fake skiff "
           "CPU share | RSS idle (MB) | RSS after (MB) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['sdk']} | not run: {r['error']} | | | | | |")
            continue
        spread = (f" ({r['range'][0]:,.0f}-{r['range'][1]:,.0f})"
                  if "range" in r and r["range"][0] != r["range"][1] else "")
        out.append(f"| {r['language']} (`{r['sdk']}`) | {r['tasks_per_s']:,.0f}{spread} | "
                   f"{r['cpu_s_per_1000']:.3f} | {r['cpu_share']:.0%} | "
                   f"{r['feeder_share']:.0%} | {r['rss_idle_mb']:.1f} | "
                   f"{r['rss_loaded_mb']:.1f} |")
    return "\n".join(out)


BEGIN, END = "<!-- sdk-results:begin -->", "<!-- sdk-results:end -->"
DOC = os.path.join(ROOT, "docs", "benchmarks.md")


def write_doc(path: str, text: str) -> None:
    """Replaces the SDK results block of docs/benchmarks.md (appends a section with one
    when the file has none)."""
    block = (f"{BEGIN}\n<!-- Written by bench/sdk_bench.py; everything between these markers "
             f"is replaced on each run. -->\n\n{text}\n\n{END}")
    with open(path, encoding="utf-8") as f:
        old = f.read()
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + f"\n\n## Handler SDKs\n\n### Results (SDKs)\n\n{block}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def median_row(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    row = dict(ok[0])
    for key in ("tasks_per_s", "cpu_s_per_1000", "cpu_share", "feeder_share", "rss_idle_mb",
                "rss_loaded_mb"):
        row[key] = statistics.median(r[key] for r in ok)
    row["range"] = (min(r["tasks_per_s"] for r in ok), max(r["tasks_per_s"] for r in ok))
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sdks", default=",".join(REGISTRATIONS),
                   help="comma-separated SDK ids (default: every registered one)")
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--warmup", type=int, default=20_000)
    p.add_argument("--capacity", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--no-doc", action="store_true", help="leave docs/benchmarks.md alone")
    args = p.parse_args()
    ids = [s for s in args.sdks.split(",") if s]
    for sdk_id in ids:
        if sdk_id not in REGISTRATIONS:
            p.error(f"unknown SDK {sdk_id}; registered: {sorted(REGISTRATIONS)}")
    runs: Dict[str, List[Dict[str, Any]]] = {i: [] for i in ids}
    for rnd in range(args.rounds):
        for sdk_id in (ids if rnd % 2 == 0 else ids[::-1]):
            print(f"[sdk-bench] round {rnd + 1}: {sdk_id} ...", file=sys.stderr, flush=True)
            runs[sdk_id].append(bench_sdk(sdk_id, args.tasks, args.warmup, args.capacity))
    rows = [median_row(runs[i]) for i in ids]
    load = os.getloadavg()[0]
    text = (f"{args.tasks:,} trivial tasks per SDK after {args.warmup:,} of warm-up, capacity "
            f"{args.capacity}, {args.rounds} round(s) (medians), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"load average {load:.1f} at the end\n\n{table(rows)}")
    print(text)
    if args.json:
        print(json.dumps(rows, indent=2))
    if not args.no_doc:
        write_doc(DOC, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
