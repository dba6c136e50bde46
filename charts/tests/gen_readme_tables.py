#!/usr/bin/env python3
"""Writes the values table of charts/<chart>/README.md from the chart's values.yaml: each value
with its `# -- description` comment (as helm-docs does), between the markers
<!-- values:begin --> and <!-- values:end -->. --check fails when a README is stale.
"""
import json
import pathlib
import re
import sys

import yaml

CHARTS = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"


def described(values_text):
    """[(dotted key, description)] in file order, from `# -- text` comments (continued by
    following comment lines) placed right above a key."""
    out, stack, pending = [], [], None
    for line in values_text.splitlines():
        m = re.match(r"^(\s*)# -- (.*)$", line)
        if m:
            pending = [m.group(2)]
            continue
        c = re.match(r"^\s*# (.*)$", line)
        if c and pending is not None:
            pending.append(c.group(1))
            continue
        k = re.match(r"^(\s*)([A-Za-z0-9_.\-]+):", line)
        if not k:
            pending = None
            continue
        depth = len(k.group(1)) // 2
        stack = stack[:depth] + [k.group(2)]
        if pending is not None:
            out.append((".".join(stack), " ".join(pending)))
        pending = None
    return out


def lookup(values, dotted):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def table(chart):
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for key, desc in described(text):
        default = json.dumps(lookup(values, key)).replace("|", "\\|")
        rows.append(f"| `{key}` | `{default}` | {desc} |")
    return "\n".join(rows)


def main():
    stale = []
    for name in ("skiff", "agent"):
        readme = CHARTS / name / "README.md"
        text = readme.read_text()
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = f"{head}{BEGIN}\n{table(CHARTS / name)}\n{END}{tail}"
        if "--check" in sys.argv:
            if new != text:
                stale.append(str(readme))
        else:
            readme.write_text(new)
    if stale:
        sys.exit("values table stale, run charts/tests/gen_readme_tables.py: " + ", ".join(stale))


if __name__ == "__main__":
    main()
