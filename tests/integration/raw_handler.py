"""A handler speaking the protocol frame by frame, for tests that need to control exactly what
is sent and when (the SDKs decide that for real handlers)."""
import json
import socket
import struct
import time


class RawHandler:
    def __init__(self, path, job_types, capacity=1, features=("cancel",), name="raw"):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""
        self.pending = []  # frames read while waiting for another kind
        hello = {"type": "hello", "version": 1, "name": name, "capacity": capacity,
                 "job_types": list(job_types)}
        if features:
            hello["features"] = list(features)
        self.send(hello)
        self.welcome = self.recv(10)
        assert self.welcome and self.welcome["type"] == "welcome", self.welcome

    def send(self, frame):
        data = json.dumps(frame).encode()
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def _read_frame(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    frame = json.loads(self.buf[4:4 + n])
                    self.buf = self.buf[4 + n:]
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def recv(self, timeout=10.0, types=None):
        """The next frame (of one of `types` when given; others are kept for later)."""
        for i, f in enumerate(self.pending):
            if types is None or f["type"] in types:
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            f = self._read_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None
            if f["type"] == "ping":
                self.send({"type": "pong", "ref": f.get("ref", "")})
                continue
            if types is None or f["type"] in types:
                return f
            self.pending.append(f)

    def task(self, timeout=30.0):
        f = self.recv(timeout, types=("task",))
        assert f is not None, "no task arrived"
        return f

    def call(self, method, params, ref, timeout=30.0):
        self.send({"type": "call", "ref": ref, "method": method, "params": params})
        return self.reply(ref, timeout)

    def reply(self, ref, timeout=30.0):
        for i, f in enumerate(self.pending):
            if f["type"] == "reply" and f["ref"] == ref:
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while (f := self._read_frame(max(0.0, deadline - time.monotonic()))) is not None:
            if f["type"] == "reply" and f["ref"] == ref:
                return f
            self.pending.append(f)
        raise AssertionError(f"no reply for {ref}")

    def close(self):
        self.sock.close()
