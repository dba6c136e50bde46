#!/usr/bin/env python3
"""skiff devstack: proof that the Kafka broker and the schema registry are real and usable.

    /usr/bin/python3 devstack/kafka_selfcheck.py [--no-start] [--keep] [--records N]

Run it with any Python 3: it installs the clients first (`devstack/kafka.sh install`: a venv
under $SKIFF_CACHE/kafka/ with confluent-kafka and fastavro) and re-runs itself with the venv's
interpreter. It starts the broker (devstack/kafka.sh) and the registry
(devstack/schema-registry.sh: Apicurio Registry, or the stand-in with
SKIFF_SCHEMA_REGISTRY_IMPL=standin), unless --no-start, and then, with the official clients:

  - confluent-kafka's AdminClient: cluster metadata, create a topic, list topics;
  - auto topic creation is off: producing to a missing topic fails and creates nothing;
  - confluent-kafka's SchemaRegistryClient against the registry: register, look up, versions,
    compatibility (BACKWARD: a new optional field passes, a new required field gets 409),
    errors (40403, 40402, 42201), subject config, soft and hard delete; and the stand-in's
    compatibility rules give Apache Avro's own checker's verdict on 1296 schema pairs;
  - Producer (acks=all, idempotent) + the official AvroSerializer (TopicNameStrategy:
    subject <topic>-value, schema auto-registered), then Consumer (manual commit) + the
    official AvroDeserializer: every record comes back equal, with its headers; the wire
    format is magic byte 0 + the registered schema id; offsets commit;
  - kcat (Debian's librdkafka, the one skiff links), if installed, reads the same records;
  - @kafkajs/confluent-schema-registry against the registry (devstack/kafka/registry_check.js),
    if node and devstack/kafka/node_modules are there;
  - deletes its topic, and stops what it started unless --keep.

Prints one line per check with its time, then `kafka_selfcheck: N passed, N failed`; exits 1
if anything failed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from devstack_env import shell_env  # noqa: E402  (devstack/devstack_env.py)

KAFKA_SH = os.path.join(HERE, "kafka.sh")
REGISTRY_SH = os.path.join(HERE, "schema-registry.sh")


def sr_conf(url):
    """A registry client's settings: no request waits forever (httpx's default)."""
    return {"url": url, "timeout": 30}


def ensure_venv():
    """Re-executes this script with the clients venv's python when the clients are missing."""
    try:
        import confluent_kafka  # noqa: F401
        import fastavro  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("SKIFF_KAFKA_SELFCHECK_REEXEC"):
        sys.exit("kafka_selfcheck: confluent-kafka / fastavro missing even in the venv")
    t0 = time.monotonic()
    subprocess.run([KAFKA_SH, "install"], check=True)
    env = shell_env([KAFKA_SH, "env"])
    py = env["SKIFF_KAFKA_PYTHON"]
    print(f"kafka_selfcheck: clients ready ({time.monotonic() - t0:.1f}s); "
          f"running with {py}", flush=True)
    os.environ["SKIFF_KAFKA_SELFCHECK_REEXEC"] = "1"
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.timings = {}

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            result = fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            return None
        ms = (time.monotonic() - t0) * 1000
        self.timings[name] = ms
        self.passed += 1
        extra = f" - {result}" if isinstance(result, str) and result else ""
        print(f"ok   {name} ({ms:.0f} ms){extra}", flush=True)
        return result


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_sr_error(fn, status, code):
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    try:
        fn()
    except SchemaRegistryError as e:
        expect(e.http_status_code == status and e.error_code == code,
               f"got HTTP {e.http_status_code} error_code {e.error_code}, "
               f"want {status}/{code}: {e.error_message}")
        return f"HTTP {status}, error_code {code}"
    raise AssertionError(f"no error; want HTTP {status} error_code {code}")


QUOTE_V1 = {
    "type": "record", "name": "QuoteRequested", "namespace": "skiff.devstack",
    "fields": [
        {"name": "quote_id", "type": "string"},
        {"name": "amount_cents", "type": "long"},
        {"name": "currency", "type": {"type": "enum", "name": "Currency",
                                      "symbols": ["EUR", "USD", "GBP"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "score", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
# BACKWARD-compatible: a new optional field with a default.
QUOTE_V2 = dict(QUOTE_V1, fields=QUOTE_V1["fields"] + [
    {"name": "channel", "type": "string", "default": "web"}])
# BACKWARD-incompatible: a new field without a default.
QUOTE_BAD = dict(QUOTE_V1, fields=QUOTE_V1["fields"] + [
    {"name": "broker_id", "type": "string"}])


def record(i):
    return {
        "quote_id": f"q-{i:05d}",
        "amount_cents": 10_000 * i + 7,
        "currency": ["EUR", "USD", "GBP"][i % 3],
        "tags": [f"t{i % 5}", "devstack"],
        "attributes": {"i": str(i), "parity": "even" if i % 2 == 0 else "odd"},
        "score": i / 7.0,
        "blob": bytes([i % 256, 0, 255, (i * 7) % 256]),
        "note": None if i % 4 else f"note {i}",
    }


def _record(fields, name="R", **kw):
    return dict({"type": "record", "name": name, "namespace": "n", "fields": fields}, **kw)


def _enum(symbols, **kw):
    return dict({"type": "enum", "name": "E", "symbols": symbols}, **kw)


# Schemas whose every (reader, writer) pair the stand-in's compatibility rules must judge as
# Apache Avro's own checker does: promotions, unions, defaults, aliases, enums, recursion.
COMPAT_CASES = [
    "int", "long", "float", "double", "string", "bytes", "boolean", "null",
    ["null", "int"], ["null", "string"], ["int", "string"], ["null", "long", "string"],
    _record([{"name": "a", "type": "int"}]),
    _record([{"name": "a", "type": "long"}]),
    _record([{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}]),
    _record([{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]),
    _record([{"name": "b", "type": "string", "default": "x"}]),
    _record([{"name": "a2", "type": "int", "aliases": ["a"]}]),
    _record([{"name": "a", "type": ["null", "int"], "default": None}]),
    _record([{"name": "a", "type": "int"}], name="S"),
    _record([{"name": "a", "type": "int"}], name="S", aliases=["n.R"]),
    _enum(["A", "B"]), _enum(["A", "B", "C"]), _enum(["A"], default="A"),
    _enum(["A", "C"], default="A"),
    {"type": "array", "items": "int"}, {"type": "array", "items": "long"},
    {"type": "map", "values": "string"}, {"type": "map", "values": "bytes"},
    {"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8},
    _record([{"name": "next", "type": ["null", "R"], "default": None},
             {"name": "v", "type": "int"}]),
    _record([{"name": "next", "type": ["null", "R"], "default": None},
             {"name": "v", "type": "long"}, {"name": "w", "type": "int", "default": 1}]),
    QUOTE_V1, QUOTE_V2, QUOTE_BAD,
]


def compat_rules_match_avro():
    """The stand-in's resolution rules against Apache Avro's ReaderWriterCompatibilityChecker
    (the Python port of the Java SchemaCompatibility that Confluent's registry uses)."""
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    from avro.schema import parse
    sys.path.insert(0, os.path.join(HERE, "kafka"))
    import avro_compat as standin
    wrong = []
    pairs = 0
    for reader in COMPAT_CASES:
        for writer in COMPAT_CASES:
            pairs += 1
            ours = not standin.incompatibilities(standin.parse_schema(reader),
                                                 standin.parse_schema(writer))
            res = ReaderWriterCompatibilityChecker().get_compatibility(
                parse(json.dumps(reader)), parse(json.dumps(writer)))
            if ours != (res.compatibility == SchemaCompatibilityType.compatible):
                wrong.append((reader, writer, ours))
    expect(not wrong, f"{len(wrong)} of {pairs} pairs judged differently, e.g. "
           f"{json.dumps(wrong[0]) if wrong else ''}")
    return f"{pairs} reader/writer pairs, same verdicts"


def main():
    ap = argparse.ArgumentParser(description="Kafka + schema registry self-check (devstack)")
    ap.add_argument("--no-start", action="store_true",
                    help="use the broker and registry already running (kafka.sh / "
                         "schema-registry.sh env)")
    ap.add_argument("--keep", action="store_true", help="leave them running at the end")
    ap.add_argument("--records", type=int, default=500, help="records to produce (500)")
    args = ap.parse_args()
    ensure_venv()
    import confluent_kafka
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    with warnings.catch_warnings():
        # Authlib (the registry client's OAuth support) warns about httpx when imported; its
        # deprecate module installs an "always" filter for that warning on import, so import
        # it before ours.
        try:
            import authlib.deprecate  # noqa: F401
        except ImportError:
            pass
        warnings.simplefilter("ignore")
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import (MessageField, SerializationContext,
                                               StringDeserializer, StringSerializer)

    c = Checks()
    print(f"kafka_selfcheck: python {sys.version.split()[0]}, confluent-kafka "
          f"{confluent_kafka.version()} (librdkafka {confluent_kafka.libversion()[0]}), "
          f"fastavro {__import__('fastavro').__version__}", flush=True)

    started = []
    if not args.no_start:
        def start(script):
            out = subprocess.run([script, "start"], check=True, capture_output=True,
                                 text=True)
            started.append(script)
            return out.stdout.strip()
        if c.run("start Kafka broker (kafka.sh start)", start, KAFKA_SH) is None:
            return finish(c, started, args)
        if c.run("start schema registry (schema-registry.sh start)", start,
                 REGISTRY_SH) is None:
            return finish(c, started, args)

    kenv = shell_env([KAFKA_SH, "env"])
    renv = shell_env([REGISTRY_SH, "env"])
    bootstrap = kenv["KAFKA_BOOTSTRAP"]
    sr_url = renv["SCHEMA_REGISTRY_URL"]
    run_id = uuid.uuid4().hex[:8]
    topic = f"business.devstack.quote-requested-{run_id}.v1"
    subject = f"{topic}-value"
    print(f"kafka_selfcheck: bootstrap {bootstrap}, registry {sr_url}, topic {topic}",
          flush=True)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    sr = SchemaRegistryClient(sr_conf(sr_url))

    # --- Kafka: admin ----------------------------------------------------------------------
    def cluster_metadata():
        md = admin.list_topics(timeout=10)
        expect(len(md.brokers) == 1, f"brokers: {md.brokers}")
        return f"cluster {md.cluster_id}, broker {list(md.brokers.values())[0]}"

    def create_topic():
        futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                                config={"compression.type": "zstd",
                                                        "retention.ms": "604800000"})],
                                      operation_timeout=10, request_timeout=15)
        futures[topic].result()
        return "3 partitions, zstd"

    def list_topics():
        # A new topic reaches the broker's metadata cache a moment after CreateTopics returns.
        deadline = time.monotonic() + 10
        md = admin.list_topics(timeout=10)
        while topic not in md.topics and time.monotonic() < deadline:
            time.sleep(0.1)
            md = admin.list_topics(timeout=10)
        expect(topic in md.topics, f"{topic} not listed: {sorted(md.topics)}")
        expect(len(md.topics[topic].partitions) == 3, "partition count")
        return f"{len(md.topics)} topics"

    def no_auto_create():
        missing = f"devstack.missing-{run_id}"
        errors = []
        p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 1000})
        p.produce(missing, b"x", on_delivery=lambda err, msg: errors.append(err))
        p.flush(10)
        expect(errors and errors[0] is not None, f"delivery to a missing topic: {errors}")
        md = admin.list_topics(timeout=10)
        expect(missing not in md.topics, "the broker created the topic")
        return f"delivery failed with {errors[0].name()}"

    if c.run("AdminClient: cluster metadata", cluster_metadata) is None:
        return finish(c, started, args)
    c.run("AdminClient: create topic", create_topic)
    c.run("AdminClient: list topics", list_topics)
    c.run("auto topic creation is off", no_auto_create)

    # --- schema registry: SchemaRegistryClient -----------------------------------------------
    conf_subject = f"devstack.selfcheck-{run_id}-value"
    v1 = Schema(json.dumps(QUOTE_V1), "AVRO")
    v2 = Schema(json.dumps(QUOTE_V2), "AVRO")
    bad = Schema(json.dumps(QUOTE_BAD), "AVRO")
    ids = {}

    def sr_register():
        ids["v1"] = sr.register_schema(conf_subject, v1)
        fresh = SchemaRegistryClient(sr_conf(sr_url))
        expect(fresh.register_schema(conf_subject, v1) == ids["v1"], "re-register: new id")
        got = fresh.get_schema(ids["v1"])
        expect(json.loads(got.schema_str) == QUOTE_V1, "GET /schemas/ids: schema differs")
        return f"id {ids['v1']}"

    def sr_lookup():
        reg = SchemaRegistryClient(sr_conf(sr_url)).lookup_schema(conf_subject, v1)
        expect(reg.schema_id == ids["v1"] and reg.version == 1, f"lookup: {reg}")
        latest = SchemaRegistryClient(sr_conf(sr_url)).get_latest_version(conf_subject)
        expect(latest.version == 1 and latest.schema_id == ids["v1"], f"latest: {latest}")
        expect(sr.get_version(conf_subject, 1).schema_id == ids["v1"], "version 1")
        expect(conf_subject in sr.get_subjects(), "GET /subjects")
        expect(sr.get_versions(conf_subject) == [1], "GET versions")
        return "lookup, latest, version 1, subjects, versions"

    def sr_compat():
        expect(sr.get_compatibility() == "BACKWARD", "global level")
        expect(sr.test_compatibility(conf_subject, v2) is True, "v2 should be compatible")
        expect(sr.test_compatibility(conf_subject, bad) is False, "bad should not be")
        return "BACKWARD: optional field ok, required field refused"

    def sr_register_v2():
        ids["v2"] = sr.register_schema(conf_subject, v2)
        expect(ids["v2"] != ids["v1"], "v2 got v1's id")
        expect(sr.get_latest_version(conf_subject).version == 2, "latest is not 2")
        return f"id {ids['v2']}, version 2"

    def sr_config():
        expect(sr.set_compatibility(conf_subject, "FULL")["compatibility"] == "FULL", "PUT")
        expect(sr.get_compatibility(conf_subject) == "FULL", "GET /config/{subject}")
        sr.set_compatibility(conf_subject, "BACKWARD")
        return "PUT/GET /config/{subject}"

    def sr_delete():
        sub = f"devstack.delete-{run_id}-value"
        sr.register_schema(sub, v1)
        expect(sr.delete_subject(sub) == [1], "soft delete")
        expect(sub not in sr.get_subjects(), "soft-deleted subject still listed")
        expect(sr.delete_subject(sub, permanent=True) == [1], "hard delete")
        return "soft, then permanent"

    c.run("SchemaRegistryClient: register, get by id", sr_register)
    c.run("SchemaRegistryClient: lookup / versions / subjects", sr_lookup)
    c.run("SchemaRegistryClient: compatibility", sr_compat)
    c.run("SchemaRegistryClient: register incompatible -> 409", expect_sr_error,
          lambda: sr.register_schema(conf_subject, bad), 409, 409)
    c.run("SchemaRegistryClient: register compatible v2", sr_register_v2)
    c.run("SchemaRegistryClient: unknown id -> 40403", expect_sr_error,
          lambda: SchemaRegistryClient(sr_conf(sr_url)).get_schema(987654), 404, 40403)
    c.run("SchemaRegistryClient: unknown version -> 40402", expect_sr_error,
          lambda: sr.get_version(conf_subject, 99), 404, 40402)
    c.run("SchemaRegistryClient: invalid schema -> 42201", expect_sr_error,
          lambda: sr.register_schema(conf_subject, Schema('{"type":"record"}', "AVRO")),
          422, 42201)
    c.run("stand-in compatibility rules == Apache Avro's checker", compat_rules_match_avro)
    c.run("SchemaRegistryClient: subject config", sr_config)
    c.run("SchemaRegistryClient: delete subject", sr_delete)

    # --- Avro over Kafka with the official serializer/deserializer ---------------------------
    n = args.records
    sent = {f"k-{i:05d}": record(i) for i in range(n)}
    state = {}

    def produce():
        ser = AvroSerializer(sr, json.dumps(QUOTE_V1))
        keyser = StringSerializer("utf_8")
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 5,
                      "compression.type": "zstd"})
        delivered, errors = [], []

        def on_delivery(err, msg):
            (errors if err else delivered).append(err or msg)

        t0 = time.monotonic()
        for i, (k, v) in enumerate(sent.items()):
            ctx = SerializationContext(topic, MessageField.VALUE)
            p.produce(topic, key=keyser(k), value=ser(v, ctx), on_delivery=on_delivery,
                      headers=[("traceparent", f"00-{uuid.uuid4().hex}-{i:016x}-01".encode())])
            p.poll(0)
        left = p.flush(30)
        secs = time.monotonic() - t0
        expect(left == 0 and not errors and len(delivered) == n,
               f"left {left}, errors {errors[:3]}, delivered {len(delivered)}")
        state["produce_s"] = secs
        return f"{n} records in {secs * 1000:.0f} ms ({n / secs:.0f}/s), all acked"

    def subject_registered():
        latest = sr.get_latest_version(subject)
        state["schema_id"] = latest.schema_id
        expect(json.loads(latest.schema.schema_str) == QUOTE_V1, "registered schema differs")
        return f"subject {subject} -> id {latest.schema_id}"

    def consume():
        de = AvroDeserializer(SchemaRegistryClient(sr_conf(sr_url)))
        keyde = StringDeserializer("utf_8")
        cons = Consumer({"bootstrap.servers": bootstrap, "group.id": f"devstack-{run_id}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "enable.partition.eof": False})
        cons.subscribe([topic])
        got, bad_wire = {}, []
        t0 = time.monotonic()
        deadline = t0 + 60
        try:
            while len(got) < n and time.monotonic() < deadline:
                msg = cons.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                raw = msg.value()
                if raw[0] != 0 or int.from_bytes(raw[1:5], "big") != state.get("schema_id"):
                    bad_wire.append(raw[:5].hex())
                hdrs = dict(msg.headers() or [])
                expect(hdrs.get("traceparent", b"").startswith(b"00-"), "traceparent lost")
                key = keyde(msg.key(), SerializationContext(topic, MessageField.KEY))
                got[key] = de(raw, SerializationContext(topic, MessageField.VALUE))
            secs = time.monotonic() - t0
            expect(len(got) == n, f"received {len(got)} of {n} in 60 s")
            expect(not bad_wire, f"wire format: {bad_wire[:3]}")
            diff = [k for k in sent if got.get(k) != sent[k]]
            expect(not diff, f"{len(diff)} records differ, e.g. {diff[:1]}: "
                   f"{got.get(diff[0]) if diff else ''} != {sent[diff[0]] if diff else ''}")
            cons.commit(asynchronous=False)
            parts = cons.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
            committed = sum(tp.offset for tp in parts if tp.offset >= 0)
            expect(committed == n, f"committed offsets add up to {committed}, not {n}")
        finally:
            cons.close()
        state["consume_s"] = secs
        return (f"{n} records back in {secs * 1000:.0f} ms (incl. group join), equal; "
                f"wire format 0x00 + id {state.get('schema_id')}; offsets committed")

    if c.run("Producer + AvroSerializer (acks=all, idempotent)", produce) is not None:
        c.run("serializer registered <topic>-value (TopicNameStrategy)", subject_registered)
        c.run("Consumer + AvroDeserializer (manual commit)", consume)

        kcat = shutil.which("kcat")
        if kcat:
            def kcat_reads():
                ver = subprocess.run([kcat, "-V"], capture_output=True, text=True).stdout
                lib = re.search(r"librdkafka ([0-9][0-9.]*)", ver)
                lib = lib.group(1) if lib else "?"
                out = subprocess.run([kcat, "-b", bootstrap, "-C", "-t", topic, "-o",
                                      "beginning", "-e", "-q", "-f", "%k\n"],
                                     capture_output=True, text=True, timeout=60)
                keys = [k for k in out.stdout.splitlines() if k]
                expect(out.returncode == 0, out.stderr.strip())
                expect(sorted(keys) == sorted(sent), f"kcat read {len(keys)} keys")
                return f"{len(keys)} records, librdkafka {lib}"
            c.run("kcat (Debian librdkafka) reads the topic", kcat_reads)
        else:
            print("skip kcat (Debian librdkafka) reads the topic: kcat not installed")

    # --- the npm client against the registry -------------------------------------------------
    node = shutil.which("node")
    check_js = os.path.join(HERE, "kafka", "registry_check.js")
    if node and os.path.isdir(os.path.join(HERE, "kafka", "node_modules",
                                           "@kafkajs", "confluent-schema-registry")):
        def kafkajs_registry():
            out = subprocess.run([node, check_js, sr_url], capture_output=True, text=True,
                                 timeout=120)
            lines = out.stdout.strip().splitlines()
            for ln in lines:
                if ln.startswith("FAIL"):
                    print(f"     {ln}")
            expect(out.returncode == 0, lines[-1] if lines else out.stderr.strip())
            return lines[-1]
        c.run("@kafkajs/confluent-schema-registry (registry_check.js)", kafkajs_registry)
    else:
        print("skip @kafkajs/confluent-schema-registry: node or devstack/kafka/node_modules "
              "missing (devstack/kafka.sh install)")

    def delete_topic():
        admin.delete_topics([topic], operation_timeout=10)[topic].result()
        return topic
    c.run("AdminClient: delete topic", delete_topic)
    admin = sr = None  # close the client handles before the broker stops (no reconnect noise)
    return finish(c, started, args)


def finish(c, started, args):
    if not args.keep:
        for script in reversed(started):
            subprocess.run([script, "stop"], check=False)
    print(f"kafka_selfcheck: {c.passed} passed, {c.failed} failed", flush=True)
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
