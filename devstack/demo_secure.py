"""The secure variant of the skiff demo (devstack/demo.sh --secure, used by devstack/demo.py).

Every connection skiff makes is TLS and authenticated, and skiff runs with
security.plaintext=refuse, so a plaintext peer stops it at start-up:
- the Zeebe gateway speaks TLS only (zeebe.sh with SKIFF_ZEEBE_TLS_*); skiff reaches it through
  devstack/token-proxy.mjs, which requires skiff's client certificate (mTLS), checks the OAuth
  bearer token of every call against Keycloak's JWKS (devstack/keycloak.sh) and forwards over
  TLS to the gateway;
- Kafka over its SSL listener with a client certificate (kafka.sh with SKIFF_KAFKA_TLS_DIR,
  ssl.client.auth=required);
- the Schema Registry over HTTPS with a client certificate (schema-registry.sh with
  SKIFF_SCHEMA_REGISTRY_TLS_DIR: the stand-in, SKIFF_SCHEMA_REGISTRY_IMPL=standin);
- Keycloak's token endpoint over HTTPS (keycloak.sh with SKIFF_KEYCLOAK_TLS_DIR), verified with
  oauth.ca_file; the token proxy fetches the JWKS over HTTPS too;
- the OAuth client secret comes from OpenBao (devstack/demo_vault.py: Kubernetes auth over an
  HTTPS listener that requires skiff's client certificate), and skiff runs with
  security.literal_secrets=refuse.
Certificates are made afresh by devstack/certs.sh. The demo's own tools (zbctl, the Kafka
topic tool) are not skiff: zbctl talks TLS to the gateway, the Kafka tools use the broker's
PLAINTEXT listener (skiff is never given it)."""
import json
import os
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path

from demo_vault import VaultStep
from devstack_env import shell_env

HERE = Path(__file__).resolve().parent
SCRIPTS = ("zeebe.sh", "kafka.sh", "schema-registry.sh")
CLIENT_ID, AUDIENCE = "skiff-worker", "zeebe-api"
CLIENT_SECRET = "skiff-worker-secret"  # devstack/keycloak's realm; stored in OpenBao for skiff


class SecureStep:
    def __init__(self, run_dir, say):
        self.say = say
        self.certs = Path(run_dir) / "certs"
        self.started_keycloak = False
        self.proxy = self.proxy_log = None
        self.kc = {}
        self.address = self.control = ""
        self.vault = VaultStep(self.certs, say)

    def prepare(self):
        """Certificates, and the TLS settings the devstack scripts read (os.environ)."""
        for script in SCRIPTS:
            if subprocess.run([str(HERE / script), "status"], capture_output=True).returncode == 0:
                raise SystemExit(f"demo --secure: {script} already runs (maybe in plaintext); "
                                 f"stop it first (devstack/{script} stop)")
        subprocess.run([str(HERE / "certs.sh"), str(self.certs)], check=True)
        c = self.certs
        os.environ.update(SKIFF_ZEEBE_TLS_CERT=str(c / "server-chain.pem"),
                          SKIFF_ZEEBE_TLS_KEY=str(c / "server.key"),
                          SKIFF_ZEEBE_TLS_CA=str(c / "ca.pem"), SKIFF_KAFKA_TLS_DIR=str(c),
                          SKIFF_SCHEMA_REGISTRY_TLS_DIR=str(c), SKIFF_KEYCLOAK_TLS_DIR=str(c),
                          # HTTPS with client certificates: the stand-in (devstack/README.md)
                          SKIFF_SCHEMA_REGISTRY_IMPL="standin")
        self.say(f"certificates by devstack/certs.sh in {c} (a test CA, server and client)")

    def start(self, gateway):
        """Keycloak (unless it runs) and the token-validating TLS proxy in front of gateway."""
        keycloak = str(HERE / "keycloak.sh")
        if subprocess.run([keycloak, "status"], capture_output=True).returncode != 0:
            subprocess.run([keycloak, "start"], check=True)
            self.started_keycloak = True
        self.kc = shell_env([keycloak, "env"])
        self.vault.start(CLIENT_SECRET)
        c = self.certs
        self.proxy_log = open(c.parent / "token-proxy.log", "wb")
        listen = f"127.0.0.1:{os.environ.get('SKIFF_TOKEN_PROXY_PORT', '0')}"
        self.proxy = subprocess.Popen(
            ["node", str(HERE / "token-proxy.mjs"), "--target", gateway, "--listen", listen,
             "--target-ca", str(c / "ca.pem"), "--tls-cert", str(c / "server-chain.pem"),
             "--tls-key", str(c / "server.key"), "--tls-client-ca", str(c / "ca.pem"),
             "--jwks", self.kc["SKIFF_KEYCLOAK_HTTPS_JWKS_URL"],
             "--issuer", self.kc["SKIFF_KEYCLOAK_ISSUER"], "--audience", AUDIENCE],
            cwd=HERE, stdout=subprocess.PIPE, stderr=self.proxy_log,
            env={**os.environ, "NODE_EXTRA_CA_CERTS": str(c / "ca.pem")})
        line = self.proxy.stdout.readline()
        if not line:
            raise SystemExit(f"demo --secure: the token proxy did not start; see "
                             f"{self.proxy_log.name}")
        ports = json.loads(line)
        self.address = f"127.0.0.1:{ports['listen']}"
        self.control = f"http://127.0.0.1:{ports['control']}"
        self.say(f"Keycloak issuer {self.kc['SKIFF_KEYCLOAK_ISSUER']}; token-validating TLS "
                 f"proxy on {self.address} (mTLS, JWT checked) -> gateway {gateway} (TLS)")

    def zeebe(self, gateway):
        """The demo's own Zeebe client: zbctl over TLS straight to the gateway."""
        import zeebe_client
        return zeebe_client.Zeebe(address=gateway, ca_path=str(self.certs / "ca.pem"))

    def kafka_tls(self):
        c = self.certs
        return {"ca": c / "ca.pem", "cert": c / "client.pem", "key": c / "client.key"}

    def skiff_args(self):
        c = self.certs
        return ["--security.plaintext=refuse", f"--zeebe.address={self.address}",
                "--zeebe.tls=true", f"--zeebe.ca_file={c / 'ca.pem'}",
                f"--zeebe.cert_file={c / 'client.pem'}", f"--zeebe.key_file={c / 'client.key'}",
                f"--zeebe.client_id={CLIENT_ID}",
                f"--zeebe.client_secret={self.vault.reference()}",
                f"--zeebe.authorization_server_url={self.kc['SKIFF_KEYCLOAK_HTTPS_TOKEN_URL']}",
                f"--oauth.ca_file={self.kc['SKIFF_KEYCLOAK_CA_FILE']}",
                f"--zeebe.token_audience={AUDIENCE}"] + self.vault.skiff_args()

    def probe(self, address):
        """TLS version and cipher a client with skiff's certificate gets from address."""
        host, port = address.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        ctx.load_cert_chain(str(self.certs / "client.pem"), str(self.certs / "client.key"))
        with socket.create_connection((host, int(port)), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=host) as t:
                return f"{t.version()} {t.cipher()[0]}"

    def report(self, metrics, kafka_bootstrap, registry_url):
        with urllib.request.urlopen(f"{self.control}/seen", timeout=5) as r:
            seen = json.load(r)["seen"]
        ok = [e for e in seen if e["verdict"] == "ok"]
        tls = sorted({e.get("tls", "") for e in seen})
        certs = sorted({e.get("client_cert", "") for e in seen})
        clients = sorted({e["client"] for e in ok})
        plain = [line for line in metrics.splitlines()
                 if line.startswith("skiff_plaintext_peers{") and not line.endswith(" 0")]
        self.say("\nsecured (security.plaintext=refuse: skiff starts only when no peer is "
                 "plaintext; skiff_plaintext_peers " + ("> 0: " + "; ".join(plain)
                                                        if plain else "all 0") + "):")
        self.say(f"  Zeebe gateway via {self.address}: {len(seen)} gRPC calls seen by the proxy "
                 f"over {', '.join(tls) or '-'}, client certificate {', '.join(certs) or '-'} "
                 f"(mTLS); {len(ok)} with a valid bearer token of client {', '.join(clients)} "
                 f"issued by {self.kc['SKIFF_KEYCLOAK_ISSUER']} (audience {AUDIENCE}), "
                 f"{len(seen) - len(ok)} refused; proxy -> gateway over TLS")
        self.say(f"  Kafka SSL listener {kafka_bootstrap}: mTLS (ssl.client.auth=required), "
                 f"{self.probe(kafka_bootstrap)} (a probe with skiff's certificate)")
        hostport = registry_url.split("://", 1)[1]
        self.say(f"  Schema Registry {registry_url}: HTTPS with a client certificate, "
                 f"{self.probe(hostport)}")
        for line in metrics.splitlines():
            if line.startswith(("skiff_tls_certificate_expiry_seconds{",
                                "skiff_oauth_token_requests_total{", "skiff_oauth_token_valid{")):
                self.say("    " + line)
        self.vault.report(metrics)
        token_url = self.kc["SKIFF_KEYCLOAK_HTTPS_TOKEN_URL"]
        self.say(f"  Keycloak token endpoint {token_url}: HTTPS verified with oauth.ca_file, "
                 f"{self.probe(token_url.split('/')[2])}; the proxy's JWKS over HTTPS too")

    def stop(self):
        self.vault.stop()
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)
            self.proxy_log.close()
            self.say("  token proxy stopped")
        if self.started_keycloak:
            subprocess.run([str(HERE / "keycloak.sh"), "stop"], check=False)
            self.say("  keycloak stopped")
