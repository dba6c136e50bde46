#!/usr/bin/env python3
"""skiff devstack: a Confluent Schema Registry stand-in (Python standard library only).

A STAND-IN, not Confluent's registry: Karapace is not published on PyPI and Confluent's
registry is not on Maven Central, so neither installs from the registries these machines reach
(see docs/adr/0005-devstack-kafka.md). It implements the part of Confluent's REST API that
skiff and the official clients use, for AVRO schemas only:

  GET    /schemas/ids/{id}                    {"schema": "..."}; 40403 if unknown
  GET    /schemas/ids/{id}/schema             the schema itself
  GET    /schemas/ids/{id}/subjects           ["subject", ...]
  GET    /schemas/ids/{id}/versions           [{"subject": s, "version": v}, ...]
  GET    /schemas/types                       ["AVRO"]
  GET    /subjects[?deleted=true]             ["subject", ...]
  POST   /subjects/{s}/versions               {"id": n}; 409 incompatible, 42201 invalid
  POST   /subjects/{s}                        {"subject", "id", "version", "schema"}; 40401, 40403
  GET    /subjects/{s}/versions               [1, 2, ...]; 40401
  GET    /subjects/{s}/versions/{v|latest}    {"subject", "id", "version", "schema"}; 40402, 42202
  GET    /subjects/{s}/versions/{v}/schema    the schema itself
  GET    /subjects/{s}/versions/{v}/referencedby   [] (references are not supported)
  DELETE /subjects/{s}[?permanent=true]       soft (then hard) delete; [versions]
  DELETE /subjects/{s}/versions/{v}[?permanent=true]
  POST   /compatibility/subjects/{s}/versions[/{v|latest}][?verbose=true]   {"is_compatible": b}
  GET    /config, PUT /config                 global level (default BACKWARD)
  GET    /config/{s}[?defaultToGlobal=true], PUT /config/{s}, DELETE /config/{s}
  GET    /mode                                {"mode": "READWRITE"}
  GET    /                                    {}

Compatibility is really checked: Avro schema resolution (the rules of Avro's
SchemaCompatibility: field defaults, type promotions, unions, enum symbols, names and
aliases, in avro_compat.py next to this file) for NONE, BACKWARD, FORWARD, FULL and their
_TRANSITIVE forms; soft-deleted versions are left out. Errors are Confluent's: HTTP status plus {"error_code": ..., "message": ...};
responses are application/vnd.schemaregistry.v1+json.

Limits (what the real registry does and this one does not): AVRO only (JSON and PROTOBUF are
refused with 42201); no schema references; no contexts, modes other than READWRITE, metadata,
rule sets, GUIDs or normalization (?normalize is accepted and ignored); authentication is
HTTP basic only (--basic-auth-file, a file of "user:password" read at every request so a test can
rotate the password: a request without those credentials is answered 401, error_code 401);
schemas are deduplicated on their compact JSON text (with {"type": "<primitive>"} folded to
"<primitive>"), not on Avro's full canonical form; storage is memory, optionally a JSON file
(--state) rewritten after each change, instead of the _schemas Kafka topic.

Run: python3 schema_registry.py [--host 127.0.0.1] [--port 28081] [--state FILE]
     [--compatibility BACKWARD] [--quiet] [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
(HTTPS with --tls-cert, client certificates required with --tls-client-ca.)
"""

import argparse
import base64
import hmac
import json
import os
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from avro_compat import LEVELS, SchemaError, canonical_text, check_level, parse_schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_VERSION = 2 ** 31 - 1
MAX_BODY = 16 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- the registry ----------------------------------------------------------------------------

class Registry:
    def __init__(self, compatibility="BACKWARD", state_file=None):
        self.lock = threading.RLock()
        self.state_file = state_file
        self.schemas = {}       # id -> schema text
        self.ids = {}           # schema text -> id
        self.subjects = {}      # name -> {"versions": [{"version", "id", "deleted"}], "next": n}
        self.subject_config = {}
        self.compatibility = compatibility
        self.next_id = 1
        self._parsed = {}
        if state_file and os.path.exists(state_file):
            self._load()

    # persistence
    def _load(self):
        with open(self.state_file, encoding="utf-8") as f:
            st = json.load(f)
        self.schemas = {int(k): v for k, v in st["schemas"].items()}
        self.ids = {v: k for k, v in self.schemas.items()}
        self.subjects = st["subjects"]
        self.subject_config = st["subject_config"]
        self.compatibility = st["compatibility"]
        self.next_id = st["next_id"]

    def _save(self):
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"schemas": self.schemas, "subjects": self.subjects,
                       "subject_config": self.subject_config,
                       "compatibility": self.compatibility, "next_id": self.next_id}, f)
        os.replace(tmp, self.state_file)

    def parsed(self, sid):
        p = self._parsed.get(sid)
        if p is None:
            p = self._parsed[sid] = parse_schema(json.loads(self.schemas[sid]))
        return p

    # helpers
    @staticmethod
    def read_schema(body):
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise ApiError(422, 42201, "Invalid schema: the request needs a \"schema\" string")
        stype = body.get("schemaType") or "AVRO"
        if stype != "AVRO":
            raise ApiError(422, 42201, f"Invalid schema: schemaType {stype} is not supported "
                           f"by devstack's registry stand-in (AVRO only)")
        if body.get("references"):
            raise ApiError(422, 42201, "Invalid schema: schema references are not supported "
                           "by devstack's registry stand-in")
        try:
            obj = json.loads(body["schema"])
        except ValueError as e:
            raise ApiError(422, 42201, f"Invalid schema: not JSON: {e}") from None
        try:
            node = parse_schema(obj)
        except SchemaError as e:
            raise ApiError(422, 42201, f"Invalid schema: {e}") from None
        except RecursionError:
            raise ApiError(422, 42201, "Invalid schema: nested too deeply") from None
        return canonical_text(obj), node

    def subject(self, name, deleted=False):
        sub = self.subjects.get(name)
        if sub is None or not any(deleted or not v["deleted"] for v in sub["versions"]):
            raise ApiError(404, 40401, f"Subject '{name}' not found.")
        return sub

    @staticmethod
    def parse_version(v):
        if v == "latest":
            return -1
        try:
            n = int(v)
        except ValueError:
            n = 0
        if n == -1 or 1 <= n <= MAX_VERSION:
            return n
        raise ApiError(422, 42202, f"The specified version '{v}' is not a valid version id. "
                       "Allowed values are between [1, 2^31-1] and the string \"latest\"")

    def version_entry(self, name, v, deleted=False):
        sub = self.subject(name, deleted)
        n = self.parse_version(v)
        live = [e for e in sub["versions"] if deleted or not e["deleted"]]
        if n == -1:
            if live:
                return live[-1]
        else:
            for e in live:
                if e["version"] == n:
                    return e
        raise ApiError(404, 40402, f"Version {v} not found.")

    def level(self, name):
        return self.subject_config.get(name, self.compatibility)

    def entry_json(self, name, e):
        return {"subject": name, "version": e["version"], "id": e["id"],
                "schema": self.schemas[e["id"]]}

    # operations
    def register(self, name, body):
        text, node = self.read_schema(body)
        with self.lock:
            sub = self.subjects.get(name)
            if sub:
                for e in sub["versions"]:
                    if not e["deleted"] and self.schemas[e["id"]] == text:
                        return {"id": e["id"]}
                olders = [self.parsed(e["id"]) for e in sub["versions"] if not e["deleted"]]
                problems = check_level(self.level(name), node, olders)
                if problems:
                    raise ApiError(409, 409, "Schema being registered is incompatible with an "
                                   f"earlier schema for subject \"{name}\", details: "
                                   f"{problems} ({self.level(name)})")
            sid = self.ids.get(text)
            if sid is None:
                sid = self.next_id
                self.next_id += 1
                self.schemas[sid] = text
                self.ids[text] = sid
                self._parsed[sid] = node
            if sub is None:
                sub = self.subjects[name] = {"versions": [], "next": 1}
            sub["versions"].append({"version": sub["next"], "id": sid, "deleted": False})
            sub["next"] += 1
            self._save()
            return {"id": sid}

    def lookup(self, name, body, deleted=False):
        text, _ = self.read_schema(body)
        with self.lock:
            sub = self.subject(name, deleted)
            for e in reversed(sub["versions"]):
                if (deleted or not e["deleted"]) and self.schemas[e["id"]] == text:
                    return self.entry_json(name, e)
        raise ApiError(404, 40403, "Schema not found")

    def compatibility_check(self, name, version, body, verbose):
        _, node = self.read_schema(body)
        with self.lock:
            level = self.level(name)
            if version is None:
                sub = self.subjects.get(name)
                olders = [self.parsed(e["id"]) for e in (sub or {"versions": []})["versions"]
                          if not e["deleted"]]
                problems = check_level(level, node, olders)
            else:
                sub = self.subjects.get(name)
                if version == "latest" and (sub is None or all(
                        e["deleted"] for e in sub["versions"])):
                    problems = []     # nothing registered yet: anything is compatible
                else:
                    e = self.version_entry(name, version)
                    problems = check_level(level.replace("_TRANSITIVE", ""), node,
                                           [self.parsed(e["id"])])
        out = {"is_compatible": not problems}
        if verbose:
            out["messages"] = problems
        return out

    def delete_subject(self, name, permanent):
        with self.lock:
            sub = self.subjects.get(name)
            if sub is None or not sub["versions"]:
                raise ApiError(404, 40401, f"Subject '{name}' not found.")
            live = [e for e in sub["versions"] if not e["deleted"]]
            if permanent:
                if live:
                    raise ApiError(404, 40405, f"Subject '{name}' was not deleted first before "
                                   "being permanently deleted")
                out = [e["version"] for e in sub["versions"]]
                del self.subjects[name]
                self.subject_config.pop(name, None)
            else:
                if not live:
                    raise ApiError(404, 40404, f"Subject '{name}' was soft deleted.Set "
                                   "permanent=true to delete permanently")
                for e in live:
                    e["deleted"] = True
                out = [e["version"] for e in live]
            self._save()
            return out

    def delete_version(self, name, v, permanent):
        with self.lock:
            e = self.version_entry(name, v, deleted=permanent)
            if permanent:
                if not e["deleted"]:
                    raise ApiError(404, 40407, f"Subject '{name}' Version {e['version']} was "
                                   "not deleted first before being permanently deleted")
                self.subjects[name]["versions"].remove(e)
                if not self.subjects[name]["versions"]:
                    del self.subjects[name]
            else:
                e["deleted"] = True
            self._save()
            return e["version"]


# --- HTTP ------------------------------------------------------------------------------------

def _flag(query, key):
    return query.get(key, ["false"])[-1].lower() == "true"


def route(reg, method, parts, query, body):
    """Returns (status, json-able) or raises ApiError."""
    n = len(parts)
    if n == 0:
        if method == "GET":
            return 200, {}
    elif parts[0] == "schemas":
        if n == 2 and parts[1] == "types" and method == "GET":
            return 200, ["AVRO"]
        if n >= 3 and parts[1] == "ids" and method == "GET":
            try:
                sid = int(parts[2])
            except ValueError:
                sid = -1
            with reg.lock:
                text = reg.schemas.get(sid)
                if text is None:
                    raise ApiError(404, 40403, f"Schema {parts[2]} not found")
                if n == 3:
                    return 200, {"schema": text}
                if n == 4 and parts[3] == "schema":
                    return 200, json.loads(text)
                pairs = [(s, e["version"]) for s, sub in sorted(reg.subjects.items())
                         for e in sub["versions"]
                         if e["id"] == sid and (_flag(query, "deleted") or not e["deleted"])]
                if n == 4 and parts[3] == "subjects":
                    return 200, sorted({s for s, _ in pairs})
                if n == 4 and parts[3] == "versions":
                    return 200, [{"subject": s, "version": v} for s, v in pairs]
    elif parts[0] == "subjects":
        if n == 1 and method == "GET":
            deleted = _flag(query, "deleted")
            with reg.lock:
                return 200, sorted(s for s, sub in reg.subjects.items()
                                   if any(deleted or not e["deleted"] for e in sub["versions"]))
        if n >= 2:
            name = parts[1]
            if n == 2 and method == "POST":
                return 200, reg.lookup(name, body, _flag(query, "deleted"))
            if n == 2 and method == "DELETE":
                return 200, reg.delete_subject(name, _flag(query, "permanent"))
            if n == 3 and parts[2] == "versions":
                if method == "POST":
                    return 200, reg.register(name, body)
                if method == "GET":
                    deleted = _flag(query, "deleted")
                    with reg.lock:
                        sub = reg.subject(name, deleted)
                        return 200, [e["version"] for e in sub["versions"]
                                     if deleted or not e["deleted"]]
            if n >= 4 and parts[2] == "versions":
                if n == 4 and method == "DELETE":
                    return 200, reg.delete_version(name, parts[3], _flag(query, "permanent"))
                if method == "GET":
                    with reg.lock:
                        e = reg.version_entry(name, parts[3], _flag(query, "deleted"))
                        if n == 4:
                            return 200, reg.entry_json(name, e)
                        if n == 5 and parts[4] == "schema":
                            return 200, json.loads(reg.schemas[e["id"]])
                        if n == 5 and parts[4] == "referencedby":
                            return 200, []
    elif parts[0] == "compatibility":
        if (method == "POST" and n in (4, 5) and parts[1] == "subjects"
                and parts[3] == "versions"):
            version = parts[4] if n == 5 else None
            if version is not None:
                reg.parse_version(version)
            return 200, reg.compatibility_check(parts[2], version, body,
                                                _flag(query, "verbose"))
    elif parts[0] == "config":
        if n == 1 and method == "GET":
            return 200, {"compatibilityLevel": reg.compatibility}
        if n <= 2 and method == "PUT":
            level = body.get("compatibility") if isinstance(body, dict) else None
            if not isinstance(level, str) or level.upper() not in LEVELS:
                raise ApiError(422, 42203, "Invalid compatibility level. Valid values are "
                               + ", ".join(LEVELS))
            with reg.lock:
                if n == 1:
                    reg.compatibility = level.upper()
                else:
                    reg.subject_config[parts[1]] = level.upper()
                reg._save()
            return 200, {"compatibility": level.upper()}
        if n == 2 and method == "GET":
            with reg.lock:
                level = reg.subject_config.get(parts[1])
                if level is None and _flag(query, "defaultToGlobal"):
                    level = reg.compatibility
            if level is None:
                raise ApiError(404, 40408, f"Subject '{parts[1]}' does not have subject-level "
                               "compatibility configured")
            return 200, {"compatibilityLevel": level}
        if n == 2 and method == "DELETE":
            with reg.lock:
                level = reg.subject_config.pop(parts[1], None)
                reg._save()
            if level is None:
                raise ApiError(404, 40401, f"Subject '{parts[1]}' not found.")
            return 200, {"compatibilityLevel": level}
    elif parts[0] == "mode" and n == 1 and method == "GET":
        return 200, {"mode": "READWRITE"}
    raise ApiError(404, 404, "HTTP 404 Not Found")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "skiff-devstack-schema-registry/1"
    registry = None
    quiet = False
    basic_auth_file = None

    def _authorized(self):
        if not self.basic_auth_file:
            return True
        with open(self.basic_auth_file, encoding="utf-8") as f:
            expected = "Basic " + base64.b64encode(f.read().strip().encode()).decode()
        return hmac.compare_digest(self.headers.get("Authorization", ""), expected)

    def _handle(self, method):
        status, payload = 500, None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                raise ApiError(413, 413, "request body too large")
            raw = self.rfile.read(length) if length else b""
            if not self._authorized():
                raise ApiError(401, 401, "Unauthorized")
            body = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, 400, "Unexpected character: the request body is not "
                                   "JSON") from None
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.split("/") if p]
            status, payload = route(self.registry, method, parts, parse_qs(url.query), body)
        except ApiError as e:
            status, payload = e.status, {"error_code": e.code, "message": e.message}
        except Exception as e:  # noqa: BLE001 - report, never crash the server
            status, payload = 500, {"error_code": 50001, "message": f"internal error: {e!r}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server naming
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))


class TLSServer(ThreadingHTTPServer):
    """HTTPS: each connection's handshake runs in its own thread (a client that never sends
    its hello holds only that thread)."""

    context = None

    def finish_request(self, request, client_address):
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write(f"TLS handshake with {client_address[0]} refused: {e}\n")
            return
        super().finish_request(request, client_address)


def tls_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_client_ca:
        ctx.load_verify_locations(args.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=28081)
    ap.add_argument("--state", help="JSON file to keep schemas in (default: memory only)")
    ap.add_argument("--compatibility", default="BACKWARD", choices=LEVELS)
    ap.add_argument("--quiet", action="store_true", help="no access log")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="its PEM key")
    ap.add_argument("--tls-client-ca", help="HTTPS: require client certificates of this CA")
    ap.add_argument("--basic-auth-file",
                    help='require HTTP basic auth with the "user:password" in this file (read at '
                         'every request)')
    args = ap.parse_args(argv)

    Handler.registry = Registry(args.compatibility, args.state)
    Handler.quiet = args.quiet
    Handler.basic_auth_file = args.basic_auth_file
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    if args.tls_cert:
        TLSServer.context = tls_context(args)
        httpd = TLSServer((args.host, args.port), Handler)
    else:
        httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    scheme = "https" if args.tls_cert else "http"
    sys.stderr.write(f"schema registry stand-in listening on {scheme}://{args.host}:"
                     f"{httpd.server_address[1]} (compatibility {args.compatibility}, "
                     f"state {args.state or 'memory'})\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
