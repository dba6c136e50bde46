"""The Kafka step of the skiff demo (used by devstack/demo.py).

The issue-policy worker (examples/node/policy_issuer.mjs) produces one Avro event per issued
policy on business.policy.issued.v1 through skiff; the policy notifier
(examples/python/policy_notifier.py) consumes them through the same skiff. This module starts
the broker and the schema registry (devstack/kafka.sh, devstack/schema-registry.sh) unless they
run, creates the topics, registers the schema, and checks and reports what happened.
"""
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from devstack_env import shell_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KAFKA_SH = HERE / "kafka.sh"
REGISTRY_SH = HERE / "schema-registry.sh"
TOPIC = "business.policy.issued.v1"
GROUP = "skiff-demo"  # skiff's consumer group (kafka.group_id)
PARTITIONS = 3
SCHEMA_FILE = ROOT / "schemas" / f"{TOPIC}.avsc"
NOTIFIER = ["examples/python/policy_notifier.py"]
METRICS_SHOWN = ("skiff_kafka_produced_total", "skiff_kafka_records_received_total",
                 "skiff_kafka_records_processed_total", "skiff_kafka_redeliveries_total",
                 "skiff_kafka_dead_letters_total", "skiff_kafka_consumer_lag",
                 "skiff_kafka_produce_seconds_count", "skiff_kafka_produce_seconds_sum")


def registry(url, path, body=None, tls=None):
    """A Schema Registry request (over HTTPS with the client certificate of tls, a dict of
    ca, cert and key paths, when given); returns the decoded JSON answer."""
    req = urllib.request.Request(
        url + path, method="POST" if body is not None else "GET",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=str(tls["ca"]))
        ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"demo: schema registry {req.method} {path}: HTTP {e.code} "
                         f"{e.read().decode(errors='replace')}") from None


def iso_ms(text):
    """Epoch ms of an RFC 3339 timestamp as skiff writes them ("...T03:04:05.123Z")."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def metric(text, name, **labels):
    """Sum of the samples of a metric whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + "{", name + " ")) and all(w in line for w in want))


class KafkaStep:
    def __init__(self, run_dir, say, tls=None):
        """tls: None (plaintext) or the ca, cert and key paths of skiff's client certificate,
        for the broker's SSL listener and the registry over HTTPS."""
        self.say = say
        self.tls = tls
        self.started = []
        self.outbox = Path(run_dir) / "notifications.jsonl"
        self.bootstrap = self.registry_url = ""

    def start(self):
        """Broker and registry (started here unless running), topics, schema."""
        for script in (KAFKA_SH, REGISTRY_SH):
            if subprocess.run([str(script), "status"], capture_output=True).returncode != 0:
                subprocess.run([str(script), "start"], check=True)
                self.started.append(script)
        kenv = shell_env([str(KAFKA_SH), "env"])
        self.bootstrap = kenv["SKIFF_KAFKA_SSL_BOOTSTRAP" if self.tls else "KAFKA_BOOTSTRAP"]
        self.registry_url = shell_env([str(REGISTRY_SH), "env"])["SCHEMA_REGISTRY_URL"]
        # Topics are never created automatically (as in production); both at once.
        topics = {TOPIC: PARTITIONS, TOPIC + ".dlq": 1}
        procs = {t: subprocess.Popen([str(KAFKA_SH), "tool", "topics", "--create",
                                      "--if-not-exists", "--topic", t, "--partitions", str(n),
                                      "--replication-factor", "1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for t, n in topics.items()}
        done = []
        for t, p in procs.items():
            out = p.communicate(timeout=120)[0]
            if p.returncode != 0:
                raise SystemExit(f"demo: could not create topic {t}:\n{out}")
            created = "Created topic" in out
            parts = f"{topics[t]} partition{'s' if topics[t] > 1 else ''}"
            done.append(f"{t} ({f'created, {parts}' if created else 'exists'})")
        schema = json.dumps(json.loads(SCHEMA_FILE.read_text()), separators=(",", ":"))
        subject = f"{TOPIC}-value"
        sid = registry(self.registry_url, f"/subjects/{subject}/versions",
                       {"schema": schema}, self.tls)["id"]
        latest = registry(self.registry_url, f"/subjects/{subject}/versions/latest",
                          tls=self.tls)
        self.say(f"kafka on {self.bootstrap}, topics {', '.join(done)}")
        self.say(f"schema registry on {self.registry_url}: {SCHEMA_FILE.relative_to(ROOT)} is "
                 f"{subject} (id {sid}, version {latest['version']})")
        if latest["id"] != sid:
            self.say(f"  note: {subject} has a newer version (id {latest['id']}); skiff "
                     "produces with the latest")

    def skiff_args(self):
        args = [f"--kafka.brokers={self.bootstrap}", f"--schema_registry.url={self.registry_url}",
                f"--kafka.topics={TOPIC}", f"--kafka.group_id={GROUP}"]
        if self.tls:
            t = self.tls
            args += ["--kafka.security.protocol=ssl", f"--kafka.ssl.ca.location={t['ca']}",
                     f"--kafka.ssl.certificate.location={t['cert']}",
                     f"--kafka.ssl.key.location={t['key']}", f"--schema_registry.ca_file={t['ca']}",
                     f"--schema_registry.cert_file={t['cert']}",
                     f"--schema_registry.key_file={t['key']}"]
        return args

    def handler_env(self):
        return {"POLICY_NOTIFIER_OUTBOX": str(self.outbox)}

    def notified(self, keys, since_ms):
        """policyId -> outbox entry, for the events of this run's instances (issued since
        since_ms: a Zeebe broker started afresh hands out the same keys again)."""
        out = {}
        if not self.outbox.exists():
            return out
        for line in self.outbox.read_text().splitlines():
            try:
                n = json.loads(line)
                ev = n["event"]
                if int(ev["processInstanceKey"]) in keys and iso_ms(ev["issuedAt"]) >= since_ms:
                    out[n["policyId"]] = n
            except (ValueError, KeyError, TypeError):
                continue  # a line being written
        return out

    def group_offsets(self):
        """partition -> (committed offset, end offset, lag) of the topic for skiff's consumer
        group, as Kafka's own kafka-consumer-groups tool sees them ("-": none yet)."""
        out = subprocess.run([str(KAFKA_SH), "tool", "consumer-groups", "--describe", "--group",
                              GROUP], capture_output=True, text=True, timeout=60).stdout
        rows = {}
        for w in (line.split() for line in out.splitlines()):
            if len(w) >= 6 and w[0] == GROUP and w[1] == TOPIC and w[2].isdigit():
                rows[int(w[2])] = tuple(w[3:6])
        return rows

    def report(self, outcomes, since_ms, http_metrics, wait):
        """Waits until the notifier has the event of every issued policy and skiff has
        committed past them; checks and reports."""
        keys = set(outcomes)
        issued = {f"POL-{k}" for k, o in outcomes.items() if o == "policy-issued"}
        t0 = time.monotonic()
        wait(lambda: set(self.notified(keys, since_ms)) >= issued, 60,
             "the policy notifier to consume every policy-issued event")
        got = self.notified(keys, since_ms)
        consumed_s = time.monotonic() - t0
        deadline = time.monotonic() + 30  # skiff commits every kafka.commit_interval (1 s)
        while True:
            offsets = self.group_offsets()
            if offsets and all(lag == "0" for _, _, lag in offsets.values()):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: consumer group {GROUP} has not committed to the end "
                                 f"of {TOPIC}: {offsets}")
            time.sleep(0.5)
        # skiff's lag gauge comes from librdkafka's statistics, every 5 s: let one pass.
        time.sleep(5.2)
        m = http_metrics()
        produced = metric(m, "skiff_kafka_produced_total", topic=TOPIC, result="ok")
        acked = metric(m, "skiff_kafka_records_processed_total", topic=TOPIC, outcome="acked")
        n_prod = metric(m, "skiff_kafka_produce_seconds_count")
        mean_ms = metric(m, "skiff_kafka_produce_seconds_sum") / n_prod * 1000 if n_prod else 0
        self.say(f"\nKafka: {len(issued)} policies issued; the Node worker produced "
                 f"{produced:.0f} {TOPIC} events through skiff (acks=all, mean "
                 f"{mean_ms:.1f} ms to the broker's confirmation); skiff handed "
                 f"{acked:.0f} to the Python notifier, which acked them")
        when = ("by the time" if consumed_s < 0.1 else f"{consumed_s:.1f}s after")
        self.say(f"  events consumed for this run's policies: {len(got)} == policies issued "
                 f"{len(issued)} (all in {when} the last instance ended)")
        self.say(f"  consumer group {GROUP} (kafka-consumer-groups): committed to the end, " +
                 ", ".join(f"partition {p} at {c}/{e}" for p, (c, e, _) in
                           sorted(offsets.items())))
        if got:
            n = got[sorted(got)[0]]
            k = n["kafka"]
            self.say(f"  one event as the notifier got it (partition {k['partition']}, offset "
                     f"{k['offset']}, key {k['key']}, schema id {k['schemaId']}, attempt "
                     f"{n['attempt']}):\n    {json.dumps(n['event'])}")
        self.say("  skiff's Kafka metrics:")
        for line in m.splitlines():
            if line.startswith(METRICS_SHOWN) and (TOPIC in line or "{" not in line):
                self.say("    " + line)
        if set(got) != issued or produced < len(issued):
            raise SystemExit(f"demo: Kafka check failed: {len(issued)} issued, {produced:.0f} "
                             f"produced, {len(got)} consumed")

    def stop(self):
        """Stops what start() started (the broker and registry of others stay)."""
        for script in reversed(self.started):
            subprocess.run([str(script), "stop"], check=False)
            self.say(f"  {script.stem} stopped")
