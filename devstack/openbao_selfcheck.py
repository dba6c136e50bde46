"""Checks devstack's OpenBao and its TokenReview stand-in with hvac (the independent Vault
client): a JWT the stand-in issued logs in with the Kubernetes auth method (role skiff) and
reads secret/skiff/*; a revoked JWT, a JWT of another service account and a forged one are
refused. Run after `devstack/openbao.sh start` with its `env` in the environment."""
import json
import os
import ssl
import sys
import urllib.request

import hvac

ADDR = os.environ["VAULT_ADDR"]
ROOT = os.environ["SKIFF_OPENBAO_ROOT_TOKEN"]
TR = os.environ["SKIFF_TOKENREVIEW_URL"]
CTX = ssl.create_default_context(cafile=os.environ["SKIFF_TOKENREVIEW_CA"])


def tr(path, body):
    req = urllib.request.Request(TR + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5, context=CTX) as r:
        return json.load(r)


def refused(jwt):
    try:
        hvac.Client(url=ADDR).auth.kubernetes.login("skiff", jwt)
    except hvac.exceptions.VaultError:
        return True
    return False


def main():
    root = hvac.Client(url=ADDR, token=ROOT)
    root.secrets.kv.v2.create_or_update_secret(path="skiff/selfcheck", secret={"f": "v"},
                                               mount_point="secret")
    jwt = tr("/issue", {"namespace": "skiff-test", "serviceaccount": "skiff"})["token"]
    c = hvac.Client(url=ADDR)
    auth = c.auth.kubernetes.login("skiff", jwt)["auth"]
    assert "skiff" in auth["policies"], auth
    assert auth["metadata"]["service_account_namespace"] == "skiff-test", auth
    got = c.secrets.kv.v2.read_secret_version(path="skiff/selfcheck", mount_point="secret")
    assert got["data"]["data"] == {"f": "v"}, got
    other = tr("/issue", {"namespace": "skiff-test", "serviceaccount": "intruder"})["token"]
    assert refused(other), "a JWT of another service account logged in"
    head, body, sig = jwt.split(".")
    assert refused(f"{head}.{body}.{sig[:-4]}AAAA"), "a forged JWT logged in"
    tr("/revoke", {"token": jwt})
    assert refused(jwt), "a revoked JWT logged in"
    print("openbao selfcheck: hvac login, KV read and three refusals ok")


if __name__ == "__main__":
    sys.exit(main())
