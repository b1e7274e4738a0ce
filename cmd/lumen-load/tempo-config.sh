# Sourced by the benchmark scripts: tempo_config DIR prints the
# configuration of a single-binary Tempo whose blocks and WAL are kept on
# the local backend under DIR, OTLP/HTTP on 127.0.0.1:24318, its HTTP API on
# :23200 (gRPC :23201, memberlist :23202), every ring in memory and no
# waits for a ring to settle (one member); its per-tenant ingestion limits
# raised (by default Tempo takes 15 MB/s and 10,000 live traces, and spans
# past the live traces are discarded after the push was answered 200);
# otherwise Tempo's defaults.
tempo_config() { # dir
  cat <<YAML
target: all
stream_over_http_enabled: true
usage_report:
  reporting_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: 23200
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: 23201
  log_level: warn
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: 23202
  advertise_addr: 127.0.0.1
distributor:
  receivers:
    otlp:
      protocols:
        http:
          endpoint: 127.0.0.1:24318
ingester:
  lifecycler:
    address: 127.0.0.1
    final_sleep: 0s
    min_ready_duration: 0s
    join_after: 0s
    ring:
      replication_factor: 1
      kvstore:
        store: inmemory
compactor:
  ring:
    wait_stability_min_duration: 0s
    kvstore:
      store: inmemory
metrics_generator:
  ring:
    kvstore:
      store: inmemory
overrides:
  defaults:
    ingestion:
      rate_limit_bytes: 1000000000
      burst_size_bytes: 1000000000
      max_traces_per_user: 10000000
storage:
  trace:
    backend: local
    wal:
      path: $1/wal
    local:
      path: $1/blocks
YAML
}
