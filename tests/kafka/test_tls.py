"""Kafka and the Schema Registry over TLS: a broker of this module's own (devstack/kafka.sh with
SKIFF_KAFKA_TLS_DIR: an SSL listener with ssl.client.auth=required and a SASL_SSL listener with
SCRAM-SHA-512 and PLAIN users) and the registry stand-in over HTTPS requiring a client
certificate; certificates made per run by devstack/certs.sh. Both are checked with the official
clients (confluent-kafka) first. Records are written through the broker's PLAINTEXT listener by
the official AvroSerializer, and skiff reads them over the secure listener under test.

The HTTPS registry is the stand-in, not Apicurio: Apicurio serves HTTPS but cannot require a
client certificate (its build fixes quarkus.http.ssl.client-auth to NONE), which this test
needs (devstack/README.md)."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import uuid

import pytest

from conftest import (CMD_SCHEMA, KAFKA_SH, ROOT, SKIFF_BIN, KafkaStack, Stack, acked_offsets,
                      cmd, free_port, wait_until)
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

# Canary passwords: they must never appear in skiff's logs or metrics.
SCRAM_PASSWORD = "scram-canary-" + uuid.uuid4().hex[:8]
PLAIN_PASSWORD = "plain-canary-" + uuid.uuid4().hex[:8]


def port_block(n=4):
    """First of n consecutive free loopback ports (below the ephemeral range)."""
    if os.environ.get("SKIFF_TLS_KAFKA_PORT"):  # a fixed block (parallel devstacks)
        return int(os.environ["SKIFF_TLS_KAFKA_PORT"])
    for _ in range(200):
        base = random.randrange(20000, 32000 - n)
        socks = []
        try:
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


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    subprocess.run([str(ROOT / "devstack" / "certs.sh"), str(certs)], check=True)
    base = port_block()
    run = tmp_path_factory.mktemp("kafka-tls")
    env = dict(os.environ, SKIFF_KAFKA_PORT=str(base), SKIFF_KAFKA_CONTROLLER_PORT=str(base + 1),
               SKIFF_KAFKA_SSL_PORT=str(base + 2), SKIFF_KAFKA_SASL_SSL_PORT=str(base + 3),
               SKIFF_KAFKA_RUN_DIR=str(run / "broker"), SKIFF_KAFKA_TLS_DIR=str(certs),
               SKIFF_KAFKA_SCRAM_PASSWORD=SCRAM_PASSWORD,
               SKIFF_KAFKA_PLAIN_PASSWORD=PLAIN_PASSWORD)
    subprocess.run([str(KAFKA_SH), "start"], env=env, check=True, capture_output=True)
    reg_port = int(os.environ.get("SKIFF_TLS_REGISTRY_PORT") or free_port())
    reg_log = open(run / "registry.log", "wb")
    reg = subprocess.Popen(
        [sys.executable, str(ROOT / "devstack" / "kafka" / "schema_registry.py"), "--port",
         str(reg_port), "--tls-cert", str(certs / "server.pem"), "--tls-key",
         str(certs / "server.key"), "--tls-client-ca", str(certs / "ca.pem")],
        stdout=reg_log, stderr=reg_log)
    url = f"https://127.0.0.1:{reg_port}"
    tls_conf = {"ssl.ca.location": str(certs / "ca.pem"),
                "ssl.certificate.location": str(certs / "client.pem"),
                "ssl.key.location": str(certs / "client.key")}
    k = KafkaStack(f"127.0.0.1:{base}", url)
    k.sr = SchemaRegistryClient({"url": url, **tls_conf})
    wait_until(lambda: _registry_up(k), what="HTTPS registry")
    k.certs = certs
    k.scram_file = certs / "scram.password"  # a Kubernetes Secret volume's file
    k.scram_file.write_text(SCRAM_PASSWORD + "\n")
    k.ssl_bootstrap = f"127.0.0.1:{base + 2}"
    k.sasl_bootstrap = f"127.0.0.1:{base + 3}"
    yield k
    reg.terminate()
    reg.wait(timeout=10)
    reg_log.close()
    subprocess.run([str(KAFKA_SH), "stop"], env=env, check=False, capture_output=True)


def _registry_up(k):
    try:
        k.sr.get_subjects()
        return True
    except Exception:  # noqa: BLE001 (not listening yet)
        return False


@pytest.fixture
def sstack(secure, tmp_path):
    st = Stack(secure, tmp_path)
    yield st
    st.stop_all()


def ssl_conf(k, cert="client"):
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(k.certs / "ca.pem")}
    if cert:
        conf.update({"ssl.certificate.location": str(k.certs / f"{cert}.pem"),
                     "ssl.key.location": str(k.certs / f"{cert}.key")})
    return conf


def sasl_conf(k, mech, user, password):
    return {"security.protocol": "SASL_SSL", "ssl.ca.location": str(k.certs / "ca.pem"),
            "sasl.mechanisms": mech, "sasl.username": user, "sasl.password": password}


def reachable(bootstrap, conf):
    try:
        AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet(), **conf}).list_topics(
            timeout=8)
        return True
    except Exception:  # noqa: BLE001 (KafkaException: the handshake or SASL failed)
        return False


def _quiet():
    import logging
    log = logging.getLogger("quiet-kafka")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def test_devstack_secure_listeners_with_official_clients(secure):
    k = secure
    assert reachable(k.ssl_bootstrap, ssl_conf(k))
    assert not reachable(k.ssl_bootstrap, ssl_conf(k, cert=None))
    assert not reachable(k.ssl_bootstrap, ssl_conf(k, cert="other-client"))
    assert reachable(k.sasl_bootstrap, sasl_conf(k, "SCRAM-SHA-512", "scram-user",
                                                 SCRAM_PASSWORD))
    assert reachable(k.sasl_bootstrap, sasl_conf(k, "PLAIN", "plain-user", PLAIN_PASSWORD))
    assert not reachable(k.sasl_bootstrap, sasl_conf(k, "PLAIN", "plain-user", "wrong"))
    no_cert = SchemaRegistryClient({"url": k.registry_url,
                                    "ssl.ca.location": str(k.certs / "ca.pem")})
    with pytest.raises(Exception):
        no_cert.get_subjects()


def registry_settings(k):
    return {"schema_registry__ca_file": k.certs / "ca.pem",
            "schema_registry__cert_file": k.certs / "client.pem",
            "schema_registry__key_file": k.certs / "client.key"}


def flavours(k):
    ca = k.certs / "ca.pem"
    return {
        "mtls": dict(kafka__brokers=k.ssl_bootstrap, kafka__security__protocol="SSL",
                     kafka__ssl__ca__location=ca,
                     kafka__ssl__certificate__location=k.certs / "client.pem",
                     kafka__ssl__key__location=k.certs / "client.key"),
        "scram": dict(kafka__brokers=k.sasl_bootstrap, kafka__security__protocol="SASL_SSL",
                      kafka__ssl__ca__location=ca, kafka__sasl__mechanisms="SCRAM-SHA-512",
                      kafka__sasl__username="scram-user",
                      kafka__sasl__password=f"file:{k.scram_file}"),
        "plain": dict(kafka__brokers=k.sasl_bootstrap, kafka__security__protocol="sasl_ssl",
                      kafka__ssl__ca__location=ca, kafka__sasl__mechanisms="PLAIN",
                      kafka__sasl__username="plain-user", kafka__sasl__password=PLAIN_PASSWORD),
    }


@pytest.mark.parametrize("flavour", ["mtls", "scram", "plain"])
def test_records_flow_over_secure_listener(secure, sstack, uid, flavour):
    """Records produced by the official client reach the handler and are committed, with skiff
    on the SSL (mTLS) or SASL_SSL (SCRAM-SHA-512 with the password from a file: reference,
    PLAIN with the password itself) listener and the registry over HTTPS with a client
    certificate; no plaintext peer; the SASL password never shows."""
    k = secure
    topic, group = f"ktls.{flavour}.{uid}", f"ktls-{flavour}-{uid}"
    k.create_topic(topic)
    k.register(f"{topic}-value", CMD_SCHEMA)
    n = 20
    k.produce(topic, [(f"k{i % 3}".encode(), cmd(f"r{i}"), None) for i in range(n)],
              schema=CMD_SCHEMA)
    skiff, handler = sstack.start([topic], group, log__level="debug",
                                  security__plaintext="warn", zeebe__tls="true",
                                  **flavours(k)[flavour], **registry_settings(k))
    wait_until(lambda: len(acked_offsets([handler], topic)) == n, what=f"{n} records acked")
    k.wait_committed(group, topic, {0: n})
    assert skiff.metric("skiff_plaintext_peers", peer="kafka") == 0
    assert skiff.metric("skiff_plaintext_peers", peer="schema_registry") == 0
    assert skiff.metric("skiff_tls_certificate_expiry_seconds", peer="schema_registry",
                        certificate="client") > 0
    metrics = skiff.http("/metrics")[1]
    for canary in (SCRAM_PASSWORD, PLAIN_PASSWORD):
        assert canary not in skiff.logs() and canary not in metrics
    sstack.stop_all()


def test_wrong_sasl_password_is_named_and_retried(secure, sstack, uid):
    k = secure
    topic = f"ktls.badpw.{uid}"
    k.create_topic(topic)
    wrong = "wrong-canary-" + uuid.uuid4().hex[:8]
    conf = dict(flavours(k)["plain"], kafka__sasl__password=wrong)
    skiff = sstack.skiff([topic], f"ktls-badpw-{uid}", **conf, **registry_settings(k))
    wait_until(lambda: "Authentication failed" in skiff.http("/readyz")[1],
               what="readiness names the SASL failure",
               on_timeout=lambda: skiff.http("/readyz")[1])
    assert skiff.proc.poll() is None
    assert wrong not in skiff.logs() and wrong not in skiff.http("/metrics")[1]
    sstack.stop_all()


def test_missing_client_certificate_is_named(secure, sstack, uid):
    k = secure
    topic = f"ktls.nocert.{uid}"
    k.create_topic(topic)
    conf = dict(flavours(k)["mtls"])
    del conf["kafka__ssl__certificate__location"], conf["kafka__ssl__key__location"]
    skiff = sstack.skiff([topic], f"ktls-nocert-{uid}", **conf, **registry_settings(k))
    wait_until(lambda: "SSL" in skiff.http("/readyz")[1], what="readiness names the TLS failure",
               on_timeout=lambda: skiff.http("/readyz")[1])
    assert skiff.proc.poll() is None
    sstack.stop_all()


def test_config_check_names_bad_kafka_files(secure, tmp_path):
    k = secure
    args = [f"--kafka.brokers={k.ssl_bootstrap}", "--kafka.security.protocol=ssl",
            f"--schema_registry.url={k.registry_url}"]
    cases = [
        ([f"--kafka.ssl.ca.location={k.certs / 'garbage.pem'}"],
         "TLS of kafka: CA file", "no usable PEM certificate"),
        ([f"--kafka.ssl.certificate.location={k.certs / 'client.pem'}",
          f"--kafka.ssl.key.location={k.certs / 'server.key'}"], "kafka: client key",
         "not a PEM key of certificate"),
        ([f"--schema_registry.ca_file={tmp_path / 'missing.pem'}"], "schema_registry: CA file",
         "cannot read"),
        (["--kafka.security.protocol=plaintext", f"--kafka.ssl.ca.location={k.certs / 'ca.pem'}"],
         "kafka.ssl.ca.location: set", "expected no TLS files"),
    ]
    for extra, a, b in cases:
        r = subprocess.run([str(SKIFF_BIN), "config", "check", *args, *extra],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and a in r.stdout and b in r.stdout, (extra, r.stdout)


def test_registry_client_certificate_rotated(secure, sstack, uid, tmp_path):
    """The registry refuses skiff's client certificate (another CA): the records wait (the
    registry counts as unavailable), nothing is dead-lettered; once the right certificate is
    written over the files, the next HTTPS connection shows it and every record is acked."""
    k = secure
    topic, group = f"ktls.regrot.{uid}", f"ktls-regrot-{uid}"
    k.create_topic(topic)
    k.register(f"{topic}-value", CMD_SCHEMA)
    n = 5
    k.produce(topic, [(b"k", cmd(f"r{i}"), None) for i in range(n)], schema=CMD_SCHEMA)
    d = tmp_path / "regcert"
    d.mkdir()

    def install(name):
        for ext in ("pem", "key"):
            tmp = d / f".c.{ext}"
            tmp.write_bytes((k.certs / f"{name}.{ext}").read_bytes())
            os.replace(tmp, d / f"c.{ext}")

    install("other-client")
    skiff = sstack.skiff([topic], group, tls__reload_interval="200ms",
                         schema_registry__ca_file=k.certs / "ca.pem",
                         schema_registry__cert_file=d / "c.pem",
                         schema_registry__key_file=d / "c.key", **flavours(k)["mtls"])
    handler = sstack.handler(skiff, [topic])
    wait_until(lambda: skiff.metric("skiff_schema_registry_requests_total",
                                    result="unavailable") >= 1, what="registry refused")
    assert not acked_offsets([handler], topic)
    install("client")
    wait_until(lambda: len(acked_offsets([handler], topic)) == n, what=f"{n} records acked")
    assert skiff.metric("skiff_tls_reloads_total", peer="schema_registry", result="ok") >= 1
    assert k.end_offsets(f"{topic}.dlq") == {0: 0}
    sstack.stop_all()
