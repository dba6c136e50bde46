"""Verifies a JWT's RS256 signature against a JWKS with the `cryptography` library (Debian's
python3-cryptography; the egress venv does not carry it) and prints the verified claims as JSON.

    /usr/bin/python3 tests/egress/jwt_check.py JWKS_URL < token

Exit 1 with a message when the token is not a JWT, its key is not in the JWKS, its algorithm is
not RS256 or the signature does not verify."""
import base64
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main():
    token = sys.stdin.read().strip()
    parts = token.split(".")
    if len(parts) != 3:
        sys.exit("not a JWT")
    head = json.loads(b64(parts[0]))
    if head.get("alg") != "RS256":
        sys.exit(f"algorithm {head.get('alg')!r}, expected RS256")
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        keys = json.load(r)["keys"]
    jwk = next((k for k in keys if k.get("kid") == head.get("kid") and k["kty"] == "RSA"), None)
    if jwk is None:
        sys.exit(f"key {head.get('kid')!r} not in the JWKS")
    pub = rsa.RSAPublicNumbers(int.from_bytes(b64(jwk["e"]), "big"),
                               int.from_bytes(b64(jwk["n"]), "big")).public_key()
    try:
        pub.verify(b64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                   hashes.SHA256())
    except InvalidSignature:
        sys.exit("signature does not verify")
    print(json.dumps(json.loads(b64(parts[1]))))


if __name__ == "__main__":
    main()
