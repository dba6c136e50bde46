#!/usr/bin/env python3
"""Writes charts/skiff/values.schema.json and charts/agent/values.schema.json.

The agent chart's `skiff` property is the skiff library's schema, so both stay the same;
tests/delivery.sh runs this with --check and fails when a committed file differs.
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
DRAFT = "http://json-schema.org/draft-07/schema#"


def obj(props, required=(), extra=False, **kw):
    out = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    out.update(kw)
    return out


STR = {"type": "string"}
NONEMPTY = {"type": "string", "minLength": 1}
BOOL = {"type": "boolean"}
ANYOBJ = {"type": "object"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
QUANTITY = {"type": ["string", "integer", "number"]}
RESOURCES = obj({"requests": {"type": "object", "additionalProperties": QUANTITY},
                 "limits": {"type": "object", "additionalProperties": QUANTITY}})
ENV = {"type": "array", "items": obj({"name": NONEMPTY, "value": STR, "valueFrom": ANYOBJ},
                                     required=["name"])}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
IMAGE = obj({"repository": NONEMPTY, "tag": NONEMPTY,
             "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}})
PATH = {"type": "string", "pattern": "^/"}


def probe():
    pos = {"type": "integer", "minimum": 1}
    return obj({"periodSeconds": pos, "failureThreshold": pos, "timeoutSeconds": pos})


# A skiff setting as an annotation value: a key of docs/configuration.md without the prefix.
SETTING_KEY = "^[a-z_]+\\.[A-Za-z0-9_.\\-]+$"
SETTING_VALUE = {"type": ["string", "integer", "boolean", "array"],
                 "items": {"type": "string"}}

SKIFF = obj({
    "image": IMAGE,
    "nativeSidecar": BOOL,
    "config": {"type": "object", "propertyNames": {"pattern": SETTING_KEY},
               "additionalProperties": SETTING_VALUE},
    "env": ENV,
    "shutdownGracePeriodSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
    "terminationMarginSeconds": {"type": "integer", "minimum": 1},
    "adminPort": PORT,
    "socketDir": {"type": "string", "pattern": "^/", "maxLength": 90},
    "socketVolumeSizeLimit": QUANTITY,
    "podInfoDir": PATH,
    "resources": RESOURCES,
    "probes": obj({"startup": probe(), "liveness": probe(), "readiness": probe()}),
    "securityContext": ANYOBJ,
    "metrics": obj({
        "scrapeAnnotations": BOOL,
        "podMonitor": obj({"enabled": BOOL, "interval": NONEMPTY, "labels": STRMAP}),
    }),
    "global": ANYOBJ,
})

AGENT = obj({
    "replicaCount": {"type": "integer", "minimum": 0},
    "image": IMAGE,
    "imagePullSecrets": {"type": "array", "items": NONEMPTY},
    "nameOverride": STR,
    "fullnameOverride": STR,
    "command": {"type": "array", "items": STR},
    "args": {"type": "array", "items": STR},
    "env": ENV,
    "resources": RESOURCES,
    "livenessProbe": ANYOBJ,
    "readinessProbe": ANYOBJ,
    "podAnnotations": STRMAP,
    "podLabels": STRMAP,
    "podSecurityContext": ANYOBJ,
    "securityContext": ANYOBJ,
    "serviceAccount": obj({"create": BOOL, "name": STR, "annotations": STRMAP}),
    "hpa": obj({"enabled": BOOL, "minReplicas": {"type": "integer", "minimum": 1},
                "maxReplicas": {"type": "integer", "minimum": 1},
                "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1,
                                                   "maximum": 100}}),
    "pdb": obj({"enabled": BOOL, "minAvailable": {"type": ["integer", "string"]}}),
    "prometheusRule": obj({"enabled": BOOL,
                           "consumerLagThreshold": {"type": "integer", "minimum": 0},
                           "consumerLagFor": NONEMPTY, "labels": STRMAP}),
    "grafanaDashboards": obj({"enabled": BOOL, "namespace": STR, "labels": STRMAP,
                              "annotations": STRMAP}),
    "networkPolicy": obj({"enabled": BOOL, "metricsFrom": {"type": "array"},
                          "egressPorts": {"type": "array", "items": obj(
                              {"port": PORT, "protocol": {"enum": ["TCP", "UDP", "SCTP"]}},
                              required=["port"])}}),
    "nodeSelector": STRMAP,
    "tolerations": {"type": "array"},
    "affinity": ANYOBJ,
    "skiff": SKIFF,
    "global": ANYOBJ,
}, required=["image"])


def render(schema, title):
    return json.dumps({"$schema": DRAFT, "title": title, **schema}, indent=2) + "\n"


def main():
    files = {HERE / "skiff" / "values.schema.json": render(SKIFF, "skiff library chart values"),
             HERE / "agent" / "values.schema.json": render(AGENT, "agent chart values")}
    stale = []
    for path, text in files.items():
        if "--check" in sys.argv:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        sys.exit("stale, regenerate with charts/tests/gen_schemas.py: " + ", ".join(stale))


if __name__ == "__main__":
    main()
