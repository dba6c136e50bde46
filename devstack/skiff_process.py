"""The real skiff binary in a child process, as the test suites run it (the fixtures of
tests/integration, which tests/oauth, tests/vault and others reuse, and of tests/egress): its
output appended to a log file, ready once its admin server answers /healthz; its admin
endpoints, metrics and log read back; the log checked for sanitizer reports at the end.
Standard library only."""
import subprocess
import time
import urllib.error
import urllib.request

SANITIZER_REPORTS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


def wait_until(pred, timeout=30.0, interval=0.1, what="condition"):
    """The first true value of pred(), called every `interval` s; AssertionError naming `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class SkiffProcess:
    """skiff (`binary`) started with environment `env`, stdout and stderr appended to
    `log_path`. The constructor returns once /healthz on 127.0.0.1:`admin_port` answers 200;
    AssertionError with the log when skiff exits first, or after `ready_timeout` s."""

    admin_timeout = 2  # seconds, per admin request

    def __init__(self, binary, env, log_path, admin_port, ready_timeout=15):
        self.log_path = log_path
        self.admin_port = admin_port
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([str(binary)], env=env, stdout=self.log, stderr=self.log)
        wait_until(lambda: self.admin("/healthz")[0] == 200 or self.proc.poll() is not None,
                   timeout=ready_timeout, what="skiff /healthz")
        assert self.proc.poll() is None, self.logs()

    def admin(self, path):
        """(status, body) of GET `path` on the admin server; (0, "") when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                        timeout=self.admin_timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name, **labels) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.admin("/metrics")[1].splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_clean(self):
        text = self.logs()
        for bad in SANITIZER_REPORTS:
            assert bad not in text, f"sanitizer report in skiff's output:\n{text[-4000:]}"
