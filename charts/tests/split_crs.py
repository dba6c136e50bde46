#!/usr/bin/env python3
"""Splits a `helm template` output: Kubernetes API objects to OUT_K8S (for kubernetes-validate),
and the rule groups of its PrometheusRule objects to OUT_RULES as a Prometheus rules file (for
promtool). A PodMonitor is checked by the template tests (charts/tests/test_charts.py).

  split_crs.py RENDERED OUT_K8S OUT_RULES
"""
import sys

import yaml

OPERATOR = "monitoring.coreos.com/"


def main(rendered, out_k8s, out_rules):
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    core = [d for d in docs if not d["apiVersion"].startswith(OPERATOR)]
    groups = [g for d in docs if d["kind"] == "PrometheusRule" for g in d["spec"]["groups"]]
    with open(out_k8s, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    with open(out_rules, "w") as f:
        if groups:
            yaml.safe_dump({"groups": groups}, f, sort_keys=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
