#!/usr/bin/env python3
"""A TLS-terminating TCP proxy for tests: what a mesh sidecar or an ingress (Envoy, Istio,
Linkerd) does in front of a gateway that cannot check client certificates itself (Zeebe 8.5's
gateway offers TLS but no client-certificate check, see REFERENCE.md "Security").

It accepts TLS (ALPN "h2", TLS 1.2+), optionally requires a client certificate signed by --ca,
and forwards the bytes to --upstream, over TLS when --upstream-ca is given (trusting that CA,
checking the upstream's host name) or plaintext otherwise. The server certificate and key are
read again for every connection, so a test rotates them by rewriting the files. Each accepted
or refused handshake is one JSON line in --log: {"event": "accepted", "client_cn": "skiff"} or
{"event": "refused", "error": "..."}. With --plain it is a plain TCP relay (no TLS on either
side unless --upstream-ca), for benchmarks that need the same hop with and without TLS.

    tls_proxy.py --listen 127.0.0.1:34300 --upstream 127.0.0.1:34100 --upstream-ca ca.pem \\
        --cert server.pem --key server.key --ca ca.pem --log proxy.jsonl

Python 3 stdlib only. Stops on SIGTERM."""
import argparse
import json
import signal
import socket
import ssl
import sys
import threading


def parse_addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


class Proxy:
    def __init__(self, args):
        self.args = args
        self.log_lock = threading.Lock()

    def log(self, **event):
        with self.log_lock, open(self.args.log, "a") as f:
            f.write(json.dumps(event) + "\n")

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.args.cert, self.args.key)
        ctx.set_alpn_protocols(["h2"])
        if self.args.ca:
            ctx.load_verify_locations(self.args.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def upstream(self):
        host, port = parse_addr(self.args.upstream)
        raw = socket.create_connection((host, port), timeout=10)
        raw.settimeout(None)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.args.upstream_ca:
            return raw
        ctx = ssl.create_default_context(cafile=self.args.upstream_ca)
        ctx.set_alpn_protocols(["h2"])
        return ctx.wrap_socket(raw, server_hostname=host)

    def handle(self, raw):
        if self.args.plain:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.relay(raw)
            return
        try:
            conn = self.server_context().wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.log(event="refused", error=str(e))
            raw.close()
            return
        cert = conn.getpeercert() or {}
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        self.log(event="accepted", client_cn=cn, alpn=conn.selected_alpn_protocol())
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.relay(conn)

    def relay(self, conn):
        try:
            up = self.upstream()
        except OSError as e:
            self.log(event="upstream_failed", error=str(e))
            conn.close()
            return
        threading.Thread(target=pump, args=(up, conn), daemon=True).start()
        pump(conn, up)

    def serve(self):
        host, port = parse_addr(self.args.listen)
        srv = socket.create_server((host, port), reuse_port=False)
        srv.listen(64)
        print(f"tls_proxy listening on {host}:{port}", flush=True)
        while True:
            raw, _ = srv.accept()
            threading.Thread(target=self.handle, args=(raw,), daemon=True).start()


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.close()
        except OSError:
            pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--upstream-ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--plain", action="store_true",
                   help="no TLS on the listening side: a plain TCP relay (benchmarks)")
    p.add_argument("--ca", help="require client certificates signed by this CA")
    p.add_argument("--log", required=True)
    args = p.parse_args()
    if not args.plain and not (args.cert and args.key):
        p.error("--cert and --key are required unless --plain")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Proxy(args).serve()


if __name__ == "__main__":
    main()
