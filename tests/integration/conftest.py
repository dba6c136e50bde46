"""Integration fixtures: the real Zeebe broker (devstack), the real skiff binary, SDK handlers.

Tests assert on what the engine recorded (its record stream, written by the broker's exporter)
or on process outcomes seen through Camunda's own client (zbctl)."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "devstack"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import records as zrecords  # noqa: E402  (devstack/records.py)
from devstack_env import shell_env, terminate  # noqa: E402  (devstack/devstack_env.py)
import zeebe_client  # noqa: E402  (devstack/zeebe_client.py)
from skiff_process import SkiffProcess, wait_until  # noqa: E402,F401  (devstack/skiff_process.py)

SKIFF_BIN = Path(os.environ.get("SKIFF_BIN", ROOT / "build" / "skiff"))
ZEEBE_SH = ROOT / "devstack" / "zeebe.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ephemeral_start() -> int:
    """First port of the kernel's range for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(n: int) -> int:
    """First of n consecutive free loopback ports (a broker uses its gateway port and the next
    three; its monitoring port is a block of 1). Taken below the kernel's ephemeral range: a
    broker binds seconds after this check, and in between any outgoing connection of the
    machine may be given a port from that range."""
    import random
    top = min(ephemeral_start(), 60000)
    for _ in range(200):
        base = random.randrange(20000, top - n)
        try:
            socks = []
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


@pytest.fixture(scope="session")
def broker():
    """The devstack broker; started here unless one is already running."""
    started = subprocess.run([str(ZEEBE_SH), "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([str(ZEEBE_SH), "start"], check=True)
    values = shell_env([str(ZEEBE_SH), "env"])
    os.environ.update(values)  # zeebe_client and records read the address and stream path
    yield values
    if started:
        subprocess.run([str(ZEEBE_SH), "stop"], check=False)


@pytest.fixture
def uid():
    return uuid.uuid4().hex[:10]


class Skiff(SkiffProcess):
    """The real skiff binary, configured through its environment."""

    def __init__(self, broker, tmp: Path, job_types, **config):
        self.tmp = tmp
        self.socket = str(tmp / "handler.sock")
        admin_port = free_port()
        env = dict(os.environ)
        env.update({
            "SKIFF_HANDLER_SOCKET": self.socket,
            "SKIFF_ADMIN_ADDRESS": f"127.0.0.1:{admin_port}",
            "SKIFF_ZEEBE_ADDRESS": config.pop("address", broker["ZEEBE_ADDRESS"]),
            "SKIFF_ZEEBE_JOB_TYPES": ",".join(job_types),
            "SKIFF_LOG_LEVEL": "debug",
        })
        for key, value in config.items():
            env["SKIFF_" + key.upper()] = str(value)
        super().__init__(SKIFF_BIN, env, tmp / "skiff.log", admin_port, ready_timeout=15)

    def http(self, path):
        """The admin server's answer to GET `path` (SkiffProcess.admin)."""
        return self.admin(path)

    def stop(self, sig=signal.SIGTERM, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout=60) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.log.close()
        return rc


class HandlerProc:
    """An SDK handler process (tests/integration/handlers/behave.py)."""

    def __init__(self, skiff: Skiff, job_types, **env):
        e = dict(os.environ)
        e.update({"SKIFF_SOCKET": skiff.socket, "JOB_TYPES": ",".join(job_types)})
        e.update({k.upper(): str(v) for k, v in env.items()})
        self.log_path = skiff.tmp / f"handler-{uuid.uuid4().hex[:6]}.log"
        self.out = open(self.log_path, "wb")
        script = Path(__file__).resolve().parent / "handlers" / "behave.py"
        self.proc = subprocess.Popen([sys.executable, str(script)], env=e, stdout=self.out,
                                     stderr=self.out)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        terminate(self.proc, timeout=10)
        self.out.close()


@pytest.fixture
def stack(broker, tmp_path):
    """Factory for skiff instances and handlers; everything is stopped after the test."""
    skiffs, handlers = [], []

    class Stack:
        records_path = broker.get("SKIFF_ZEEBE_RECORDS")
        address = broker["ZEEBE_ADDRESS"]

        def skiff(self, job_types, **config):
            d = Path(tempfile.mkdtemp(dir=tmp_path))
            s = Skiff(broker, d, job_types, **config)
            skiffs.append(s)
            return s

        @staticmethod
        def find_all(value_type, intent, **value):
            """Engine records so far with this value type, intent and value fields."""
            return zrecords.records(value_type=value_type, intent=intent, **value)

        def find(self, value_type, intent, **value):
            found = self.find_all(value_type, intent, **value)
            return found[0] if found else None

        def handler(self, skiff, job_types, **env):
            h = HandlerProc(skiff, job_types, **env)
            handlers.append(h)
            return h

    yield Stack()
    for h in handlers:
        h.stop()
    for s in skiffs:
        if s.proc.poll() is None:
            s.stop()
        s.check_clean()
