"""A KV v1 mount in OpenBao: skiff (ASan+UBSan) finds the mount's version the way the Vault CLI
does and reads `vault:<kv1 mount>/<path>#<field>` secrets as KV v1, for a setting
(oauth.client_secret) and through the handlers' `secret` call. The secret carries a lease (KV
v1's ttl) much shorter than vault.refresh_interval (1 h): rotated in OpenBao, the new value is
read when the lease runs out, without restart, for the setting and for the `secret` call."""
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import assert_no_secret, bao, itc, new_jwt  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "handler-protocol" / "python"))
from skiff_handler import CallError, Handler  # noqa: E402


def secret_call(app, ref):
    end = time.monotonic() + 30
    while True:
        try:
            return app.secret(ref)
        except CallError as e:
            if e.code != "closed" or time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_kv1_mount_and_lease_refresh(bao, tmp_path):
    uid = uuid.uuid4().hex[:8]
    mount = f"kv1-{uid}"
    bao.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    bao.sys.create_or_update_policy(f"skiff-{mount}",
                                    f'path "{mount}/*" {{ capabilities = ["read"] }}')
    bao.write(f"auth/kubernetes/role/{mount}", bound_service_account_names=["skiff"],
              bound_service_account_namespaces=["skiff-test"], token_policies=[f"skiff-{mount}"])
    old, new = f"canary-{uid}-kv1-old", f"canary-{uid}-kv1-new"
    bao.secrets.kv.v1.create_or_update_secret(path="app", mount_point=mount,
                                              secret={"password": old, "ttl": "2s"})
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    ref = f"vault:{mount}/app#password"
    skiff = itc.Skiff({"ZEEBE_ADDRESS": "127.0.0.1:1"}, tmp_path, ["vault-kv1"],
                      vault_role=mount, vault_token_path=str(jwt_file),
                      vault_refresh_interval="1h", handler_secrets=ref,
                      handler_token_audiences="unused", oauth_client_id="kv1-client",
                      oauth_client_secret=ref, oauth_token_url="http://127.0.0.1:1/token")
    app = Handler("vault-kv1", capacity=1, socket_path=skiff.socket)
    app.job("vault-kv1")(lambda task: {})
    threading.Thread(target=app.run, daemon=True).start()
    try:
        itc.wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                            secret="oauth.client_secret", result="ok") >= 1,
                       timeout=30, what="the setting read as KV v1")
        assert secret_call(app, ref) == old
        assert skiff.metric("skiff_vault_secret_version", secret="oauth.client_secret") == 0
        bao.secrets.kv.v1.create_or_update_secret(path="app", mount_point=mount,
                                                  secret={"password": new, "ttl": "2s"})
        itc.wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                            secret="oauth.client_secret",
                                            result="changed") >= 1,
                       timeout=30, what="the new value read when the lease ran out")
        assert skiff.metric("skiff_vault_secret_reads_total", secret="oauth.client_secret",
                            result="error") == 0
        # The handlers' cache honours the lease too (refresh interval 1 h).
        itc.wait_until(lambda: app.secret(ref) == new, timeout=30,
                       what="the secret call answering the new value after the lease")
        assert_no_secret(skiff, old, new)
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
    assert_no_secret(skiff, old, new)
