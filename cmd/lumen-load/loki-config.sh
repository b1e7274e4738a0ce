# Sourced by the benchmark scripts: loki_config DIR prints the
# configuration of a single-binary Loki on 127.0.0.1:13100 (gRPC 19095,
# memberlist 17946): filesystem chunks, TSDB index, its WAL on, structured
# metadata allowed, ingestion limits above any load here.
loki_config() { # dir
  cat <<YAML
auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: 13100
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: 19095
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: $1
  storage:
    filesystem:
      chunks_directory: $1/chunks
      rules_directory: $1/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
ingester:
  wal:
    dir: $1/wal
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: 17946
schema_config:
  configs:
    - from: 2020-10-24
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
limits_config:
  allow_structured_metadata: true
  ingestion_rate_mb: 256
  ingestion_burst_size_mb: 512
  max_query_length: 0
query_range:
  cache_results: false
analytics:
  reporting_enabled: false
YAML
}
