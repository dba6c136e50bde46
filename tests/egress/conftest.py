"""Egress fixtures: the OpenAI-compatible upstream stand-in (devstack/llm_upstream.py, plain and
HTTPS), the real OpenBao (devstack/openbao.sh, port 8400: tests/egress.sh starts it, or the
fixture does when run alone), and the real skiff binary (SKIFF_BIN) configured with egress
routes through a JSON config file. Ports: upstreams from 19301 on, skiff 19320-19399 (the
first free ones: another run of the suite, e.g. the integrator's, may hold some).

Tests assert on what the upstream received (its /_requests record), on what the client got,
and on skiff's /metrics and log, as the egress contract of issue 12 fixes them."""
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVSTACK = ROOT / "devstack"
sys.path.insert(0, str(DEVSTACK))
import skiff_process  # noqa: E402  (devstack/skiff_process.py)

SKIFF_BIN = Path(os.environ.get("SKIFF_BIN", ROOT / "build-asan" / "skiff"))
_skiff_ports = itertools.cycle(range(19320, 19400, 2))


def wait_until(pred, timeout=30.0, interval=0.05, what="condition"):
    """skiff_process.wait_until polling faster: egress states change within milliseconds."""
    return skiff_process.wait_until(pred, timeout, interval, what)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_in(ports, n=1):
    """The first port p of `ports` with p..p+n-1 free."""
    for p in ports:
        if all(port_free(p + i) for i in range(n)):
            return p
    raise RuntimeError(f"no free port in {ports}")


class Upstream:
    """devstack/llm_upstream.py in its own process; control and record over HTTP(S)."""

    def __init__(self, tmp, cert=None, key=None, cafile=None):
        self.port = port = free_in(range(19301, 19320))
        self.scheme = "https" if cert else "http"
        self.url = f"{self.scheme}://127.0.0.1:{port}"
        self.cafile = cafile
        self.log_path = tmp / f"upstream-{port}.log"
        args = [sys.executable, str(DEVSTACK / "llm_upstream.py"), "--port", str(port)]
        if cert:
            args += ["--cert", str(cert), "--key", str(key)]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        wait_until(lambda: self._health() or self.proc.poll() is not None, timeout=15,
                   what=f"llm_upstream on {port}")
        assert self.proc.poll() is None, self.log_path.read_text()

    def _open(self, path, data=None, method=None):
        import ssl
        ctx = ssl.create_default_context(cafile=self.cafile) if self.cafile else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return json.load(r)

    def _health(self):
        try:
            return self._open("/_health")["ok"]
        except OSError:
            return False

    def control(self, **cmd):
        self._open("/_control", json.dumps(cmd).encode(), "POST")

    def queue(self, *behaviours):
        self.control(queue=list(behaviours))

    def reset(self):
        self.control(reset=True)

    def requests(self):
        return self._open("/_requests")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def header(record, name):
    """Values of header `name` (case-insensitive) in a request the upstream recorded."""
    return [v for k, v in record["headers"] if k.lower() == name.lower()]


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(DEVSTACK / "certs.sh"), str(d)], check=True)
    return d


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    u = Upstream(tmp_path_factory.mktemp("upstream"))
    yield u
    u.stop()


@pytest.fixture(scope="session")
def tls_upstream(tmp_path_factory, certs):
    u = Upstream(tmp_path_factory.mktemp("tls-upstream"),
                 cert=certs / "server-chain.pem", key=certs / "server.key",
                 cafile=certs / "ca.pem")
    yield u
    u.stop()


@pytest.fixture
def up(upstream):
    """The plain upstream, reset for this test; reset again after it, which releases any
    answer a failed test left held (before its skiff is stopped)."""
    upstream.reset()
    yield upstream
    upstream.reset()


@pytest.fixture
def tup(tls_upstream):
    tls_upstream.reset()
    yield tls_upstream
    tls_upstream.reset()


@pytest.fixture(scope="session")
def openbao():
    """The real OpenBao (devstack/openbao.sh): the one tests/egress.sh started, else one
    started (and stopped) here, on SKIFF_OPENBAO_PORT (8400)."""
    env = dict(os.environ, SKIFF_OPENBAO_PORT=os.environ.get("SKIFF_OPENBAO_PORT", "8400"))
    sh = str(DEVSTACK / "openbao.sh")
    started = subprocess.run([sh, "status"], env=env, capture_output=True).returncode != 0
    if started:
        subprocess.run([sh, "start"], env=env, check=True)
    out = subprocess.run([sh, "env"], env=env, capture_output=True, text=True, check=True).stdout
    values = {}
    for line in out.splitlines():
        k, v = line.removeprefix("export ").split("=", 1)
        values[k] = v.strip("'\"")

    import hvac

    class Bao:
        addr = values["VAULT_ADDR"]
        client = hvac.Client(url=addr, token=values["SKIFF_OPENBAO_ROOT_TOKEN"])

        @staticmethod
        def put(path, **fields):
            Bao.client.secrets.kv.v2.create_or_update_secret(path=path, secret=fields,
                                                             mount_point="secret")

        @staticmethod
        def jwt(file):
            subprocess.run([sh, "jwt", str(file)], env=env, check=True)

    yield Bao
    if started:
        subprocess.run([sh, "stop"], env=env, check=False)


class Skiff(skiff_process.SkiffProcess):
    """The real skiff binary with egress routes. `routes`: {name: {setting: value}};
    `config`: more keys of the config file (flat dotted names)."""

    admin_timeout = 5

    def __init__(self, tmp: Path, routes, **config):
        self.tmp = tmp
        self.port = free_in((next(_skiff_ports) for _ in range(40)), 2)
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = {"egress.listen": f"127.0.0.1:{self.port}",
               "egress.routes": list(routes),
               "admin.address": f"127.0.0.1:{self.port + 1}",
               "zeebe.address": "127.0.0.1:1",
               "handler.socket": str(tmp / f"handler-{self.port}.sock"),
               "log.level": "debug",
               "security.plaintext": "allow"}
        cfg.update(config)
        for name, settings in routes.items():
            for k, v in settings.items():
                cfg[f"egress.routes.{name}.{k}"] = v
        self.config_path = tmp / f"skiff-{self.port}.json"
        self.config_path.write_text(json.dumps(cfg, indent=1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")
               or k in ("SKIFF_BIN",)}
        env.update({"SKIFF_CONFIG": str(self.config_path),
                    "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")})
        for k in ("VAULT_ADDR", "ZEEBE_ADDRESS", "CAMUNDA_ZEEBE_ADDRESS"):
            env.pop(k, None)
        super().__init__(SKIFF_BIN, env, tmp / f"skiff-{self.port}.log", self.port + 1,
                         ready_timeout=20)
        wait_until(lambda: self.listening() or self.proc.poll() is not None, timeout=10,
                   what="skiff's egress listener")
        assert self.proc.poll() is None, self.logs()

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def egress_lines(self):
        out = []
        for line in self.logs().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("component") == "egress" and "route" in obj:
                out.append(obj)
        return out

    def stop(self, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc


@pytest.fixture
def skiff_factory(tmp_path):
    """Starts skiffs for a test; each is stopped after it and must exit 0, sanitizer-clean."""
    started = []

    def make(routes, **config):
        s = Skiff(tmp_path, routes, **config)
        started.append(s)
        return s

    yield make
    failures = []
    for s in started:
        rc = s.stop()
        if rc != 0:
            failures.append(f"skiff exited {rc}:\n{s.logs()[-3000:]}")
        try:
            s.check_clean()
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


@pytest.fixture
def uid():
    return uuid.uuid4().hex[:10]


TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def oai(skiff, route, **kw):
    """The official openai client pointed at a skiff route, with a dummy key and no retries of
    its own (skiff's retries are what is tested)."""
    import openai
    kw.setdefault("api_key", "sk-handler-dummy")
    return openai.OpenAI(base_url=f"{skiff.url}/{route}", max_retries=0, **kw)


def error_of(response):
    """The JSON refusal body of skiff: {"error": {"type", "message", "route"}}."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message", "route"} <= set(body["error"]), body
    return body["error"]


def raw_exchange(port, data: bytes, timeout=20.0):
    """Sends `data` on a fresh connection and reads until skiff closes it (or timeout):
    returns (bytes received, closed by the peer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out, closed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
        return out, closed


def status_of(raw: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(m.group(1)) if m else 0


def assert_no_secret(skiff, *secrets, extra=()):
    """None of `secrets` in skiff's log, /metrics, /readyz or any of the `extra` texts."""
    texts = {"log": skiff.logs(), "metrics": skiff.admin("/metrics")[1],
             "readyz": skiff.admin("/readyz")[1]}
    for i, t in enumerate(extra):
        texts[f"response {i}"] = t if isinstance(t, str) else t.decode("utf-8", "replace")
    for what, text in texts.items():
        for s in secrets:
            assert s not in text, f"secret found in skiff's {what}"


def secret_file(tmp_path, value, name="api-key"):
    p = tmp_path / name
    p.write_text(value)
    return f"file:{p}"
