"""Kubernetes TokenReview stand-in for OpenBao's Kubernetes auth method (devstack only: there is
no Kubernetes API server on this machine). It issues service-account JWTs (RS256, the claims of
a projected token) and answers POST /apis/authentication.k8s.io/v1/tokenreviews for the tokens
it issued and has not revoked, as the API server does: status.authenticated, status.user
(username system:serviceaccount:<ns>:<sa>, uid, groups) and status.audiences.

    python3 tokenreview.py --port P [--cert PEM --key PEM]   (HTTPS with a certificate, as the
                                                            API server; the auth method needs its CA)

Control endpoints (loopback): POST /issue {"namespace", "serviceaccount", "audiences"?} ->
{"token"}; POST /revoke {"token"}; GET /reviews -> {"reviews": n}.
"""
import argparse
import base64
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LOCK = threading.Lock()
ISSUED = {}  # token -> (namespace, serviceaccount, uid, audiences)
REVIEWS = [0]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue(namespace: str, sa: str, audiences) -> str:
    sa_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{sa}"))
    now = int(time.time())
    claims = {"iss": "https://kubernetes.default.svc.cluster.local", "aud": audiences,
              "sub": f"system:serviceaccount:{namespace}:{sa}", "iat": now, "nbf": now,
              "exp": now + 3600, "jti": str(uuid.uuid4()),
              "kubernetes.io": {"namespace": namespace,
                                "serviceaccount": {"name": sa, "uid": sa_uid}}}
    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = KEY.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{head}.{body}.{b64(sig)}"
    with LOCK:
        ISSUED[token] = (namespace, sa, sa_uid, audiences)
    return token


def review(req: dict) -> dict:
    token = (req.get("spec") or {}).get("token", "")
    with LOCK:
        REVIEWS[0] += 1
        who = ISSUED.get(token)
    status = {"authenticated": False, "error": "token not issued here or revoked"}
    if who:
        ns, sa, sa_uid, auds = who
        wanted = (req.get("spec") or {}).get("audiences") or auds
        if set(wanted) & set(auds):
            status = {"authenticated": True, "audiences": list(wanted),
                      "user": {"username": f"system:serviceaccount:{ns}:{sa}", "uid": sa_uid,
                               "groups": ["system:serviceaccounts",
                                          f"system:serviceaccounts:{ns}",
                                          "system:authenticated"]}}
        else:
            status = {"authenticated": False, "error": "audience mismatch"}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {"creationTimestamp": None}, "spec": req.get("spec") or {},
            "status": status}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def _reply(self, code: int, obj: dict):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return {}

    def do_GET(self):
        if self.path == "/reviews":
            with LOCK:
                self._reply(200, {"reviews": REVIEWS[0]})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self):
        body = self._body()
        if self.path == "/apis/authentication.k8s.io/v1/tokenreviews":
            self._reply(201, review(body))
        elif self.path == "/issue":
            self._reply(200, {"token": issue(body.get("namespace", "default"),
                                             body.get("serviceaccount", "default"),
                                             body.get("audiences") or ["vault"])})
        elif self.path == "/revoke":
            with LOCK:
                ISSUED.pop(body.get("token", ""), None)
            self._reply(200, {})
        else:
            self._reply(404, {"error": "not found"})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
