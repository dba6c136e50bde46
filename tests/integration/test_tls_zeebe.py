"""skiff to the gateway over TLS and mTLS: the real broker with its gateway's TLS on
(zeebe.broker.gateway.security.*), certificates made per run by devstack/certs.sh.

Zeebe 8.5's gateway has no client-certificate check, so mTLS runs through devstack/tls_proxy.py
in front of it (what a mesh sidecar or ingress does); the proxy re-reads its certificate per
connection (server rotation) and logs each client certificate's CN (client rotation). The proxy
itself is checked with grpcio, the official gRPC client, below."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bpmn import service_task
from broker_ctl import OwnBroker
from conftest import ROOT, SKIFF_BIN, free_port, wait_until

CERTS_SH = ROOT / "devstack" / "certs.sh"
PROXY = ROOT / "devstack" / "tls_proxy.py"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(CERTS_SH), str(d)], check=True)
    return d


@pytest.fixture(scope="module")
def tls_broker(certs, tmp_path_factory):
    b = OwnBroker(tmp_path_factory.mktemp("tls-broker"), keep_data=False,
                  tls={"cert": certs / "server-chain.pem", "key": certs / "server.key",
                       "ca": certs / "ca.pem"})
    if os.environ.get("SKIFF_TLS_ZEEBE_PORT"):  # a fixed block (parallel devstacks)
        b.port = int(os.environ["SKIFF_TLS_ZEEBE_PORT"])
        b.monitor = int(os.environ["SKIFF_TLS_ZEEBE_MONITOR_PORT"])
        b.address = f"127.0.0.1:{b.port}"
        b.env.update(SKIFF_ZEEBE_PORT=str(b.port), SKIFF_ZEEBE_MONITOR_PORT=str(b.monitor))
        b.client.address = b.address
    b.start()
    yield b
    b.stop(archive=False)


class Proxy:
    """devstack/tls_proxy.py in front of the TLS gateway; its server files live in its own dir
    so that a test can rotate them."""

    def __init__(self, certs: Path, tmp: Path, upstream: str, server="server", client_ca=True):
        self.dir = tmp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = tmp / "proxy.jsonl"
        self.set_server(certs, server)
        cmd = [sys.executable, str(PROXY), "--listen", self.address, "--upstream", upstream,
               "--upstream-ca", str(certs / "ca.pem"), "--cert", str(tmp / "server.pem"),
               "--key", str(tmp / "server.key"), "--log", str(self.log_path)]
        if client_ca:
            cmd += ["--ca", str(certs / "ca.pem")]
        self.out = open(tmp / "proxy.out", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.out)
        wait_until(self.listening, timeout=15, what="proxy listening")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def set_server(self, certs: Path, name: str):
        for ext in ("pem", "key"):
            tmp = self.dir / f".server.{ext}"
            shutil.copyfile(certs / f"{name}.{ext}", tmp)
            os.replace(tmp, self.dir / f"server.{ext}")

    def events(self):
        try:
            return [json.loads(x) for x in self.log_path.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.out.close()


@pytest.fixture
def proxy(certs, tls_broker, tmp_path):
    made = []

    def make(**kw):
        d = tmp_path / f"proxy{len(made)}"
        d.mkdir()
        p = Proxy(certs, d, tls_broker.address, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def install(certs: Path, d: Path, name: str, as_name: str):
    """Copies certs/<name>.{pem,key} to d/<as_name>.{pem,key}, each replaced atomically (as a
    Kubernetes Secret volume swaps its files)."""
    for ext in ("pem", "key"):
        src = certs / f"{name}.{ext}"
        if src.exists():
            tmp = d / f".{as_name}.{ext}"
            shutil.copyfile(src, tmp)
            os.replace(tmp, d / f"{as_name}.{ext}")


def deploy(broker, tmp_path, pid, job_type):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type))
    broker.deploy(path)


def run_one(broker, pid, x=21):
    res = broker.client.create_instance_with_result(pid, {"x": x}, timeout_s=60)
    return res["variables"]["doubled"]


def test_jobs_over_tls(stack, tls_broker, certs, tmp_path, uid):
    job_type, pid = f"tls-{uid}", f"p-tls-{uid}"
    deploy(tls_broker, tmp_path, pid, job_type)
    skiff = stack.skiff([job_type], address=tls_broker.address, zeebe_tls="true",
                        zeebe_ca_file=certs / "ca.pem")
    stack.handler(skiff, [job_type], name="doubler")
    assert run_one(tls_broker, pid) == 42
    assert skiff.metric("skiff_plaintext_peers", peer="zeebe") == 0
    assert skiff.metric("skiff_tls_certificate_expiry_seconds", peer="zeebe",
                        certificate="ca") > 0
    assert "reached without TLS" not in skiff.logs()


def test_camunda_variables_select_tls(stack, tls_broker, certs, tmp_path, uid):
    """ZEEBE_CA_CERTIFICATE_PATH alone means TLS, as in Camunda's clients."""
    job_type, pid = f"tls-camunda-{uid}", f"p-tls-camunda-{uid}"
    deploy(tls_broker, tmp_path, pid, job_type)
    os.environ["ZEEBE_CA_CERTIFICATE_PATH"] = str(certs / "ca.pem")
    try:
        skiff = stack.skiff([job_type], address=tls_broker.address)
    finally:
        del os.environ["ZEEBE_CA_CERTIFICATE_PATH"]
    stack.handler(skiff, [job_type], name="doubler")
    assert run_one(tls_broker, pid) == 42


def test_proxy_checked_with_grpcio(proxy, certs):
    """The mTLS stand-in behaves as TLS should for the official gRPC client: a call with the
    client certificate passes, one without is refused."""
    grpc = pytest.importorskip("grpc")
    p = proxy()
    ca = (certs / "ca.pem").read_bytes()
    good = grpc.ssl_channel_credentials(ca, (certs / "client.key").read_bytes(),
                                        (certs / "client.pem").read_bytes())
    def topology():
        # A fresh channel per try: the TLS broker behind the proxy may drop the very first
        # connection while it settles (seen once under load as "Socket closed").
        with grpc.secure_channel(p.address, good) as ch:
            try:
                return ch.unary_unary("/gateway_protocol.Gateway/Topology")(
                    b"", timeout=20, wait_for_ready=True)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return None
    assert wait_until(topology, timeout=60, interval=1, what="Topology through the proxy")
    with grpc.secure_channel(p.address, grpc.ssl_channel_credentials(ca)) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/gateway_protocol.Gateway/Topology")(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert {e["client_cn"] for e in p.events() if e["event"] == "accepted"} == {"skiff"}


def test_jobs_over_mtls(stack, tls_broker, proxy, certs, tmp_path, uid):
    job_type, pid = f"mtls-{uid}", f"p-mtls-{uid}"
    deploy(tls_broker, tmp_path, pid, job_type)
    p = proxy()
    skiff = stack.skiff([job_type], address=p.address, zeebe_ca_file=certs / "ca.pem",
                        zeebe_cert_file=certs / "client.pem", zeebe_key_file=certs / "client.key")
    stack.handler(skiff, [job_type], name="doubler")
    assert run_one(tls_broker, pid) == 42
    assert {e.get("client_cn") for e in p.events() if e["event"] == "accepted"} == {"skiff"}
    assert skiff.metric("skiff_tls_certificate_expiry_seconds", peer="zeebe",
                        certificate="client") > 0


def wait_ready(skiff):
    wait_until(lambda: skiff.http("/readyz")[0] == 200, timeout=60, what="skiff ready")


@pytest.mark.parametrize("server,cause", [
    ("expired", "server certificate expired"),
    ("wronghost", "does not match the host name"),
])
def test_bad_server_certificate_then_rotated(stack, tls_broker, proxy, certs, tmp_path, uid,
                                             server, cause):
    """An expired or wrong-host server certificate: a clear error, retried with backoff, the job
    waits; once the server's certificate is replaced the next handshake passes and the job that
    waited completes (server rotation, skiff not restarted)."""
    job_type, pid = f"bad-{server}-{uid}", f"p-bad-{server}-{uid}"
    deploy(tls_broker, tmp_path, pid, job_type)
    p = proxy(server=server, client_ca=False)
    skiff = stack.skiff([job_type], address=p.address, zeebe_ca_file=certs / "ca.pem")
    stack.handler(skiff, [job_type], name="doubler")
    key = tls_broker.client.create_instance(pid, {"x": 4})["processInstanceKey"]
    wait_until(lambda: skiff.logs().count(cause) >= 2, timeout=30, what=f"'{cause}' retried")
    status, why = skiff.http("/readyz")
    assert status == 503 and cause in why
    p.set_server(certs, "server")
    wait_ready(skiff)
    wait_until(lambda: tls_broker.scan(b'"COMPLETED"', b'"JOB"', str(key).encode()),
               timeout=60, what="the waiting job completed")
    assert skiff.proc.poll() is None


def test_unknown_ca(stack, tls_broker, certs, tmp_path, uid):
    job_type = f"unknown-ca-{uid}"
    skiff = stack.skiff([job_type], address=tls_broker.address,
                        zeebe_ca_file=certs / "other-ca.pem")
    wait_until(lambda: "signed by an unknown CA" in skiff.http("/readyz")[1], timeout=30,
               what="readiness names the unknown CA")
    assert "next attempt in" in skiff.logs()


def test_missing_then_rotated_client_certificate(stack, tls_broker, proxy, certs, tmp_path, uid):
    """A client certificate the server refuses (another CA), then the right one written over
    it: the files are reloaded, the next handshake shows the new certificate and the job that
    waited completes. A garbage certificate written meanwhile is refused, the old one kept."""
    job_type, pid = f"rot-{uid}", f"p-rot-{uid}"
    deploy(tls_broker, tmp_path, pid, job_type)
    p = proxy()
    d = tmp_path / "client"
    d.mkdir()
    install(certs, d, "other-client", "tls")
    skiff = stack.skiff([job_type], address=p.address, zeebe_ca_file=certs / "ca.pem",
                        zeebe_cert_file=d / "tls.pem", zeebe_key_file=d / "tls.key",
                        tls_reload_interval="200ms")
    stack.handler(skiff, [job_type], name="doubler")
    key = tls_broker.client.create_instance(pid, {"x": 5})["processInstanceKey"]
    wait_until(lambda: "refused the client certificate" in skiff.logs() or
               "handshake refused" in skiff.logs(), timeout=30, what="client certificate refused")
    assert skiff.http("/readyz")[0] == 503
    install(certs, d, "client", "tls")
    wait_ready(skiff)
    wait_until(lambda: tls_broker.scan(b'"COMPLETED"', b'"JOB"', str(key).encode()),
               timeout=60, what="the waiting job completed")
    # garbage over the certificate: refused, the connection and jobs go on
    shutil.copyfile(certs / "garbage.pem", d / "tls.pem")
    wait_until(lambda: skiff.metric("skiff_tls_reloads_total", peer="zeebe", result="refused")
               >= 1, timeout=30, what="garbage refused")
    assert "the old one stays in use" in skiff.logs()
    assert run_one(tls_broker, pid, x=6) == 12
    # a second good certificate: a new connection shows it
    install(certs, d, "client2", "tls")
    wait_until(lambda: any(e.get("client_cn") == "skiff-rotated" for e in p.events()),
               timeout=60, what="new connection with the rotated certificate")
    assert run_one(tls_broker, pid, x=7) == 14
    assert skiff.proc.poll() is None


def config_check(*args):
    return subprocess.run([str(SKIFF_BIN), "config", "check", *args], capture_output=True,
                          text=True, timeout=30)


def test_config_check_names_bad_files(certs, tmp_path):
    missing = tmp_path / "nope.pem"
    cases = [
        ([f"--zeebe.ca_file={certs / 'garbage.pem'}"], "garbage.pem: no usable PEM certificate"),
        ([f"--zeebe.ca_file={missing}"], f"{missing}: cannot read"),
        ([f"--zeebe.ca_file={certs / 'ca.pem'}", f"--zeebe.cert_file={certs / 'client.pem'}",
          f"--zeebe.key_file={certs / 'server.key'}"], "not a PEM key of certificate"),
        ([f"--zeebe.ca_file={certs / 'ca.pem'}", f"--zeebe.cert_file={certs / 'garbage.pem'}",
          f"--zeebe.key_file={certs / 'client.key'}"], "garbage.pem: not a PEM certificate"),
        ([f"--zeebe.cert_file={certs / 'client.pem'}"], "zeebe.key_file is empty"),
    ]
    for args, needle in cases:
        r = config_check(*args)
        assert r.returncode != 0 and needle in r.stdout, (args, r.stdout)
    ok = config_check(f"--zeebe.ca_file={certs / 'ca.pem'}",
                      f"--zeebe.cert_file={certs / 'client.pem'}",
                      f"--zeebe.key_file={certs / 'client.key'}")
    assert ok.returncode == 0, ok.stdout


def test_start_up_names_bad_file(certs, tmp_path):
    env = dict(os.environ, SKIFF_HANDLER_SOCKET=str(tmp_path / "h.sock"),
               SKIFF_ADMIN_ADDRESS=f"127.0.0.1:{free_port()}",
               SKIFF_ZEEBE_CA_FILE=str(certs / "garbage.pem"))
    r = subprocess.run([str(SKIFF_BIN)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "garbage.pem: no usable PEM certificate" in r.stderr


def test_refuse_profile_rejects_plaintext(tmp_path):
    env = dict(os.environ, SKIFF_HANDLER_SOCKET=str(tmp_path / "h.sock"),
               SKIFF_SECURITY_PLAINTEXT="refuse", SKIFF_KAFKA_BROKERS="127.0.0.1:9",
               SKIFF_SCHEMA_REGISTRY_URL="http://127.0.0.1:8081")
    r = subprocess.run([str(SKIFF_BIN)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    for key in ("zeebe.address", "kafka.brokers", "schema_registry.url"):
        assert f"security.plaintext: refuse (from environment SKIFF_SECURITY_PLAINTEXT) but " \
               f"{key}" in r.stderr, r.stderr
    assert "not starting" in r.stderr


def test_warn_profile_logs_and_counts_plaintext(stack, uid):
    skiff = stack.skiff([f"plain-{uid}"])
    assert skiff.metric("skiff_plaintext_peers", peer="zeebe") == 1
    lines = [json.loads(x) for x in skiff.logs().splitlines() if "reached without TLS" in x]
    assert len(lines) == 1 and lines[0]["level"] == "warn"


def test_insecure_connection_variable_is_inverse(tmp_path):
    env = dict(os.environ, ZEEBE_INSECURE_CONNECTION="false", SKIFF_SECURITY_PLAINTEXT="refuse")
    r = subprocess.run([str(SKIFF_BIN), "config", "check"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert "zeebe.address" not in r.stdout and r.returncode == 0, r.stdout
    env["ZEEBE_INSECURE_CONNECTION"] = "true"
    r = subprocess.run([str(SKIFF_BIN), "config", "check"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert "zeebe.address" in r.stdout and r.returncode != 0, r.stdout


def test_missing_client_certificate(stack, tls_broker, proxy, certs, uid):
    p = proxy()
    skiff = stack.skiff([f"nocert-{uid}"], address=p.address, zeebe_ca_file=certs / "ca.pem")
    wait_until(lambda: "client certificate" in skiff.http("/readyz")[1], timeout=30,
               what="readiness names the missing client certificate")
    assert skiff.proc.poll() is None


def test_plaintext_server_is_named(stack, uid):
    """zeebe.tls on against a server that answers in plaintext: the cause says so."""
    import threading
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(4096)
            c.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + b"\x00" * 18)  # h2 SETTINGS
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        skiff = stack.skiff([f"plainsrv-{uid}"], address=f"127.0.0.1:{port}", zeebe_tls="true")
        wait_until(lambda: "does not speak TLS" in skiff.http("/readyz")[1], timeout=30,
                   what="readiness names a plaintext server")
    finally:
        srv.close()
