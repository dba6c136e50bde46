"""A route with oauth_audience: its bearer token comes from skiff's token service with the
general OAuth client (oauth.token_url, oauth.client_id, oauth.client_secret), the client secret
read from the real OpenBao through a `vault:` reference, the token from the real Keycloak
(devstack/keycloak.sh: the one running, else one started here and stopped after). What the
upstream received is judged: one Authorization header, a JWT whose RS256 signature verifies
against Keycloak's JWKS (tests/egress/jwt_check.py, with `cryptography`), issued by the realm to
that client, whose aud names the route's audience; the handler's own credential stripped.

Keycloak ignores the `audience` parameter of a client-credentials request (it puts in aud what
the client's audience mappers say), so skiff checks the aud of the token it gets for a route: a
route whose audience the client has no mapper for gets no token; its calls are refused 503
credential_unavailable and the log names the OAuth problem. The client secret never shows in
skiff's log, /metrics, /readyz or a response."""
import json
import os
import subprocess
import sys

import httpx
import pytest

from conftest import DEVSTACK, ROOT, assert_no_secret, error_of, header, wait_until
from test_egress_guard import vault_config

sys.path.insert(0, str(ROOT / "tests" / "oauth"))


@pytest.fixture(scope="module")
def keycloak():
    sh = str(DEVSTACK / "keycloak.sh")
    started = subprocess.run([sh, "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([sh, "start"], check=True)
    out = subprocess.run([sh, "env"], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        k, v = line.removeprefix("export ").split("=", 1)
        env[k] = v.strip("'\"")
    from keycloak_admin import Keycloak
    kc = Keycloak(env)
    kc.env = env
    yield kc
    if started:
        subprocess.run([sh, "stop"], check=False)


def verified_claims(keycloak, token):
    out = subprocess.run(["/usr/bin/python3", str(ROOT / "tests" / "egress" / "jwt_check.py"),
                          keycloak.env["SKIFF_KEYCLOAK_JWKS_URL"]],
                         input=token, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def oauth_skiff(skiff_factory, up, openbao, keycloak, tmp_path, uid, audience, mapped):
    """skiff with route `api` (oauth_audience `audience`) and a new Keycloak client whose
    audience mapper adds `mapped`; its secret in OpenBao."""
    client_id, secret = f"skiff-egress-{uid}", f"canary-{uid}-egress-client-secret"
    keycloak.create_client(client_id, secret, audience=mapped)
    openbao.put(f"skiff/egress-oauth-{uid}", client_secret=secret)
    jwt = tmp_path / "sa-token"
    openbao.jwt(jwt)
    s = skiff_factory({"api": {"upstream": up.url + "/v1", "oauth_audience": audience}},
                      **vault_config(openbao, jwt),
                      **{"oauth.token_url": keycloak.token_url, "oauth.client_id": client_id,
                         "oauth.client_secret":
                             f"vault:secret/skiff/egress-oauth-{uid}#client_secret",
                         "oauth.backoff_initial": "100ms", "oauth.backoff_max": "1s"})
    return s, client_id, secret


def test_bearer_token_from_keycloak(skiff_factory, up, openbao, keycloak, tmp_path, uid):
    audience = f"billing-api-{uid}"
    s, client_id, secret = oauth_skiff(skiff_factory, up, openbao, keycloak, tmp_path, uid,
                                       audience, audience)
    wait_until(lambda: httpx.get(s.url + "/api/models").status_code == 200, timeout=40,
               what="the route's first token")
    up.reset()
    r = httpx.post(s.url + "/api/chat/completions",
                   headers={"Authorization": "Bearer handler-own-credential"},
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    rec = up.requests()[-1]
    auth = header(rec, "authorization")
    assert len(auth) == 1 and auth[0].startswith("Bearer ") and "handler-own" not in auth[0]
    token = auth[0].removeprefix("Bearer ")
    claims = verified_claims(keycloak, token)
    assert claims["iss"] == keycloak.env["SKIFF_KEYCLOAK_ISSUER"]
    assert claims["azp"] == client_id
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert audience in aud
    assert keycloak.events(client_id, "CLIENT_LOGIN")
    assert s.metric("skiff_oauth_token_requests_total", token="egress", result="ok") >= 1
    assert_no_secret(s, secret, token, extra=[r.text])


def test_audience_not_in_keycloak(skiff_factory, up, openbao, keycloak, tmp_path, uid):
    """The client's mapper adds another audience: no token for the route, 503, the problem in
    the log (and counted as a refusal), the secret nowhere."""
    s, client_id, secret = oauth_skiff(skiff_factory, up, openbao, keycloak, tmp_path, uid,
                                       f"unknown-api-{uid}", "zeebe-api")
    wait_until(lambda: s.metric("skiff_oauth_token_requests_total", token="egress",
                                result="refused") >= 1, timeout=40,
               what="Keycloak's token refused for its aud")
    up.reset()
    r = httpx.post(s.url + "/api/chat/completions",
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503, r.text
    assert error_of(r)["type"] == "credential_unavailable"
    assert up.requests() == []
    problem = [line for line in s.logs().splitlines()
               if "configuration problem" in line and client_id in line]
    assert problem and f"does not name the audience unknown-api-{uid}" in problem[0]
    assert "zeebe-api" in problem[0]
    assert keycloak.events(client_id, "CLIENT_LOGIN")  # Keycloak itself accepted the client
    assert_no_secret(s, secret, extra=[r.text])
