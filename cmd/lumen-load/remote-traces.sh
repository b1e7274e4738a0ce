#!/usr/bin/env bash
# Trace ingest with spans kept locally and in Jaeger v2, in one run: the
# same OTLP gRPC load (TOTAL spans at most, for at most DURATION: 100
# traces of 10 spans a request, 4 senders) at Lumen with its own store,
# then at Lumen with storage.traces.backend remote in front of Jaeger v2
# (Badger, this machine, as in peers-traces.sh). Each prints spans/s and
# Lumen's CPU-seconds per million spans; the remote run also the time its
# queue took to empty after the load and Lumen's and Jaeger's CPU up to
# then, and what Lumen's queue sent and failed to send. Then, in both,
# LOOKUPS traces by id (spans only) and correlated answers. BACKEND=tempo
# puts a single-binary Tempo (local blocks) behind Lumen instead. Peers:
# `make jaeger-peer`, `make tempo-peer`. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$HOME/.cache/lumen-peers}
JAEGER=${JAEGER:-$PEERS/jaeger-v1.76.0}
TEMPO=${TEMPO:-$PEERS/tempo-v1.5.1-0.20250529124718-87c2dc380cec}
BACKEND=${BACKEND:-jaeger}
TOTAL=${TOTAL:-1000000}
DURATION=${DURATION:-3m}
LOOKUPS=${LOOKUPS:-200}
work=$(mktemp -d)
trap 'kill -9 ${backend:-} 2>/dev/null; kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/lumen" ./cmd/lumen
go build -o "$work/lumen-load" ./cmd/lumen-load
. cmd/lumen-load/jaeger-config.sh
. cmd/lumen-load/tempo-config.sh
echo "machine: $(nproc) cores; load: OTLP gRPC, at most $TOTAL spans or $DURATION, 1000 per request (100 traces x 10), 4 senders; $LOOKUPS lookups after"

. cmd/lumen-load/serve-lumen.sh
load() { # pid extra-flags...
  local pid=$1; shift
  "$work/lumen-load" -grpc 127.0.0.1:14317 -http 127.0.0.1:14320 -batch 1000 -spans-per-trace 10 -concurrency 4 \
    -total "$TOTAL" -duration "$DURATION" -pid "$pid" -lookups "$LOOKUPS" "$@" | grep -v '^$'
}

echo "== lumen, traces local"
serve "$work/local"
load $lumen
kill $lumen; wait $lumen 2>/dev/null || true

if [ "$BACKEND" = tempo ]; then
  echo "== lumen, traces remote (tempo behind it)"
  mkdir -p "$work/tempo"
  tempo_config "$work/tempo" > "$work/tempo.yaml"
  "$TEMPO" -config.file="$work/tempo.yaml" > "$work/backend.log" 2>&1 &
  backend=$!
  ready http://127.0.0.1:23200/ready
  serve "$work/remote" --traces-backend remote --traces-remote-otlp-url http://127.0.0.1:24318/v1/traces \
    --traces-remote-query-url http://127.0.0.1:23200 --traces-remote-api tempo
else
  echo "== lumen, traces remote (jaeger behind it)"
  mkdir -p "$work/jaeger/keys" "$work/jaeger/values"
  jaeger_config "$work/jaeger" > "$work/jaeger.yaml"
  "$JAEGER" --config "$work/jaeger.yaml" > "$work/backend.log" 2>&1 &
  backend=$!
  ready http://127.0.0.1:23133/status
  serve "$work/remote" --traces-backend remote --traces-remote-otlp-url http://127.0.0.1:24318/v1/traces \
    --traces-remote-query-url http://127.0.0.1:26686
fi
load $lumen -drain-queues -backend-pid $backend || { tail -20 "$work/backend.log"; exit 1; }
curl -fs http://127.0.0.1:14320/metrics | grep -E '^otelcol_exporter_(sent|send_failed)_spans_total' || true
