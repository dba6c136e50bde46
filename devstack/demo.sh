#!/usr/bin/env bash
# The skiff demo: the real Zeebe broker, skiff, a Python and a Node handler run the
# underwriting process (examples/underwriting) for a batch of applications; the Node handler
# announces each issued policy on Kafka (business.policy.issued.v1, Avro, through skiff) and a
# Python handler consumes those events through the same skiff (a real Kafka broker and a real
# Schema Registry, Apicurio: devstack/kafka.sh and devstack/schema-registry.sh). Prints what
# happened and shuts down what it started. Installs what it needs first (idempotent; the Kafka
# broker's jars on its first start).
#
#   devstack/demo.sh [--instances N] [--secure] [--trace]
#
# --secure: the same with TLS/mTLS to every peer, OAuth (Keycloak) to the gateway and
# security.plaintext=refuse, the OAuth client secret read from OpenBao over mTLS with
# security.literal_secrets=refuse (devstack/demo_secure.py, demo_vault.py; starts Keycloak and
# OpenBao too, about a minute more).
# --trace: skiff's spans go through the real OpenTelemetry Collector to Jaeger all-in-one
# (devstack/demo_trace.py; Jaeger is built once, ~5 min); prints the trace ids of a few
# instances and one trace as a tree from Jaeger's query API (a Go build has no UI assets).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
devstack/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target skiff >/dev/null
exec python3 devstack/demo.py "$@"
