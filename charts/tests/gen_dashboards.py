#!/usr/bin/env python3
"""Writes the Grafana dashboards of skiff, charts/agent/dashboards/*.json, from the panels below.

One dashboard for skiff pods (every row), and one per service type (Zeebe job worker, Kafka
consumer, agent with egress) with the rows that type uses. Each has a Prometheus datasource
variable and namespace/pod variables; every query selects `namespace=~"$namespace",
pod=~"$pod"`. tests/delivery.sh runs this with --check (a committed file that differs fails);
tests/observability/test_dashboards.py runs every query against a real Prometheus.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "agent" / "dashboards"
S = 'namespace=~"$namespace", pod=~"$pod"'
RI = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


def rate(metric, by, extra=""):
    sel = S + (", " + extra if extra else "")
    return f"sum by ({by}) (rate({metric}{{{sel}}}[{RI}]))"


def quantile(q, metric, by):
    return (f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{S}}}[{RI}])))")


def gauge(agg, metric, by, extra=""):
    sel = S + (", " + extra if extra else "")
    return f"{agg} by ({by}) ({metric}{{{sel}}})"


def panel(title, desc, unit, *targets, exemplar=False, kind="timeseries"):
    """targets: (expr, legend) pairs."""
    return {
        "type": kind, "title": title, "description": desc, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": e,
                     "legendFormat": legend, "exemplar": exemplar, "range": True}
                    for i, (e, legend) in enumerate(targets)],
    }


def latency(title, desc, metric, by, legend):
    return panel(title, desc, "s",
                 (quantile(0.5, metric, by), "p50 " + legend),
                 (quantile(0.99, metric, by), "p99 " + legend), exemplar=True)


TASKS = ("Tasks", [
    panel("Throughput by result", "Result frames per second from handlers "
          "(complete, fail, bpmn_error, ack, nack).", "reqps",
          (rate("skiff_handler_results_total", "source, route, result"),
           "{{source}} {{route}} {{result}}")),
    latency("Processing latency (exemplars: the task's trace)", "Task frame written to result "
            "frame read: the handler's work. Exemplars link a bucket to the task's trace.",
            "skiff_handler_duration_seconds", "source, route", "{{source}} {{route}}"),
    panel("Error ratio", "Share of results that are fail, bpmn_error or nack.", "percentunit",
          (rate("skiff_handler_results_total", "source, route", 'result=~"fail|bpmn_error|nack"')
           + " / " + rate("skiff_handler_results_total", "source, route"), "{{source}} {{route}}")),
    latency("skiff overhead per task", "skiff's own time per task: dispatch (off the wire to the "
            "handler socket) and result (result frame to the engine command).",
            "skiff_task_overhead_seconds", "source, phase", "{{source}} {{phase}}"),
    panel("Tasks open and handler sessions", "Tasks held by skiff, and connected handlers "
          "(0: no handler, the pod is not ready).", "short",
          (gauge("sum", "skiff_tasks_open", "pod"), "open {{pod}}"),
          (gauge("sum", "skiff_handler_sessions", "pod"), "sessions {{pod}}")),
    panel("Tasks abandoned, cancelled, undeliverable", "Tasks given back unfinished, closed by "
          "their source under a handler, or refused for their content.", "reqps",
          (rate("skiff_tasks_abandoned_total", "source"), "abandoned {{source}}"),
          (rate("skiff_tasks_cancelled_total", "source, reason"), "cancelled {{source}} {{reason}}"),
          (rate("skiff_tasks_undeliverable_total", "source, reason"),
           "undeliverable {{source}} {{reason}}")),
])

ZEEBE = ("Zeebe jobs", [
    panel("Jobs by outcome", "activated, completed, failed, bpmn_error; not_found, rejected and "
          "deadline_passed are jobs lost.", "reqps",
          (rate("skiff_zeebe_jobs_total", "job_type, outcome"), "{{job_type}} {{outcome}}")),
    latency("Job latency (activation to acknowledged command)", "End to end inside skiff.",
            "skiff_zeebe_job_latency_seconds", "job_type", "{{job_type}}"),
    panel("Gateway requests by code", "RESOURCE_EXHAUSTED is the gateway's backpressure, "
          "UNAVAILABLE an outage.", "reqps",
          (rate("skiff_zeebe_gateway_requests_total", "method, code"), "{{method}} {{code}}")),
    panel("Activation backoff and jobs in flight", "Backoff > 0: activation is backing off "
          "after gateway errors (backpressure or outage).", "short",
          (gauge("max", "skiff_zeebe_activation_backoff_seconds", "job_type"),
           "backoff s {{job_type}}"),
          (gauge("sum", "skiff_zeebe_jobs_in_flight", "job_type"), "in flight {{job_type}}"),
          (gauge("sum", "skiff_zeebe_job_streams_open", "job_type"), "streams {{job_type}}")),
])

KAFKA = ("Kafka", [
    panel("Consumer lag", "Records behind the end of the partitions, per topic (alert: above "
          "1000 for 5 minutes).", "short",
          (gauge("sum", "skiff_kafka_consumer_lag", "topic"), "{{topic}}")),
    panel("Records processed", "Records that may be committed: acked, or dead_lettered.",
          "reqps", (rate("skiff_kafka_records_processed_total", "topic, outcome"),
                    "{{topic}} {{outcome}}"),
          (rate("skiff_kafka_records_received_total", "topic"), "{{topic}} received")),
    panel("Redeliveries and dead letters", "Records delivered again, and records written to "
          "<topic>.dlq, by reason.", "reqps",
          (rate("skiff_kafka_redeliveries_total", "topic, reason"), "redelivered {{topic}} {{reason}}"),
          (rate("skiff_kafka_dead_letters_total", "topic, reason"), "dead letter {{topic}} {{reason}}")),
    panel("Records held and partitions paused", "Held: read, not yet processed; paused: no "
          "free handler credit or kafka.max_buffered reached.", "short",
          (gauge("sum", "skiff_kafka_records_held", "topic"), "held {{topic}}"),
          (gauge("sum", "skiff_kafka_partitions_paused", "topic"), "paused {{topic}}")),
    panel("Produce", "Records produced (produce calls and dead letters) by result, and offset "
          "commits.", "reqps",
          (rate("skiff_kafka_produced_total", "topic, result"), "produced {{topic}} {{result}}"),
          (rate("skiff_kafka_commits_total", "result"), "commits {{result}}")),
    latency("Produce latency (send to delivery report)", "acks=all.",
            "skiff_kafka_produce_seconds", "pod", "{{pod}}"),
    panel("Schema Registry and client errors", "Registry requests by verdict; librdkafka "
          "errors by name.", "reqps",
          (rate("skiff_schema_registry_requests_total", "result"), "registry {{result}}"),
          (rate("skiff_kafka_client_errors_total", "code"), "client error {{code}}")),
])

CALLS = ("External calls", [
    latency("HTTP peers: request latency", "Registry, Vault, OAuth and OTLP calls by peer.",
            "skiff_http_client_request_duration_seconds", "peer", "{{peer}}"),
    latency("HTTP peers: time to first byte", "", "skiff_http_client_ttfb_seconds", "peer",
            "{{peer}}"),
    latency("Schema Registry request latency", "", "skiff_schema_registry_request_seconds",
            "pod", "{{pod}}"),
])

SECURITY = ("TLS, tokens, Vault", [
    panel("Certificate expiry", "Seconds until the certificate in force expires (alert: under "
          "7 days).", "s",
          (gauge("min", "skiff_tls_certificate_expiry_seconds", "peer, certificate"),
           "{{peer}} {{certificate}}")),
    panel("Plaintext peers and TLS reloads", "1: a peer configured without TLS; reloads "
          "refused keep the old certificate.", "short",
          (gauge("max", "skiff_plaintext_peers", "peer"), "plaintext {{peer}}"),
          (rate("skiff_tls_reloads_total", "peer, result"), "reload {{peer}} {{result}}")),
    panel("Tokens held", "1 while a valid OAuth access token (by client) or Vault token is "
          "held.", "short",
          (gauge("min", "skiff_oauth_token_valid", "token"), "oauth {{token}}"),
          (gauge("min", "skiff_vault_token_valid", "pod"), "vault {{pod}}")),
    panel("Token and Vault failures", "OAuth token requests, Vault logins and secret reads "
          "that did not succeed.", "reqps",
          (rate("skiff_oauth_token_requests_total", "token, result", 'result!="ok"'),
           "oauth {{token}} {{result}}"),
          (rate("skiff_vault_logins_total", "result", 'result!="ok"'), "vault login {{result}}"),
          (rate("skiff_vault_secret_reads_total", "result", 'result!~"ok|changed"'),
           "vault read {{result}}")),
])

EGRESS = ("Egress", [
    latency("Egress request latency", "Handlers' outbound calls through skiff, by route.",
            "skiff_egress_request_duration_seconds", "route", "{{route}}"),
    latency("Egress time to first byte", "", "skiff_egress_ttfb_seconds", "route",
            "{{route}}"),
    panel("Egress breaker state", "A route's circuit breaker: 0 closed, 1 open (calls fail fast), "
          "2 half-open (one probe call).",
          "short", (gauge("max", "skiff_egress_breaker_state", "route"), "{{route}}")),
])

TRACING = ("Tracing", [
    panel("Spans exported and dropped", "Dropped: queue full or export failed.", "reqps",
          (rate("skiff_trace_spans_exported_total", "pod"), "exported {{pod}}"),
          (rate("skiff_trace_spans_dropped_total", "reason"), "dropped {{reason}}")),
])

DASHBOARDS = {
    "skiff-pods": ("skiff pods", [TASKS, ZEEBE, KAFKA, CALLS, SECURITY, EGRESS, TRACING]),
    "skiff-zeebe-worker": ("skiff: Zeebe job worker", [TASKS, ZEEBE, CALLS, SECURITY]),
    "skiff-kafka-consumer": ("skiff: Kafka consumer", [TASKS, KAFKA, CALLS, SECURITY]),
    "skiff-agent-egress": ("skiff: agent with egress", [TASKS, EGRESS, CALLS, SECURITY]),
}


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "definition": query, "query": {"query": query, "refId": name},
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"text": "All", "value": "$__all"}, "sort": 1, "hide": 0,
    }


def dashboard(uid, title, rows):
    panels, y = [], 0
    for i, (row_title, row_panels) in enumerate(rows):
        panels.append({"type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "id": len(panels) + 1, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        for j, p in enumerate(row_panels):
            p = dict(p, id=len(panels) + 1,
                     gridPos={"h": 8, "w": 12, "x": 12 * (j % 2), "y": y + 8 * (j // 2)})
            panels.append(p)
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "uid": uid, "title": title, "tags": ["skiff"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1},
            variable("namespace", "Namespace", "label_values(skiff_handler_sessions, namespace)"),
            variable("pod", "Pod",
                     'label_values(skiff_handler_sessions{namespace=~"$namespace"}, pod)'),
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render():
    return {f"{uid}.json": json.dumps(dashboard(uid, title, rows), indent=2) + "\n"
            for uid, (title, rows) in DASHBOARDS.items()}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        sys.exit("stale (run charts/tests/gen_dashboards.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
