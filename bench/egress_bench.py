#!/usr/bin/env python3
"""Egress benchmark: skiff's egress path vs nginx (Debian's, a plain reverse proxy) vs a direct
call, to the same upstream, in the same run, on loopback.

  - the upstream for request latency: a second nginx answering every request with a fixed
    chat.completion JSON (`return 200`), so the upstream's own time is as small and as steady
    as it gets;
  - added latency per request, p50/p99 (sequential on one keep-alive connection, and with
    --concurrency connections at once): the proxy's percentile minus the direct call's;
  - TTFB overhead for an SSE stream: devstack/llm_upstream.py streams a chat completion
    (`stream: true`); time from the request sent to the first body byte, through each path;
  - CPU per 1,000 requests of skiff and of the proxying nginx (master + worker), from
    /proc/<pid>/stat (utime + stime) around the request phases.

Rounds interleave the three paths (direct, nginx, skiff) so that the machine's load, which
changes over the run, falls on all of them alike. Writes the "Results (egress)" section of
docs/benchmarks.md (--no-doc: print only).

  bench/egress_bench.py [--requests N] [--concurrency C] [--rounds R] [--streams S]
  SKIFF_BIN: the skiff binary with egress (default build/skiff)

Ports: skiff 19390 (admin 19391), the SSE stand-in 19392, nginx proxy 19401, nginx upstream
19402.
"""
import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIFF_BIN = Path(os.environ.get("SKIFF_BIN", ROOT / "build" / "skiff"))
SKIFF_PORT, SKIFF_ADMIN, SSE_PORT, NGINX_PROXY, NGINX_UP = 19390, 19391, 19392, 19401, 19402
BEGIN, END = "<!-- egress-results:begin -->", "<!-- egress-results:end -->"
KEY = "sk-bench-not-a-secret-0000000000000000"
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "A fixed answer for the bench."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}})
BODY = json.dumps({"model": "gpt-4o-mini", "max_tokens": 64, "messages": [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Summarise the claim in one sentence, please."}]}).encode()
SSE_BODY = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "stream"}]}).encode()


def say(msg):
    print("egress_bench: " + msg, file=sys.stderr, flush=True)


def wait_port(port, proc=None, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for port {port} exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_s(pids):
    """utime + stime of these processes (all their threads), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Nginx:
    """One nginx (master + 1 worker) with its own prefix and generated config."""

    def __init__(self, work, name, server_block):
        self.dir = work / name
        (self.dir / "logs").mkdir(parents=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon on;
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  keepalive_requests 1000000;
  {server_block}
}}
""")
        subprocess.run(["nginx", "-p", str(self.dir), "-c", str(conf)], check=True)
        self.master = int((self.dir / "nginx.pid").read_text())

    def pids(self):
        return [self.master] + children(self.master)

    def stop(self):
        try:
            os.kill(self.master, signal.SIGQUIT)
        except ProcessLookupError:
            return
        for _ in range(100):
            if not Path(f"/proc/{self.master}").exists():
                return
            time.sleep(0.05)
        os.kill(self.master, signal.SIGKILL)


def upstream_block():
    answer = ANSWER.replace("\\", "\\\\").replace("'", "\\'")
    return f"""
  server {{
    listen 127.0.0.1:{NGINX_UP};
    default_type application/json;
    location / {{ return 200 '{answer}'; }}
  }}"""


def proxy_block():
    return f"""
  upstream llm {{ server 127.0.0.1:{NGINX_UP}; keepalive 64; }}
  upstream sse {{ server 127.0.0.1:{SSE_PORT}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{NGINX_PROXY};
    client_max_body_size 1m;
    location /openai/ {{
      proxy_pass http://llm/v1/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {KEY}";
    }}
    location /sse/ {{
      proxy_pass http://sse/v1/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {KEY}";
      proxy_buffering off;
    }}
  }}"""


def start_skiff(work):
    keyfile = work / "api-key"
    keyfile.write_text(KEY)
    cfg = {"egress.listen": f"127.0.0.1:{SKIFF_PORT}", "egress.routes": ["openai", "sse"],
           "egress.routes.openai.upstream": f"http://127.0.0.1:{NGINX_UP}/v1",
           "egress.routes.openai.credential": f"file:{keyfile}",
           "egress.routes.sse.upstream": f"http://127.0.0.1:{SSE_PORT}/v1",
           "egress.routes.sse.credential": f"file:{keyfile}",
           "admin.address": f"127.0.0.1:{SKIFF_ADMIN}", "zeebe.address": "127.0.0.1:1",
           "handler.socket": str(work / "handler.sock"), "log.level": "warn",
           "security.plaintext": "allow"}
    path = work / "skiff.json"
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
    env["SKIFF_CONFIG"] = str(path)
    log = open(work / "skiff.log", "ab")
    proc = subprocess.Popen([str(SKIFF_BIN)], env=env, stdout=log, stderr=log)
    wait_port(SKIFF_PORT, proc)
    return proc


def timed_requests(port, prefix, n, out, body=BODY):
    """n POSTs on one keep-alive connection; appends each latency (s) to out."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path = prefix + "/chat/completions"
    hdrs = {"Content-Type": "application/json"}
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        out.append(time.perf_counter() - t0)
        if r.status != 200 or b"chat.completion" not in data:
            raise RuntimeError(f"{prefix} on {port}: {r.status} {data[:200]!r}")
    c.close()


def concurrent(port, prefix, n, conc):
    out, threads = [], []
    per = max(1, n // conc)
    errors = []

    def run():
        mine = []
        try:
            timed_requests(port, prefix, per, mine)
        except Exception as e:  # reported after the join
            errors.append(e)
        out.extend(mine)

    for _ in range(conc):
        threads.append(threading.Thread(target=run))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def ttfb(port, prefix, n):
    out = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", prefix + "/chat/completions", body=SSE_BODY,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        first = r.read1(1)
        out.append(time.perf_counter() - t0)
        rest = r.read()
        if r.status != 200 or not first or b"[DONE]" not in first + rest:
            raise RuntimeError(f"stream via {prefix} on {port}: {r.status}")
    c.close()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="per path and round, sequential")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=200, help="SSE streams per path and round")
    ap.add_argument("--label", help="what the skiff binary is (default: its path)")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    if not shutil.which("nginx"):
        sys.exit("egress_bench: nginx is not installed (devstack/setup.sh installs it)")
    if not SKIFF_BIN.exists():
        sys.exit(f"egress_bench: no skiff binary at {SKIFF_BIN} (SKIFF_BIN)")
    work = Path(tempfile.mkdtemp(prefix="skiff-egress-bench-"))
    procs, nginxes = [], []
    try:
        nginxes.append(Nginx(work, "upstream", upstream_block()))
        sse_log = open(work / "sse.log", "ab")
        sse = subprocess.Popen([sys.executable, str(ROOT / "devstack" / "llm_upstream.py"),
                                "--port", str(SSE_PORT)], stdout=sse_log, stderr=sse_log)
        procs.append(sse)
        wait_port(SSE_PORT, sse)
        nginxes.append(Nginx(work, "proxy", proxy_block()))
        skiff = start_skiff(work)
        procs.append(skiff)
        wait_port(NGINX_PROXY)
        res = run(args, skiff, nginxes[1])
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in nginxes:
            n.stop()
    text = report(res, args)
    print(text)
    if not args.no_doc:
        write_doc(Path(args.doc), text)
    shutil.rmtree(work, ignore_errors=True)


PATHS = {"direct": (NGINX_UP, "/v1"), "nginx": (NGINX_PROXY, "/openai"),
         "skiff": (SKIFF_PORT, "/openai")}
SSE_PATHS = {"direct": (SSE_PORT, "/v1"), "nginx": (NGINX_PROXY, "/sse"),
             "skiff": (SKIFF_PORT, "/sse")}


def run(args, skiff, nginx_proxy):
    seq = {k: [] for k in PATHS}
    par = {k: [] for k in PATHS}
    streams = {k: [] for k in PATHS}
    cpu = {"skiff": 0.0, "nginx": 0.0}
    reqs = {"skiff": 0, "nginx": 0}
    pids = {"skiff": lambda: [skiff.pid], "nginx": nginx_proxy.pids}
    for name, (port, prefix) in PATHS.items():  # warm-up: connections, caches
        timed_requests(port, prefix, 200, [])
    for rnd in range(args.rounds):
        say(f"round {rnd + 1}/{args.rounds}")
        for name, (port, prefix) in PATHS.items():
            before = cpu_s(pids[name]()) if name in cpu else 0
            timed_requests(port, prefix, args.requests, seq[name])
            par[name] += concurrent(port, prefix, args.requests, args.concurrency)
            if name in cpu:
                cpu[name] += cpu_s(pids[name]()) - before
                reqs[name] += args.requests + (args.requests // args.concurrency) * \
                    args.concurrency
        for name, (port, prefix) in SSE_PATHS.items():
            streams[name] += ttfb(port, prefix, args.streams)
    return {"seq": seq, "par": par, "streams": streams, "cpu": cpu, "reqs": reqs,
            "load": os.getloadavg()}


def report(res, args):
    us = 1e6
    lines = [
        f"Same upstream, same run, {args.rounds} rounds interleaving the three paths; "
        f"{args.requests} sequential requests per path and round on one keep-alive "
        f"connection, as many again over {args.concurrency} connections at once, and "
        f"{args.streams} SSE streams. Load average at the end: "
        + ", ".join(f"{x:.1f}" for x in res["load"])
        + f" ({os.cpu_count()} cores). skiff: {args.label or '`%s`' % SKIFF_BIN}.",
        "", "| | direct | nginx | skiff | nginx added | skiff added |",
        "|---|---|---|---|---|---|"]
    for label, key in (("sequential", "seq"), (f"{args.concurrency} at once", "par")):
        for p in (50, 99):
            d, n, s = (pct(res[key][k], p) * us for k in ("direct", "nginx", "skiff"))
            lines.append(f"| {label}: latency p{p} µs | {d:.0f} | {n:.0f} | {s:.0f} | "
                         f"{n - d:+.0f} | {s - d:+.0f} |")
    for p in (50, 99):
        d, n, s = (pct(res["streams"][k], p) * us for k in ("direct", "nginx", "skiff"))
        lines.append(f"| SSE stream: TTFB p{p} µs | {d:.0f} | {n:.0f} | {s:.0f} | "
                     f"{n - d:+.0f} | {s - d:+.0f} |")
    per_k = {k: 1000 * 1000 * res["cpu"][k] / res["reqs"][k] for k in ("nginx", "skiff")}
    lines.append(f"| CPU ms / 1,000 requests (the proxy's own) | | {per_k['nginx']:.0f} | "
                 f"{per_k['skiff']:.0f} | | |")
    med = {k: statistics.median(res["seq"][k]) * us for k in res["seq"]}
    lines += ["", f"Sequential medians (µs): direct {med['direct']:.0f}, nginx "
              f"{med['nginx']:.0f}, skiff {med['skiff']:.0f}. CPU from /proc/<pid>/stat "
              "(skiff's process, nginx's master and worker), over the request phases only "
              "(not the streams).",
              "", "Command: `" + shlex.join(["bench/egress_bench.py"] + sys.argv[1:]) + "`."]
    return "\n".join(lines)


def write_doc(path, text):
    block = (f"{BEGIN}\n<!-- Written by bench/egress_bench.py; everything between these "
             f"markers is replaced on each run. -->\n\n{text}\n\n{END}")
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## Egress: skiff vs nginx vs a direct call\n\n" \
            "### Results (egress)\n\n" + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
