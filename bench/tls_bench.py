#!/usr/bin/env python3
"""What TLS to the gateway costs skiff: skiff + Node handler over TLS vs over plaintext, same
broker, same run, rounds alternating the order (Python 3 stdlib only; run by bench/run.sh after
bench/zeebe_bench.py, against the same broker).

The broker's gateway speaks one protocol on its one port, so both contenders reach it through
the same relay (devstack/tls_proxy.py): `plaintext` through it as a plain TCP relay, `tls`
through it terminating TLS (TLS 1.3, ECDSA P-256 certificate from devstack/certs.sh, skiff
verifying it). The relay's own CPU is not skiff's and is reported apart; the latency of both
columns includes the relay hop, so their difference is what TLS adds (skiff's and the relay's
crypto). Phases and figures are bench/zeebe_bench.py's: live (N instances at --rate) and backlog
(N waiting, then drained); CPU is skiff's utime+stime per 1,000 jobs; latency is JOB COMPLETED -
JOB CREATED from the engine's record stream. Target: TLS costs skiff at most 1.2x its plaintext
CPU per job."""
import argparse
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import zeebe_bench as zb

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "devstack" / "tls_proxy.py"
BEGIN, END = "<!-- tls-results:begin -->", "<!-- tls-results:end -->"

zb.CONTENDERS["skiff-plaintext"] = dict(
    kind="skiff", family="node", short="skiff plaintext", label="skiff + Node handler, h2c "
    "through the relay")
zb.CONTENDERS["skiff-tls"] = dict(
    kind="skiff", family="node", short="skiff TLS", label="skiff + Node handler, TLS (ALPN h2) "
    "through the TLS-terminating relay")
NAMES = ["skiff-plaintext", "skiff-tls"]
CERTS = {}
_start_skiff = zb.start_skiff


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_skiff(contender, cmd, env):
    """zeebe_bench's start_skiff, with the relay started first and skiff pointed at it."""
    if contender.name not in NAMES:
        return _start_skiff(contender, cmd, env)
    port = zb.free_port()
    tls = contender.name == "skiff-tls"
    pcmd = [sys.executable, str(PROXY), "--listen", "127.0.0.1:%d" % port,
            "--upstream", zb.ADDRESS, "--log", str(contender.workdir / "relay.jsonl")]
    pcmd += (["--cert", CERTS["cert"], "--key", CERTS["key"]] if tls else ["--plain"])
    relay = zb.Proc("relay", pcmd, dict(env), contender.workdir, ready=False)
    contender.procs.append(relay)
    contender.cpu0["relay"] = 0.0
    zb.wait_until(lambda: listening(port) or not relay.alive(), 10, "relay listening")
    env = dict(env, SKIFF_ZEEBE_ADDRESS="127.0.0.1:%d" % port, SKIFF_SECURITY_PLAINTEXT="allow")
    if tls:
        env.update(SKIFF_ZEEBE_TLS="true", SKIFF_ZEEBE_CA_FILE=CERTS["ca"])
    skiff = _start_skiff(contender, cmd, env)
    # stopped after skiff (which drains through it), before the handler is started
    contender.procs.remove(relay)
    contender.procs.append(relay)
    return skiff


zb.start_skiff = start_skiff


def per_k(res, role):
    cpu = (res.get("cpu_s") or {}).get(role)
    return 1000.0 * cpu / res["jobs"] if cpu is not None and res.get("jobs") else None


def calls(res):
    n = (res.get("activate_calls") or 0) + (res.get("complete_calls") or 0)
    return n or None


def calls_per_k(res):
    return 1000.0 * calls(res) / res["jobs"] if calls(res) and res.get("jobs") else None


def per_call(res):
    """skiff's CPU per gateway call (ActivateJobs + CompleteJob): the live phase's CPU per job
    follows how many long polls the load led to, which differs between runs on a busy machine;
    per call it compares like with like."""
    cpu = (res.get("cpu_s") or {}).get("skiff")
    return 1000.0 * cpu / calls(res) if cpu is not None and calls(res) else None


def report(res, args):
    lines = ["Same broker, same run, %d round%s (medians), %d instances per phase, live at %g/s. "
             "CPU is skiff's own (the relay's apart); latency from the engine's records, both "
             "through the relay." % (args.rounds, "s" if args.rounds > 1 else "", args.instances,
                                     args.rate), "",
             "| | plaintext | TLS | TLS ÷ plaintext |", "|---|---|---|---|"]
    for phase in ("live", "backlog"):
        p, t = res.get(("skiff-plaintext", phase)), res.get(("skiff-tls", phase))
        if not p or not t:
            lines.append("| %s | not available | | |" % phase)
            continue
        rows = [("skiff CPU s / 1,000 jobs", per_k(p, "skiff"), per_k(t, "skiff"), 3),
                ("gateway calls / 1,000 jobs", calls_per_k(p), calls_per_k(t), 0),
                ("skiff CPU ms / gateway call", per_call(p), per_call(t), 3),
                ("relay CPU s / 1,000 jobs", per_k(p, "relay"), per_k(t, "relay"), 3),
                ("jobs/s", p.get("jobs_per_s"), t.get("jobs_per_s"), 0),
                ("latency p50 ms", p.get("lat_p50"), t.get("lat_p50"), 1),
                ("latency p99 ms", p.get("lat_p99"), t.get("lat_p99"), 1)]
        for label, a, b, d in rows:
            ratio = "%.2f" % (b / a) if a and b is not None else ""
            lines.append("| %s: %s | %s | %s | %s |" % (phase, label, zb.fmt(a, d), zb.fmt(b, d),
                                                       ratio))
    lines += ["", "Command: `%s`." % args.command]
    return "\n".join(lines)


def write_doc(path, text):
    block = "%s\n<!-- Written by bench/tls_bench.py; everything between these markers is " \
            "replaced on each run. -->\n\n%s\n\n%s" % (BEGIN, text, END)
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## TLS to the gateway: skiff over TLS vs plaintext\n\n" + \
            block + "\n"
    path.write_text(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--warmup", type=int, default=0, help="warm-up instances (0: after "
                    "zeebe_bench.py the broker is warm)")
    ap.add_argument("--phase-timeout", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skiff", default=str(ROOT / "build-bench" / "skiff"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--command", default="bench/run.sh")
    args = ap.parse_args()
    run_id = zb.uuid.uuid4().hex[:6]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="skiff-tls-bench-") as tmp:
        subprocess.run([str(ROOT / "devstack" / "certs.sh"), tmp + "/certs"], check=True)
        CERTS.update(cert=tmp + "/certs/server.pem", key=tmp + "/certs/server.key",
                     ca=tmp + "/certs/ca.pem")
        zb.warm_up(args, tmp, run_id)
        for rnd, order in zb.rounds(NAMES, args.rounds):
            for n in order:
                for phase in ("live", "backlog"):
                    tag = "%s-r%d" % (phase, rnd + 1)
                    runs.setdefault((n, phase), []).append(
                        zb.run_phase(args, tmp, run_id, n, phase, args.instances, tag=tag))
    res = {k: zb.merge(v) for k, v in runs.items()}
    text = report(res, args)
    zb.publish(args, text, {"%s/%s" % k: v for k, v in runs.items()}, write_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
