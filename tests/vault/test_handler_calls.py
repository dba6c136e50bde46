"""The handlers' `secret` and `token` calls (protocol 1.3) through the Python and the Node SDK,
against skiff (ASan+UBSan) with the real OpenBao and Keycloak: an allowed secret answers its
value from OpenBao, one outside handler.secrets is `forbidden` whether it exists or not (same
answer), an allowed one OpenBao does not have is `not_found`, and with OpenBao out of reach
`unavailable`; a token for an allowed audience is one Keycloak issued to the general OAuth
client (its client secret read from OpenBao), another audience is `forbidden`, and a client
Keycloak refuses gets `unavailable`. The canary values never show in skiff's log, /metrics or
/readyz."""
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import (assert_no_secret, bao, itc, keycloak, new_jwt,  # noqa: E402,F401
                        put_secret)

HERE = Path(__file__).resolve().parent
SDKS = {"python": [sys.executable, str(HERE / "calls_handler.py")],
        "node": ["node", str(HERE / "calls_handler.mjs")]}


def run_calls(sdk, skiff, calls):
    env = dict(os.environ, SKIFF_SOCKET=skiff.socket)
    out = subprocess.run(SDKS[sdk] + [json.dumps(calls)], env=env, capture_output=True,
                         text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def calls_skiff(tmp_path, jwt_file, **config):
    return itc.Skiff({"ZEEBE_ADDRESS": "127.0.0.1:1"}, tmp_path, ["vault-calls"],
                     vault_role="skiff", vault_token_path=str(jwt_file),
                     vault_refresh_interval="500ms", oauth_backoff_initial="100ms",
                     oauth_backoff_max="1s", oauth_timeout="3s", **config)


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize("sdk", ["python", "node"])
def test_secret_and_token_calls(sdk, bao, keycloak, tmp_path):
    uid = uuid.uuid4().hex[:8]
    app, other = f"skiff/calls/{uid}/app", f"skiff/calls/{uid}/other"
    password, hidden = f"canary-{uid}-db-password", f"canary-{uid}-not-allowed"
    client_id, client_secret = f"skiff-calls-{uid}", f"canary-{uid}-client-secret"
    bao.secrets.kv.v2.create_or_update_secret(path=app, mount_point="secret",
                                              secret={"password": password, "user": "svc"})
    bao.secrets.kv.v2.create_or_update_secret(path=other, mount_point="secret",
                                              secret={"password": hidden})
    put_secret(bao, f"skiff/calls/{uid}/oauth", client_secret)
    keycloak.create_client(client_id, client_secret)
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    skiff = calls_skiff(tmp_path, jwt_file,
                        handler_secrets=f"vault:secret/{app}#password,"
                                        f"vault:secret/skiff/calls/{uid}/app/*#*",
                        handler_token_audiences="billing-api",
                        oauth_client_id=client_id,
                        oauth_client_secret=f"vault:secret/skiff/calls/{uid}/oauth#client_secret",
                        oauth_token_url=keycloak.token_url)
    try:
        # Logged in and the setting read (a call before that is unavailable: nothing cached).
        itc.wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                            secret="oauth.client_secret", result="ok") >= 1,
                       timeout=30, what="the first Vault reads")
        ref = f"vault:secret/{app}#password"
        results = run_calls(sdk, skiff, [
            ["secret", ref],
            ["secret", f"vault:secret/{app}#user"],              # field not allowed
            ["secret", f"vault:secret/{other}#password"],        # exists, not allowed
            ["secret", f"vault:secret/skiff/calls/{uid}/nope#password"],  # missing, not allowed
            ["secret", f"vault:secret/skiff/calls/{uid}/app/missing#x"],  # allowed, missing
            ["secret", f"vault:secret/skiff/calls/{uid}/app/../other#password"],
            ["token", "billing-api"],
            ["token", "admin-api"],
            ["secret", ref],                                     # from the cache
        ])
        assert results[0] == {"ok": password}
        assert [r.get("code") for r in results[1:4]] == ["forbidden"] * 3
        # No hint whether it exists: the two refusals differ only in the reference.
        assert (results[2]["message"].replace(other, "X")
                == results[3]["message"].replace(f"skiff/calls/{uid}/nope", "X"))
        assert results[4]["code"] == "not_found"
        assert results[5]["code"] == "invalid_params"
        claims = jwt_claims(results[6]["ok"])
        assert claims["azp"] == client_id
        assert keycloak.events(client_id, "CLIENT_LOGIN")
        assert results[7]["code"] == "forbidden"
        assert results[8] == {"ok": password}
        assert skiff.metric("skiff_handler_secret_calls_total", result="forbidden") == 3
        assert skiff.metric("skiff_handler_secret_calls_total", result="not_found") == 1
        assert skiff.metric("skiff_handler_token_calls_total", result="ok") == 1
        assert_no_secret(skiff, password, hidden, client_secret, results[6]["ok"])
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
    assert_no_secret(skiff, password, hidden, client_secret)


@pytest.mark.parametrize("sdk", ["python", "node"])
def test_calls_unavailable(sdk, keycloak, tmp_path):
    """Vault out of reach (nothing cached): `secret` is unavailable; a client Keycloak refuses:
    `token` is unavailable once the wait for a first token is over."""
    uid = uuid.uuid4().hex[:8]
    client_id = f"skiff-calls-bad-{uid}"
    keycloak.create_client(client_id, f"canary-{uid}-right")
    wrong = tmp_path / "client-secret"
    wrong.write_text(f"canary-{uid}-wrong")
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    skiff = calls_skiff(tmp_path, jwt_file, vault_address=f"http://127.0.0.1:{itc.free_port()}",
                        vault_timeout="1s",  # the secret call's wait for a login
                        handler_secrets="vault:secret/app/*#*",
                        handler_token_audiences="billing-api", oauth_client_id=client_id,
                        oauth_client_secret=f"file:{wrong}", oauth_token_url=keycloak.token_url)
    try:
        results = run_calls(sdk, skiff, [["secret", "vault:secret/app/db#password"],
                                         ["token", "billing-api"]])
        assert [r.get("code") for r in results] == ["unavailable", "unavailable"]
        assert skiff.metric("skiff_handler_secret_calls_total", result="unavailable") == 1
        assert skiff.metric("skiff_handler_token_calls_total", result="unavailable") == 1
        assert_no_secret(skiff, f"canary-{uid}-wrong")
    finally:
        assert skiff.stop() == 0
        skiff.check_clean()
