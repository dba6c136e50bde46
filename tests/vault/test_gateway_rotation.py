"""The gateway's OAuth client secret from OpenBao, rotated in Keycloak and in OpenBao while jobs
flow: skiff (ASan+UBSan) behind the token-validating proxy in front of the real Zeebe broker
(the fixtures of tests/oauth), its client secret `vault:secret/skiff/<id>#client_secret`. After
the rotation Keycloak refuses the old secret; skiff reads the new version and its next tokens
are issued for it, without restart, and every process instance started before, during and
after completes (judged by the engine's records and Keycloak's login events)."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import bao, new_jwt, put_secret  # noqa: E402,F401

_spec = importlib.util.spec_from_file_location("oauth_conftest",
                                               ROOT / "tests" / "oauth" / "conftest.py")
oc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oc)
broker, stack, uid, keycloak, token_proxy = (oc.broker, oc.stack, oc.uid, oc.keycloak,
                                             oc.token_proxy)
sys.path.insert(0, str(ROOT / "tests" / "oauth"))
from test_gateway_oauth import (Case, assert_no_secret, run_instances,  # noqa: E402
                                wait_completed)

wait_until = oc.wait_until


def test_gateway_secret_rotated_in_vault_while_jobs_flow(stack, keycloak, token_proxy, bao,
                                                         tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "vault", lifespan_s=8)
    path = f"skiff/gw-{uid}"
    put_secret(bao, path, case.secret)
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    skiff = stack.skiff([case.job_type], address=token_proxy.address,
                        zeebe_client_id=case.client_id,
                        zeebe_client_secret=f"vault:secret/{path}#client_secret",
                        zeebe_authorization_server_url=keycloak.token_url,
                        zeebe_token_audience="zeebe-api", oauth_backoff_initial="100ms",
                        oauth_backoff_max="1s", zeebe_backoff_max="1s", vault_role="skiff",
                        vault_token_path=str(jwt_file), vault_refresh_interval="500ms")
    stack.handler(skiff, [case.job_type])
    keys = run_instances(3, case)
    wait_completed(stack, keys)
    old, new = case.secret, f"canary-{uid}-vault-rotated"
    pid = skiff.proc.pid
    keys += run_instances(3, case)  # in flight while the secret changes
    keycloak.update_client(case.client_id, secret=new)
    put_secret(bao, path, new)
    wait_until(lambda: skiff.metric("skiff_vault_secret_reads_total",
                                    secret="zeebe.client_secret", result="changed") >= 1,
               timeout=30, what="the new client secret read from OpenBao")
    logins = len(case.logins())
    keys += run_instances(3, case)
    wait_until(lambda: len(case.logins()) > logins, timeout=60,
               what="a token issued for the new secret")
    wait_completed(stack, keys)
    assert skiff.proc.poll() is None and skiff.proc.pid == pid
    assert_no_secret(skiff, old, new)
