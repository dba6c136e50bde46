"""Conformance of skiff's gRPC client (sidecar/src/grpc) against independent gRPC servers.

Each case runs the C probe (grpc_probe, built from probe.c) against a server built on gRPC
C-core (Debian's python3-grpcio, server_grpcio.py) and one built on @grpc/grpc-js
(server_grpcjs.mjs), and checks both what the probe reports (JSON lines on stdout) and what the
server observed (JSON lines in its log). Stdlib + pytest only; the servers bring their own
gRPC stacks.

Environment (set by sidecar/tests/grpc/CMakeLists.txt for CTest):
  SKIFF_GRPC_PROBE   path of the grpc_probe binary (required)
  SKIFF_GRPC_PYTHON  python3 that can import grpc (default /usr/bin/python3)
  NODE_PATH          node_modules with @grpc/grpc-js and @grpc/proto-loader
  SKIFF_PROTOC       protoc used by the grpcio server to generate its messages
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GRPC_PYTHON = os.environ.get("SKIFF_GRPC_PYTHON") or "/usr/bin/python3"
KINDS = ["grpcio", "grpcjs"]


# ---- prerequisites ---------------------------------------------------------------------------

def probe_path() -> str:
    path = os.environ.get("SKIFF_GRPC_PROBE", "")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("SKIFF_GRPC_PROBE must name the grpc_probe binary (run through ctest)")
    return path


def missing(kind: str) -> str | None:
    """Why a server kind cannot run here, or None."""
    if kind == "grpcio":
        rc = subprocess.run([GRPC_PYTHON, "-c", "import grpc, google.protobuf"],
                            capture_output=True).returncode
        if rc != 0:
            return f"{GRPC_PYTHON} cannot import grpc (apt install python3-grpcio)"
        if shutil.which(os.environ.get("SKIFF_PROTOC", "protoc")) is None:
            return "protoc not found (apt install protobuf-compiler)"
        return None
    if shutil.which("node") is None:
        return "node not found"
    for d in filter(None, os.environ.get("NODE_PATH", "").split(os.pathsep)):
        if all((Path(d) / "@grpc" / m / "package.json").exists()
               for m in ("grpc-js", "proto-loader")):
            return None
    return ("@grpc/grpc-js and @grpc/proto-loader not found in NODE_PATH="
            f"{os.environ.get('NODE_PATH', '')!r} (npm install in devstack/)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---- servers ---------------------------------------------------------------------------------

class Server:
    """One conformance server process; restartable on the same port."""

    def __init__(self, kind: str, workdir: Path, port: int | None = None) -> None:
        self.kind = kind
        self.port = port or free_port()
        self.log = workdir / f"{kind}-{self.port}.jsonl"
        self.stderr = workdir / f"{kind}-{self.port}.stderr"
        self.gen = workdir / "gen"
        self.gen.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        args = ["--port", str(self.port), "--log", str(self.log)]
        if self.kind == "grpcio":
            return [GRPC_PYTHON, str(HERE / "server_grpcio.py"), *args, "--gen", str(self.gen)]
        return ["node", str(HERE / "server_grpcjs.mjs"), *args]

    def start(self, timeout: float = 30) -> "Server":
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=err,
                                         text=True)
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                if line.strip() == "listening":
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise AssertionError(f"{self.kind} server did not start: {self.stderr.read_text()}")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> None:
        self.proc.wait(timeout)

    def events(self, tag: str) -> list[dict]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["tag"] == tag]

    def wait_event(self, tag: str, event: str, count: int = 1, timeout: float = 10) -> list:
        def found():
            hits = [e for e in self.events(tag) if e["event"] == event]
            return hits if len(hits) >= count else None
        return wait_until(found, timeout, f"{self.kind} server event {event!r} x{count} ({tag})")


class Proxy:
    """TCP proxy in front of a server: records the server-to-client bytes of each connection
    (to inspect HTTP/2 frames) and can freeze established connections (a silent network)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            conn = {"down": bytearray(), "frozen": False, "socks": (client, upstream)}
            with self.lock:
                self.conns.append(conn)
            for src, dst, rec in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, conn, rec),
                                 daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, conn: dict, record: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if conn["frozen"]:
                continue  # swallow everything, close nothing: a dead peer behind NAT
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if record:
                conn["down"] += data
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        with self.lock:
            for conn in self.conns:
                conn["frozen"] = True

    def frames(self, index: int = 0) -> list[tuple[int, int, int]]:
        """(type, flags, stream id) of each HTTP/2 frame the server sent on connection index."""
        data = bytes(self.conns[index]["down"])
        out, i = [], 0
        while i + 9 <= len(data):
            length = int.from_bytes(data[i:i + 3], "big")
            sid = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
            out.append((data[i + 3], data[i + 4], sid))
            i += 9 + length
        return out

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            for s in conn["socks"]:
                s.close()


HEADERS, DATA, END_STREAM = 0x1, 0x0, 0x1


# ---- the probe -------------------------------------------------------------------------------

class Probe:
    """A running grpc_probe; its JSON-lines events are collected as they arrive."""

    running: list["Probe"] = []  # killed after each test (see the autouse fixture)

    def __init__(self, port: int, case: str, tag: str, *extra: str) -> None:
        cmd = [probe_path(), "--target", f"127.0.0.1:{port}", "--case", case, "--tag", tag,
               *extra]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.events: list[dict] = []
        self.cond = threading.Condition()
        Probe.running.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            event["t"] = time.monotonic() - self.started
            with self.cond:
                self.events.append(event)
                self.cond.notify_all()

    def wait_for(self, timeout: float = 10, **match) -> dict:
        def hit():
            return next((e for e in self.events if all(e.get(k) == v for k, v in match.items())),
                        None)
        with self.cond:
            if not self.cond.wait_for(hit, timeout):
                raise AssertionError(f"probe never reported {match}; got {self.events}")
            return hit()

    def finish(self, timeout: float = 30) -> list[dict]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"probe did not finish; events so far: {self.events}")
        stderr = self.proc.stderr.read()
        time.sleep(0.05)  # let the reader thread take the last lines
        assert self.proc.returncode == 0, f"probe exit {self.proc.returncode}: {stderr}"
        assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr
        assert self.events and self.events[-1]["event"] == "end", self.events
        return self.events


def run_probe(port: int, case: str, tag: str, *extra: str, timeout: float = 30) -> list[dict]:
    return Probe(port, case, tag, *extra).finish(timeout)


def closes(events: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for e in events:
        if e["event"] == "close":
            assert e["call"] not in out, f"on_close ran twice for {e['call']}"
            out[e["call"]] = e
    return out


def messages(events: list[dict], call: str) -> list[dict]:
    return [e for e in events if e["event"] == "message" and e["call"] == call]


def states(events: list[dict]) -> list[int]:
    return [e["connected"] for e in events if e["event"] == "state"]


# ---- fixtures --------------------------------------------------------------------------------

def require(kind: str) -> None:
    why = missing(kind)
    if why:
        pytest.skip(f"{kind} server unavailable: {why}")


@pytest.fixture(scope="module", params=KINDS)
def server(request, tmp_path_factory):
    require(request.param)
    srv = Server(request.param, tmp_path_factory.mktemp(request.param)).start()
    yield srv
    srv.kill()


@pytest.fixture(params=KINDS)
def own_server(request, tmp_path):
    """A server of the test's own, for cases that stop and restart it."""
    require(request.param)
    srv = Server(request.param, tmp_path).start()
    yield srv
    srv.kill()


@pytest.fixture
def tag(request) -> str:
    return request.node.name


@pytest.fixture(autouse=True)
def no_stray_probes():
    """A failed assertion can leave a probe running (a case may take minutes): kill it."""
    yield
    for probe in Probe.running:
        if probe.proc.poll() is None:
            probe.proc.kill()
            probe.proc.wait()
    Probe.running.clear()


# ---- cases -----------------------------------------------------------------------------------

def test_unary_ok(server, tag):
    ev = run_probe(server.port, "unary", tag)
    assert closes(ev)["A"]["code"] == "OK"
    assert [m["text"] for m in messages(ev, "A")] == ["hello"]
    assert states(ev) == [1]
    start = server.wait_event(tag, "start")[0]
    assert start["method"] == "Unary"
    assert start["user_agent"].startswith("skiff/0.1")
    assert 0 < start["deadline_ms"] <= 5000  # grpc-timeout reached the server
    server.wait_event(tag, "done")


def test_server_streaming(server, tag):
    ev = run_probe(server.port, "stream", tag)
    msgs = messages(ev, "A")
    assert [m["index"] for m in msgs] == [0, 1, 2, 3, 4]
    assert all(m["text"] == "tick" for m in msgs)
    close = closes(ev)["A"]
    assert close["code"] == "OK" and close["messages"] == 5
    assert ev.index(close) > ev.index(msgs[-1])
    server.wait_event(tag, "done")


def test_deadline_exceeded(server, tag):
    probe = Probe(server.port, "deadline", tag)
    ev = probe.finish()
    close = closes(ev)["A"]
    assert close["code"] == "DEADLINE_EXCEEDED"
    assert close["t"] < 2.5, "the local deadline (300 ms) must fire, not the 3 s server sleep"
    start = server.wait_event(tag, "start")[0]
    assert 0 < start["deadline_ms"] <= 300
    server.wait_event(tag, "cancelled")


def test_client_cancellation(server, tag):
    ev = run_probe(server.port, "cancel", tag)
    assert [e["call"] for e in ev if e["event"] == "cancelled"] == ["A"]
    assert "A" not in closes(ev), "on_close must not run after sk_grpc_call_cancel"
    assert closes(ev)["B"]["code"] == "OK"  # the channel carries on
    cancelled = server.wait_event(tag, "cancelled")[0]
    assert cancelled["sent"] < 10, "the server must see the cancellation promptly"


def test_error_status_with_encoded_message(server, tag):
    ev = run_probe(server.port, "error", tag)
    c = closes(ev)
    assert c["A"]["code"] == "FAILED_PRECONDITION"
    assert c["A"]["message"] == "naïve café ☃ 100% %41 \ttab"
    assert c["A"]["messages"] == 0
    assert c["B"]["code"] == "ABORTED"
    assert c["B"]["message"] == 'stream broke: 50% done, résumé ☃ "q"\n'
    assert c["B"]["messages"] == 2
    server.wait_event(tag, "error-sent", count=2)


def test_trailers_only_response(server, tag):
    proxy = Proxy(server.port)
    try:
        ev = run_probe(proxy.port, "trailers_only", tag)
        frames = proxy.frames(0)
    finally:
        proxy.close()
    close = closes(ev)["A"]
    assert (close["code"], close["message"]) == ("NOT_FOUND", "no such thing")
    on_stream = [(t, f) for t, f, s in frames if s == 1]
    assert on_stream, frames
    first_type, first_flags = on_stream[0]
    assert first_type == HEADERS and first_flags & END_STREAM, \
        f"expected a trailers-only response (one HEADERS with END_STREAM), got {on_stream}"
    assert all(t != DATA for t, _ in on_stream)


def test_message_size_limit(server, tag):
    ev = run_probe(server.port, "max_size", tag, "--max-message", "65536")
    c = closes(ev)
    assert c["A"]["code"] == "RESOURCE_EXHAUSTED"
    assert "larger than max" in c["A"]["message"] and "65536" in c["A"]["message"]
    assert c["A"]["messages"] == 0
    assert c["B"]["code"] == "OK"  # the same channel still works


def test_large_message_reassembled(server, tag):
    ev = run_probe(server.port, "large", tag)
    assert closes(ev)["A"]["code"] == "OK"
    assert [m["payload_len"] for m in messages(ev, "A")] == [1000000]


def test_metadata_visible_at_server(server, tag):
    ev = run_probe(server.port, "metadata", tag)
    assert closes(ev)["A"]["code"] == "OK"
    sent = {
        "authorization": "Bearer t0k3n",
        "x-skiff-test": "value-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    seen = server.wait_event(tag, "start")[0]["metadata"]
    assert {k: seen.get(k) for k in sent} == sent
    assert messages(ev, "A")[0]["metadata"] == seen  # and echoed back in the reply


def test_concurrent_calls(server, tag):
    ev = run_probe(server.port, "concurrent", tag)
    c = closes(ev)
    assert len(c) == 40 and all(e["code"] == "OK" for e in c.values()), c
    for e in c.values():
        assert e["messages"] in (1, 3)
    server.wait_event(tag, "done", count=40)


def test_channel_free_with_calls_in_flight(server, tag):
    ev = run_probe(server.port, "channel_free", tag)
    c = closes(ev)
    assert {k: v["code"] for k, v in c.items()} == {"A": "CANCELLED", "B": "CANCELLED"}
    kinds = [e["event"] for e in ev]
    assert kinds.index("channel_freed") > max(ev.index(v) for v in c.values())
    server.wait_event(tag, "cancelled", count=2)


def test_server_killed_then_reconnect(own_server, tag):
    probe = Probe(own_server.port, "restart", tag)
    probe.wait_for(event="message", call="A")
    own_server.kill()
    a = probe.wait_for(event="close", call="A")
    assert a["code"] == "UNAVAILABLE", a
    time.sleep(0.5)  # B waits (pending) while nothing listens
    own_server.start()
    ev = probe.finish()
    assert closes(ev)["B"]["code"] == "OK"
    assert states(ev) == [1, 0, 1]
    assert own_server.wait_event(tag, "done")


def node_major() -> int:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    return int(out.strip().lstrip("v").split(".")[0] or 0)


def test_server_graceful_shutdown(own_server, tag):
    if own_server.kind == "grpcjs" and node_major() < 20:
        # Node 18's http2 drops the trailers of a stream still open after the session sent
        # GOAWAY (nodejs/node#42713), so grpc-js cannot drain a call there; fixed in Node 20.
        # The grpcio variant of this case still runs.
        pytest.skip("grpc-js graceful shutdown needs Node >= 20")
    probe = Probe(own_server.port, "graceful", tag)
    own_server.wait_event(tag, "start")
    own_server.terminate()  # GOAWAY; the in-flight call may finish
    a = probe.wait_for(event="close", call="A", timeout=15)
    assert a["code"] == "OK", a
    own_server.wait_exit(15)
    gone = probe.wait_for(event="state", connected=0)
    assert gone["t"] <= a["t"], "GOAWAY must take the channel down before the drained call ends"
    own_server.start()
    ev = probe.finish()
    assert closes(ev)["B"]["code"] == "OK"
    assert states(ev)[-1] == 1
    assert len(own_server.wait_event(tag, "done", count=2)) == 2


def test_keepalive_detects_dead_connection(server, tag):
    proxy = Proxy(server.port)
    try:
        probe = Probe(proxy.port, "keepalive", tag, "--keepalive-ms", "200",
                      "--keepalive-timeout-ms", "400")
        server.wait_event(tag, "start")
        proxy.freeze()
        frozen_at = time.monotonic() - probe.started
        a = probe.wait_for(event="close", call="A", timeout=10)
        assert a["code"] == "UNAVAILABLE" and "keepalive" in a["message"], a
        assert a["t"] - frozen_at < 3, "the PING timeout must detect the silent peer"
        ev = probe.finish()
        assert closes(ev)["B"]["code"] == "OK"  # over a new connection
    finally:
        proxy.close()
