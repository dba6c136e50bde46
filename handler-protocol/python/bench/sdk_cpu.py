"""The Python SDK's own CPU per record, without Kafka: a fake skiff (this process) keeps a
handler (a child process running the SDK) busy with Kafka tasks shaped like the ones
bench/kafka_bench.py drains, and reports the child's CPU per record.

    python3 handler-protocol/python/bench/sdk_cpu.py [--sdk DIR]... [--inline] [--records N]
        [--capacity 64] [--batch 64] [--rounds 3]

The fake skiff is cheap on purpose (pre-encoded frames, results counted, not parsed) and
refills like skiff: every result frame it reads gives credits back, and the free credits leave
as one ``tasks`` frame of up to ``--batch`` tasks. ``--sdk`` names a directory holding the SDK
(``skiff_handler``) to measure (default: this checkout's); given several times, the versions
take turns in every round, so they compare under the same load.
The handler's function does what bench/kafka_py_handler.py's does (one field of the value, a
header, the tally). Output: one line per round, then the median; CPU is the child's user +
system time (/proc), from its first task to its last result.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC = "business.bench.order-placed-bf6f41.v1"
CHILD = r"""
import os, sys, threading, time
sys.path.insert(0, os.environ["SDK_DIR"])
from skiff_handler import Handler
lock, seen = threading.Lock(), []
app = Handler("sdk-cpu", capacity=int(os.environ["CAPACITY"]), inline=os.environ["INLINE"] == "1")

@app.topic(os.environ["TOPIC"])
def on_record(task):
    _ = task.value["order_id"]
    produced = int(task.record.headers.get("bench-produced-us"))
    now = time.time_ns() // 1000
    with lock:
        seen.append(now - produced)

app.run()
pool = getattr(app, "_pool", None)
if pool is not None and os.environ.get("SHOW_THREADS"):
    print("pool threads:", pool.threads, file=sys.stderr)
"""


def task_frame(i: int) -> bytes:
    """One encoded task frame body, the shape skiff sends for the bench's OrderPlaced."""
    part, c = i % 6, (i * 7919) % 5000
    value = {
        "event_id": "3f1c2b9e-8d4a-4c6e-9b2f-%012x" % i, "order_id": "O-%09d" % i,
        "status": "PLACED", "placed_at": "2026-11-17T08:21:43.512Z",
        "amount": "%d.%02d" % (i % 50000, i % 100), "currency": "EUR", "item_count": i % 12 + 1,
        "customer": {"customer_id": "C-%05d" % c, "name": "Grace Hopper",
                     "email": "grace.hopper.%d@example.com" % c, "country": "NL"},
        "sales_channel": "web", "coupon_code": None if i % 3 else "SPRING%02d" % (i % 30),
    }
    frame = {"type": "task", "id": "k-%s-%d-%d-1" % (TOPIC, part, i), "source": "kafka",
             "topic": TOPIC, "deadline": 1796689104041, "attempt": 1, "value": value,
             "kafka": {"topic": TOPIC, "partition": part, "offset": i, "key": "C-%05d" % c,
                       "headers": {"bench-produced-us": str(1796689104041000 + i)},
                       "timestamp": 1796689104041, "schema_id": 7}}
    return json.dumps(frame, separators=(",", ":")).encode()


def tasks_frame(bodies: List[bytes]) -> bytes:
    if len(bodies) == 1:
        body = bodies[0]
    else:
        body = b'{"type":"tasks","tasks":[' + b",".join(bodies) + b"]}"
    return len(body).to_bytes(4, "big") + body


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid: int) -> int:
    """Context switches of every thread of a process so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def recv_frame(conn: socket.socket, buf: bytearray) -> bytes:
    while True:
        if len(buf) >= 4:
            n = int.from_bytes(buf[:4], "big")
            if len(buf) >= 4 + n:
                body = bytes(buf[4:4 + n])
                del buf[:4 + n]
                return body
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise EOFError("handler closed")
        buf += chunk


def one_round(args: argparse.Namespace, bodies: List[bytes]) -> dict:
    path = os.path.join(tempfile.mkdtemp(prefix="sdkcpu-"), "s.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    env = dict(os.environ, SDK_DIR=args.sdk_dir, CAPACITY=str(args.capacity),
               INLINE="1" if args.inline else "0", TOPIC=TOPIC, SKIFF_SOCKET=path)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    conn, _ = srv.accept()
    buf = bytearray()
    recv_frame(conn, buf)  # hello
    welcome = b'{"type":"welcome","version":1,"session":"s-1","max_frame":4194304,' \
              b'"features":["batch","cancel","extend","kafka_extend"],"methods":[]}'
    conn.sendall(len(welcome).to_bytes(4, "big") + welcome)
    n, sent, done, credits = len(bodies), 0, 0, args.capacity
    cpu0, sw0, t0 = cpu_s(child.pid), switches(child.pid), time.monotonic()
    frames_in = 0
    while done < n:
        out = []
        while credits and sent < n:
            k = min(credits, args.batch, n - sent)
            out.append(tasks_frame(bodies[sent:sent + k]))
            sent += k
            credits -= k
        if out:
            conn.sendall(b"".join(out))
        body = recv_frame(conn, buf)
        frames_in += 1
        got = body.count(b'"type":"ack"')
        if got == 0:
            raise RuntimeError(f"unexpected frame {body[:200]!r}")
        done += got
        credits += got
    wall, cpu = time.monotonic() - t0, cpu_s(child.pid) - cpu0
    sw = switches(child.pid) - sw0
    drain = b'{"type":"drain"}'
    conn.sendall(len(drain).to_bytes(4, "big") + drain)
    child.wait(timeout=30)
    conn.close()
    srv.close()
    os.unlink(path)
    return {"us_per_record": cpu / n * 1e6, "records_per_s": n / wall,
            "results_per_frame": n / frames_in, "switches_per_record": sw / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdk", action="append",
                    help="directory holding skiff_handler; repeat it to compare versions in "
                         "turns (default: this checkout's)")
    ap.add_argument("--inline", action="store_true")
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--capacity", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bodies = [task_frame(i) for i in range(args.records)]
    rows: dict = {sdk: [] for sdk in args.sdk or [os.path.dirname(HERE)]}
    for r in range(args.rounds):
        for sdk, got in rows.items():
            args.sdk_dir = sdk
            row = one_round(args, bodies)
            got.append(row)
            print("round %d, %s: %.1f us/record handler CPU, %.0f records/s, %.1f "
                  "results/frame, %.2f context switches/record"
                  % (r + 1, sdk, row["us_per_record"], row["records_per_s"],
                     row["results_per_frame"], row["switches_per_record"]))
    for sdk, got in rows.items():
        print("median %s (%s): %.1f us/record, %.0f records/s"
              % (sdk, "inline" if args.inline else "pool",
                 statistics.median(x["us_per_record"] for x in got),
                 statistics.median(x["records_per_s"] for x in got)))

if __name__ == "__main__":
    main()
