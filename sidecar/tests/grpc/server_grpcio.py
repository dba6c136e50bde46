#!/usr/bin/env python3
"""Conformance server on gRPC C-core (Debian's python3-grpcio) for skiff's gRPC client.

Implements skiff.conformance.Conformance (conformance.proto) and appends what it observes to a
JSON-lines log: {"tag": ..., "event": "start" | "done" | "error-sent" | "cancelled", ...}.
Prints "listening" once it serves. SIGTERM shuts down gracefully (GOAWAY, in-flight calls get
--grace seconds); SIGKILL is the hard stop.

usage: server_grpcio.py --port N --log FILE [--proto conformance.proto] [--gen DIR] [--grace S]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
STANDARD_HEADERS = {"user-agent", "content-type", "te", "grpc-accept-encoding",
                    "grpc-timeout", "grpc-encoding"}


def load_messages(proto: str, out: str | None):
    """Generates conformance_pb2 with protoc (from protobuf-compiler) into out (a temp dir when
    None) and imports it."""
    out = out or tempfile.mkdtemp(prefix="skiff-conformance-")
    protoc = os.environ.get("SKIFF_PROTOC", "protoc")
    subprocess.run([protoc, f"--python_out={out}", f"-I{os.path.dirname(proto)}", proto],
                   check=True)
    sys.path.insert(0, out)
    import conformance_pb2  # noqa: E402 (generated above)
    return conformance_pb2


class Log:
    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, tag: str, event: str, **fields) -> None:
        with self._lock:
            self._f.write(json.dumps({"tag": tag, "event": event, **fields}) + "\n")
            self._f.flush()


def status_code(n: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == n:
            return code
    return grpc.StatusCode.UNKNOWN


class Service:
    def __init__(self, pb, log: Log) -> None:
        self.pb = pb
        self.log = log

    def _start(self, ctx, method: str, req) -> tuple:
        """Records the call; returns (user metadata, call state)."""
        md = {k: v for k, v in ctx.invocation_metadata()}
        user = {k: v for k, v in md.items() if k not in STANDARD_HEADERS}
        remaining = ctx.time_remaining()
        no_deadline = remaining is None or remaining > 1e9
        self.log.write(req.tag, "start", method=method, metadata=user,
                       user_agent=md.get("user-agent", ""),
                       deadline_ms=None if no_deadline else int(remaining * 1000))
        state = {"finished": False, "cancelled": False, "sent": 0, "lock": threading.Lock()}
        # Runs when the RPC terminates for any reason; grpcio stops pulling a cancelled
        # stream's generator, so this is where a cancellation becomes visible.
        ctx.add_callback(lambda: self._terminated(req.tag, state))
        return user, state

    def _terminated(self, tag: str, state: dict) -> None:
        with state["lock"]:
            if state["finished"] or state["cancelled"]:
                return
            state["cancelled"] = True
        self.log.write(tag, "cancelled", sent=state["sent"])

    @staticmethod
    def _finish(state: dict) -> bool:
        """Marks the call as finished by the handler; False if it was cancelled first."""
        with state["lock"]:
            if state["cancelled"]:
                return False
            state["finished"] = True
            return True

    @staticmethod
    def _wait(ctx, ms: int) -> bool:
        """Sleeps ms; False as soon as the call is no longer active (cancelled, deadline)."""
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            if not ctx.is_active():
                return False
            time.sleep(0.005)
        return ctx.is_active()

    def unary(self, req, ctx):
        md, state = self._start(ctx, "Unary", req)
        if not self._wait(ctx, req.sleep_ms) or not self._finish(state):
            self._terminated(req.tag, state)
            return self.pb.Reply()
        if req.status:
            self.log.write(req.tag, "error-sent")
            ctx.abort(status_code(req.status), req.message)
        self.log.write(req.tag, "done")
        return self.pb.Reply(text=req.text, payload=b"x" * req.payload_size, metadata=md)

    def stream(self, req, ctx):
        _, state = self._start(ctx, "Stream", req)
        for i in range(req.count):
            if not self._wait(ctx, req.sleep_ms):
                self._terminated(req.tag, state)
                return
            state["sent"] = i + 1
            yield self.pb.Reply(text=req.text, index=i, payload=b"x" * req.payload_size)
        if not self._finish(state):
            return
        if req.status:
            self.log.write(req.tag, "error-sent")
            ctx.set_code(status_code(req.status))
            ctx.set_details(req.message)
            return
        self.log.write(req.tag, "done")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--proto", default=os.path.join(HERE, "conformance.proto"))
    ap.add_argument("--gen", help="directory for the generated conformance_pb2.py")
    ap.add_argument("--grace", type=float, default=5.0)
    args = ap.parse_args()

    pb = load_messages(args.proto, args.gen)
    svc = Service(pb, Log(args.log))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(
            svc.unary, request_deserializer=pb.Request.FromString,
            response_serializer=pb.Reply.SerializeToString),
        "Stream": grpc.unary_stream_rpc_method_handler(
            svc.stream, request_deserializer=pb.Request.FromString,
            response_serializer=pb.Reply.SerializeToString),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("skiff.conformance.Conformance", handlers),))
    if server.add_insecure_port(f"127.0.0.1:{args.port}") == 0:
        print(f"cannot bind port {args.port}", file=sys.stderr)
        return 1
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("listening", flush=True)
    stop.wait()
    server.stop(args.grace).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
