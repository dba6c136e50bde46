"""skiff's memory at ready, split the way a pod's cgroup sees it, for several skiff binaries side
by side (e.g. the normal dynamically linked build and the image's build).

For each binary and each mode a Python SDK handler and skiff start; once /readyz answers 200,
skiff idles 2 s and its /proc/<pid>/status is read: VmRSS = RssAnon (its own heap, stacks and
written data pages) + RssFile (pages of the executable and of the shared libraries it touched)
+ RssShmem. In a container nobody shares the file pages, so all of VmRSS is charged to the pod.
Also counted: the shared objects mapped (/proc/<pid>/maps) and the executable's size.

A binary given as image:NAME is the skiff of that container image (devstack/image.sh build),
run with `buildah run --isolation chroot` as uid 65532 (host network, the socket directory bind
mounted): the libraries it maps are the image's, not the host's.

Modes: zeebe (one job type, the Zeebe gateway at $ZEEBE_ADDRESS) and kafka (the same plus a
Kafka consumer and producer: $KAFKA_BOOTSTRAP, $SCHEMA_REGISTRY_URL, topic $TOPIC, which must
exist). Run by bench/image_memory.sh, which starts the brokers; prints a Markdown table.

  python3 bench/image_memory.py --mode zeebe --mode kafka dynamic=build-rel/skiff \
      image=image:localhost/skiff:dev
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0])
    return out


def shared_objects(pid):
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1]
        if ".so" in os.path.basename(path):
            names.add(path)
    return len(names)


def executable_rss(pid):
    """kB resident of the mappings of the executable file itself (from /proc/<pid>/smaps)."""
    exe, total, current = os.readlink(f"/proc/{pid}/exe"), 0, None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            current = head[5] if len(head) > 5 else ""
        elif head and head[0] == "Rss:" and current == exe:
            total += int(head[1])
    return total


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readyz(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def handler_code(mode):
    lines = ["import os, signal, sys",
             f"sys.path.insert(0, {str(ROOT / 'handler-protocol' / 'python')!r})",
             "from skiff_handler import Handler",
             "app = Handler('memory-bench', capacity=32)",
             "app.job('memory-bench')(lambda task: {'ok': True})"]
    if mode == "kafka":
        lines.append("app.topic(os.environ['TOPIC'])(lambda task: None)")
    lines += ["signal.signal(signal.SIGTERM, lambda *_: os._exit(0))", "app.run()"]
    return "\n".join(lines)


def skiff_args(mode, sock, admin):
    args = [f"--handler.socket={sock}", f"--admin.address={admin}",
            f"--zeebe.address={os.environ['ZEEBE_ADDRESS']}", "--zeebe.job_types=memory-bench",
            "--log.level=warn"]
    if mode == "kafka":
        args += [f"--kafka.brokers={os.environ['KAFKA_BOOTSTRAP']}",
                 f"--schema_registry.url={os.environ['SCHEMA_REGISTRY_URL']}",
                 f"--kafka.topics={os.environ['TOPIC']}", "--kafka.group_id=memory-bench"]
    return args


def skiff_pid(admin):
    """The skiff process serving `admin` (under buildah run it is not our child)."""
    for d in Path("/proc").iterdir():
        try:
            if (d.name.isdigit() and os.path.basename(os.readlink(d / "exe")) == "skiff"
                    and f"--admin.address={admin}" in (d / "cmdline").read_text().split("\0")):
                return int(d.name)
        except OSError:
            continue
    return None


def command(binary, args, work, ctr):
    if ctr is None:
        return [binary] + args
    return ["buildah", "run", "--isolation", "chroot", "--user", "65532:65532",
            "-v", f"{work}:{work}", ctr, "--", "/usr/bin/skiff"] + args


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(binary, mode, idle_s, ctr):
    work = Path(tempfile.mkdtemp(prefix="skiff-memory-"))
    work.chmod(0o777)  # skiff in the image runs as uid 65532
    sock, admin = str(work / "h.sock"), f"127.0.0.1:{free_port()}"
    # Only the command line configures skiff (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, ...
    # would turn Kafka on in the zeebe mode).
    env = {"PATH": os.environ["PATH"], "SKIFF_SOCKET": sock, "TOPIC": os.environ.get("TOPIC", "")}
    log = open(work / "log", "wb")
    handler = subprocess.Popen([sys.executable, "-c", handler_code(mode)], env=env,
                               stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    sk = subprocess.Popen(command(binary, skiff_args(mode, sock, admin), work, ctr), env=env,
                          stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not readyz(admin):
            if time.monotonic() > deadline or sk.poll() is not None:
                raise RuntimeError(f"{binary} ({mode}) not ready:\n"
                                   + (work / "log").read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        time.sleep(idle_s)
        pid = skiff_pid(admin)
        return dict(status(pid), so=shared_objects(pid), exe=executable_rss(pid))
    finally:
        stop(sk)
        stop(handler)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def image_skiff_size(ctr):
    mnt = subprocess.check_output(["buildah", "mount", ctr], text=True).strip()
    try:
        return os.path.getsize(Path(mnt) / "usr/bin/skiff")
    finally:
        subprocess.run(["buildah", "umount", ctr], stdout=subprocess.DEVNULL, check=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", action="append", choices=("zeebe", "kafka"))
    p.add_argument("--idle", type=float, default=2.0, help="seconds idle after ready")
    p.add_argument("--max-rss-mb", type=float,
                   help="exit 1 when a VmRSS at ready is above this (tests/image.sh: 8)")
    p.add_argument("--max-rss-mb-mode", action="append", default=[], metavar="MODE=MB",
                   help="the same for one mode, in place of --max-rss-mb (tests/image.sh: "
                        "kafka=9)")
    p.add_argument("binaries", nargs="+", help="label=path or label=image:NAME")
    args = p.parse_args()
    rows = []
    for spec in args.binaries:
        label, _, path = spec.partition("=")
        ctr = None
        if path.startswith("image:"):
            ctr = subprocess.check_output(["buildah", "from", "--pull=never", path[6:]],
                                          text=True).strip()
        try:
            size = os.path.getsize(path) if ctr is None else image_skiff_size(ctr)
            for mode in args.mode or ["zeebe"]:
                m = measure(path, mode, args.idle, ctr)
                rows.append((label, mode, size, m))
                print(f"{label} {mode}: {m}", file=sys.stderr)
        finally:
            if ctr:
                subprocess.run(["buildah", "rm", ctr], stdout=subprocess.DEVNULL, check=False)
    print("| skiff build | mode | VmRSS, MB | RssAnon, MB | RssFile, MB | RssShmem, MB "
          "| of which the executable's pages, MB | shared objects mapped | executable, MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, mode, size, m in rows:
        mb = [f"{m[k] / 1024:.1f}" for k in FIELDS]
        print(f"| {label} | {mode} | " + " | ".join(mb)
              + f" | {m['exe'] / 1024:.1f} | {m['so']} | {size / 1e6:.1f} |")
    limits = {mode: float(mb) for mode, _, mb in
              (spec.partition("=") for spec in args.max_rss_mb_mode)}
    over = [(label, mode, m["VmRSS"], limits.get(mode, args.max_rss_mb))
            for label, mode, _, m in rows
            if limits.get(mode, args.max_rss_mb) is not None
            and m["VmRSS"] > limits.get(mode, args.max_rss_mb) * 1024]
    for label, mode, kb, limit in over:
        print(f"{label} ({mode}): VmRSS {kb / 1024:.1f} MB at ready, above {limit} MB",
              file=sys.stderr)
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
