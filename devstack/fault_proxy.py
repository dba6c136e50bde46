"""Start and drive devstack/grpc-fault-proxy.mjs from Python tests (stdlib only).

    from fault_proxy import FaultProxy
    with FaultProxy(target="127.0.0.1:26500") as fp:       # listens on a free port
        addr = fp.address                                  # point the client here
        fp.fail("UNAVAILABLE", method="ActivateJobs", count=2)
        fp.latency(200)
        fp.reset()                                         # TCP RST on all client connections
        fp.normal()
        fp.status()["counters"]

See the header of grpc-fault-proxy.mjs for what each command does.
"""

import json
import os
import selectors
import subprocess
import time
import urllib.parse
import urllib.request

_HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(_HERE, "grpc-fault-proxy.mjs")


class FaultProxy:
    def __init__(self, target=None, listen_port=0, control_port=0, host="127.0.0.1",
                 node="node", log_path=None, quiet=False):
        self.target = target or os.environ.get("SKIFF_ZEEBE_ADDRESS") or \
            "127.0.0.1:%s" % os.environ.get("SKIFF_ZEEBE_PORT", "26500")
        self.host = host
        self.listen_port = listen_port
        self.control_port = control_port
        self.node = node
        self.log_path = log_path
        self.quiet = quiet
        self.proc = None
        self.port = None
        self._log = None

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self, timeout=10.0):
        cmd = [self.node, SCRIPT, "--listen", "%s:%d" % (self.host, self.listen_port),
               "--control", "%s:%d" % (self.host, self.control_port), "--target", self.target]
        if self.quiet:
            cmd.append("--quiet")
        stderr = None
        if self.log_path:
            self._log = open(self.log_path, "ab")
            stderr = self._log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr,
                                     stdin=subprocess.DEVNULL)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.stop()
                raise TimeoutError("grpc-fault-proxy did not start within %.1fs" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                rc = self.proc.wait()
                raise RuntimeError("grpc-fault-proxy exited (%s) during start-up" % rc)
            line += chunk
        info = json.loads(line.decode().splitlines()[0])
        self.port = info["listen"]
        self.control_port = info["control"]
        return self

    def _cmd(self, path, **params):
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = "http://%s:%d/%s%s" % (self.host, self.control_port, path, "?" + q if q else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def status(self):
        return self._cmd("status")

    def latency(self, ms, jitter_ms=0):
        return self._cmd("latency", ms=ms, jitter=jitter_ms)

    def fail(self, code="UNAVAILABLE", method=None, count=None, message=None):
        return self._cmd("fail", code=code, method=method, count=count, message=message)

    def stall(self, method=None, count=None):
        return self._cmd("stall", method=method, count=count)

    def reset(self, mode="destroy", h2code=None):
        return self._cmd("reset", mode=mode, h2code=h2code)

    def down(self):
        return self._cmd("down")

    def up(self):
        return self._cmd("up")

    def normal(self):
        return self._cmd("normal")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
