"""Reading what the real OpenTelemetry Collector received: its file exporter writes one OTLP
JSON object (ExportTraceServiceRequest) per line to $SKIFF_OTEL_SPANS_FILE."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

SPANS_FILE = Path(os.environ.get("SKIFF_OTEL_SPANS_FILE", "/nonexistent"))
OTLP_ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")


def _value(v: Dict[str, Any]) -> Any:
    if "intValue" in v:
        return int(v["intValue"])
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    return v


def spans(path: Path = SPANS_FILE) -> List[Dict[str, Any]]:
    """Every span received so far (by the collector writing path), flattened: name, kind,
    traceId, spanId, parentSpanId, status, attributes (a dict) and the resource's
    attributes."""
    out: List[Dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for rs in json.loads(line).get("resourceSpans", []):
            res = {a["key"]: _value(a["value"]) for a in rs.get("resource", {}).get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    s = dict(s)
                    s["attributes"] = {a["key"]: _value(a["value"]) for a in s.get("attributes", [])}
                    s["resource"] = res
                    out.append(s)
    return out


def spans_where(path: Path = SPANS_FILE, **attrs: Any) -> List[Dict[str, Any]]:
    return [s for s in spans(path) if all(s["attributes"].get(k) == v for k, v in attrs.items())]
