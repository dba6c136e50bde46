"""Template tests of charts/agent (and through it the charts/skiff library) over `helm template`.

Asserts the sidecar, probes, security context, annotations and volumes of every example values
file, and runs the real skiff binary on what a pod would see: the downward API annotations file
written the way the kubelet writes it, and the skiff container's environment.

  HELM=... SKIFF_BIN=build/skiff python3 -m pytest charts/tests
"""
import json
import os
import pathlib
import subprocess

import pytest
import yaml

CHARTS = pathlib.Path(__file__).resolve().parent.parent
AGENT = CHARTS / "agent"
EXAMPLES = sorted((AGENT / "examples").glob("*.yaml"))
HELM = os.environ.get("HELM", "helm")
SKIFF_BIN = os.environ.get("SKIFF_BIN")


def render(*args, values=None, ok=True):
    cmd = [HELM, "template", "rel", str(AGENT), "--namespace", "underwriting", *args]
    if values:
        cmd += ["-f", str(values)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if not ok:
        assert r.returncode != 0, r.stdout
        return r.stderr
    assert r.returncode == 0, r.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(r.stdout) if d}


def pod(docs):
    return docs[("Deployment", "rel-agent")]["spec"]["template"]


def skiff_container(spec):
    native = [c for c in spec.get("initContainers", []) if c["name"] == "skiff"]
    plain = [c for c in spec["containers"] if c["name"] == "skiff"]
    assert len(native) + len(plain) == 1
    return (native or plain)[0]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.stem)
def example(request):
    return request.param, render(values=request.param)


def test_native_sidecar_by_default():
    spec = pod(render(values=AGENT / "examples" / "seed-values.yaml"))["spec"]
    skiff = spec["initContainers"][0]
    assert skiff["name"] == "skiff" and skiff["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["handler"]


def test_native_sidecar_refused_before_1_29():
    err = render("--kube-version", "1.28.9", ok=False)
    assert "skiff.nativeSidecar needs Kubernetes 1.29 or later" in err
    spec = pod(render("--kube-version", "1.28.9", "--set", "skiff.nativeSidecar=false"))["spec"]
    assert [c["name"] for c in spec["containers"]] == ["handler", "skiff"]
    assert pod(render("--kube-version", "1.29.0"))["spec"]["initContainers"][0]["name"] == "skiff"


def test_legacy_switch_makes_a_plain_container():
    spec = pod(render("--set", "skiff.nativeSidecar=false"))["spec"]
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["handler", "skiff"]
    assert "restartPolicy" not in spec["containers"][1]


def test_probes_on_the_admin_endpoints(example):
    skiff = skiff_container(pod(example[1])["spec"])
    port = skiff["ports"][0]
    assert port == {"name": "skiff-admin", "containerPort": 9464, "protocol": "TCP"}
    paths = {k: skiff[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    # startup on /healthz: a native sidecar must start before the handler that makes it ready.
    assert paths == {"startupProbe": {"path": "/healthz", "port": "skiff-admin"},
                     "livenessProbe": {"path": "/healthz", "port": "skiff-admin"},
                     "readinessProbe": {"path": "/readyz", "port": "skiff-admin"}}
    assert env_of(skiff)["SKIFF_ADMIN_ADDRESS"] == "0.0.0.0:9464"


def test_hardened_security_context(example):
    spec = pod(example[1])["spec"]
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
    assert skiff_container(spec)["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["fsGroup"] == 65532


def test_socket_and_podinfo_volumes(example):
    spec = pod(example[1])["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in vols["skiff-socket"]
    assert vols["skiff-podinfo"]["downwardAPI"]["items"] == [
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]
    skiff = skiff_container(spec)
    mounts = {m["name"]: m["mountPath"] for m in skiff["volumeMounts"]}
    env = env_of(skiff)
    assert env["SKIFF_ANNOTATIONS"] == mounts["skiff-podinfo"] + "/annotations"
    assert env["SKIFF_HANDLER_SOCKET"] == mounts["skiff-socket"] + "/handler.sock"
    handler = next(c for c in spec["containers"] if c["name"] == "handler")
    hmounts = {m["name"]: m["mountPath"] for m in handler["volumeMounts"]}
    assert hmounts["skiff-socket"] == mounts["skiff-socket"]
    assert env_of(handler)["SKIFF_SOCKET"] == env["SKIFF_HANDLER_SOCKET"]


def test_termination_grace_above_skiffs(example):
    spec = pod(example[1])["spec"]
    grace = env_of(skiff_container(spec))["SKIFF_SHUTDOWN_GRACE_PERIOD"]
    assert grace.endswith("s")
    # skiff waits up to 10 s past its grace period for the gateway's acknowledgements.
    assert spec["terminationGracePeriodSeconds"] > int(grace[:-1]) + 10


def test_seed_values_install_as_written():
    values = yaml.safe_load((AGENT / "examples" / "seed-values.yaml").read_text())
    docs = render(values=AGENT / "examples" / "seed-values.yaml")
    tpl = pod(docs)
    handler = tpl["spec"]["containers"][0]
    assert handler["image"] == "{repository}:{tag}".format(**values["image"])
    assert handler["resources"] == values["resources"]
    for e in values["env"]:
        assert e in handler["env"]
        assert e in skiff_container(tpl["spec"])["env"]  # skiff reads all five names
    for k, v in values["podAnnotations"].items():
        assert tpl["metadata"]["annotations"][k] == v
    assert ("HorizontalPodAutoscaler", "rel-agent") in docs
    assert "replicas" not in docs[("Deployment", "rel-agent")]["spec"]  # the HPA owns it
    sa = docs[("ServiceAccount", "rel-agent")]
    assert tpl["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    pdb = docs[("PodDisruptionBudget", "rel-agent")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()


def test_annotations_markers_scrape_and_config():
    full = AGENT / "examples" / "full-values.yaml"
    tpl = pod(render(values=full))
    ann = tpl["metadata"]["annotations"]
    library = yaml.safe_load((CHARTS / "skiff" / "Chart.yaml").read_text())
    assert ann["skiff.io/inject"] == "true"
    assert ann["skiff.io/chart"] == "skiff-" + library["version"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9464"
    assert ann["skiff.io/zeebe.job_types"] == "policy.notify,policy.remind"
    assert ann["skiff.io/zeebe.streaming"] == "true"
    assert ann["skiff.io/zeebe.jobs.policy.remind.max_jobs_active"] == "4"
    env = env_of(skiff_container(tpl["spec"]))
    assert "OTEL_SERVICE_NAME" in env and "APP_ONLY_SETTING" not in env
    legacy = pod(render(values=AGENT / "examples" / "legacy-sidecar-values.yaml"))
    assert not any(k.startswith("prometheus.io/") for k in legacy["metadata"]["annotations"])


def test_optional_resources():
    docs = render(values=AGENT / "examples" / "full-values.yaml")
    pm = docs[("PodMonitor", "rel-agent")]["spec"]
    assert pm["podMetricsEndpoints"] == [
        {"port": "skiff-admin", "path": "/metrics", "interval": "30s"}]
    np = docs[("NetworkPolicy", "rel-agent")]["spec"]
    assert np["ingress"][0]["ports"] == [{"port": "skiff-admin", "protocol": "TCP"}]
    rules = docs[("PrometheusRule", "rel-agent")]["spec"]["groups"][0]["rules"]
    lag = next(r for r in rules if r["alert"] == "SkiffKafkaConsumerLagHigh")
    assert lag["expr"].endswith("> 1000") and lag["for"] == "5m"
    assert 'namespace="underwriting"' in lag["expr"]
    # One source: the rules are alerts/skiff-rules.yaml's, every selector scoped to the release.
    plain = yaml.safe_load((AGENT / "alerts" / "skiff-rules.yaml").read_text())
    plain_rules = plain["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [r["alert"] for r in plain_rules]
    for r, p in zip(rules, plain_rules):
        assert r["expr"] == p["expr"].replace(
            'namespace=~".+"', 'namespace="underwriting", pod=~"rel-agent-.*"'), r["alert"]
        assert r["labels"] == p["labels"] and r["for"] == p["for"], r["alert"]
    cm = docs[("ConfigMap", "rel-agent-dashboards")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "skiff"}
    shipped = {p.name: json.loads(p.read_text()) for p in (AGENT / "dashboards").glob("*.json")}
    assert len(shipped) == 4 and {k: json.loads(v) for k, v in cm["data"].items()} == shipped
    seed = render(values=AGENT / "examples" / "seed-values.yaml")
    assert not {k for k, _ in seed} & {"PodMonitor", "PrometheusRule", "NetworkPolicy",
                                       "ConfigMap"}


@pytest.mark.parametrize("key", ["admin.address", "handler.socket", "shutdown.grace_period"])
def test_settings_owned_by_the_chart_are_refused(key):
    err = render("--set-string", f"skiff.config.{key.replace('.', chr(92) + '.')}=x", ok=False)
    assert f"skiff.config.{key} is set by the chart" in err


def test_schema_refuses_prefixed_and_unknown_values():
    err = render("--set-string", "skiff.config.skiff\\.io/zeebe\\.job_types=a", ok=False)
    assert "does not match" in err
    err = render("--set", "skiff.nativeSidecr=true", ok=False)
    assert "nativeSidecr" in err


def go_quote(s):
    """Go's %q (strconv.Quote) for the annotation values the kubelet writes."""
    table = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return '"' + "".join(table.get(ch, ch if ch.isprintable() else f"\\x{ord(ch):02x}")
                         for ch in s) + '"'


def kubelet_annotations_file(annotations):
    """The downward API file: sorted keys, key=%q lines, no final newline (fieldpath.FormatMap)."""
    return "\n".join(f"{k}={go_quote(v)}" for k, v in sorted(annotations.items()))


def skiff_config_check(tpl, tmp_path, extra_annotations=None):
    ann = {**tpl["metadata"]["annotations"], **(extra_annotations or {}),
           "kubernetes.io/config.seen": "2026-12-04T10:00:00.123456789Z"}
    path = tmp_path / "annotations"
    path.write_text(kubelet_annotations_file(ann))
    env = {"PATH": os.environ["PATH"]}
    for k, v in env_of(skiff_container(tpl["spec"])).items():
        env[k] = v if isinstance(v, str) else "rel-agent-5d9c7-x2x7q"  # fieldRef metadata.name
    env["SKIFF_ANNOTATIONS"] = str(path)
    return subprocess.run([SKIFF_BIN, "config", "check"], env=env, capture_output=True, text=True)


@pytest.mark.skipif(not SKIFF_BIN, reason="SKIFF_BIN not set")
def test_skiff_accepts_what_the_chart_gives_it(example, tmp_path):
    r = skiff_config_check(pod(example[1]), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not SKIFF_BIN, reason="SKIFF_BIN not set")
def test_skiff_refuses_a_mistyped_annotation(tmp_path):
    tpl = pod(render(values=AGENT / "examples" / "seed-values.yaml"))
    r = skiff_config_check(tpl, tmp_path, {"skiff.io/zeebe.max_job_active": "3"})
    assert r.returncode != 0
    assert "skiff.io/zeebe.max_job_active: unknown key" in r.stdout + r.stderr
