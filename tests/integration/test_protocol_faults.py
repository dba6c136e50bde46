"""A handler that breaks the protocol gets an `error` frame and is disconnected; its job is
given back to the engine at once and completed by a well-behaved handler: nothing is lost."""
import json
import socket
import struct

import jsonschema
import pytest

from conftest import ROOT, wait_until
from test_jobs import deploy
import zeebe_client


class RawHandler:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)

    def send(self, obj):
        self.send_bytes(json.dumps(obj).encode())

    def send_bytes(self, payload, length=None):
        n = len(payload) if length is None else length
        self.sock.sendall(struct.pack(">I", n) + payload)

    def recv(self):
        head = self._read(4)
        if head is None:
            return None
        body = self._read(struct.unpack(">I", head)[0])
        return json.loads(body)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf


def check_schema(frame):
    """skiff's frames conform to the normative JSON Schemas of handler-protocol/."""
    path = ROOT / "handler-protocol" / "schemas" / f"{frame['type']}.schema.json"
    jsonschema.validate(frame, json.loads(path.read_text()))


BAD_FRAMES = {
    "malformed": (lambda task: b'{"type":"complete","id":', None, "malformed_frame"),
    "oversized": (lambda task: b"x" * 16, 64 * 1024 * 1024, "frame_too_large"),
    "unknown_task": (lambda task: json.dumps({"type": "complete", "id": "z-1"}).encode(), None,
                     "unknown_task"),
    "not_json_object": (lambda task: b"[1,2,3]", None, "malformed_frame"),
}


@pytest.mark.parametrize("fault", sorted(BAD_FRAMES))
def test_bad_frame_disconnects_and_loses_nothing(stack, tmp_path, uid, fault):
    job_type, pid = f"it-fault-{fault}-{uid}", f"p-fault-{uid}"
    deploy(tmp_path, pid, job_type, retries=3)
    skiff = stack.skiff([job_type], zeebe_job_timeout="10m")
    raw = RawHandler(skiff.socket)
    raw.send({"type": "hello", "version": 1, "name": "rogue", "capacity": 1,
              "job_types": [job_type]})
    welcome = raw.recv()
    assert welcome["type"] == "welcome"
    check_schema(welcome)
    key = zeebe_client.create_instance(pid, {"x": 4})["processInstanceKey"]
    task = raw.recv()
    assert task["type"] == "task" and task["zeebe"]["process_instance_key"] == str(key)
    assert task["variables"] == {"x": 4}
    check_schema(task)
    make, length, code = BAD_FRAMES[fault]
    raw.send_bytes(make(task), length)
    err = raw.recv()
    assert err["type"] == "error" and err["code"] == code and err["message"]
    check_schema(err)
    assert raw.recv() is None, "skiff must close the connection after the error frame"
    failed = wait_until(lambda: stack.find("JOB", "FAILED", processInstanceKey=key), timeout=20,
                        what="job given back")
    assert failed["value"]["retries"] == 3
    stack.handler(skiff, [job_type])
    wait_until(lambda: stack.find("PROCESS_INSTANCE", "ELEMENT_COMPLETED", processInstanceKey=key,
                                  elementId=pid), timeout=30, what="instance completed")
    assert skiff.metric("skiff_handler_protocol_errors_total", code=code) == 1
