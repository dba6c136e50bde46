"""skiff (ASan+UBSan) consuming and producing through the broker's OAUTHBEARER listener
(devstack/kafka-oauthbearer.sh: Kafka's OAuthBearerValidatorCallbackHandler checks the JWTs
against Keycloak's JWKS), with tokens from skiff's token service: over SASL_PLAINTEXT (counted
as a plaintext peer) and over SASL_SSL (OAUTH_SSL, TLS verified against the test CA). Runs from
tests/oauth.sh (which starts Keycloak and those listeners); skipped elsewhere."""
import json
import os
import urllib.parse
import urllib.request

import pytest

from conftest import acked_offsets, wait_until

BOOTSTRAP = os.environ.get("SKIFF_KAFKA_OAUTHBEARER_BOOTSTRAP")
SSL_BOOTSTRAP = os.environ.get("SKIFF_KAFKA_OAUTHBEARER_SSL_BOOTSTRAP")
TLS_DIR = os.environ.get("SKIFF_KAFKA_TLS_DIR", "")
pytestmark = pytest.mark.skipif(not BOOTSTRAP, reason="no OAUTHBEARER listener (tests/oauth.sh)")

SCHEMA = {"type": "record", "name": "Ping", "namespace": "skiff.test",
          "fields": [{"name": "n", "type": "long"}]}


def keycloak_logins(client_id):
    base = os.environ["SKIFF_KEYCLOAK_URL"]
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "admin-cli",
                                   "username": os.environ["SKIFF_KEYCLOAK_ADMIN_USER"],
                                   "password": os.environ["SKIFF_KEYCLOAK_ADMIN_PASSWORD"]})
    with urllib.request.urlopen(f"{base}/realms/master/protocol/openid-connect/token",
                                data=form.encode(), timeout=10) as r:
        admin = json.load(r)["access_token"]
    q = urllib.parse.urlencode({"client": client_id, "type": "CLIENT_LOGIN", "max": 10000})
    req = urllib.request.Request(f"{base}/admin/realms/skiff/events?{q}")
    req.add_header("Authorization", f"Bearer {admin}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def listener(name):
    """skiff's settings for the OAUTHBEARER listener `name`, and whether it is plaintext."""
    if name == "sasl_plaintext":
        return {"kafka__brokers": BOOTSTRAP}, 1
    if not SSL_BOOTSTRAP:
        pytest.skip("no OAUTHBEARER listener over SASL_SSL (tests/oauth.sh with certificates)")
    return {"kafka__brokers": SSL_BOOTSTRAP, "kafka__security__protocol": "sasl_ssl",
            "kafka__ssl__ca__location": os.path.join(TLS_DIR, "ca.pem")}, 0


@pytest.mark.parametrize("name", ["sasl_plaintext", "sasl_ssl"])
def test_records_flow_over_oauthbearer(kafka, stack, uid, name):
    conf, plaintext = listener(name)
    topic, group = f"kt.oauthbearer.{name}.{uid}", f"kt-oauthbearer-{name}-{uid}"
    kafka.create_topic(topic)
    kafka.register(f"{topic}-value", SCHEMA)
    before = len(keycloak_logins("skiff-worker"))
    skiff, handler = stack.start(
        [topic], group, **conf, kafka__oauthbearer="true",
        zeebe__client_id="skiff-worker", zeebe__client_secret="skiff-worker-secret",
        zeebe__authorization_server_url=os.environ["SKIFF_KEYCLOAK_TOKEN_URL"],
        kafka__oauthbearer_audience="zeebe-api")
    kafka.produce(topic, [(b"k", {"n": i}, {}) for i in range(5)], schema=SCHEMA)
    wait_until(lambda: len(acked_offsets([handler], topic)) == 5, what="5 records acked",
               on_timeout=skiff.tail)
    assert kafka.wait_committed(group, topic, {0: 5}, skiff) == {0: 5}
    # The only listener skiff was given takes SASL OAUTHBEARER (over TLS for sasl_ssl: that
    # listener speaks nothing else): every fetch and commit above went through it, with tokens
    # Keycloak issued to skiff's token service.
    assert len(keycloak_logins("skiff-worker")) > before
    assert skiff.metric("skiff_oauth_token_requests_total", token="kafka", result="ok") >= 1
    assert skiff.metric("skiff_plaintext_peers", peer="kafka") == plaintext
    assert "skiff-worker-secret" not in skiff.logs()
    stack.stop_all()
