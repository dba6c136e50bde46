"""The secure demo's credentials from OpenBao (devstack/demo_secure.py): OpenBao
(devstack/openbao.sh) with its HTTPS listener that requires client certificates, the gateway's
OAuth client secret stored at secret/skiff/demo#client_secret, and the skiff settings that read
it: a Kubernetes-auth login with a service-account JWT of the TokenReview stand-in, over mTLS,
with security.literal_secrets=refuse. Runnable alone to check it: `python3
devstack/demo_vault.py CERT_DIR` starts OpenBao, stores a value, prints the skiff arguments and
stops OpenBao."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from devstack_env import shell_env

HERE = Path(__file__).resolve().parent
OPENBAO = str(HERE / "openbao.sh")
PATH, FIELD = "skiff/demo", "client_secret"


class VaultStep:
    def __init__(self, certs: Path, say):
        self.certs, self.say = Path(certs), say
        self.env = {}
        self.started = False

    def start(self, client_secret: str):
        """OpenBao with the HTTPS listener (certs from devstack/certs.sh), the secret stored."""
        if subprocess.run([OPENBAO, "status"], capture_output=True).returncode == 0:
            raise SystemExit("demo --secure: OpenBao already runs; stop it first "
                             "(devstack/openbao.sh stop)")
        env = {**os.environ, "SKIFF_OPENBAO_TLS_DIR": str(self.certs)}
        subprocess.run([OPENBAO, "start"], check=True, env=env)
        self.started = True
        self.env = shell_env([OPENBAO, "env"], env=env)
        body = json.dumps({"data": {FIELD: client_secret}}).encode()
        req = urllib.request.Request(f"{self.env['VAULT_ADDR']}/v1/secret/data/{PATH}",
                                     data=body, method="POST",
                                     headers={"X-Vault-Token": self.env["SKIFF_OPENBAO_ROOT_TOKEN"],
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
        self.jwt = self.certs.parent / "sa-token"  # a projected service-account token
        subprocess.run([OPENBAO, "jwt", str(self.jwt)], check=True, env=env)
        self.say(f"OpenBao {self.env['SKIFF_OPENBAO_TLS_ADDR']} (HTTPS, client certificates "
                 f"required): the OAuth client secret at secret/{PATH}#{FIELD}")

    def reference(self) -> str:
        return f"vault:secret/{PATH}#{FIELD}"

    def skiff_args(self):
        c = self.certs
        return [f"--vault.address={self.env['SKIFF_OPENBAO_TLS_ADDR']}", "--vault.role=skiff",
                f"--vault.token_path={self.jwt}", f"--vault.cacert={c / 'ca.pem'}",
                f"--vault.client_cert={c / 'client.pem'}",
                f"--vault.client_key={c / 'client.key'}", "--security.literal_secrets=refuse"]

    def report(self, metrics: str):
        self.say(f"  Vault (OpenBao) {self.env['SKIFF_OPENBAO_TLS_ADDR']}: Kubernetes auth over "
                 f"mTLS, zeebe.client_secret={self.reference()}, no literal secret "
                 f"(security.literal_secrets=refuse)")
        for line in metrics.splitlines():
            if line.startswith(("skiff_vault_logins_total{", "skiff_vault_secret_reads_total{",
                                "skiff_vault_token_valid", "skiff_literal_secrets")):
                self.say("    " + line)

    def stop(self):
        if self.started:
            subprocess.run([OPENBAO, "stop"], check=False)
            self.say("  openbao stopped")


if __name__ == "__main__":
    step = VaultStep(Path(sys.argv[1]), print)
    try:
        step.start("demo-check-value")
        print(" ".join(step.skiff_args()))
    finally:
        step.stop()
