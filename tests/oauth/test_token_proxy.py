"""The token-validating proxy checked with Keycloak's real tokens and gRPC C-core (grpcio) as
the client: it forwards a call with a valid token to the real gateway and answers
UNAUTHENTICATED to no token, garbage, a bad signature, a wrong audience and an expired token."""
import base64
import json
import time

import grpc
import pytest

TOPOLOGY = "/gateway_protocol.Gateway/Topology"


def topology(proxy, token=None):
    with grpc.insecure_channel(proxy.address) as ch:
        call = ch.unary_unary(TOPOLOGY, request_serializer=None, response_deserializer=None)
        md = [("authorization", f"Bearer {token}")] if token else []
        try:
            return grpc.StatusCode.OK, call(b"", metadata=md, timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details()


def claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_valid_token_reaches_the_gateway(keycloak, token_proxy):
    token = keycloak.token("skiff-worker", "skiff-worker-secret")
    code, reply = topology(token_proxy, token)
    assert code == grpc.StatusCode.OK, reply
    assert len(reply) > 0  # a TopologyResponse from the broker
    last = token_proxy.seen(client="skiff-worker")[-1]
    assert last["verdict"] == "ok" and last["jti"] == claims(token)["jti"]


@pytest.mark.parametrize("case", ["none", "garbage", "bad-signature", "no-audience"])
def test_refused_tokens(keycloak, token_proxy, case):
    token = keycloak.token("skiff-worker", "skiff-worker-secret")
    if case == "none":
        token, why = None, "no bearer token"
    elif case == "garbage":
        token, why = "not.a.jwt", "ERR_JW"
    elif case == "bad-signature":
        head, body, sig = token.split(".")
        sig = ("A" if sig[0] != "A" else "B") + sig[1:]
        token, why = f"{head}.{body}.{sig}", "signature verification failed"
    else:
        token, why = keycloak.token("skiff-noaud", "skiff-noaud-secret"), "\"aud\""
    code, details = topology(token_proxy, token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert why in details, details


def test_expired_token_refused(keycloak, token_proxy):
    token = keycloak.token("skiff-short", "skiff-short-secret")
    assert topology(token_proxy, token)[0] == grpc.StatusCode.OK
    exp = claims(token)["exp"]
    while time.time() < exp + 1:
        time.sleep(0.5)
    code, details = topology(token_proxy, token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "\"exp\" claim timestamp check failed" in details, details
