"""OpenBao out of reach, at start and mid-run, for skiff (ASan+UBSan): skiff talks to OpenBao
through a TCP relay of the test's that can stop listening and cut every connection (OpenBao
itself keeps running, so its state stays). Down at start: /readyz says why (the Vault login)
and turns to the next reason once the relay is up. Down mid-run: the handlers' `secret` call
keeps answering the value read before, renewal and login fail and recover once OpenBao is back.
(A rotated service-account token file is in test_vault.py: the revoked first JWT, a new login
with the one now in the file.)"""
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vault import assert_no_secret, bao, itc, new_jwt  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "handler-protocol" / "python"))
from skiff_handler import CallError, Handler  # noqa: E402


class Relay:
    """TCP relay 127.0.0.1:port -> OpenBao; up() listens, down() closes the listener and every
    relayed connection."""

    def __init__(self):
        u = urlsplit(os.environ["VAULT_ADDR"])
        self.target = (u.hostname, u.port)
        self.port = itc.free_port()
        self.lock = threading.Lock()
        self.listener, self.conns = None, []

    def up(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self):
        with self.lock:
            if self.listener:  # shutdown wakes the thread blocked in accept()
                try:
                    self.listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.listener.close()
            self.listener = None
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns = []

    def _accept(self, s):
        while True:
            try:
                a, _ = s.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=5)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def secret_call(app, ref):
    end = time.monotonic() + 30
    while True:
        try:
            return app.secret(ref)
        except CallError as e:
            if e.code != "closed" or time.monotonic() > end:
                raise
            time.sleep(0.05)


def start(tmp_path, relay, path, role="skiff", vault_timeout="2s"):
    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(new_jwt())
    # The shared Zeebe broker, so that readiness gets past the gateway to Vault.
    skiff = itc.Skiff({"ZEEBE_ADDRESS": os.environ.get("ZEEBE_ADDRESS", "127.0.0.1:26500")},
                      tmp_path, ["vault-faults"],
                      vault_address=f"http://127.0.0.1:{relay.port}", vault_role=role,
                      vault_token_path=str(jwt_file), vault_refresh_interval="500ms",
                      vault_timeout=vault_timeout,
                      handler_secrets=f"vault:secret/{path}#password")
    app = Handler("vault-faults", capacity=1, socket_path=skiff.socket)
    app.job("vault-faults")(lambda task: {})
    threading.Thread(target=app.run, daemon=True).start()
    return skiff, app


def test_openbao_down_at_start_then_up(bao, tmp_path):
    uid = uuid.uuid4().hex[:8]
    path = f"skiff/faults-{uid}"
    bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                              secret={"password": f"canary-{uid}-start"})
    relay = Relay()
    # vault.timeout is also how long a secret call waits for a login: long enough here for the
    # login backoff (a few seconds after the first failures).
    skiff, app = start(tmp_path, relay, path, vault_timeout="30s")
    try:
        itc.wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="error") >= 1,
                       timeout=30, what="a failed login while OpenBao is out of reach")
        status, why = skiff.http("/readyz")
        assert status == 503 and "Vault login" in why, why
        # A call while skiff is not logged in waits for the login instead of failing.
        answer = {}
        caller = threading.Thread(target=lambda: answer.update(
            value=secret_call(app, f"vault:secret/{path}#password")))
        caller.start()
        itc.wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="error") >= 2,
                       timeout=30, what="another failed login while the call waits")
        assert caller.is_alive()
        relay.up()
        caller.join(60)
        assert answer.get("value") == f"canary-{uid}-start"
        itc.wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="ok") >= 1,
                       timeout=60, what="the login once OpenBao is reachable")
        itc.wait_until(lambda: "Vault" not in skiff.http("/readyz")[1], timeout=30,
                       what="readiness past Vault")
        assert secret_call(app, f"vault:secret/{path}#password") == f"canary-{uid}-start"
        assert_no_secret(skiff, f"canary-{uid}-start")
    finally:
        relay.down()
        assert skiff.stop() == 0
        skiff.check_clean()


def call_code(app, ref):
    """The code of the CallError the secret call raises (waiting for the connection)."""
    try:
        secret_call(app, ref)
    except CallError as e:
        return e.code
    return None


def test_openbao_down_mid_run(bao, tmp_path):
    """Short tokens (2 s, max 6 s): while OpenBao is out of reach renewals and logins fail and
    the `secret` call answers the value read before; once it is back a login succeeds, the
    token is valid again and secrets are read again."""
    uid = uuid.uuid4().hex[:8]
    path = f"skiff/faults-{uid}"
    value = f"canary-{uid}-mid"
    bao.write("auth/kubernetes/role/skiff-short", bound_service_account_names=["skiff"],
              bound_service_account_namespaces=["skiff-test"], token_policies=["skiff"],
              token_ttl="2s", token_max_ttl="6s")
    bao.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                              secret={"password": value})
    relay = Relay()
    relay.up()
    skiff, app = start(tmp_path, relay, path, role="skiff-short")
    ref = f"vault:secret/{path}#password"
    try:
        assert secret_call(app, ref) == value
        relay.down()
        itc.wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="error") >= 1,
                       timeout=30, what="a failed login while OpenBao is away")
        cached = skiff.metric("skiff_handler_secret_calls_total", result="cached")
        assert app.secret(ref) == value  # the value read before
        assert skiff.metric("skiff_handler_secret_calls_total", result="cached") == cached + 1
        logins = skiff.metric("skiff_vault_logins_total", result="ok")
        relay.up()
        itc.wait_until(lambda: skiff.metric("skiff_vault_logins_total", result="ok") > logins,
                       timeout=60, what="a login once OpenBao is back")
        itc.wait_until(lambda: skiff.metric("skiff_vault_token_valid") == 1, timeout=30,
                       what="a valid token again")
        ok = skiff.metric("skiff_handler_secret_calls_total", result="ok")
        itc.wait_until(lambda: app.secret(ref) == value and skiff.metric(
            "skiff_handler_secret_calls_total", result="ok") > ok, timeout=30,
            what="the secret read from OpenBao again")
        assert_no_secret(skiff, value)
    finally:
        relay.down()
        assert skiff.stop() == 0
        skiff.check_clean()
