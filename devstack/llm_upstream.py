#!/usr/bin/env python3
"""skiff devstack: an OpenAI-compatible upstream stand-in (stdlib only), for skiff's egress tests.

A real LLM provider cannot run here (no internet, no model), so this plays the small part of the
OpenAI HTTP API that an egress proxy sees, and lets each test choose how it misbehaves:

  POST /v1/chat/completions   non-streaming (JSON with `usage`), or `"stream": true`: SSE chunks
                              (`data: {...}`), a last chunk with `usage` when
                              `stream_options.include_usage`, then `data: [DONE]`
  GET  /v1/models             a model list
  anything else               404 in OpenAI's error shape

Test control (never proxied by skiff in the tests: they call the stand-in directly):

  POST /_control   JSON {"queue": [behaviour, ...]}   answers for the next requests, in order
                        {"default": behaviour|null}   used when the queue is empty
                        {"reset": true}               clears queue, default and the record
                        {"release": "name"}           opens the gate "name" (see `wait`)
  GET  /_requests  every request received since the last reset: [{method, path, headers
                   ([name, value] pairs as received), body (text), tls}]
  GET  /_health    200

A behaviour is a JSON object, every key optional:
  status, headers, body     answer with this status (and headers); body: JSON object or string
  delay                     seconds before the status line (slow first byte)
  wait                      a gate name: no answer until a test releases it (a held request)
  wait_event, wait_at       streaming: hold before SSE event number `wait_at` until the gate
                            `wait_event` is released (shows the stream is not buffered)
  hang                      never answer (until the client closes, at most 10 minutes)
  reset_after               streaming: send this many SSE events, then reset the connection
  event_delay               streaming: seconds between SSE events
  content                   the assistant's reply text
  echo                      a string the reply contains (e.g. a secret the test plants)
  echo_split                the bytes holding the echo leave in two writes (two HTTP chunks
                            of a stream, two writes of a JSON body) 0.2 s apart: a secret
                            split across the reads of whoever relays it
  echo_events               streaming: the echo goes out in two SSE events, its first half in
                            one event's delta.content and the rest in the next one's (never
                            contiguous in the bytes; a client reassembling the text has it)
  usage                     {"prompt_tokens": n, "completion_tokens": m} instead of the counts

  llm_upstream.py --port N [--host 127.0.0.1] [--cert server.pem --key server.key]
"""
import argparse
import json
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = ["gpt-4o-mini", "skiff-test-model"]


class State:
    """Queue of behaviours and the record of requests, shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queue = []
        self.default = None
        self.requests = []
        self.gates = {}

    def gate(self, name):
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def control(self, cmd):
        with self.lock:
            if cmd.get("reset"):
                for g in self.gates.values():
                    g.set()  # nothing stays held across tests
                self.queue, self.default, self.requests, self.gates = [], None, [], {}
            if "default" in cmd:
                self.default = cmd["default"]
            self.queue.extend(cmd.get("queue", []))
        if cmd.get("release"):
            self.gate(cmd["release"]).set()

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)

    def next_behaviour(self):
        with self.lock:
            if self.queue:
                return self.queue.pop(0)
            return dict(self.default or {})


def count_tokens(text):
    """A crude token count (words): the tests only need stable, non-zero numbers."""
    return max(1, len(str(text).split()))


def prompt_text(req):
    parts = []
    for m in req.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p.get("text", "") for p in c if isinstance(p, dict))
    return " ".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-upstream/1"
    disable_nagle_algorithm = True  # SSE events leave at once, not after a delayed ACK

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write("llm_upstream: " + (fmt % args) + "\n")

    # --- request body (Content-Length or chunked) ----------------------------------------
    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # --- answers ---------------------------------------------------------------------------
    def send_json(self, status, obj, headers=None, b=None):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        for part in self.split_echo(data, b or {}):
            self.wfile.write(part)
            self.wfile.flush()

    def error_body(self, status, message):
        return {"error": {"message": message, "type": "upstream_test_error", "code": status}}

    def reset_connection(self):
        """RST instead of FIN: what a crashed or cut-off provider looks like."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def hang(self):
        self.connection.settimeout(600)
        try:
            while self.connection.recv(4096):
                pass
        except OSError:
            pass
        self.close_connection = True

    # --- dispatch --------------------------------------------------------------------------
    def handle_any(self):
        path = self.path
        body = self.read_body()
        if path.startswith("/_"):
            return self.control(path, body)
        self.server.state.record({
            "method": self.command, "path": path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"), "tls": self.server.tls,
            "time": time.time()})
        b = self.server.state.next_behaviour()
        if b.get("wait"):
            self.server.state.gate(b["wait"]).wait(600)
        if b.get("delay"):
            time.sleep(float(b["delay"]))
        if b.get("hang"):
            return self.hang()
        if "status" in b and b["status"] != 200:
            payload = b.get("body", self.error_body(b["status"], "test answer"))
            if isinstance(payload, str):
                payload = payload.encode()
            return self.send_json(int(b["status"]), payload, b.get("headers"))
        bare = path.split("?", 1)[0]
        if self.command == "GET" and bare == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "skiff-test"}
                for m in MODELS]}, b.get("headers"))
        if self.command == "POST" and bare == "/v1/chat/completions":
            return self.chat(body, b)
        self.send_json(404, self.error_body(404, f"no route {self.command} {bare}"))

    def control(self, path, body):
        state = self.server.state
        if path == "/_health":
            return self.send_json(200, {"ok": True})
        if path == "/_requests" and self.command == "GET":
            with state.lock:
                return self.send_json(200, list(state.requests))
        if path == "/_control" and self.command == "POST":
            state.control(json.loads(body or b"{}"))
            return self.send_json(200, {"ok": True})
        self.send_json(404, self.error_body(404, "unknown control path"))

    def chat(self, raw, b):
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.send_json(400, self.error_body(400, "body is not JSON"))
        content = b.get("content", "Hello from the skiff test upstream.")
        if b.get("echo"):
            content = f"{content} {b['echo']}"
        usage = b.get("usage") or {"prompt_tokens": count_tokens(prompt_text(req)),
                                   "completion_tokens": count_tokens(content)}
        usage = dict(usage, total_tokens=usage["prompt_tokens"] + usage["completion_tokens"])
        model = req.get("model", MODELS[0])
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        if req.get("stream"):
            want_usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return self.stream(cid, model, content, usage if want_usage else None, b)
        self.send_json(200, {
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": usage}, b.get("headers"), b)

    def stream(self, cid, model, content, usage, b):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (b.get("headers") or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}
        events = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None}])]
        pieces = [word + " " for word in content.split(" ")]
        echo = b.get("echo")
        if b.get("echo_events") and echo and echo + " " in pieces:
            at, half = pieces.index(echo + " "), len(echo) // 2
            pieces[at:at + 1] = [echo[:half], echo[half:] + " "]
        for piece in pieces:
            events.append(dict(base, choices=[{"index": 0, "delta": {"content": piece},
                                               "finish_reason": None}]))
        events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if usage:
            events.append(dict(base, choices=[], usage=usage))
        lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
        reset_after = b.get("reset_after")
        for i, line in enumerate(lines):
            if reset_after is not None and i >= int(reset_after):
                return self.reset_connection()
            if b.get("wait_event") and i == int(b.get("wait_at", 1)):
                self.server.state.gate(b["wait_event"]).wait(600)
            if i and b.get("event_delay"):
                time.sleep(float(b["event_delay"]))
            for part in self.split_echo(line, b):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def split_echo(self, data, b):
        """`data` in one piece, or (echo_split) cut in the middle of the echo, the second part
        returned after a pause so that it leaves in another TCP segment."""
        echo = (b.get("echo") or "").encode()
        at = data.find(echo) if b.get("echo_split") and echo else -1
        if at < 0:
            yield data
            return
        cut = at + len(echo) // 2
        yield data[:cut]
        time.sleep(0.2)
        yield data[cut:]

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, socket.timeout):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx, verbose):
        super().__init__(addr, Handler)
        self.ctx, self.tls, self.verbose = ctx, ctx is not None, verbose
        self.state = State()

    def get_request(self):
        sock, addr = super().get_request()
        if self.ctx:
            # The handshake runs in the handler's thread, on its first read: a client that
            # never finishes it blocks no one else.
            sock = self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", help="PEM certificate (chain): serve HTTPS")
    ap.add_argument("--key", help="PEM private key of --cert")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    srv = Server((a.host, a.port), ctx, a.verbose)
    scheme = "https" if ctx else "http"
    print(f"llm_upstream listening on {scheme}://{a.host}:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
