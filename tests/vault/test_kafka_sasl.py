"""kafka.sasl.password from OpenBao, rotated while records flow: a broker of its own
(devstack/kafka.sh with TLS, SASL_SSL with SCRAM-SHA-512, connections.max.idle.ms short so
idle connections close and authenticate again), a per-test SCRAM user made and rotated with the
official AdminClient (tests/vault/kafka_ops.py), skiff (ASan+UBSan) consuming the topic and
producing to it through the Python SDK's `produce` call. The password changed in the broker and
in OpenBao: skiff reads the new version and authenticates with it from then on, without
restart; every record produced before and after reaches the handler and the topic (read back
with the official consumer); the canaries never show in skiff's log or /metrics."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import assert_no_secret, bao, itc, new_jwt  # noqa: E402,F401
from test_registry_password import kafka_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "handler-protocol" / "python"))
from skiff_handler import CallError, Handler  # noqa: E402

SCHEMA = json.dumps({"type": "record", "name": "Sasl", "fields": [{"name": "n", "type": "int"}]})
N = 10  # records produced before and again after the rotation


def port_block(n=4):
    for _ in range(50):
        base = itc.free_port()
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    subprocess.run([str(ROOT / "devstack" / "certs.sh"), str(certs)], check=True,
                   capture_output=True)
    run = tmp_path_factory.mktemp("kafka-sasl")
    props = run / "extra.properties"
    props.write_text("connections.max.idle.ms=3000\n")
    base = port_block()
    env = dict(os.environ, SKIFF_KAFKA_PORT=str(base), SKIFF_KAFKA_CONTROLLER_PORT=str(base + 1),
               SKIFF_KAFKA_SSL_PORT=str(base + 2), SKIFF_KAFKA_SASL_SSL_PORT=str(base + 3),
               SKIFF_KAFKA_RUN_DIR=str(run / "broker"), SKIFF_KAFKA_TLS_DIR=str(certs),
               SKIFF_KAFKA_PROPERTIES=str(props))
    kafka_sh = str(ROOT / "devstack" / "kafka.sh")
    subprocess.run([kafka_sh, "start"], env=env, check=True, capture_output=True)
    yield {"plain": f"127.0.0.1:{base}", "sasl": f"127.0.0.1:{base + 3}", "certs": certs}
    subprocess.run([kafka_sh, "stop"], env=env, check=False, capture_output=True)


def ops(broker, *args):
    out = subprocess.run([kafka_python(), str(Path(__file__).parent / "kafka_ops.py"),
                          broker["plain"], *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def produce(app, topic, key):
    end = time.monotonic() + 60
    while True:
        try:
            return app.produce(topic, {"n": 1}, key=key)
        except CallError as e:
            if e.code != "closed" or time.monotonic() > end:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry stand-in of this module's own (the shared registry may not run yet)."""
    port = itc.free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("registry") / "registry.log", "wb")
    reg = subprocess.Popen([sys.executable, str(ROOT / "devstack" / "kafka" / "schema_registry.py"),
                            "--port", str(port), "--quiet"], stdout=log, stderr=log)
    try:
        itc.wait_until(lambda: subprocess.run(["curl", "-sf", "-o", "/dev/null",
                                               url + "/subjects"]).returncode == 0,
                       timeout=15, what="the registry stand-in")
        yield url
    finally:
        reg.terminate()
        reg.wait(timeout=10)
        log.close()


def test_sasl_password_rotated_while_records_flow(broker, bao, registry, tmp_path):
    uid = uuid.uuid4().hex[:8]
    user, topic = f"skiff-{uid}", f"vault-sasl-{uid}"
    old, new = f"canary-{uid}-scram-old", f"canary-{uid}-scram-new"
    ops(broker, "topic", topic)
    ops(broker, "scram", user, old)
    req = urllib.request.Request(f"{registry}/subjects/{topic}-value/versions", method="POST",
                                 data=json.dumps({"schema": SCHEMA}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).close()
    path = f"skiff/kafka-{uid}"
    bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                              secret={"password": old})
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    skiff = itc.Skiff({"ZEEBE_ADDRESS": "127.0.0.1:1"}, tmp_path, [],
                      vault_role="skiff", vault_token_path=str(jwt_file),
                      vault_refresh_interval="500ms", kafka_brokers=broker["sasl"],
                      kafka_topics=topic, kafka_group_id=f"vault-sasl-{uid}",
                      kafka_security_protocol="sasl_ssl",
                      kafka_ssl_ca_location=str(broker["certs"] / "ca.pem"),
                      kafka_sasl_mechanisms="SCRAM-SHA-512", kafka_sasl_username=user,
                      kafka_sasl_password=f"vault:secret/{path}#password",
                      kafka_delivery_timeout="90s", schema_registry_url=registry)
    seen, lock = set(), threading.Lock()
    app = Handler("vault-sasl", capacity=4, socket_path=skiff.socket)

    @app.topic(topic)
    def record(task):
        with lock:
            seen.add(task.record.key)

    threading.Thread(target=app.run, daemon=True).start()
    try:
        for i in range(N):
            produce(app, topic, f"before-{i}")
        itc.wait_until(lambda: len(seen) == N, timeout=60, what="the first records handled")

        # Rotated in the broker (the old password no longer authenticates) and in OpenBao.
        ops(broker, "scram", user, new)
        bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                                  secret={"password": new})
        itc.wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                            secret="kafka.sasl.password",
                                            result="changed") >= 1,
                       timeout=30, what="the new SASL password read from OpenBao")
        pid = skiff.proc.pid
        # The broker closes the producer's connection once it is idle (3 s): the next records
        # go over a new connection, authenticated with the password now in force.
        time.sleep(5)
        for i in range(N):
            produce(app, topic, f"after-{i}")
        itc.wait_until(lambda: len(seen) == 2 * N, timeout=90, what="every record handled")
        assert skiff.proc.poll() is None and skiff.proc.pid == pid
        read = ops(broker, "count", topic, str(2 * N))
        assert sorted(read["keys"]) == sorted(seen)
        # The producer's connection did close after the rotation, so the records after it
        # were written over a connection authenticated with the new password.
        after = skiff.logs().split("new value (version 2)", 1)[1]
        assert any("Disconnected" in line and '"client":"producer"' in line
                   for line in after.splitlines())
        assert_no_secret(skiff, old, new)
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
    assert_no_secret(skiff, old, new)
