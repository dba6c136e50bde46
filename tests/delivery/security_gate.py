#!/usr/bin/env python3
"""Fails when a GitLab security report (container scanning, dependency scanning: the JSON
reports of GitLab's analyzers, `vulnerabilities[].severity`) has a Critical finding; prints
every Critical and High one. The security-scan stage's `security-gate` job runs it on the
scanners' artifacts, so critical findings fail the pipeline.

  security_gate.py REPORT.json...
"""
import json
import sys

FAIL = {"Critical"}
SHOW = {"Critical", "High"}


def findings(path):
    with open(path) as f:
        report = json.load(f)
    for v in report.get("vulnerabilities", []):
        yield v.get("severity", "Unknown"), v


def describe(v):
    loc = v.get("location", {})
    where = loc.get("image") or loc.get("file") or "?"
    pkg = loc.get("dependency", {}).get("package", {}).get("name", "?")
    ids = ",".join(i.get("value", "") for i in v.get("identifiers", [])[:2])
    return f"{ids} in {pkg} ({where}): {v.get('name') or v.get('message') or ''}".strip()


def main(paths):
    critical = 0
    for path in paths:
        for severity, v in findings(path):
            if severity in SHOW:
                print(f"{path}: {severity}: {describe(v)}")
            critical += severity in FAIL
    print(f"security gate: {len(paths)} report(s), {critical} critical finding(s)")
    return 1 if critical else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
