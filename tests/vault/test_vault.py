"""skiff (ASan+UBSan) against the real OpenBao (devstack/openbao.sh) with the real Keycloak: the
gateway's OAuth client secret is `vault:secret/skiff/<id>#client_secret`. skiff logs in with the
Kubernetes auth method (a service-account JWT from the TokenReview stand-in), reads the secret
and gets tokens from Keycloak with it; the secret rotated in OpenBao (and in Keycloak) is picked
up without restart; its Vault token revoked, it logs in again with the JWT re-read from its file.
Judged by Keycloak's login events, OpenBao's answers through hvac and skiff's metrics. The
canary secrets never show in skiff's log, /metrics or /readyz."""
import importlib.util
import json
import os
import ssl
import sys
import urllib.request
import uuid
from pathlib import Path

import hvac
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "oauth"))
_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               ROOT / "tests" / "integration" / "conftest.py")
itc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(itc)

from keycloak_admin import Keycloak  # noqa: E402

wait_until = itc.wait_until
LIFESPAN_S = 8  # short Keycloak tokens: skiff asks again within the test


def stand_in(path, body):
    ctx = ssl.create_default_context(cafile=os.environ["SKIFF_TOKENREVIEW_CA"])
    req = urllib.request.Request(os.environ["SKIFF_TOKENREVIEW_URL"] + path,
                                 data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
        return json.load(r)


def new_jwt():
    return stand_in("/issue", {"namespace": "skiff-test", "serviceaccount": "skiff"})["token"]


@pytest.fixture
def bao():
    return hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["SKIFF_OPENBAO_ROOT_TOKEN"])


@pytest.fixture
def keycloak():
    return Keycloak()


def put_secret(bao, path, value):
    bao.secrets.kv.v2.create_or_update_secret(path=path, secret={"client_secret": value},
                                              mount_point="secret")


def assert_no_secret(skiff, *secrets):
    outputs = {"log": skiff.logs(), "metrics": skiff.http("/metrics")[1],
               "readyz": skiff.http("/readyz")[1]}
    for what, text in outputs.items():
        for s in secrets:
            assert s not in text, f"secret found in skiff's {what}"


def vault_skiff(tmp_path, client_id, path, jwt_file, keycloak, role="skiff"):
    return itc.Skiff({"ZEEBE_ADDRESS": "127.0.0.1:1"}, tmp_path, [],
                     zeebe_client_id=client_id,
                     zeebe_client_secret=f"vault:secret/{path}#client_secret",
                     zeebe_authorization_server_url=keycloak.token_url,
                     oauth_backoff_initial="100ms", oauth_backoff_max="1s",
                     vault_role=role, vault_token_path=str(jwt_file),
                     vault_refresh_interval="500ms")


def test_secret_from_vault_rotated_and_token_revoked(bao, keycloak, tmp_path):
    uid = uuid.uuid4().hex[:8]
    client_id, path = f"skiff-vault-{uid}", f"skiff/{uid}"
    old, new = f"canary-{uid}-vault-old", f"canary-{uid}-vault-new"
    keycloak.create_client(client_id, old, lifespan_s=LIFESPAN_S)
    put_secret(bao, path, old)
    jwt_file = tmp_path / "sa-token"
    first_jwt = new_jwt()
    jwt_file.write_text(first_jwt)
    skiff = vault_skiff(tmp_path, client_id, path, jwt_file, keycloak)
    try:
        # Logged in to OpenBao, read the secret, and Keycloak issued a token for it.
        wait_until(lambda: keycloak.events(client_id, "CLIENT_LOGIN"), timeout=60,
                   what="a Keycloak token for the secret read from OpenBao")
        assert skiff.metric("skiff_vault_logins_total", result="ok") == 1
        assert not keycloak.events(client_id, "CLIENT_LOGIN_ERROR")  # never sent empty

        # Rotated in Keycloak and OpenBao: the next tokens come with the new secret.
        pid = skiff.proc.pid
        keycloak.update_client(client_id, secret=new)
        put_secret(bao, path, new)
        wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                        secret="zeebe.client_secret", result="changed") >= 1,
                   timeout=30, what="the new version read")
        logins = len(keycloak.events(client_id, "CLIENT_LOGIN"))
        wait_until(lambda: len(keycloak.events(client_id, "CLIENT_LOGIN")) > logins,
                   timeout=60, what="a Keycloak token for the rotated secret")
        assert skiff.proc.poll() is None and skiff.proc.pid == pid

        # The Vault token revoked (every token of the auth mount) and the first JWT revoked
        # at the stand-in: a new login must use the JWT now in the file.
        jwt_file.write_text(new_jwt())
        stand_in("/revoke", {"token": first_jwt})
        bao.sys.revoke_prefix("auth/kubernetes/login")
        wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="ok") >= 2,
                   timeout=30, what="a new Vault login after the revocation")
        assert skiff.metric("skiff_vault_secret_reads_total", secret="zeebe.client_secret",
                            result="denied") >= 1
        reads = skiff.metric("skiff_vault_secret_reads_total", secret="zeebe.client_secret",
                             result="ok")
        wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                        secret="zeebe.client_secret", result="ok") > reads,
                   timeout=30, what="secret reads with the new Vault token")
        assert skiff.metric("skiff_vault_token_valid") == 1
        assert_no_secret(skiff, old, new, first_jwt)
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
    assert_no_secret(skiff, old, new, first_jwt)


def test_token_renewed_then_max_ttl_relogin(bao, keycloak, tmp_path):
    """A role with 2 s tokens and a 6 s max TTL: skiff renews with OpenBao, and when renewal no
    longer extends the lease it logs in again; the secret stays readable throughout."""
    uid = uuid.uuid4().hex[:8]
    bao.write("auth/kubernetes/role/skiff-short", bound_service_account_names=["skiff"],
              bound_service_account_namespaces=["skiff-test"], token_policies=["skiff"],
              token_ttl="2s", token_max_ttl="6s")
    client_id, path, secret = f"skiff-vttl-{uid}", f"skiff/{uid}", f"canary-{uid}-vault-ttl"
    keycloak.create_client(client_id, secret, lifespan_s=300)
    put_secret(bao, path, secret)
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    skiff = vault_skiff(tmp_path, client_id, path, jwt_file, keycloak, role="skiff-short")
    try:
        wait_until(lambda: skiff.metric("skiff_vault_renewals_total", result="ok") >= 1,
                   timeout=30, what="a token renewal accepted by OpenBao")
        # At the max TTL OpenBao either cuts the lease short (exhausted) or answers
        # "past the max TTL, cannot renew" (error); either way skiff logs in again.
        wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="ok") >= 2,
                   timeout=30, what="a new login at the max TTL")
        assert (skiff.metric("skiff_vault_renewals_total", result="exhausted")
                + skiff.metric("skiff_vault_renewals_total", result="error")) >= 1
        assert skiff.metric("skiff_vault_renewals_total", result="refused") == 0
        assert skiff.metric("skiff_vault_logins_total", result="refused") == 0
        reads = skiff.metric("skiff_vault_secret_reads_total", secret="zeebe.client_secret",
                             result="ok")
        wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                        secret="zeebe.client_secret", result="ok") > reads,
                   timeout=30, what="secret reads with the new token")
        assert keycloak.events(client_id, "CLIENT_LOGIN")
        assert_no_secret(skiff, secret)
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
