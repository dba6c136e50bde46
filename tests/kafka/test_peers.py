"""Peers in another language: records written through skiff's `produce` call are decoded by a
Node consumer (kafkajs + @kafkajs/confluent-schema-registry, which decodes with avsc) to exactly
the values the handler sent, and records a Node producer encodes with the registry client's
`encode` reach a Python SDK handler as the expected JSON (handler-protocol/SPEC.md, Avro
appendix). The same bytes are also decoded with confluent-kafka's official AvroDeserializer
(fastavro), so a mistake in the Node script's conversions cannot hide a mistake in skiff's.

The Node script is tests/kafka/peers/kafkajs_peer.js; its packages are in
devstack/kafka/node_modules (devstack/kafka.sh install)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import CMD_SCHEMA, ROOT, WAIT, cmd, events_of, wait_until

PEER = Path(__file__).resolve().parent / "peers" / "kafkajs_peer.js"
NODE_MODULES = ROOT / "devstack" / "kafka" / "node_modules"

OWNER = {"type": "record", "name": "Owner", "fields": [
    {"name": "name", "type": "string"},
    {"name": "zip", "type": ["null", "string"], "default": None}]}
PEER_SCHEMA = {
    "type": "record", "name": "Peer", "namespace": "skiff.peer",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["NEW", "ACTIVE", "CLOSED"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "limits", "type": {"type": "map", "values": "long"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 12, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "owner", "type": OWNER},
        {"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": "Line", "fields": [
                {"name": "sku", "type": "string"},
                {"name": "qty", "type": "int"},
                {"name": "price", "type": "double"}]}}},
        {"name": "blob", "type": "bytes"},
        {"name": "choice", "type": ["null", "string", "long", "Owner"], "default": None},
        {"name": "maybe_owner", "type": ["null", "Owner"], "default": None},
        {"name": "flag", "type": "boolean"},
        {"name": "ratio", "type": "float"},
    ],
}

# Values in the JSON form of the SPEC's appendix, canonical (what a decoder must give back).
CANONICAL: List[Dict[str, Any]] = [
    {"id": "p-1", "status": "ACTIVE", "tags": ["a", "b c", "\u00fcn\u00ef\u2603"],
     "limits": {"daily": 1000, "neg": -5, "big": 4503599627370496},  # avsc: |long| <= 2^53 - 2,
     "note": "h\u00e9llo \u2603", "amount": "-1234567.89", "at": "2024-02-29T23:59:59.999Z",
     "ref": "123e4567-e89b-12d3-a456-426614174000", "owner": {"name": "Ada", "zip": None},
     "lines": [{"sku": "X-1", "qty": 3, "price": 9.99}, {"sku": "Y", "qty": -1, "price": 0.0}],
     "blob": "\u0000\u00ff\u0080abc", "choice": {"skiff.peer.Owner": {"name": "Bob",
                                                                       "zip": "10115"}},
     "maybe_owner": None, "flag": True, "ratio": 0.25},
    {"id": "p-2", "status": "NEW", "tags": [], "limits": {}, "note": None, "amount": "1.28",
     "at": "1970-01-01T00:00:00.000Z", "ref": "00000000-0000-0000-0000-000000000000",
     "owner": {"name": "", "zip": "0"}, "lines": [], "blob": "",
     "choice": {"string": "x"}, "maybe_owner": {"name": "Eve", "zip": None}, "flag": False,
     "ratio": -1.5},
    {"id": "p-3", "status": "CLOSED", "tags": ["z"], "limits": {"k": 0}, "note": "",
     "amount": "-0.01", "at": "9999-12-31T23:59:59.999Z",
     "ref": "ffffffff-ffff-4fff-bfff-ffffffffffff", "owner": {"name": "N", "zip": None},
     "lines": [{"sku": "s", "qty": 2147483647, "price": -1e-3}], "blob": "\u0001",
     "choice": {"long": -42}, "maybe_owner": None, "flag": True, "ratio": 0.0},
]


def _other_forms() -> Dict[str, Any]:
    """A value in the other forms a produce call accepts (SPEC, "Writing"), and its canonical
    reading."""
    sent = dict(CANONICAL[1], id="p-4", amount=7, at=1704164645123, note={"string": "wrapped"},
                maybe_owner={"skiff.peer.Owner": {"name": "W"}})
    want = dict(CANONICAL[1], id="p-4", amount="7.00", at="2024-01-02T03:04:05.123Z",
                note="wrapped", maybe_owner={"name": "W", "zip": None})
    offset = dict(CANONICAL[0], id="p-5", at="2024-01-02T04:04:05.1+01:00", amount="12.5")
    offset_want = dict(CANONICAL[0], id="p-5", at="2024-01-02T03:04:05.100Z", amount="12.50")
    return {"sent": [sent, offset], "want": [want, offset_want]}


# ---- fastavro (confluent-kafka's AvroDeserializer) -> the JSON form ----------------------------

def _named(schema: Any, ns: str, out: Dict[str, Any]) -> None:
    if isinstance(schema, list):
        for b in schema:
            _named(b, ns, out)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "enum", "fixed"):
            name = schema["name"]
            full = name if "." in name else f"{schema.get('namespace', ns)}.{name}".lstrip(".")
            out[full] = schema
            inner = full.rpartition(".")[0]
            for f in schema.get("fields", []):
                _named(f["type"], inner, out)
        elif t == "array":
            _named(schema["items"], ns, out)
        elif t == "map":
            _named(schema["values"], ns, out)
        elif isinstance(t, (dict, list)):
            _named(t, ns, out)


def _spec_json(schema: Any, v: Any, named: Dict[str, Any], ns: str = "skiff.peer") -> Any:
    """fastavro's decoding (Decimal, datetime, bytes, UUID, plain unions) -> the JSON form."""
    if isinstance(schema, str):
        if schema in named or f"{ns}.{schema}" in named:
            return _spec_json(named.get(schema) or named[f"{ns}.{schema}"], v, named, ns)
        if schema == "bytes":
            return v.decode("latin1")
        return v
    if isinstance(schema, list):
        if v is None:
            return None
        branches = [b for b in schema if b != "null"]

        def fits(b: Any) -> bool:
            t = b if isinstance(b, str) else b.get("type")
            if t in ("string",):
                return isinstance(v, str)
            if t in ("long", "int"):
                return isinstance(v, int) and not isinstance(v, bool)
            return isinstance(v, dict)  # a record (the only other kind in PEER_SCHEMA)
        (branch,) = [b for b in branches if fits(b)]
        inner = _spec_json(branch, v, named, ns)
        if len(schema) == 2:
            return inner
        name = branch if isinstance(branch, str) else branch.get("name")
        if name not in ("string", "long", "int") and "." not in name:
            name = f"{ns}.{name}"
        return {name: inner}
    t, logical = schema.get("type"), schema.get("logicalType")
    if isinstance(t, (dict, list)):
        return _spec_json(t, v, named, ns)
    if t == "record":
        return {f["name"]: _spec_json(f["type"], v[f["name"]], named, ns) for f in schema["fields"]}
    if t == "array":
        return [_spec_json(schema["items"], x, named, ns) for x in v]
    if t == "map":
        return {k: _spec_json(schema["values"], x, named, ns) for k, x in v.items()}
    if logical == "decimal":
        return str(v.quantize(Decimal(1).scaleb(-schema["scale"])))
    if logical == "timestamp-millis":
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
            f"{v.microsecond // 1000:03d}Z"
    if logical == "uuid":
        return str(v)
    if t == "bytes":
        return v.decode("latin1")
    return v


def official_json(kafka, topic: str, raw: bytes) -> Any:
    named: Dict[str, Any] = {}
    _named(PEER_SCHEMA, "", named)
    return _spec_json(PEER_SCHEMA, kafka.deserialize(topic, raw), named)


# ---- the Node peer ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if not exe:
        pytest.fail("node not found: devstack/setup.sh installs it")
    for pkg in ("kafkajs", "@kafkajs/confluent-schema-registry"):
        if not (NODE_MODULES / pkg / "package.json").exists():
            subprocess.run([str(ROOT / "devstack" / "kafka.sh"), "install"], check=True,
                           capture_output=True)
            break
    return exe


def run_peer(node: str, mode: str, timeout: float = WAIT + 30, **params: Any) -> List[Dict]:
    argv = [node, str(PEER), mode] + [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (f"{' '.join(argv)} exited {p.returncode}\nstdout:\n{p.stdout}\n"
                               f"stderr:\n{p.stderr[-4000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def assert_same(got: Dict[str, Any], want: Dict[str, Any], who: str,
                order: bool = True) -> None:
    """Field by field, so a failure names the field; with order, also the schema's order."""
    assert sorted(got) == sorted(want), f"{who}: fields {sorted(got)} != {sorted(want)}"
    for name in want:
        assert got[name] == want[name], \
            f"{who}: field {name!r} of {want['id']}: {got[name]!r} != {want[name]!r}"
    if order:
        assert list(got) == [f["name"] for f in PEER_SCHEMA["fields"]], f"{who}: field order"


def no_nul(v: Dict[str, Any]) -> Dict[str, Any]:
    return dict(v, blob=v["blob"].replace("\u0000", "\u0001"))


# ---- the tests -------------------------------------------------------------------------------

def test_skiff_produce_is_decoded_by_kafkajs(kafka, stack, uid, node):
    trigger = f"kt.peer.trig.{uid}"
    out = f"kt.peer.out.{uid}"
    group = f"kt-peer-out-{uid}"
    kafka.create_topic(trigger)
    kafka.create_topic(out, dlq=False)
    kafka.register(f"{trigger}-value", CMD_SCHEMA)
    out_id = kafka.register(f"{out}-value", PEER_SCHEMA)
    # kafkajs reads only gzip by itself (zstd, lz4 and snappy need codec plugins), and skiff
    # writes topics outside business.*, agent.* and *.dlq with zstd by default.
    skiff, handler = stack.start([trigger], group, kafka__compression_other="gzip")

    other = _other_forms()
    # Without the byte 0x00 in `blob`: test_produce_call_with_nul_byte covers it.
    sent = [no_nul(v) for v in CANONICAL + other["sent"]]
    want = [no_nul(v) for v in CANONICAL + other["want"]]
    specs = [{"via": "task", "topic": out, "key": v["id"], "headers": {"source": "skiff",
                                                                        "n": str(i)},
              "value": v} for i, v in enumerate(sent)]
    # One key: the produce calls run one after the other, so offsets follow this order.
    kafka.produce(trigger, [("one", cmd(s["value"]["id"], produce=json.dumps(s)), None)
                            for s in specs], schema=CMD_SCHEMA)

    def answered():
        ends = {e["value"]["id"]: e.get("produce") for e in events_of([handler], "end", trigger)}
        return ends if len(ends) == len(specs) else None
    res = wait_until(answered, what="every produce call answered",
                     on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    for i, v in enumerate(sent):
        assert res[v["id"]] == {"ok": True, "result": {"topic": out, "partition": 0, "offset": i,
                                                       "schema_id": out_id}}, res[v["id"]]

    lines = run_peer(node, "consume", brokers=kafka.bootstrap, registry=kafka.registry_url,
                     topic=out, count=len(sent), group=f"kjs-{uid}")
    assert [(m["partition"], m["offset"]) for m in lines] == [(0, i) for i in range(len(sent))]
    for i, m in enumerate(lines):
        assert m["schema_id"] == out_id
        assert m["key"] == sent[i]["id"]
        assert m["headers"].pop("traceparent").startswith("00-")  # skiff's PRODUCER span
        assert m["headers"] == {"source": "skiff", "n": str(i)}
        assert_same(m["value"], want[i], "kafkajs/avsc")

    # The official Python deserializer reads the same bytes to the same values.
    msgs = kafka.read_all(out)
    assert len(msgs) == len(sent), "a produce call wrote more than one record"
    for i, msg in enumerate(msgs):
        assert_same(official_json(kafka, out, msg.value()), want[i], "AvroDeserializer")
    stack.stop_all()


def test_kafkajs_records_reach_the_handler(kafka, stack, uid, node, tmp_path):
    topic = f"kt.peer.in.{uid}"
    group = f"kt-peer-in-{uid}"
    kafka.create_topic(topic)
    schema_id = kafka.register(f"{topic}-value", PEER_SCHEMA)
    skiff, handler = stack.start([topic], group)

    records = [{"key": v["id"], "headers": {"from": "kafkajs", "i": str(i)}, "value": v}
               for i, v in enumerate(CANONICAL)]
    records.append({"value": dict(CANONICAL[2], id="p-nokey")})  # no key, no headers
    want = [r["value"] for r in records]
    inp = tmp_path / "records.json"
    inp.write_text(json.dumps(records))
    produced = run_peer(node, "produce", brokers=kafka.bootstrap, registry=kafka.registry_url,
                        topic=topic, input=inp)
    assert [(p["partition"], p["offset"], p["schema_id"]) for p in produced] == \
        [(0, i, schema_id) for i in range(len(records))]

    # The official deserializer agrees with what the Node encoder meant.
    msgs = kafka.read_all(topic)
    for i, msg in enumerate(msgs):
        assert msg.value()[0] == 0 and int.from_bytes(msg.value()[1:5], "big") == schema_id
        assert_same(official_json(kafka, topic, msg.value()), want[i], "AvroDeserializer")

    def started():
        ev = {e["offset"]: e for e in events_of([handler], "start", topic)}
        return ev if len(ev) == len(records) else None
    ev = wait_until(started, what="every kafkajs record delivered",
                    on_timeout=lambda: f"{handler.events()}\n{skiff.tail()}")
    for i, r in enumerate(records):
        e = ev[i]
        assert e["schema_id"] == schema_id and e["partition"] == 0
        assert e["key"] == r.get("key")
        assert (e["headers"] or {}) == r.get("headers", {}), e["headers"]
        # (recorder.py writes its lines with sorted keys: no order to compare)
        assert_same(e["value"], want[i], "skiff task", order=False)
    kafka.wait_committed(group, topic, {0: len(records)}, skiff)
    stack.stop_all()


# Observed on the skiff built from the tree at 2026-11-24 04:27 UTC (build-ft-asan).


def _frame(sock, frame: Dict[str, Any]) -> None:
    data = json.dumps(frame).encode()
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _read_frame(sock) -> Dict[str, Any]:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"skiff closed the connection after {buf!r}")
            buf += chunk
        return buf
    return json.loads(exact(int.from_bytes(exact(4), "big")))


def test_produce_call_with_nul_byte(kafka, stack, uid):
    import socket
    trigger = f"kt.peer.nul.{uid}"
    out = f"kt.peer.nulout.{uid}"
    kafka.create_topic(trigger)
    kafka.create_topic(out, dlq=False)
    out_id = kafka.register(f"{out}-value", PEER_SCHEMA)
    skiff = stack.skiff([trigger], f"kt-peer-nul-{uid}")  # (ready only once a handler is in)
    value = dict(CANONICAL[0], amount="1.00")  # blob "\u0000\u00ff\u0080abc"; 100 = 0x64
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(WAIT)
        s.connect(skiff.socket)
        _frame(s, {"type": "hello", "version": 1, "name": "nul", "capacity": 1,
                   "topics": [trigger]})
        assert _read_frame(s)["type"] == "welcome"
        _frame(s, {"type": "call", "ref": "1", "method": "produce",
                   "params": {"topic": out, "key": "nul", "value": value}})
        reply = _read_frame(s)
    try:
        assert reply == {"type": "reply", "ref": "1", "ok": True, "result": {
            "topic": out, "partition": 0, "offset": 0, "schema_id": out_id}}, \
            f"{reply}\n{skiff.tail(10)}"
        (msg,) = kafka.read_all(out)
        assert_same(official_json(kafka, out, msg.value()), value, "AvroDeserializer")
    finally:
        stack.stop_all()
