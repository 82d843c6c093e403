"""Hooks of scripts/schemathesis.sh (SCHEMATHESIS_HOOKS): the protobuf bodies of Prometheus
remote_write (/api/v1/write) and OTLP/HTTP (/v1/metrics) are bytes, sent as they are generated;
VictoriaMetrics' JSON lines (/api/v1/import) are text."""
import schemathesis

schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
