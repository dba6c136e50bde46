"""schema_registry.password from OpenBao (`vault:` reference), rotated without restart: the
registry stand-in (devstack/kafka/schema_registry.py, checked here with confluent-kafka's
SchemaRegistryClient) requires HTTP basic auth with the password in a file it reads at every
request; skiff (ASan+UBSan) produces through the Python SDK's `produce` call (a registry lookup
per new subject). The password rotated in the stand-in and in OpenBao: once skiff has read the
new version, its next registry request uses it, without restart. The canaries never show in
skiff's log, /metrics or /readyz."""
import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import assert_no_secret, bao, itc, new_jwt  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "handler-protocol" / "python"))
from skiff_handler import CallError, Handler  # noqa: E402

SCHEMA = json.dumps({"type": "record", "name": "Reg", "fields": [{"name": "n", "type": "int"}]})
OFFICIAL_CHECK = """
import sys
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
url, good, bad = sys.argv[1:]
assert isinstance(SchemaRegistryClient({"url": url, "basic.auth.user.info": good}).get_subjects(), list)
try:
    SchemaRegistryClient({"url": url, "basic.auth.user.info": bad}).get_subjects()
    raise SystemExit("a wrong password was accepted")
except SchemaRegistryError as e:
    assert e.http_status_code == 401, e
"""
CREATE_TOPICS = """
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": "127.0.0.1:29092"})
for f in admin.create_topics([NewTopic(t, 1, 1) for t in sys.argv[1:]]).values():
    f.result(30)
"""


def kafka_python():
    out = subprocess.run([str(ROOT / "devstack" / "kafka.sh"), "env"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("export SKIFF_KAFKA_PYTHON="):
            return line.split("=", 1)[1].strip("'\"")
    raise AssertionError("devstack/kafka.sh env names no SKIFF_KAFKA_PYTHON")


def register(url, auth, subject):
    req = urllib.request.Request(f"{url}/subjects/{subject}/versions", method="POST",
                                 data=json.dumps({"schema": SCHEMA}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Basic " + base64.b64encode(
                                              auth.encode()).decode()})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)["id"]


def produce(app, topic, deadline_s=30):
    end = time.monotonic() + deadline_s
    while True:
        try:
            return app.produce(topic, {"n": 1}, key="k")
        except CallError as e:
            if e.code != "closed" or time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_registry_password_rotated_in_vault(bao, tmp_path):
    uid = uuid.uuid4().hex[:8]
    old, new = f"canary-{uid}-reg-old", f"canary-{uid}-reg-new"
    auth_file = tmp_path / "registry-auth"
    auth_file.write_text(f"skiff:{old}\n")
    port = itc.free_port()
    url = f"http://127.0.0.1:{port}"
    reg_log = open(tmp_path / "registry.log", "wb")
    reg = subprocess.Popen([sys.executable, str(ROOT / "devstack" / "kafka" / "schema_registry.py"),
                            "--port", str(port), "--basic-auth-file", str(auth_file), "--quiet"],
                           stdout=reg_log, stderr=reg_log)
    skiff = None
    try:
        itc.wait_until(lambda: subprocess.run(["curl", "-sf", "-o", "/dev/null", "-u",
                                               f"skiff:{old}", url + "/subjects"]).returncode == 0,
                       timeout=15, what="the registry stand-in")
        subprocess.run([kafka_python(), "-c", OFFICIAL_CHECK, url, f"skiff:{old}",
                        "skiff:wrong"], check=True, timeout=60)
        topics = [f"vault-reg-{uid}-{n}" for n in ("a", "b")]
        subprocess.run([kafka_python(), "-c", CREATE_TOPICS, *topics], check=True, timeout=60)
        for t in topics:
            register(url, f"skiff:{old}", f"{t}-value")
        path = f"skiff/reg-{uid}"
        bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                                  secret={"password": old})
        jwt_file = tmp_path / "sa-token"
        jwt_file.write_text(new_jwt())
        skiff = itc.Skiff({"ZEEBE_ADDRESS": "127.0.0.1:1"}, tmp_path, ["vault-reg"],
                          vault_role="skiff", vault_token_path=str(jwt_file),
                          vault_refresh_interval="500ms", kafka_brokers="127.0.0.1:29092",
                          schema_registry_url=url, schema_registry_username="skiff",
                          schema_registry_password=f"vault:secret/{path}#password")
        app = Handler("vault-reg", capacity=1, socket_path=skiff.socket)
        app.job("vault-reg")(lambda task: {})
        threading.Thread(target=app.run, daemon=True).start()
        assert produce(app, topics[0])["topic"] == topics[0]

        # Rotated at the registry and in OpenBao: skiff reads the new version, and its next
        # registry request (a subject it has not looked up yet) goes through with it.
        auth_file.write_text(f"skiff:{new}\n")
        bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                                  secret={"password": new})
        itc.wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                            secret="schema_registry.password",
                                            result="changed") >= 1,
                       timeout=30, what="the new registry password read from OpenBao")
        pid = skiff.proc.pid
        assert produce(app, topics[1])["topic"] == topics[1]
        assert skiff.proc.poll() is None and skiff.proc.pid == pid
        assert_no_secret(skiff, old, new)
    finally:
        if skiff:
            assert skiff.stop() == 0
            skiff.check_clean()
        reg.terminate()
        reg.wait(timeout=10)
        reg_log.close()
    assert_no_secret(skiff, old, new)
