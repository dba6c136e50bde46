"""Helpers for fault and load tests: a broker of a test's own that can be restarted without
losing its state, and a fast, filtered reader of a (large) record stream.

OwnBroker runs devstack/zeebe.sh with its own ports and run dir. `zeebe.sh start` always
starts clean (it wipes the run dir, data included), which is right for a fresh broker but
would make a "restart" lose every process instance. With keep_data the broker's data
directory is moved out of the run dir through the documented SKIFF_ZEEBE_JAVA_OPTS (a Java
system property, which Spring Boot ranks above the ZEEBE_BROKER_DATA_DIRECTORY environment
variable zeebe.sh sets), so `zeebe.sh stop` + `zeebe.sh start` is a real broker restart: same
log, same state, jobs and deadlines included.

The record stream file is rewritten from scratch on each start (log4j2.xml: append="false")
and the broker re-exports from its last persisted exporter position, so restart() keeps the
previous file aside and records() reads all of them, each record once (by log position).
"""
import collections
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from conftest import ZEEBE_SH, free_port_block, wait_until
import zeebe_client


class OwnBroker:
    def __init__(self, base: Path, keep_data: bool = True, heap: str = None, tls: dict = None):
        """tls: {"cert", "key", "ca"} paths: the gateway speaks TLS only (zeebe.sh's
        SKIFF_ZEEBE_TLS_*) and the zbctl client trusts ca."""
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port_block(4)
        self.monitor = free_port_block(1)
        self.address = f"127.0.0.1:{self.port}"
        self.run_dir = self.base / "run"
        self.data_dir = self.base / "data"
        self.archives = []
        env = {k: v for k, v in os.environ.items()
               if k not in ("SKIFF_ZEEBE_RECORDS", "SKIFF_ZEEBE_RUN_DIR", "SKIFF_ZEEBE_ADDRESS",
                            "ZEEBE_ADDRESS")}
        env.update(SKIFF_ZEEBE_PORT=str(self.port), SKIFF_ZEEBE_MONITOR_PORT=str(self.monitor),
                   SKIFF_ZEEBE_RUN_DIR=str(self.run_dir))
        if keep_data:
            opts = env.get("SKIFF_ZEEBE_JAVA_OPTS", "")
            env["SKIFF_ZEEBE_JAVA_OPTS"] = \
                f"{opts} -Dzeebe.broker.data.directory={self.data_dir}".strip()
        if heap:
            env["SKIFF_ZEEBE_HEAP"] = heap
        if tls:
            env.update(SKIFF_ZEEBE_TLS_CERT=str(tls["cert"]), SKIFF_ZEEBE_TLS_KEY=str(tls["key"]),
                       SKIFF_ZEEBE_TLS_CA=str(tls["ca"]))
        self.env = env
        self.client = zeebe_client.Zeebe(address=self.address,
                                          ca_path=str(tls["ca"]) if tls else None)

    @property
    def records_path(self) -> Path:
        return self.run_dir / "records.jsonl"

    def start(self):
        subprocess.run([str(ZEEBE_SH), "start"], env=self.env, check=True)
        return self

    def stop(self, archive=True):
        subprocess.run([str(ZEEBE_SH), "stop"], env=self.env, check=False)
        if archive and self.records_path.exists():
            keep = self.base / f"records-{len(self.archives)}.jsonl"
            shutil.copyfile(self.records_path, keep)
            self.archives.append(keep)

    def crash(self):
        """SIGKILL the broker (the one this object started, by the pid zeebe.sh recorded)."""
        pid = int((self.run_dir / "zeebe.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                   Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
                   timeout=30, what="broker gone")
        self.stop()  # clears the pid file; keeps the stream aside

    def restart(self):
        self.stop()
        self.start()

    def deploy(self, path):
        """Deploys; right after a (re)start the gateway may briefly answer UNAVAILABLE."""
        def attempt():
            try:
                self.client.deploy(str(path))
                return True
            except zeebe_client.ZbctlError as e:
                if e.code not in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                    raise
                return False
        wait_until(attempt, timeout=60, what="deployment accepted")

    def scan(self, *needles):
        """Every record so far, once each, over restarts: see scan()."""
        return scan([*self.archives, self.records_path], *needles)


def scan(paths, *needles, since_offset=0):
    """Records of the given stream files whose JSON line contains every byte string in
    `needles` (a cheap pre-filter: only those lines are parsed), each record once by
    (partitionId, position). since_offset applies to the last file only. A 10,000-instance
    stream is a few hundred MB; parsing only what a test asks about keeps this fast."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    needles = [n.encode() if isinstance(n, str) else n for n in needles]
    out, seen = [], set()
    for i, path in enumerate(paths):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue
        with f:
            if i == len(paths) - 1 and since_offset:
                f.seek(since_offset)
            data = f.read()
        end = data.rfind(b"\n")
        for line in data[:end + 1].split(b"\n"):
            if not line.startswith(b"{") or not all(n in line for n in needles):
                continue
            rec = json.loads(line)
            ident = (rec.get("partitionId"), rec.get("position"))
            if ident in seen:
                continue
            seen.add(ident)
            out.append(rec)
    return out


class Tail:
    """Incremental scan(): new() returns the records written since the last call whose line
    contains every needle (a line still being written waits for the next call)."""

    def __init__(self, path, *needles, since_offset=0):
        self.path = path
        self.needles = [n.encode() if isinstance(n, str) else n for n in needles]
        self.offset = since_offset

    def new(self):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return [json.loads(line) for line in data[:end].split(b"\n")
                if line.startswith(b"{") and all(n in line for n in self.needles)]


def pick(recs, value_type=None, intent=None, record_type=None, **value):
    """Records of recs with this valueType / intent / recordType and these value fields."""
    out = []
    for r in recs:
        if value_type and r.get("valueType") != value_type:
            continue
        if intent and r.get("intent") != intent:
            continue
        if record_type and r.get("recordType") != record_type:
            continue
        v = r.get("value") or {}
        if all(v.get(k) == want for k, want in value.items()):
            out.append(r)
    return out


def needle(field, value):
    """The bytes a record line contains for "field":value (compact JSON, as the exporter
    writes it)."""
    return f'"{field}":{json.dumps(value)}'.encode()


def job_outcomes(skiff, job_type):
    """skiff_zeebe_jobs_total for one job type as {outcome: count}, every outcome skiff
    exports (activated, completed, failed, abandoned, yielded, not_found, ...); absent ones
    read as 0 through .get() / the defaultdict."""
    out = collections.defaultdict(float)
    prefix = "skiff_zeebe_jobs_total{"
    for line in skiff.http("/metrics")[1].splitlines():
        if not line.startswith(prefix) or f'job_type="{job_type}"' not in line:
            continue
        head, value = line.rsplit(" ", 1)
        outcome = head.split('outcome="', 1)[1].split('"', 1)[0]
        out[outcome] += float(value)
    return out


def settled(o):
    """Every activation has exactly one outcome."""
    return o["activated"] == sum(v for k, v in o.items() if k != "activated")
