"""Fixtures of the OAuth tests: the integration fixtures (real Zeebe broker, real skiff, SDK
handlers) plus Keycloak (devstack/keycloak.sh, started once per run by tests/oauth.sh or here)
and the token-validating gRPC proxy (devstack/token-proxy.mjs) in front of the gateway."""
import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               ROOT / "tests" / "integration" / "conftest.py")
itc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(itc)
sys.modules["integration_conftest"] = itc

from devstack_env import shell_env, terminate  # noqa: E402
from keycloak_admin import Keycloak  # noqa: E402

broker = itc.broker
stack = itc.stack
uid = itc.uid
wait_until = itc.wait_until
KEYCLOAK_SH = ROOT / "devstack" / "keycloak.sh"


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory):
    # Keycloak speaks HTTPS too (test_oauth_tls.py), with certificates by devstack/certs.sh.
    if not os.environ.get("SKIFF_KEYCLOAK_TLS_DIR"):
        certs = tmp_path_factory.mktemp("keycloak-certs")
        subprocess.run([str(ROOT / "devstack" / "certs.sh"), str(certs)], check=True)
        os.environ["SKIFF_KEYCLOAK_TLS_DIR"] = str(certs)
    started = subprocess.run([str(KEYCLOAK_SH), "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([str(KEYCLOAK_SH), "start"], check=True)
    os.environ.update(shell_env([str(KEYCLOAK_SH), "env"]))
    yield Keycloak()
    if started:
        subprocess.run([str(KEYCLOAK_SH), "stop"], check=False)


class TokenProxy:
    """devstack/token-proxy.mjs between skiff and the gateway; `seen` is what it saw."""

    def __init__(self, target, tmp: Path):
        env = dict(os.environ, NODE_PATH=str(ROOT / "devstack" / "node_modules"))
        self.log = open(tmp / "token-proxy.log", "wb")
        self.proc = subprocess.Popen(
            ["node", str(ROOT / "devstack" / "token-proxy.mjs"), "--target", target,
             "--jwks", os.environ["SKIFF_KEYCLOAK_JWKS_URL"],
             "--issuer", os.environ["SKIFF_KEYCLOAK_ISSUER"], "--audience", "zeebe-api"],
            cwd=str(ROOT / "devstack"), env=env, stdout=subprocess.PIPE, stderr=self.log)
        ports = json.loads(self.proc.stdout.readline())
        self.address = f"127.0.0.1:{ports['listen']}"
        self.control = f"http://127.0.0.1:{ports['control']}"

    def seen(self, client=None, since=0):
        with urllib.request.urlopen(f"{self.control}/seen?from={since}", timeout=5) as r:
            entries = json.load(r)["seen"]
        return [e for e in entries if client is None or e["client"] == client]

    def calls(self) -> int:
        with urllib.request.urlopen(f"{self.control}/status", timeout=5) as r:
            return json.load(r)["counters"]["calls"]

    def stop(self):
        terminate(self.proc, timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def token_proxy(broker, keycloak, tmp_path_factory):
    p = TokenProxy(broker["ZEEBE_ADDRESS"], tmp_path_factory.mktemp("token-proxy"))
    yield p
    p.stop()
