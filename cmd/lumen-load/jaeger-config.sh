# Sourced by the benchmark scripts: jaeger_config DIR prints the
# configuration of a Jaeger v2 whose spans are kept in Badger under DIR (no
# batch processor, so that an acknowledged span is stored), OTLP on
# 127.0.0.1:24317 (gRPC) and :24318 (HTTP), its query API on :26686, its
# health check on :23133.
jaeger_config() { # dir
  cat <<YAML
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:23133
  jaeger_query:
    storage:
      traces: badger_store
    http:
      endpoint: 127.0.0.1:26686
    grpc:
      endpoint: 127.0.0.1:26685
  jaeger_storage:
    backends:
      badger_store:
        badger:
          directories:
            keys: $1/keys
            values: $1/values
          ephemeral: false
          ttl:
            spans: 48h
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:24317
      http:
        endpoint: 127.0.0.1:24318
exporters:
  jaeger_storage_exporter:
    trace_storage: badger_store
YAML
}
