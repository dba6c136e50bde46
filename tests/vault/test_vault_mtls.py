"""skiff (ASan+UBSan) and an OpenBao listener that requires client certificates
(devstack/openbao.sh with SKIFF_OPENBAO_TLS_DIR, certificates by devstack/certs.sh): with
vault.cacert and vault.client_cert / vault.client_key (here as VAULT_CACERT, VAULT_CLIENT_CERT,
VAULT_CLIENT_KEY) it logs in over HTTPS and reads its secret; without the client certificate
the TLS handshake fails, the login is retried and /readyz says why."""
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import assert_no_secret, bao, itc, new_jwt  # noqa: E402,F401

pytestmark = pytest.mark.skipif("SKIFF_OPENBAO_TLS_ADDR" not in os.environ,
                                reason="OpenBao without its HTTPS listener (tests/vault.sh)")


def mtls_skiff(tmp_path, path, with_cert, monkeypatch):
    certs = Path(os.environ["SKIFF_OPENBAO_TLS_DIR"])
    monkeypatch.setenv("VAULT_ADDR", os.environ["SKIFF_OPENBAO_TLS_ADDR"])
    monkeypatch.setenv("VAULT_CACERT", str(certs / "ca.pem"))
    if with_cert:
        monkeypatch.setenv("VAULT_CLIENT_CERT", str(certs / "client.pem"))
        monkeypatch.setenv("VAULT_CLIENT_KEY", str(certs / "client.key"))
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    return itc.Skiff({"ZEEBE_ADDRESS": "127.0.0.1:1"}, tmp_path, [], vault_role="skiff",
                     vault_token_path=str(jwt_file), vault_refresh_interval="500ms",
                     oauth_client_id="mtls-client", handler_token_audiences="unused",
                     oauth_client_secret=f"vault:secret/{path}#client_secret",
                     oauth_token_url="http://127.0.0.1:1/token")


@pytest.mark.parametrize("with_cert", [True, False])
def test_vault_over_mtls(bao, tmp_path, monkeypatch, with_cert):
    uid = uuid.uuid4().hex[:8]
    path, value = f"skiff/mtls-{uid}", f"canary-{uid}-mtls"
    bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                              secret={"client_secret": value})
    skiff = mtls_skiff(tmp_path, path, with_cert, monkeypatch)
    try:
        if with_cert:
            itc.wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                                secret="oauth.client_secret", result="ok") >= 1,
                           timeout=30, what="the secret read over mTLS")
            assert skiff.metric("skiff_vault_logins_total", result="ok") == 1
        else:
            itc.wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="error") >= 2,
                           timeout=30, what="logins failing without a client certificate")
            assert skiff.metric("skiff_vault_logins_total", result="ok") == 0
            status, why = skiff.http("/readyz")
            assert status == 503 and "Vault login" in why, why
        assert_no_secret(skiff, value)
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
