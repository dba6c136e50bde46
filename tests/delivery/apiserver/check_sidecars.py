#!/usr/bin/env python3
"""After `kubectl apply --dry-run=server -o json`: every object came back from the API server,
and every native sidecar (init container with restartPolicy: Always) is still one in the
server's answer: a server without native sidecars drops the field, which would leave a pod
that never starts.

  check_sidecars.py SENT.yaml APPLIED.json
"""
import json
import sys

import yaml


def sidecars(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return sorted(c["name"] for c in spec.get("initContainers", [])
                  if c.get("restartPolicy") == "Always")


def main(sent_path, applied_path):
    with open(sent_path) as f:
        sent = [d for d in yaml.safe_load_all(f) if d]
    with open(applied_path) as f:
        applied = json.load(f)
    got = applied["items"] if applied.get("kind") == "List" else [applied]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    back = {key(o): o for o in got}
    missing = [key(o) for o in sent if key(o) not in back]
    dropped = [key(o) for o in sent if key(o) in back and sidecars(o) != sidecars(back[key(o)])]
    if missing or dropped:
        sys.exit(f"apiserver: {sent_path}: not returned {missing}, native sidecar dropped {dropped}")
    n = sum(len(sidecars(o)) for o in sent)
    print(f"apiserver: {len(sent)} objects of {sent_path.rsplit('/', 1)[-1]} accepted by the "
          f"API server (server-side dry run), {n} native sidecar(s) kept")


if __name__ == "__main__":
    main(*sys.argv[1:])
