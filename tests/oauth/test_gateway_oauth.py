"""skiff (ASan+UBSan) against the real Zeebe broker behind the token-validating proxy, with
tokens from the real Keycloak: jobs flow with tokens; tokens expiring mid-run, the token endpoint
down then up, the client secret rotated in its file and the client disabled are judged by what
Keycloak (its login events) and the proxy (the calls it let through or refused) saw, and by the
engine (every job completed). A canary client secret never shows in skiff's output."""
import socket
import subprocess
import threading

from bpmn import service_task
from conftest import wait_until
import zeebe_client

LIFESPAN_S = 8  # short tokens: several expire during one test


def deploy(tmp_path, pid, job_type):
    path = tmp_path / f"{pid}.bpmn"
    path.write_text(service_task(pid, job_type))
    zeebe_client.deploy(str(path))


class Switch:
    """A TCP forwarder that can be turned off (connections refused) and on again, on one port."""

    def __init__(self, target_url):
        hostport = target_url.split("//", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        self.target = (host, int(port))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = target_url.replace(hostport, f"127.0.0.1:{self.port}")
        self.lock = threading.Lock()
        self.conns = []
        self.listener = None
        self.up()

    def up(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self):
        # shutdown() first: a close() alone does not wake a thread blocked in accept or recv.
        for s in [self.listener] + self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            for c in [self.listener] + self.conns:
                c.close()
            self.conns = []

    def _accept(self, listener):
        while True:
            try:
                a, _ = listener.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            with self.lock:
                self.conns += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Case:
    """One test's Keycloak client (its own id and a canary secret), its secret file, its job
    type and process."""

    def __init__(self, keycloak, tmp_path, uid, name, lifespan_s):
        self.kc = keycloak
        self.client_id = f"skiff-{name}-{uid}"
        self.secret = f"canary-{uid}-{name}-secret"
        self.job_type, self.pid = f"oauth-{name}-{uid}", f"p-oauth-{name}-{uid}"
        self.secret_file = tmp_path / "client-secret"
        self.secret_file.write_text(self.secret + "\n")
        keycloak.create_client(self.client_id, self.secret, lifespan_s=lifespan_s)
        deploy(tmp_path, self.pid, self.job_type)

    def rotate(self, new_secret):
        tmp = self.secret_file.with_suffix(".new")
        tmp.write_text(new_secret + "\n")
        tmp.rename(self.secret_file)  # like a Kubernetes Secret volume update

    def logins(self):
        return self.kc.events(self.client_id, "CLIENT_LOGIN")

    def login_errors(self):
        return self.kc.events(self.client_id, "CLIENT_LOGIN_ERROR")


def oauth_skiff(stack, proxy, case, token_url=None, **config):
    return stack.skiff([case.job_type], address=proxy.address,
                       zeebe_client_id=case.client_id,
                       zeebe_client_secret=f"file:{case.secret_file}",
                       zeebe_authorization_server_url=token_url or case.kc.token_url,
                       zeebe_token_audience="zeebe-api", oauth_backoff_initial="100ms",
                       oauth_backoff_max="1s", zeebe_backoff_max="1s", **config)


def run_instances(n, case):
    return [zeebe_client.create_instance(case.pid, {"x": i})["processInstanceKey"]
            for i in range(n)]


def wait_completed(stack, keys, timeout=90):
    def done():
        return all(stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=k,
                              bpmnElementType="PROCESS") for k in keys)
    wait_until(done, timeout=timeout, what=f"{len(keys)} process instances completed")


def assert_no_secret(skiff, *secrets):
    """The canary never shows in skiff's log lines, /metrics or /readyz."""
    outputs = {"log": skiff.logs(), "metrics": skiff.http("/metrics")[1],
               "readyz": skiff.http("/readyz")[1]}
    for what, text in outputs.items():
        for s in secrets:
            assert s not in text, f"secret found in skiff's {what}"


def test_jobs_flow_with_tokens(stack, keycloak, token_proxy, tmp_path, uid, monkeypatch):
    case = Case(keycloak, tmp_path, uid, "flow", lifespan_s=300)
    since = token_proxy.calls()
    # Camunda's variable names (CAMUNDA_* and ZEEBE_*), as the platform's Helm values set them.
    monkeypatch.setenv("CAMUNDA_CLIENT_ID", case.client_id)
    monkeypatch.setenv("ZEEBE_CLIENT_SECRET", f"file:{case.secret_file}")
    monkeypatch.setenv("CAMUNDA_OAUTH_URL", keycloak.token_url)
    monkeypatch.setenv("CAMUNDA_TOKEN_AUDIENCE", "zeebe-api")
    skiff = stack.skiff([case.job_type], address=token_proxy.address)
    stack.handler(skiff, [case.job_type])
    keys = run_instances(5, case)
    wait_completed(stack, keys)
    wait_until(lambda: skiff.http("/readyz")[0] == 200, what="ready")
    seen = token_proxy.seen(client=case.client_id, since=since)
    paths = {e["path"].rsplit("/", 1)[1] for e in seen}
    assert {"ActivateJobs", "CompleteJob"} <= paths, paths
    assert all(e["verdict"] == "ok" for e in seen)
    assert len({e["jti"] for e in seen}) == 1  # one token, cached, for every call
    assert len(case.logins()) == 1  # Keycloak issued exactly one token
    assert skiff.metric("skiff_oauth_token_requests_total", token="zeebe", result="ok") == 1
    assert skiff.metric("skiff_oauth_token_valid", token="zeebe") == 1
    assert_no_secret(skiff, case.secret)


def test_proxy_refuses_skiff_without_token(stack, token_proxy, tmp_path, uid):
    """The proxy really is in the path: without OAuth configured nothing gets through."""
    since = token_proxy.calls()
    job_type = f"oauth-none-{uid}"
    skiff = stack.skiff([job_type], address=token_proxy.address, zeebe_backoff_max="1s")
    stack.handler(skiff, [job_type])  # a handler with capacity: skiff asks for jobs
    wait_until(lambda: [e for e in token_proxy.seen(since=since)
                        if e["verdict"] == "rejected" and e["reason"] == "no bearer token"],
               what="the proxy refusing skiff's calls")
    assert skiff.metric("skiff_zeebe_gateway_requests_total", method="ActivateJobs",
                        code="UNAUTHENTICATED") >= 1


def test_token_expiry_mid_run(stack, keycloak, token_proxy, tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "expiry", lifespan_s=LIFESPAN_S)
    since = token_proxy.calls()
    skiff = oauth_skiff(stack, token_proxy, case)
    stack.handler(skiff, [case.job_type])
    keys = []
    # Jobs keep coming while at least three tokens are used one after the other.
    while len({e["jti"] for e in token_proxy.seen(client=case.client_id, since=since)
               if e["verdict"] == "ok"}) < 3:
        keys += run_instances(1, case)
        wait_completed(stack, keys[-1:])
    wait_completed(stack, keys)
    seen = token_proxy.seen(client=case.client_id, since=since)
    assert len(case.logins()) >= 3
    assert skiff.metric("skiff_oauth_token_requests_total", token="zeebe", result="ok") >= 3
    assert skiff.metric("skiff_oauth_token_lifetime_seconds", token="zeebe") == LIFESPAN_S
    # A call refused for an expired token (a refresh that came late) was sent again with a
    # newer token: nothing was lost, every job completed above.
    rejected = [e for e in seen if e["verdict"] == "rejected"]
    print(f"{len(seen)} calls, {len(rejected)} refused for an expired token")
    assert all("exp" in e["reason"] for e in rejected)
    assert_no_secret(skiff, case.secret)


def test_token_endpoint_down_then_up(stack, keycloak, token_proxy, tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "outage", lifespan_s=LIFESPAN_S)
    switch = Switch(keycloak.token_url)
    skiff = oauth_skiff(stack, token_proxy, case, token_url=switch.url)
    stack.handler(skiff, [case.job_type])
    wait_completed(stack, run_instances(2, case))
    switch.down()
    # Once the token has expired without a new one: not ready, and it says why.
    status = wait_until(lambda: (lambda r: r if r[0] == 503 and "token" in r[1] else None)(
        skiff.http("/readyz")), timeout=60, what="not ready for want of a token")
    assert "token endpoint" in status[1] or "no new one" in status[1], status[1]
    keys = run_instances(3, case)  # created while skiff holds no token: they wait
    wait_until(lambda: skiff.metric("skiff_oauth_token_requests_total", token="zeebe",
                                    result="error") >= 1, what="failed token requests counted")
    assert skiff.metric("skiff_oauth_token_valid", token="zeebe") == 0
    switch.up()
    wait_completed(stack, keys)
    wait_until(lambda: skiff.http("/readyz")[0] == 200, what="ready again")
    assert_no_secret(skiff, case.secret)
    switch.down()


def test_client_secret_rotated_in_its_file(stack, keycloak, token_proxy, tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "rotate", lifespan_s=LIFESPAN_S)
    skiff = oauth_skiff(stack, token_proxy, case)
    stack.handler(skiff, [case.job_type])
    wait_completed(stack, run_instances(2, case))
    old, new = case.secret, f"canary-{uid}-rotated-secret"
    keycloak.update_client(case.client_id, secret=new)  # the old secret is refused from now on
    wait_until(lambda: case.login_errors(), timeout=60, what="Keycloak refusing the old secret")
    wait_until(lambda: skiff.metric("skiff_oauth_token_requests_total", token="zeebe",
                                    result="refused") >= 1, what="refusal counted")
    logins_before = len(case.logins())
    case.rotate(new)
    keys = run_instances(3, case)
    wait_completed(stack, keys)
    wait_until(lambda: len(case.logins()) > logins_before, what="a token for the new secret")
    assert "configuration problem" in skiff.logs()
    assert skiff.metric("skiff_secret_reloads_total", secret="zeebe.client_secret",
                        result="changed") == 1
    assert_no_secret(skiff, old, new)


def test_client_disabled_then_enabled(stack, keycloak, token_proxy, tmp_path, uid):
    case = Case(keycloak, tmp_path, uid, "disabled", lifespan_s=LIFESPAN_S)
    since = token_proxy.calls()
    skiff = oauth_skiff(stack, token_proxy, case)
    stack.handler(skiff, [case.job_type])
    wait_completed(stack, run_instances(1, case))
    keycloak.update_client(case.client_id, enabled=False)
    status = wait_until(lambda: (lambda r: r if r[0] == 503 and "token" in r[1] else None)(
        skiff.http("/readyz")), timeout=60, what="not ready: client refused")
    assert case.login_errors()
    assert skiff.metric("skiff_oauth_token_requests_total", token="zeebe", result="refused") >= 1
    assert "configuration problem" in skiff.logs()
    keys = run_instances(2, case)
    keycloak.update_client(case.client_id, enabled=True)
    wait_completed(stack, keys)
    assert all(e["verdict"] == "ok" or "exp" in e["reason"]
               for e in token_proxy.seen(client=case.client_id, since=since))
    print(f"readiness while disabled: {status[1]}")
    assert_no_secret(skiff, case.secret)


def test_config_check_never_prints_the_secret(tmp_path, uid):
    canary = f"canary-{uid}-literal-secret"
    env = {"PATH": "/usr/bin:/bin", "ZEEBE_CLIENT_ID": "c", "ZEEBE_CLIENT_SECRET": canary,
           "ZEEBE_AUTHORIZATION_SERVER_URL": "kc:8080/token", "SKIFF_LOG_LEVEL": "loud"}
    from conftest import itc
    out = subprocess.run([str(itc.SKIFF_BIN), "config", "check"], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "zeebe.authorization_server_url" in out.stdout and "log.level" in out.stdout
    assert canary not in out.stdout + out.stderr
