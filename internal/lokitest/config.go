// Package lokitest runs a real Loki (built from its Go module by `make
// loki-peer`, a test reference never imported) for the tests and the
// goldens: one process on loopback, its data in a directory of its own.
package lokitest

import "fmt"

// Version is the Loki the tests and goldens run.
const Version = "v3.7.8"

// Config is a single-process Loki's configuration: HTTP and gRPC on
// httpPort and grpcPort, memberlist on memberlistPort, its data under dir;
// structured metadata and volume queries on, the pattern ingester with
// patterns, ingestion limits far above a test's. (Loki v3.7.8's pattern
// ingester panics on a push that comes while it starts: the tests that
// push to a Loki as it starts leave it off.)
func Config(httpPort, grpcPort int, dir string, memberlistPort int, patterns bool) []byte {
	return fmt.Appendf(nil, config, httpPort, grpcPort, dir, memberlistPort, patterns)
}

const config = `auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %d
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: %[3]s
  storage:
    filesystem:
      chunks_directory: %[3]s/chunks
      rules_directory: %[3]s/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
ingester:
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: %[4]d
  join_members: []
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
  volume_enabled: true
  max_query_length: 0
  ingestion_rate_mb: 64
  ingestion_burst_size_mb: 128
querier:
  # The corpus is hours old and still in the ingester: always ask it.
  query_ingesters_within: 0
query_range:
  cache_results: false
  results_cache:
    cache:
      embedded_cache:
        enabled: false
pattern_ingester:
  enabled: %[5]t
analytics:
  reporting_enabled: false
`
