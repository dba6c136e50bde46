"""skiff (ASan+UBSan) gets its tokens from the real Keycloak over HTTPS (keycloak.sh with
SKIFF_KEYCLOAK_TLS_DIR, certificates by devstack/certs.sh), verified with oauth.ca_file through
the one TLS layer ("oauth" peer): jobs flow through the token-validating proxy with those tokens,
as judged by Keycloak's login events and the proxy. With a CA that did not sign Keycloak's
certificate no token is issued, readiness names the certificate problem and skiff keeps running
(backoff, no crash)."""
import os
from pathlib import Path

from conftest import wait_until
from test_gateway_oauth import Case, assert_no_secret, oauth_skiff, run_instances, wait_completed


def certs() -> Path:
    return Path(os.environ["SKIFF_KEYCLOAK_TLS_DIR"])


def test_tokens_over_https_with_ca_file(stack, keycloak, token_proxy, tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "https", lifespan_s=300)
    since = token_proxy.calls()
    url = os.environ["SKIFF_KEYCLOAK_HTTPS_TOKEN_URL"]
    assert url.startswith("https://")
    # The client certificate is offered (Keycloak does not ask for one): loaded, its expiry shown.
    skiff = oauth_skiff(stack, token_proxy, case, token_url=url,
                        oauth_ca_file=os.environ["SKIFF_KEYCLOAK_CA_FILE"],
                        oauth_cert_file=certs() / "client.pem",
                        oauth_key_file=certs() / "client.key")
    stack.handler(skiff, [case.job_type])
    wait_completed(stack, run_instances(3, case))
    wait_until(lambda: skiff.http("/readyz")[0] == 200, what="ready")
    seen = token_proxy.seen(client=case.client_id, since=since)
    assert seen and all(e["verdict"] == "ok" for e in seen)
    assert len(case.logins()) == 1  # the token came from Keycloak, over HTTPS
    assert skiff.metric("skiff_oauth_token_requests_total", token="zeebe", result="ok") == 1
    assert skiff.metric("skiff_plaintext_peers", peer="oauth") == 0
    assert skiff.metric("skiff_tls_certificate_expiry_seconds", peer="oauth",
                        certificate="client") > 0
    assert skiff.metric("skiff_tls_certificate_expiry_seconds", peer="oauth",
                        certificate="ca") > 0
    assert_no_secret(skiff, case.secret)


def test_wrong_ca_names_the_certificate_problem(stack, keycloak, token_proxy, tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "wrongca", lifespan_s=300)
    skiff = oauth_skiff(stack, token_proxy, case,
                        token_url=os.environ["SKIFF_KEYCLOAK_HTTPS_TOKEN_URL"],
                        oauth_ca_file=certs() / "other-ca.pem")
    wait_until(lambda: skiff.metric("skiff_oauth_token_requests_total", token="zeebe",
                                    result="error") >= 2, what="token requests failing, retried")
    status, body = skiff.http("/readyz")
    print(f"readiness with the wrong CA: {body}")
    assert status == 503 and "certificate" in body.lower(), body
    assert "token endpoint" in body
    assert skiff.metric("skiff_oauth_token_valid", token="zeebe") == 0
    assert skiff.metric("skiff_oauth_token_requests_total", token="zeebe", result="ok") == 0
    assert not case.logins()  # no handshake, so Keycloak never saw a request
    assert skiff.proc.poll() is None
    assert_no_secret(skiff, case.secret)
